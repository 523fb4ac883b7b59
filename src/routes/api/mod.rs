//! JSON API v1 (a public contract; see README "JSON API").

pub mod two_step;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::app::state::AppState;
use crate::audit::{Context, Event, Outcome, Record};
use crate::auth::change_password::{change_password, finish_change, ChangeError, PasswordChange};
use crate::auth::password_aging::PasswordAging;
use crate::auth::steps::StepError;
use crate::routes::api::two_step::{step_response, totp_enabled};
use crate::verify::Decision;
use crate::web::api_error::ApiError;
use crate::web::session;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/password", post(password))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let password = SecretString::from(body.password);
    let result = state.auth.sign_in(&body.username, &password).await;
    result
        .audit(&state.audit, &body.username, &context, "api")
        .await;
    match (result.outcome.decision, result.verified_user()) {
        (Decision::Verified, Some(user)) => {
            let admin = state.admin.is_admin(state.nas.as_ref(), user).await;
            let nas_otp = result.outcome.nas_otp.clone();
            let issued = state
                .steps
                .after_password(&user.username, &user.full_name, admin, nas_otp)
                .await
                .map_err(|e| match e {
                    StepError::Busy => ApiError::busy(),
                    e => {
                        tracing::error!(error = %e, "could not create a session");
                        ApiError::internal()
                    }
                })?;
            Ok(with_password_aging(step_response(&issued), result.password).await)
        }
        (Decision::Unavailable, _) => Err(ApiError::backend_unavailable()),
        (Decision::Busy, _) => Err(ApiError::busy()),
        _ => Err(ApiError::invalid_credentials()),
    }
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn password(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    // Authentication is checked before the body, so an anonymous caller learns nothing.
    let (claims, _) = session::from_bearer(&state, &headers)
        .await
        .ok_or_else(ApiError::unauthenticated)?;
    let Json(body) = body?;
    let current = SecretString::from(body.current_password);
    let new = SecretString::from(body.new_password);
    let change = PasswordChange {
        username: &claims.sub,
        full_name: &claims.name,
        current: &current,
        new: &new,
        confirmation: None,
    };
    let result = change_password(&state.auth, state.nas.as_ref(), &state.policy, change).await;
    let error = match result {
        Ok(verifier) => {
            finish_change(
                &state.sessions,
                &state.audit,
                &claims.sub,
                &context,
                "api",
                verifier,
            )
            .await;
            return Ok(Json(json!({"status": "changed"})).into_response());
        }
        Err(error) => error,
    };
    error.audit(&state.audit, &claims.sub, &context, "api");
    Err(match error {
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
    })
}

async fn logout(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (claims, _) = session::from_bearer(&state, &headers)
        .await
        .ok_or_else(ApiError::unauthenticated)?;
    state.sessions.revoke(&claims.jti).await.map_err(|e| {
        tracing::error!(error = %e, "could not revoke a session at logout");
        ApiError::internal()
    })?;
    state.audit.record(
        Record::new(Event::Logout, Outcome::Success)
            .user(&claims.sub)
            .context(&context)
            .detail(json!({"via": "api"})),
    );
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (claims, _) = session::from_bearer(&state, &headers)
        .await
        .ok_or_else(ApiError::unauthenticated)?;
    let totp_enabled = totp_enabled(&state, &claims.sub).await;
    let password = state.auth.password_aging(&claims.sub).await;
    Ok(Json(json!({
        "username": claims.sub,
        "full_name": claims.name,
        "totp_enabled": totp_enabled,
        "totp_mode": state.totp.mode(),
        "password": password,
    }))
    .into_response())
}

/// The step answer's body is small JSON made by `step_response`.
const STEP_BODY_LIMIT: usize = 16 * 1024;

/// Adds `"password": {...}` (or `null`) to a sign-in answer. Reading back the body keeps
/// `step_response` the one place that shapes the step answer, which the code-step API shares.
async fn with_password_aging(response: Response, aging: Option<PasswordAging>) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, STEP_BODY_LIMIT).await else {
        return ApiError::internal().into_response();
    };
    let Ok(serde_json::Value::Object(mut value)) = serde_json::from_slice(&bytes) else {
        return ApiError::internal().into_response();
    };
    value.insert(String::from("password"), json!(aging));
    parts.headers.remove(http::header::CONTENT_LENGTH);
    (parts, Json(value)).into_response()
}
