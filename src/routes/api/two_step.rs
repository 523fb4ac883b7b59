//! JSON API v1, the code step and TOTP enrollment (see README "JSON API").

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::state::AppState;
use crate::audit::{Context, Event};
use crate::auth::sessions::{Issued, Stage};
use crate::auth::steps::{audit_code, audit_totp_change, audit_totp_refusal, CodeError};
use crate::limiter::retry_after_secs;
use crate::totp::{unix_now, TotpError, TotpMode};
use crate::verify::Decision;
use crate::web::api_error::ApiError;
use crate::web::session;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/login/totp", post(login_totp))
        .route("/api/v1/totp/enroll", post(enroll))
        .route("/api/v1/totp/confirm", post(confirm))
        .route("/api/v1/totp/disable", post(disable))
}

/// The answer to a step that issued a session: what it is for, and the token.
pub fn step_response(issued: &Issued) -> Response {
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
    Json(body).into_response()
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

fn invalid_code() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_code",
        "The code is not correct, or was already used.",
    )
}

fn too_many(retry_after: std::time::Duration) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "Too many wrong codes. Please wait before trying again.",
    );
    e.retry_after = Some(retry_after_secs(retry_after));
    e
}

fn totp_off() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "totp_disabled",
        "Two-step sign-in is turned off on this portal.",
    )
}

fn code_api_error(error: &CodeError) -> ApiError {
    match error {
        CodeError::Wrong { .. } => invalid_code(),
        CodeError::SignInAgain(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign_in_again",
            "This sign-in has ended. Please sign in again.",
        ),
        CodeError::TooManyAttempts { retry_after } => too_many(*retry_after),
        CodeError::Unavailable(_) => ApiError::backend_unavailable(),
        CodeError::Internal(_) => ApiError::internal(),
    }
}

async fn login_totp(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    body: Result<Json<CodeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (claims, _) = session::from_bearer_in(
        &state,
        &headers,
        &[Stage::TotpPending, Stage::NasOtpPending],
    )
    .await
    .ok_or_else(ApiError::unauthenticated)?;
    let Json(body) = body?;
    let code = SecretString::from(body.code);
    let result = state.steps.submit_code(&claims, &code).await;
    audit_code(&state.audit, &claims, &context, "api", &result).await;
    match result {
        Ok(accepted) => Ok(step_response(&accepted.issued)),
        Err(error) => Err(code_api_error(&error)),
    }
}

/// User-facing answers to the TOTP service's refusals, shared by enrollment and disabling.
fn totp_api_error(error: &TotpError) -> ApiError {
    match error {
        TotpError::InvalidCode | TotpError::Replayed => invalid_code(),
        TotpError::TooManyAttempts { retry_after } => too_many(*retry_after),
        TotpError::ProofRequired => ApiError::new(
            StatusCode::FORBIDDEN,
            "code_required",
            "Two-step sign-in is already on. Send a current code or a backup code to replace it.",
        ),
        TotpError::NotEnrolled => ApiError::new(
            StatusCode::CONFLICT,
            "not_enrolled",
            "Two-step sign-in is not on for this account.",
        ),
        TotpError::NoPendingEnrollment => ApiError::new(
            StatusCode::CONFLICT,
            "no_enrollment",
            "No set-up is in progress, or it expired. Please start again.",
        ),
        TotpError::Store(e) => {
            tracing::error!(error = %e, "totp store");
            ApiError::internal()
        }
        TotpError::Crypto(why) => {
            tracing::error!(error = %why, "totp secret could not be read");
            ApiError::internal()
        }
    }
}

/// Parses an optional JSON body: empty means no fields.
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("The request body is not valid JSON for this endpoint."))
}

#[derive(Deserialize, Default)]
struct EnrollBody {
    /// A current code or backup code, needed when TOTP is already on.
    #[serde(default)]
    code: Option<String>,
}

async fn enroll(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (claims, _) = session::from_bearer_in(
        &state,
        &headers,
        &[Stage::Authenticated, Stage::TotpEnrollment],
    )
    .await
    .ok_or_else(ApiError::unauthenticated)?;
    if state.totp.mode() == TotpMode::Off {
        return Err(totp_off());
    }
    let body: EnrollBody = optional_body(&body)?;
    let proof = body.code.map(SecretString::from);
    match state
        .totp
        .begin_enrollment(&claims.sub, proof.as_ref(), unix_now())
        .await
    {
        Ok(offer) => Ok(Json(json!({
            "secret": offer.secret_base32.expose_secret(),
            "otpauth_uri": offer.otpauth_uri.expose_secret(),
            "qr_svg": offer.qr_svg,
        }))
        .into_response()),
        Err(error) => {
            audit_totp_refusal(&state.audit, &claims.sub, &context, "api", &error);
            Err(totp_api_error(&error))
        }
    }
}

async fn confirm(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    body: Result<Json<CodeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (claims, _) = session::from_bearer_in(
        &state,
        &headers,
        &[Stage::Authenticated, Stage::TotpEnrollment],
    )
    .await
    .ok_or_else(ApiError::unauthenticated)?;
    if state.totp.mode() == TotpMode::Off {
        return Err(totp_off());
    }
    let Json(body) = body?;
    let code = SecretString::from(body.code);
    let codes = match state
        .totp
        .confirm_enrollment(&claims.sub, &code, unix_now())
        .await
    {
        Ok(codes) => codes,
        Err(error) => {
            audit_totp_refusal(&state.audit, &claims.sub, &context, "api", &error);
            return Err(totp_api_error(&error));
        }
    };
    audit_totp_change(
        &state.audit,
        Event::TotpEnrolled,
        &claims.sub,
        &context,
        "api",
    )
    .await;
    let backup_codes: Vec<&str> = codes.0.iter().map(|c| c.expose_secret()).collect();
    let mut answer = json!({"backup_codes": backup_codes});
    if claims.stage == Stage::TotpEnrollment {
        let issued = state.steps.promote(&claims).await.map_err(|e| {
            tracing::error!(error = %e, "could not create a session");
            ApiError::internal()
        })?;
        answer["status"] = json!("authenticated");
        answer["token"] = json!(issued.token);
        answer["expires_in"] = json!(issued.claims.exp.saturating_sub(issued.claims.iat));
    }
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
struct DisableBody {
    password: String,
    code: String,
}

async fn disable(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    body: Result<Json<DisableBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (claims, _) = session::from_bearer(&state, &headers)
        .await
        .ok_or_else(ApiError::unauthenticated)?;
    let Json(body) = body?;
    if state.totp.mode() == TotpMode::Required {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_required",
            "Two-step sign-in is required on this portal and cannot be turned off. An administrator can reset it.",
        ));
    }
    let password = SecretString::from(body.password);
    let sign_in = state.auth.sign_in(&claims.sub, &password).await;
    match sign_in.outcome.decision {
        Decision::Verified => {}
        Decision::Rejected => {
            sign_in
                .audit(&state.audit, &claims.sub, &context, "api")
                .await;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "The password is not correct.",
            ));
        }
        Decision::Unavailable => return Err(ApiError::backend_unavailable()),
        Decision::Busy => return Err(ApiError::busy()),
    }
    let code = SecretString::from(body.code);
    if let Err(error) = state.totp.disable(&claims.sub, &code, unix_now()).await {
        audit_totp_refusal(&state.audit, &claims.sub, &context, "api", &error);
        return Err(totp_api_error(&error));
    }
    audit_totp_change(
        &state.audit,
        Event::TotpDisabled,
        &claims.sub,
        &context,
        "api",
    )
    .await;
    Ok(Json(json!({"status": "disabled"})).into_response())
}

/// For `GET /api/v1/me`.
pub async fn totp_enabled(state: &AppState, username: &str) -> Value {
    match state.totp.status(username).await {
        Ok(status) => json!(status.enabled),
        Err(e) => {
            tracing::error!(error = %e, "totp status");
            Value::Null
        }
    }
}
