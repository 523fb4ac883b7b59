//! Finding the session of a request: the cookie for pages, `Authorization: Bearer` for the
//! JSON API. The API never accepts the cookie, so it needs no CSRF token.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::cookies;
use crate::app::state::AppState;
use crate::auth::sessions::{Claims, Stage};

pub async fn from_cookie(state: &AppState, headers: &HeaderMap) -> Option<Claims> {
    from_cookie_in(state, headers, &[Stage::Authenticated]).await
}

/// The cookie's session, if it is in one of `stages`.
pub async fn from_cookie_in(
    state: &AppState,
    headers: &HeaderMap,
    stages: &[Stage],
) -> Option<Claims> {
    let token = cookies::read(headers, state.cookies.session)?;
    state.sessions.check_any(token, stages).await.ok()
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn from_bearer(state: &AppState, headers: &HeaderMap) -> Option<(Claims, String)> {
    from_bearer_in(state, headers, &[Stage::Authenticated]).await
}

/// The Bearer token's session, if it is in one of `stages`.
pub async fn from_bearer_in(
    state: &AppState,
    headers: &HeaderMap,
    stages: &[Stage],
) -> Option<(Claims, String)> {
    let token = bearer(headers)?;
    let claims = state.sessions.check_any(token, stages).await.ok()?;
    Some((claims, token.to_string()))
}
