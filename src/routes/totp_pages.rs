//! The pages of two-step sign-in: the code step after the password, and the settings where a
//! user turns TOTP on (QR code, then backup codes) or off. No JavaScript needed.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use http::header::SET_COOKIE;
use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::api_error::BUSY_RETRY_AFTER_SECS;
use crate::audit::{Context, Event};
use crate::limiter::retry_after_secs;
use crate::login_steps::{audit_code, audit_totp_change, audit_totp_refusal, CodeError, Factor};
use crate::routes::pages::{
    continue_with, login_page, message, with_csrf_cookie, with_retry_after, BUSY, CSRF_REFUSED,
    UNAVAILABLE,
};
use crate::sessions::{Claims, Stage};
use crate::state::AppState;
use crate::totp::{unix_now, EnrollmentOffer, TotpError, TotpMode};
use crate::verify::Decision;
use crate::views::{render, BackupCodesPage, TotpCodePage, TotpSettingsPage, TotpSetupPage};
use crate::web::{csrf, session};

const PENDING: &[Stage] = &[Stage::TotpPending, Stage::NasOtpPending];
const SETTINGS: &[Stage] = &[Stage::Authenticated, Stage::TotpEnrollment];
const WRONG_CODE: &str =
    "That code is not correct, or was already used. Check that the time on your phone is right, and type the newest code.";
const SIGN_IN_AGAIN: &str = "Your sign-in has ended. Please sign in again.";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/totp", get(code_form).post(code_submit))
        .route("/totp", get(settings))
        .route("/totp/setup", post(setup))
        .route("/totp/confirm", post(confirm))
        .route("/totp/disable", post(disable))
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    code: String,
}

#[derive(Deserialize)]
struct DisableForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

fn too_many_text(retry_after: std::time::Duration) -> String {
    let minutes = retry_after_secs(retry_after).div_ceil(60);
    format!("Too many wrong codes. Please wait {minutes} minute(s) and try again.")
}

fn code_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    error: Option<&str>,
) -> Response {
    let pair = csrf::for_page(state, headers);
    let factor = Factor::of(claims.stage);
    let prompt = match factor {
        Some(Factor::TrueNas) => {
            "Your account uses two-step sign-in on TrueNAS. Type the 6-digit code from the authenticator app you use for TrueNAS."
        }
        _ => "Type the 6-digit code from your authenticator app.",
    };
    let page = TotpCodePage {
        title: "Enter your code",
        csrf: &pair.form_token,
        prompt,
        error,
        backup_allowed: factor == Some(Factor::Portal),
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

fn ended(state: &AppState, headers: &HeaderMap) -> Response {
    let mut response = login_page(
        state,
        headers,
        StatusCode::UNAUTHORIZED,
        "",
        None,
        Some(SIGN_IN_AGAIN),
    );
    response
        .headers_mut()
        .append(SET_COOKIE, state.cookies.clear(state.cookies.session));
    response
}

async fn code_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::from_cookie_in(&state, &headers, PENDING).await {
        Some(claims) => code_page(&state, &headers, StatusCode::OK, &claims, None),
        None => Redirect::to("/login").into_response(),
    }
}

async fn code_submit(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let Some(claims) = session::from_cookie_in(&state, &headers, PENDING).await else {
        return ended(&state, &headers);
    };
    let Ok(Form(form)) = form else {
        return code_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            &claims,
            Some("The form could not be read. Please try again."),
        );
    };
    if !csrf::verify(&state, &headers, form.csrf.as_deref()) {
        return code_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &claims,
            Some(CSRF_REFUSED),
        );
    }
    let code = SecretString::from(form.code);
    let result = state.steps.submit_code(&claims, &code).await;
    audit_code(&state.audit, &claims, &context, "web", &result).await;
    match result {
        Ok(accepted) => continue_with(&state, &accepted.issued),
        Err(CodeError::Wrong { .. }) => code_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &claims,
            Some(WRONG_CODE),
        ),
        Err(CodeError::SignInAgain(_)) => ended(&state, &headers),
        Err(CodeError::TooManyAttempts { retry_after }) => with_retry_after(
            code_page(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &claims,
                Some(&too_many_text(retry_after)),
            ),
            retry_after_secs(retry_after),
        ),
        Err(CodeError::Unavailable(_)) | Err(CodeError::Internal(_)) => code_page(
            &state,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            &claims,
            Some(UNAVAILABLE),
        ),
    }
}

/// The settings page, with an optional message.
async fn settings_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    if state.totp.mode() == TotpMode::Off {
        return message(
            StatusCode::NOT_FOUND,
            "Two-step sign-in",
            "Two-step sign-in is turned off on this portal.",
            "/password",
            "Back",
        );
    }
    let status_row = match state.totp.status(&claims.sub).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "totp status");
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Two-step sign-in",
                "Something went wrong. Please try again.",
                "/password",
                "Back",
            );
        }
    };
    let pair = csrf::for_page(state, headers);
    let page = TotpSettingsPage {
        title: "Two-step sign-in",
        csrf: &pair.form_token,
        enabled: status_row.enabled,
        required: state.totp.mode() == TotpMode::Required,
        forced: claims.stage == Stage::TotpEnrollment,
        backup_codes_left: status_row.backup_codes_left,
        error,
        notice,
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

async fn settings(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::from_cookie_in(&state, &headers, SETTINGS).await {
        Some(claims) => settings_page(&state, &headers, StatusCode::OK, &claims, None, None).await,
        None => Redirect::to("/login").into_response(),
    }
}

fn setup_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    offer: &EnrollmentOffer,
    error: Option<&str>,
) -> Response {
    let pair = csrf::for_page(state, headers);
    // Groups of four are easier to type into an app by hand.
    let secret = offer
        .secret_base32
        .expose_secret()
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let page = TotpSetupPage {
        title: "Set up two-step sign-in",
        csrf: &pair.form_token,
        qr_svg: &offer.qr_svg,
        secret: &secret,
        username: &claims.sub,
        error,
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

/// What a refused code means on the settings pages.
fn refusal_text(error: &TotpError) -> (StatusCode, String) {
    match error {
        TotpError::InvalidCode | TotpError::Replayed => {
            (StatusCode::UNAUTHORIZED, WRONG_CODE.to_string())
        }
        TotpError::TooManyAttempts { retry_after } => {
            (StatusCode::TOO_MANY_REQUESTS, too_many_text(*retry_after))
        }
        TotpError::ProofRequired => (
            StatusCode::FORBIDDEN,
            String::from("Type a current code or a backup code to set up a new authenticator."),
        ),
        TotpError::NotEnrolled => (
            StatusCode::CONFLICT,
            String::from("Two-step sign-in is not on for this account."),
        ),
        TotpError::NoPendingEnrollment => (
            StatusCode::CONFLICT,
            String::from("The set-up took too long and has expired. Please start again."),
        ),
        TotpError::Store(_) | TotpError::Crypto(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            String::from("Something went wrong. Please try again."),
        ),
    }
}

/// Checks the session and the CSRF token of a settings form.
async fn settings_form_claims(
    state: &AppState,
    headers: &HeaderMap,
    stages: &[Stage],
    csrf_token: Option<&str>,
) -> Result<Claims, Response> {
    let Some(claims) = session::from_cookie_in(state, headers, stages).await else {
        return Err(ended(state, headers));
    };
    if !csrf::verify(state, headers, csrf_token) {
        return Err(settings_page(
            state,
            headers,
            StatusCode::FORBIDDEN,
            &claims,
            Some(CSRF_REFUSED),
            None,
        )
        .await);
    }
    Ok(claims)
}

async fn setup(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).ok();
    let token = form.as_ref().and_then(|f| f.csrf.as_deref());
    let claims = match settings_form_claims(&state, &headers, SETTINGS, token).await {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    if state.totp.mode() == TotpMode::Off {
        return settings_page(&state, &headers, StatusCode::NOT_FOUND, &claims, None, None).await;
    }
    let proof = form
        .map(|f| f.code)
        .filter(|c| !c.trim().is_empty())
        .map(SecretString::from);
    match state
        .totp
        .begin_enrollment(&claims.sub, proof.as_ref(), unix_now())
        .await
    {
        Ok(offer) => setup_page(&state, &headers, StatusCode::OK, &claims, &offer, None),
        Err(error) => {
            audit_totp_refusal(&state.audit, &claims.sub, &context, "web", &error);
            let (status, text) = refusal_text(&error);
            settings_page(&state, &headers, status, &claims, Some(&text), None).await
        }
    }
}

async fn confirm(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).ok();
    let token = form.as_ref().and_then(|f| f.csrf.as_deref());
    let claims = match settings_form_claims(&state, &headers, SETTINGS, token).await {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let code = SecretString::from(form.map(|f| f.code).unwrap_or_default());
    let codes = match state
        .totp
        .confirm_enrollment(&claims.sub, &code, unix_now())
        .await
    {
        Ok(codes) => codes,
        Err(error) => {
            audit_totp_refusal(&state.audit, &claims.sub, &context, "web", &error);
            let (status, text) = refusal_text(&error);
            // A mistyped code shows the same QR code again, so the user need not rescan.
            if matches!(error, TotpError::InvalidCode | TotpError::Replayed) {
                if let Ok(offer) = state.totp.pending_offer(&claims.sub, unix_now()).await {
                    return setup_page(&state, &headers, status, &claims, &offer, Some(&text));
                }
            }
            return settings_page(&state, &headers, status, &claims, Some(&text), None).await;
        }
    };
    audit_totp_change(
        &state.audit,
        Event::TotpEnrolled,
        &claims.sub,
        &context,
        "web",
    )
    .await;
    let page = BackupCodesPage {
        title: "Save your backup codes",
        codes: codes.0.iter().map(|c| c.expose_secret()).collect(),
        next: "/password",
    };
    let mut response = render(StatusCode::OK, &page);
    if claims.stage == Stage::TotpEnrollment {
        match state.steps.promote(&claims).await {
            Ok(issued) => {
                let cookie = state.cookies.set(
                    state.cookies.session,
                    &issued.token,
                    issued.claims.exp.saturating_sub(issued.claims.iat),
                );
                response.headers_mut().append(SET_COOKIE, cookie);
            }
            Err(e) => {
                // TOTP is on; the user signs in again and is asked for a code.
                tracing::error!(error = %e, "could not create a session after enrollment");
            }
        }
    }
    response
}

async fn disable(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    form: Result<Form<DisableForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).ok();
    let token = form.as_ref().and_then(|f| f.csrf.as_deref());
    let claims = match settings_form_claims(&state, &headers, &[Stage::Authenticated], token).await
    {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let Some(form) = form else {
        return ended(&state, &headers);
    };
    if state.totp.mode() == TotpMode::Required {
        return settings_page(
            &state,
            &headers,
            StatusCode::CONFLICT,
            &claims,
            Some("Two-step sign-in is required on this portal. An administrator can reset it."),
            None,
        )
        .await;
    }
    let password = SecretString::from(form.password);
    let sign_in = state.auth.sign_in(&claims.sub, &password).await;
    let refused = match sign_in.outcome.decision {
        Decision::Verified => None,
        Decision::Rejected => {
            sign_in
                .audit(&state.audit, &claims.sub, &context, "web")
                .await;
            Some((StatusCode::UNAUTHORIZED, "Your password is not correct."))
        }
        Decision::Unavailable => Some((StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)),
        Decision::Busy => Some((StatusCode::SERVICE_UNAVAILABLE, BUSY)),
    };
    if let Some((status, text)) = refused {
        let page = settings_page(&state, &headers, status, &claims, Some(text), None).await;
        return if sign_in.outcome.decision == Decision::Busy {
            with_retry_after(page, BUSY_RETRY_AFTER_SECS)
        } else {
            page
        };
    }
    let code = SecretString::from(form.code);
    if let Err(error) = state.totp.disable(&claims.sub, &code, unix_now()).await {
        audit_totp_refusal(&state.audit, &claims.sub, &context, "web", &error);
        let (status, text) = refusal_text(&error);
        return settings_page(&state, &headers, status, &claims, Some(&text), None).await;
    }
    audit_totp_change(
        &state.audit,
        Event::TotpDisabled,
        &claims.sub,
        &context,
        "web",
    )
    .await;
    settings_page(
        &state,
        &headers,
        StatusCode::OK,
        &claims,
        None,
        Some("Two-step sign-in is off."),
    )
    .await
}
