//! `POST /api/v1/reset`, `POST /api/v1/reset/confirm`, `POST /api/v1/reset/cancel`.
//! Registered only when `reset.enabled`.

use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::auth::reset::{ConfirmError, ResetConfirm};
use crate::limiter::Admitted;
use crate::totp::TotpError;
use crate::web::api_error::ApiError;
use crate::web::extract::{Api, Call};

#[derive(Deserialize)]
pub struct RequestBody {
    username: String,
}

/// Always 202 with the same body, whatever the name: what happened is audited only.
pub async fn request(
    call: Call<Api>,
    admitted: Admitted,
    body: Result<Json<RequestBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    call.state
        .portal
        .request_reset(call.caller(), admitted, &body.username)
        .map_err(|_| not_found())?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "requested"}))).into_response())
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such API endpoint.")
}

fn invalid_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "The reset link is not valid: unknown, used, expired or cancelled.",
    )
}

fn refusal(error: ConfirmError) -> ApiError {
    match error {
        ConfirmError::Off => not_found(),
        ConfirmError::InvalidToken => invalid_token(),
        ConfirmError::Policy(violations) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "policy_violation",
            "The new password does not meet the password policy.",
        )
        .with_details(violations.iter().map(ToString::to_string).collect()),
        ConfirmError::InvalidCode(Some(TotpError::TooManyAttempts { .. })) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "Too many wrong codes. Wait and try again.",
        ),
        ConfirmError::InvalidCode(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_code",
            "A current two-step code or an unused backup code is required.",
        ),
        ConfirmError::RejectedByTrueNas(messages) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rejected_by_truenas",
            "TrueNAS refused the new password.",
        )
        .with_details(messages),
        ConfirmError::Unavailable => ApiError::backend_unavailable(),
    }
}

#[derive(Deserialize)]
pub struct ConfirmBody {
    token: String,
    new_password: String,
    #[serde(default)]
    code: Option<String>,
}

pub async fn confirm(
    call: Call<Api>,
    admitted: Admitted,
    body: Result<Json<ConfirmBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let new = SecretString::from(body.new_password);
    let code = body.code.map(SecretString::from);
    let input = ResetConfirm {
        token: &body.token,
        new: &new,
        confirmation: None,
        code: code.as_ref(),
    };
    call.state
        .portal
        .confirm_reset(call.caller(), admitted, input)
        .await
        .map_err(refusal)?;
    Ok(Json(json!({"status": "changed"})).into_response())
}

#[derive(Deserialize)]
pub struct CancelBody {
    token: String,
}

pub async fn cancel(
    call: Call<Api>,
    admitted: Admitted,
    body: Result<Json<CancelBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    call.state
        .portal
        .cancel_reset(call.caller(), admitted, &body.token)
        .await
        .map_err(refusal)?;
    Ok(Json(json!({"status": "cancelled"})).into_response())
}
