//! Cookie names and `Set-Cookie` values. Outside development both cookies carry the
//! `__Host-` prefix, which browsers accept only with `Secure`, `Path=/` and no `Domain`, so
//! no subdomain or plain-HTTP page can plant or read them. Parsing and building go through
//! the `cookie` crate; the refusal of odd values stays here (see `acceptable`).

use cookie::time::Duration;
use cookie::{Cookie, SameSite};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

#[derive(Debug, Clone)]
pub struct CookieNames {
    pub session: &'static str,
    pub csrf: &'static str,
    pub secure: bool,
}

impl CookieNames {
    pub fn new(secure: bool) -> Self {
        if secure {
            Self {
                session: "__Host-passgate_session",
                csrf: "__Host-passgate_csrf",
                secure,
            }
        } else {
            Self {
                session: "passgate_session",
                csrf: "passgate_csrf",
                secure,
            }
        }
    }

    pub fn set(&self, name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
        // A Max-Age past i64 seconds means "for ever" just the same.
        let max_age = Duration::seconds(i64::try_from(max_age_secs).unwrap_or(i64::MAX));
        let cookie = Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(max_age)
            .secure(self.secure)
            .build();
        HeaderValue::from_str(&cookie.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
    }

    pub fn clear(&self, name: &str) -> HeaderValue {
        self.set(name, "", 0)
    }
}

/// The longest cookie value passgate accepts; its own values are far shorter.
const MAX_VALUE_LEN: usize = 4096;

/// The value of the first cookie called `name`, if it is made of token characters only.
pub fn read<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        // A malformed pair (no `=`, empty name) is skipped, as a browser would.
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        // The raw value, borrowed from the header: not unquoted, not decoded.
        .and_then(|c| c.value_raw())
        .filter(|v| acceptable(v))
}

/// passgate's cookie values are tokens: anything else is refused, not cleaned up.
fn acceptable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_VALUE_LEN
        && value.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_cookie_only() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; __Host-passgate_session=tok.en.sig; b=2"),
        );
        assert_eq!(read(&h, "__Host-passgate_session"), Some("tok.en.sig"));
        assert_eq!(read(&h, "passgate_session"), None);
    }

    #[test]
    fn secure_cookies_have_every_flag() {
        let c = CookieNames::new(true);
        let v = c.set(c.session, "x", 600);
        let text = v.to_str().expect("ascii");
        for part in [
            "__Host-",
            "Path=/",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Max-Age=600",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert!(!text.contains("Domain"));
    }

    #[test]
    fn development_cookies_are_not_secure_and_clear_expires() {
        let c = CookieNames::new(false);
        assert_eq!(c.session, "passgate_session");
        let text = c.set(c.csrf, "v", 60).to_str().expect("ascii").to_string();
        assert!(text.starts_with("passgate_csrf=v"), "{text}");
        assert!(!text.contains("Secure"), "{text}");
        let cleared = c.clear(c.csrf).to_str().expect("ascii").to_string();
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        assert!(cleared.starts_with("passgate_csrf=;"), "{cleared}");
    }

    #[test]
    fn odd_values_are_refused() {
        let mut h = HeaderMap::new();
        let long = format!("a={}", "x".repeat(MAX_VALUE_LEN + 1));
        h.append(COOKIE, HeaderValue::from_static("e=; s=a b"));
        h.append(COOKIE, HeaderValue::from_str(&long).expect("ascii"));
        h.append(COOKIE, HeaderValue::from_static("broken; ok=t0k-en_1"));
        assert_eq!(read(&h, "e"), None);
        assert_eq!(read(&h, "s"), None);
        assert_eq!(read(&h, "a"), None);
        assert_eq!(read(&h, "ok"), Some("t0k-en_1"));
    }

    #[test]
    fn first_of_repeated_cookies_wins() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("n=first; n=second"));
        assert_eq!(read(&h, "n"), Some("first"));
    }
}
