//! Cookie names and `Set-Cookie` values. Outside development both cookies carry the
//! `__Host-` prefix, which browsers accept only with `Secure`, `Path=/` and no `Domain`, so
//! no subdomain or plain-HTTP page can plant or read them.

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
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
        );
        HeaderValue::from_str(&text)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
    }

    pub fn clear(&self, name: &str) -> HeaderValue {
        self.set(name, "", 0)
    }
}

/// The value of the first cookie called `name`, if it is made of token characters only.
pub fn read<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| {
            !v.is_empty() && v.len() <= 4096 && v.bytes().all(|b| b.is_ascii_graphic() && b != b';')
        })
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
}
