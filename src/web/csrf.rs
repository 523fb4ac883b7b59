//! CSRF protection for forms: a signed double-submit token. A random value lives in an
//! HttpOnly SameSite=Strict cookie; each form carries the HMAC of that value under a key
//! derived from the server secret. A cross-site page can neither read the cookie nor compute
//! the MAC, so it cannot forge a valid pair.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use rand::RngCore;

use super::cookies;
use crate::app::state::AppState;

/// The cookie value and form token for a page. `set_cookie` is true when a fresh cookie
/// value was made and must be sent.
pub struct CsrfPair {
    pub cookie_value: String,
    pub form_token: String,
    pub set_cookie: bool,
}

/// Reuses the browser's CSRF cookie when it has one, so several open tabs keep working.
pub fn for_page(state: &AppState, headers: &HeaderMap) -> CsrfPair {
    let existing = cookies::read(headers, state.cookies.csrf)
        .filter(|v| URL_SAFE_NO_PAD.decode(v).is_ok_and(|b| b.len() == 32));
    let (cookie_value, set_cookie) = match existing {
        Some(v) => (v.to_string(), false),
        None => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            (URL_SAFE_NO_PAD.encode(bytes), true)
        }
    };
    let form_token = URL_SAFE_NO_PAD.encode(state.keys.csrf_mac(cookie_value.as_bytes()));
    CsrfPair {
        cookie_value,
        form_token,
        set_cookie,
    }
}

/// True only when the request has the CSRF cookie and the form token is its MAC.
pub fn verify(state: &AppState, headers: &HeaderMap, form_token: Option<&str>) -> bool {
    let Some(cookie) = cookies::read(headers, state.cookies.csrf) else {
        return false;
    };
    let Some(token) = form_token.and_then(|t| URL_SAFE_NO_PAD.decode(t).ok()) else {
        return false;
    };
    state.keys.csrf_verify(cookie.as_bytes(), &token)
}
