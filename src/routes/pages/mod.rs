//! The server-rendered pages. They work without JavaScript; `/static/app.js` only adds the
//! show/hide buttons and the live strength meter, which asks `POST /password/strength`.

use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use http::header::CONTENT_TYPE;
use http::HeaderValue;

use crate::app::state::AppState;
use crate::web::extract::{AnyStage, CookieSession};
use crate::web::responses::page_for;

pub mod keys;
pub mod password;
pub mod reset;
pub mod sign_in;
pub mod two_step;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(sign_in::form))
        .route("/password", get(password::form))
        .route("/password/strength", post(password::strength))
        .route("/logout", post(sign_in::sign_out))
        .route("/login/totp", get(two_step::code_form))
        .route("/totp", get(two_step::settings))
        .route("/totp/setup", post(two_step::setup))
        .route("/totp/confirm", post(two_step::confirm))
        .route("/static/style.css", get(stylesheet))
        .route("/static/app.js", get(script))
}

/// The forms that verify a password or a code; `routes::router` puts the login limiter in
/// front of them.
pub fn limited() -> Router<AppState> {
    Router::new()
        .route("/login", post(sign_in::submit))
        .route("/password", post(password::submit))
        .route("/login/totp", post(two_step::code_submit))
        .route("/totp/disable", post(two_step::disable))
}

/// "Forgot your password?": the form alone is open; everything that checks a token or
/// starts a mail is limited (a link in a mail is a password of its own).
pub fn reset() -> Router<AppState> {
    Router::new().route("/reset", get(reset::request_form))
}

/// SSH keys: the page is open to a signed-in user; saving verifies the password.
pub fn keys() -> Router<AppState> {
    Router::new().route("/keys", get(keys::form))
}

pub fn keys_limited() -> Router<AppState> {
    Router::new().route("/keys", post(keys::submit))
}

pub fn reset_limited() -> Router<AppState> {
    Router::new()
        .route("/reset", post(reset::request_submit))
        .route("/reset/confirm", post(reset::confirm))
        .route("/reset/cancel", post(reset::cancel))
        .route("/reset/{token}", get(reset::open))
        .route("/reset/{token}/cancel", get(reset::cancel_form))
}

async fn index(session: Option<CookieSession<AnyStage>>) -> Redirect {
    match session {
        Some(session) => Redirect::to(page_for(session.claims.stage)),
        None => Redirect::to("/login"),
    }
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        include_str!("../../../static/style.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        include_str!("../../../static/app.js"),
    )
}
