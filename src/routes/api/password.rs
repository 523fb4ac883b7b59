//! `POST /api/v1/password`.

use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::auth::change_password::{ChangeError, PasswordChange};
use crate::limiter::Admitted;
use crate::web::api_error::ApiError;
use crate::web::extract::{Api, BearerSession, Call, Full};

#[derive(Deserialize)]
pub struct ChangeBody {
    current_password: String,
    new_password: String,
}

fn refusal(error: ChangeError) -> ApiError {
    match error {
        ChangeError::Policy(violations) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "policy_violation",
            "The new password does not meet the password policy.",
        )
        .with_details(violations.iter().map(ToString::to_string).collect()),
        ChangeError::WrongCurrentPassword { .. } => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "The current password is not correct.",
        ),
        ChangeError::RejectedByTrueNas(messages) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rejected_by_truenas",
            "TrueNAS refused the new password.",
        )
        .with_details(messages),
        ChangeError::Unavailable { .. } => ApiError::backend_unavailable(),
        ChangeError::Busy => ApiError::busy(),
    }
}

pub async fn change(
    call: Call<Api>,
    admitted: Admitted,
    session: BearerSession<Full>,
    body: Result<Json<ChangeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let current = SecretString::from(body.current_password);
    let new = SecretString::from(body.new_password);
    let change = PasswordChange {
        current: &current,
        new: &new,
        confirmation: None,
    };
    call.state
        .portal
        .change_password(call.caller(), admitted, &session.claims, change)
        .await
        .map_err(refusal)?;
    Ok(Json(json!({"status": "changed"})).into_response())
}
