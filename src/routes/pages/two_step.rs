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

use crate::app::state::AppState;
use crate::audit::{Context, Event};
use crate::auth::sessions::{Claims, Stage};
use crate::auth::steps::{audit_code, audit_totp_change, audit_totp_refusal, CodeError, Factor};
use crate::i18n::Lang;
use crate::limiter::retry_after_secs;
use crate::routes::pages::{continue_with, login_page, with_csrf_cookie, with_retry_after};
use crate::totp::{unix_now, EnrollmentOffer, TotpError, TotpMode};
use crate::verify::Decision;
use crate::views::{
    lang_of, message_page, render, BackupCodesPage, Errors, TotpCodePage, TotpSettingsPage,
    TotpSetupPage, CODE_FIELDS, SETTINGS_FIELDS,
};
use crate::web::api_error::BUSY_RETRY_AFTER_SECS;
use crate::web::{csrf, session};

const PENDING: &[Stage] = &[Stage::TotpPending, Stage::NasOtpPending];
const SETTINGS: &[Stage] = &[Stage::Authenticated, Stage::TotpEnrollment];

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

fn too_many_text(t: Lang, retry_after: std::time::Duration) -> String {
    let minutes = retry_after_secs(retry_after).div_ceil(60);
    t.tr_n("totp.too_many", minutes, &[])
}

fn code_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    errors: Errors,
) -> Response {
    let t = lang_of(headers);
    let pair = csrf::for_page(state, headers);
    let factor = Factor::of(claims.stage);
    let prompt = match factor {
        Some(Factor::TrueNas) => t.tr("totp.code_prompt_truenas"),
        _ => t.tr("totp.code_prompt"),
    };
    let page = TotpCodePage {
        t,
        title: t.tr("totp.code_title"),
        csrf: &pair.form_token,
        prompt,
        errors: errors.in_order(CODE_FIELDS),
        backup_allowed: factor == Some(Factor::Portal),
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

fn ended(state: &AppState, headers: &HeaderMap) -> Response {
    let t = lang_of(headers);
    let mut response = login_page(
        state,
        headers,
        StatusCode::UNAUTHORIZED,
        "",
        Errors::none(),
        Some(t.tr("totp.sign_in_again")),
    );
    response
        .headers_mut()
        .append(SET_COOKIE, state.cookies.clear(state.cookies.session));
    response
}

async fn code_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::from_cookie_in(&state, &headers, PENDING).await {
        Some(claims) => code_page(&state, &headers, StatusCode::OK, &claims, Errors::none()),
        None => Redirect::to("/login").into_response(),
    }
}

async fn code_submit(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    t: Lang,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let Some(claims) = session::from_cookie_in(&state, &headers, PENDING).await else {
        return ended(&state, &headers);
    };
    let page = |status: StatusCode, text: &str, fields: &[&'static str]| {
        code_page(&state, &headers, status, &claims, Errors::one(text, fields))
    };
    let Ok(Form(form)) = form else {
        return page(StatusCode::BAD_REQUEST, t.tr("common.form_unreadable"), &[]);
    };
    if !csrf::verify(&state, &headers, form.csrf.as_deref()) {
        return page(StatusCode::FORBIDDEN, t.tr("common.csrf_refused"), &[]);
    }
    let code = SecretString::from(form.code);
    let result = state.steps.submit_code(&claims, &code).await;
    audit_code(&state.audit, &claims, &context, "web", &result).await;
    match result {
        Ok(accepted) => continue_with(&state, &accepted.issued),
        Err(CodeError::Wrong { .. }) => {
            page(StatusCode::UNAUTHORIZED, t.tr("totp.wrong_code"), &["code"])
        }
        Err(CodeError::SignInAgain(_)) => ended(&state, &headers),
        Err(CodeError::TooManyAttempts { retry_after }) => with_retry_after(
            page(
                StatusCode::TOO_MANY_REQUESTS,
                &too_many_text(t, retry_after),
                &[],
            ),
            retry_after_secs(retry_after),
        ),
        Err(CodeError::Unavailable(_)) | Err(CodeError::Internal(_)) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            t.tr("common.unavailable"),
            &[],
        ),
    }
}

/// The settings page, with an optional message.
async fn settings_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    errors: Errors,
    notice: Option<&str>,
) -> Response {
    let t = lang_of(headers);
    let back = |status: StatusCode, text: &str| {
        let title = t.tr("totp.title");
        message_page(t, status, title, text, "/password", t.tr("common.back"))
    };
    if state.totp.mode() == TotpMode::Off {
        return back(StatusCode::NOT_FOUND, t.tr("totp.off_on_portal"));
    }
    let status_row = match state.totp.status(&claims.sub).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "totp status");
            return back(
                StatusCode::INTERNAL_SERVER_ERROR,
                t.tr("common.something_wrong"),
            );
        }
    };
    let pair = csrf::for_page(state, headers);
    let page = TotpSettingsPage {
        t,
        title: t.tr("totp.title"),
        csrf: &pair.form_token,
        enabled: status_row.enabled,
        required: state.totp.mode() == TotpMode::Required,
        forced: claims.stage == Stage::TotpEnrollment,
        backup_codes_left: t.tr_n(
            "totp.backup_left",
            u64::from(status_row.backup_codes_left),
            &[],
        ),
        errors: errors.in_order(SETTINGS_FIELDS),
        notice,
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

async fn settings(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::from_cookie_in(&state, &headers, SETTINGS).await {
        Some(claims) => {
            settings_page(
                &state,
                &headers,
                StatusCode::OK,
                &claims,
                Errors::none(),
                None,
            )
            .await
        }
        None => Redirect::to("/login").into_response(),
    }
}

fn setup_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    offer: &EnrollmentOffer,
    errors: Errors,
) -> Response {
    let t = lang_of(headers);
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
    let manual = t.tr_with("totp_setup.manual", &[("account", &claims.sub)]);
    let page = TotpSetupPage {
        t,
        title: t.tr("totp_setup.title"),
        csrf: &pair.form_token,
        qr_svg: &offer.qr_svg,
        secret: &secret,
        manual: &manual,
        errors: errors.in_order(CODE_FIELDS),
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

/// What a refused code means on the settings pages; `code_field` is the input it is about.
fn refusal(t: Lang, error: &TotpError, code_field: &'static str) -> (StatusCode, Errors) {
    let code = |text: String| Errors::one(text, &[code_field]);
    let general = |text: &str| Errors::one(text, &[]);
    match error {
        TotpError::InvalidCode | TotpError::Replayed => (
            StatusCode::UNAUTHORIZED,
            code(t.tr("totp.wrong_code").to_string()),
        ),
        TotpError::TooManyAttempts { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            general(&too_many_text(t, *retry_after)),
        ),
        TotpError::ProofRequired => (
            StatusCode::FORBIDDEN,
            code(t.tr("totp.proof_required").to_string()),
        ),
        TotpError::NotEnrolled => (StatusCode::CONFLICT, general(t.tr("totp.not_enrolled"))),
        TotpError::NoPendingEnrollment => (StatusCode::CONFLICT, general(t.tr("totp.expired"))),
        TotpError::Store(_) | TotpError::Crypto(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            general(t.tr("common.something_wrong")),
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
        let t = lang_of(headers);
        return Err(settings_page(
            state,
            headers,
            StatusCode::FORBIDDEN,
            &claims,
            Errors::one(t.tr("common.csrf_refused"), &[]),
            None,
        )
        .await);
    }
    Ok(claims)
}

async fn setup(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    t: Lang,
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
        let (status, none) = (StatusCode::NOT_FOUND, Errors::none());
        return settings_page(&state, &headers, status, &claims, none, None).await;
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
        Ok(offer) => setup_page(
            &state,
            &headers,
            StatusCode::OK,
            &claims,
            &offer,
            Errors::none(),
        ),
        Err(error) => {
            audit_totp_refusal(&state.audit, &claims.sub, &context, "web", &error);
            let (status, errors) = refusal(t, &error, "replace-code");
            settings_page(&state, &headers, status, &claims, errors, None).await
        }
    }
}

async fn confirm(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    t: Lang,
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
            let (status, errors) = refusal(t, &error, "code");
            // A mistyped code shows the same QR code again, so the user need not rescan.
            if matches!(error, TotpError::InvalidCode | TotpError::Replayed) {
                if let Ok(offer) = state.totp.pending_offer(&claims.sub, unix_now()).await {
                    return setup_page(&state, &headers, status, &claims, &offer, errors);
                }
            }
            return settings_page(&state, &headers, status, &claims, errors, None).await;
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
        t,
        title: t.tr("backup.title"),
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
    t: Lang,
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
    let page = |status: StatusCode, errors: Errors, notice: Option<&'static str>| {
        settings_page(&state, &headers, status, &claims, errors, notice)
    };
    if state.totp.mode() == TotpMode::Required {
        let errors = Errors::one(t.tr("totp.required_no_disable"), &[]);
        return page(StatusCode::CONFLICT, errors, None).await;
    }
    let password = SecretString::from(form.password);
    let sign_in = state.auth.sign_in(&claims.sub, &password).await;
    let refused = match sign_in.outcome.decision {
        Decision::Verified => None,
        Decision::Rejected => {
            sign_in
                .audit(&state.audit, &claims.sub, &context, "web")
                .await;
            let errors = Errors::one(t.tr("totp.wrong_password"), &["disable-password"]);
            Some((StatusCode::UNAUTHORIZED, errors))
        }
        Decision::Unavailable => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            Errors::one(t.tr("common.unavailable"), &[]),
        )),
        Decision::Busy => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            Errors::one(t.tr("common.busy"), &[]),
        )),
    };
    if let Some((status, errors)) = refused {
        let response = page(status, errors, None).await;
        return if sign_in.outcome.decision == Decision::Busy {
            with_retry_after(response, BUSY_RETRY_AFTER_SECS)
        } else {
            response
        };
    }
    let code = SecretString::from(form.code);
    if let Err(error) = state.totp.disable(&claims.sub, &code, unix_now()).await {
        audit_totp_refusal(&state.audit, &claims.sub, &context, "web", &error);
        let (status, errors) = refusal(t, &error, "disable-code");
        return page(status, errors, None).await;
    }
    audit_totp_change(
        &state.audit,
        Event::TotpDisabled,
        &claims.sub,
        &context,
        "web",
    )
    .await;
    page(
        StatusCode::OK,
        Errors::none(),
        Some(t.tr("totp.turned_off")),
    )
    .await
}
