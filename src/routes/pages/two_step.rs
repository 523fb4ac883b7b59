//! The pages of two-step sign-in: the code step after the password, and the settings where a
//! user turns TOTP on (QR code, then backup codes) or off. No JavaScript needed.

use axum::extract::State;
use axum::response::Response;
use http::header::SET_COOKIE;
use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use crate::app::state::AppState;
use crate::auth::sessions::{Claims, Stage};
use crate::auth::steps::{CodeError, Factor};
use crate::auth::totp_settings::{DisableError, EnrollError, Promotion};
use crate::i18n::Lang;
use crate::limiter::{retry_after_secs, Admitted};
use crate::totp::{unix_now, EnrollmentOffer, TotpError, TotpMode};
use crate::views::{
    lang_of, message_page, render, BackupCodesPage, Errors, TotpCodePage, TotpSettingsPage,
    TotpSetupPage, CODE_FIELDS, SETTINGS_FIELDS,
};
use crate::web::api_error::BUSY_RETRY_AFTER_SECS;
use crate::web::csrf;
use crate::web::extract::{
    csrf_form, Call, CookieSession, CsrfForm, Enrolling, Full, Page, Pending,
};
use crate::web::responses::{
    clearing_session, continue_with, login_page, session_cookie, with_csrf_cookie, with_retry_after,
};

csrf_form! {
    CodeForm { code } back to "/login/totp" titled "totp.code_title"
}

csrf_form! {
    /// The same fields as the code step, sent from the settings pages.
    SettingsCodeForm { code } back to "/totp" titled "totp.title"
}

csrf_form! {
    DisableForm { password, code } back to "/totp" titled "totp.title"
}

pub(super) fn too_many_text(t: Lang, retry_after: std::time::Duration) -> String {
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

/// The sign-in page after a pending sign-in ended, without the stale cookie.
fn ended(state: &AppState, headers: &HeaderMap) -> Response {
    let t = lang_of(headers);
    let page = login_page(
        state,
        headers,
        StatusCode::UNAUTHORIZED,
        "",
        Errors::none(),
        Some(t.tr("totp.sign_in_again")),
    );
    clearing_session(state, page)
}

pub async fn code_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: CookieSession<Pending>,
) -> Response {
    let (status, none) = (StatusCode::OK, Errors::none());
    code_page(&state, &headers, status, &session.claims, none)
}

pub async fn code_submit(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    session: CookieSession<Pending>,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let claims = &session.claims;
    let page = |status: StatusCode, text: &str, fields: &[&'static str]| {
        code_page(state, &headers, status, claims, Errors::one(text, fields))
    };
    let code = SecretString::from(form.code);
    let caller = call.caller();
    match state
        .portal
        .submit_code(caller, admitted, claims, &code)
        .await
    {
        Ok(accepted) => continue_with(state, &accepted.issued),
        Err(CodeError::Wrong { .. }) => {
            page(StatusCode::UNAUTHORIZED, t.tr("totp.wrong_code"), &["code"])
        }
        Err(CodeError::SignInAgain(_)) => ended(state, &headers),
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
    let totp = &state.portal.totp;
    if totp.mode() == TotpMode::Off {
        return back(StatusCode::NOT_FOUND, t.tr("totp.off_on_portal"));
    }
    let status_row = match totp.status(&claims.sub).await {
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
        required: totp.mode() == TotpMode::Required,
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

pub async fn settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: CookieSession<Enrolling>,
) -> Response {
    let (status, none) = (StatusCode::OK, Errors::none());
    settings_page(&state, &headers, status, &session.claims, none, None).await
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

pub async fn setup(
    call: Call<Page>,
    headers: HeaderMap,
    session: CookieSession<Enrolling>,
    CsrfForm(form): CsrfForm<SettingsCodeForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let claims = &session.claims;
    let proof = Some(form.code)
        .filter(|c| !c.trim().is_empty())
        .map(SecretString::from);
    let caller = call.caller();
    match state
        .portal
        .start_totp(caller, claims, proof.as_ref())
        .await
    {
        Ok(offer) => {
            let (status, none) = (StatusCode::OK, Errors::none());
            setup_page(state, &headers, status, claims, &offer, none)
        }
        Err(EnrollError::Off) => {
            let (status, none) = (StatusCode::NOT_FOUND, Errors::none());
            settings_page(state, &headers, status, claims, none, None).await
        }
        Err(EnrollError::Refused(error)) => {
            let (status, errors) = refusal(t, &error, "replace-code");
            settings_page(state, &headers, status, claims, errors, None).await
        }
    }
}

pub async fn confirm(
    call: Call<Page>,
    headers: HeaderMap,
    session: CookieSession<Enrolling>,
    CsrfForm(form): CsrfForm<SettingsCodeForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let claims = &session.claims;
    let code = SecretString::from(form.code);
    let caller = call.caller();
    let enrolled = match state.portal.confirm_totp(caller, claims, &code).await {
        Ok(enrolled) => enrolled,
        Err(EnrollError::Off) => {
            let (status, none) = (StatusCode::NOT_FOUND, Errors::none());
            return settings_page(state, &headers, status, claims, none, None).await;
        }
        Err(EnrollError::Refused(error)) => {
            let (status, errors) = refusal(t, &error, "code");
            // A mistyped code shows the same QR code again, so the user need not rescan.
            if matches!(error, TotpError::InvalidCode | TotpError::Replayed) {
                let totp = &state.portal.totp;
                if let Ok(offer) = totp.pending_offer(&claims.sub, unix_now()).await {
                    return setup_page(state, &headers, status, claims, &offer, errors);
                }
            }
            return settings_page(state, &headers, status, claims, errors, None).await;
        }
    };
    let page = BackupCodesPage {
        t,
        title: t.tr("backup.title"),
        codes: enrolled.codes.0.iter().map(|c| c.expose_secret()).collect(),
        next: "/password",
    };
    let mut response = render(StatusCode::OK, &page);
    // After a failed promotion TOTP is on all the same; the user signs in again and is asked
    // for a code.
    if let Promotion::Issued(issued) = &enrolled.promotion {
        response
            .headers_mut()
            .append(SET_COOKIE, session_cookie(state, issued));
    }
    response
}

pub async fn disable(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    session: CookieSession<Full>,
    CsrfForm(form): CsrfForm<DisableForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let claims = &session.claims;
    let page = |status: StatusCode, errors: Errors, notice: Option<&'static str>| {
        settings_page(state, &headers, status, claims, errors, notice)
    };
    let password = SecretString::from(form.password);
    let code = SecretString::from(form.code);
    let caller = call.caller();
    let general = |text| Errors::one(text, &[]);
    let (status, errors) = match state
        .portal
        .disable_totp(caller, admitted, claims, &password, &code)
        .await
    {
        Ok(()) => {
            let notice = Some(t.tr("totp.turned_off"));
            return page(StatusCode::OK, Errors::none(), notice).await;
        }
        Err(DisableError::Required) => (
            StatusCode::CONFLICT,
            general(t.tr("totp.required_no_disable")),
        ),
        Err(DisableError::WrongPassword) => (
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("totp.wrong_password"), &["disable-password"]),
        ),
        Err(DisableError::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            general(t.tr("common.unavailable")),
        ),
        Err(DisableError::Busy) => {
            let busy = page(
                StatusCode::SERVICE_UNAVAILABLE,
                general(t.tr("common.busy")),
                None,
            );
            return with_retry_after(busy.await, BUSY_RETRY_AFTER_SECS);
        }
        Err(DisableError::Refused(error)) => refusal(t, &error, "disable-code"),
    };
    page(status, errors, None).await
}
