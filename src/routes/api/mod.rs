//! JSON API v1 (a public contract; see README "JSON API").

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::app::state::AppState;
use crate::auth::password_aging::PasswordAging;
use crate::auth::sessions::{Issued, Stage};

pub mod password;
pub mod reset;
pub mod sign_in;
pub mod ssh_keys;
pub mod two_step;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/logout", post(sign_in::sign_out))
        .route("/api/v1/me", get(sign_in::me))
        .route("/api/v1/totp/enroll", post(two_step::enroll))
        .route("/api/v1/totp/confirm", post(two_step::confirm))
}

/// The endpoints that verify a password or a code; `routes::router` puts the login limiter
/// in front of them.
pub fn limited() -> Router<AppState> {
    Router::new()
        .route("/api/v1/login", post(sign_in::sign_in))
        .route("/api/v1/login/totp", post(two_step::code))
        .route("/api/v1/password", post(password::change))
        .route("/api/v1/totp/disable", post(two_step::disable))
}

/// SSH keys: listing needs a session; replacing verifies the password.
pub fn keys() -> Router<AppState> {
    Router::new().route("/api/v1/ssh-keys", get(ssh_keys::list))
}

pub fn keys_limited() -> Router<AppState> {
    Router::new().route("/api/v1/ssh-keys", put(ssh_keys::replace))
}

/// Reset by mail: every endpoint checks a token or starts a mail, so all are limited.
pub fn reset_limited() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reset", post(reset::request))
        .route("/api/v1/reset/confirm", post(reset::confirm))
        .route("/api/v1/reset/cancel", post(reset::cancel))
}

/// The answer to a step that issued a session: what it is for, and the token. A sign-in
/// adds `"password"` (its aging, or `null`).
fn step_response(issued: &Issued, password: Option<Option<PasswordAging>>) -> Response {
    let status = match issued.claims.stage {
        Stage::Authenticated => "authenticated",
        Stage::TotpPending | Stage::NasOtpPending => "totp_required",
        Stage::TotpEnrollment => "totp_enrollment_required",
    };
    let mut body = json!({
        "status": status,
        "token": issued.token,
        "expires_in": issued.claims.exp.saturating_sub(issued.claims.iat),
    });
    match issued.claims.stage {
        Stage::TotpPending => body["factor"] = json!("portal"),
        Stage::NasOtpPending => body["factor"] = json!("truenas"),
        _ => {}
    }
    if let Some(aging) = password {
        body["password"] = json!(aging);
    }
    Json(body).into_response()
}
