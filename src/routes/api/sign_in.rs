//! `POST /api/v1/login`, `POST /api/v1/logout`, `GET /api/v1/me`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::step_response;
use crate::app::state::AppState;
use crate::auth::sign_in::SignInOutcome;
use crate::limiter::Admitted;
use crate::web::api_error::ApiError;
use crate::web::extract::{Api, BearerSession, Call, Full};

#[derive(Deserialize)]
pub struct SignInBody {
    username: String,
    password: String,
}

pub async fn sign_in(
    call: Call<Api>,
    admitted: Admitted,
    body: Result<Json<SignInBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let password = SecretString::from(body.password);
    match call
        .state
        .portal
        .sign_in(call.caller(), admitted, &body.username, &password)
        .await
    {
        SignInOutcome::Issued { issued, password } => Ok(step_response(&issued, Some(password))),
        SignInOutcome::Refused => Err(ApiError::invalid_credentials()),
        SignInOutcome::Unavailable => Err(ApiError::backend_unavailable()),
        SignInOutcome::Busy => Err(ApiError::busy()),
        SignInOutcome::SessionFailed => Err(ApiError::internal()),
    }
}

pub async fn sign_out(
    call: Call<Api>,
    session: BearerSession<Full>,
) -> Result<StatusCode, ApiError> {
    call.state
        .portal
        .sign_out(call.caller(), &session.claims)
        .await
        .map_err(|_| ApiError::internal())?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(
    State(state): State<AppState>,
    session: BearerSession<Full>,
) -> Result<Response, ApiError> {
    let claims = session.claims;
    let portal = &state.portal;
    let totp_enabled = match portal.totp.status(&claims.sub).await {
        Ok(status) => json!(status.enabled),
        Err(e) => {
            tracing::error!(error = %e, "totp status");
            Value::Null
        }
    };
    let password = portal.authenticator.password_aging(&claims.sub).await;
    Ok(Json(json!({
        "username": claims.sub,
        "full_name": claims.name,
        "totp_enabled": totp_enabled,
        "totp_mode": portal.totp.mode(),
        "password": password,
    }))
    .into_response())
}
