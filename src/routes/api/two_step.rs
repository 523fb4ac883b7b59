//! JSON API v1, the code step and TOTP enrollment (see README "JSON API").

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::step_response;
use crate::auth::steps::CodeError;
use crate::auth::totp_settings::{DisableError, EnrollError, Promotion};
use crate::limiter::{retry_after_secs, Admitted};
use crate::totp::TotpError;
use crate::web::api_error::ApiError;
use crate::web::extract::{Api, BearerSession, Call, Enrolling, Full, Pending};

#[derive(Deserialize)]
pub struct CodeBody {
    code: String,
}

fn invalid_code() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_code",
        "The code is not correct, or was already used.",
    )
}

pub(super) fn too_many(retry_after: std::time::Duration) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "Too many wrong codes. Please wait before trying again.",
    );
    e.retry_after = Some(retry_after_secs(retry_after));
    e
}

fn code_refusal(error: &CodeError) -> ApiError {
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

pub async fn code(
    call: Call<Api>,
    admitted: Admitted,
    session: BearerSession<Pending>,
    body: Result<Json<CodeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let code = SecretString::from(body.code);
    match call
        .state
        .portal
        .submit_code(call.caller(), admitted, &session.claims, &code)
        .await
    {
        Ok(accepted) => Ok(step_response(&accepted.issued, None)),
        Err(error) => Err(code_refusal(&error)),
    }
}

/// User-facing answers to the TOTP service's refusals, shared by enrollment and disabling.
fn totp_refusal(error: &TotpError) -> ApiError {
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

fn enroll_refusal(error: EnrollError) -> ApiError {
    match error {
        EnrollError::Off => ApiError::new(
            StatusCode::NOT_FOUND,
            "totp_disabled",
            "Two-step sign-in is turned off on this portal.",
        ),
        EnrollError::Refused(error) => totp_refusal(&error),
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
pub struct EnrollBody {
    /// A current code or backup code, needed when TOTP is already on.
    #[serde(default)]
    code: Option<String>,
}

pub async fn enroll(
    call: Call<Api>,
    session: BearerSession<Enrolling>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if call.state.portal.totp.mode() == crate::totp::TotpMode::Off {
        // Said before the body is judged, as the page does.
        return Err(enroll_refusal(EnrollError::Off));
    }
    let body: EnrollBody = optional_body(&body)?;
    let proof = body.code.map(SecretString::from);
    let offer = call
        .state
        .portal
        .start_totp(call.caller(), &session.claims, proof.as_ref())
        .await
        .map_err(enroll_refusal)?;
    Ok(Json(json!({
        "secret": offer.secret_base32.expose_secret(),
        "otpauth_uri": offer.otpauth_uri.expose_secret(),
        "qr_svg": offer.qr_svg,
    }))
    .into_response())
}

pub async fn confirm(
    call: Call<Api>,
    session: BearerSession<Enrolling>,
    body: Result<Json<CodeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    if call.state.portal.totp.mode() == crate::totp::TotpMode::Off {
        return Err(enroll_refusal(EnrollError::Off));
    }
    let Json(body) = body?;
    let code = SecretString::from(body.code);
    let enrolled = call
        .state
        .portal
        .confirm_totp(call.caller(), &session.claims, &code)
        .await
        .map_err(enroll_refusal)?;
    let backup_codes: Vec<&str> = enrolled.codes.0.iter().map(|c| c.expose_secret()).collect();
    let mut answer = json!({"backup_codes": backup_codes});
    match &enrolled.promotion {
        Promotion::NotNeeded => {}
        Promotion::Issued(issued) => {
            answer["status"] = json!("authenticated");
            answer["token"] = json!(issued.token);
            answer["expires_in"] = json!(issued.claims.exp.saturating_sub(issued.claims.iat));
        }
        Promotion::Failed => return Err(ApiError::internal()),
    }
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
pub struct DisableBody {
    password: String,
    code: String,
}

pub async fn disable(
    call: Call<Api>,
    admitted: Admitted,
    session: BearerSession<Full>,
    body: Result<Json<DisableBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let password = SecretString::from(body.password);
    let code = SecretString::from(body.code);
    call.state
        .portal
        .disable_totp(call.caller(), admitted, &session.claims, &password, &code)
        .await
        .map_err(|error| match error {
            DisableError::Required => ApiError::new(
                StatusCode::CONFLICT,
                "totp_required",
                "Two-step sign-in is required on this portal and cannot be turned off. An administrator can reset it.",
            ),
            DisableError::WrongPassword => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "The password is not correct.",
            ),
            DisableError::Unavailable => ApiError::backend_unavailable(),
            DisableError::Busy => ApiError::busy(),
            DisableError::Refused(error) => totp_refusal(&error),
        })?;
    Ok(Json(json!({"status": "disabled"})).into_response())
}
