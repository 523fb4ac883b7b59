//! The "Forgot your password?" pages: ask for a link, open it, choose the new password,
//! or cancel. Registered only when `reset.enabled`.

use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use secrecy::SecretString;

use crate::app::state::AppState;
use crate::auth::reset::{ConfirmError, ResetConfirm};
use crate::i18n::Lang;
use crate::limiter::Admitted;
use crate::totp::TotpError;
use crate::views::{
    not_found_page, notice_page, policy_errors, render, truenas_errors, Errors, ResetCancelPage,
    ResetConfirmPage, ResetRequestPage, RESET_FIELDS,
};
use crate::web::csrf;
use crate::web::extract::{csrf_form, Call, CsrfForm, Page};
use crate::web::responses::with_csrf_cookie;

fn request_page(
    state: &AppState,
    headers: &HeaderMap,
    t: Lang,
    status: StatusCode,
    username: &str,
    errors: Errors,
) -> Response {
    let pair = csrf::for_page(state, headers);
    let page = ResetRequestPage {
        t,
        title: t.tr("reset.request_title"),
        csrf: &pair.form_token,
        username,
        errors,
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

/// One page for every link that does not work, whatever the reason.
fn invalid_link(t: Lang) -> Response {
    crate::views::message_page(
        t,
        StatusCode::UNAUTHORIZED,
        t.tr("reset.invalid_title"),
        t.tr("reset.invalid_text"),
        "/reset",
        t.tr("reset.request_new"),
    )
}

fn unavailable(t: Lang) -> Response {
    crate::views::message_page(
        t,
        StatusCode::SERVICE_UNAVAILABLE,
        t.tr("reset.request_title"),
        t.tr("common.unavailable"),
        "/reset",
        t.tr("common.back"),
    )
}

pub async fn request_form(State(state): State<AppState>, t: Lang, headers: HeaderMap) -> Response {
    request_page(&state, &headers, t, StatusCode::OK, "", Errors::none())
}

csrf_form! {
    RequestForm { username } back to "/reset" titled "reset.request_title"
}

/// The same page for every name: what happened is in the audit log only.
pub async fn request_submit(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<RequestForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    if form.username.trim().is_empty() {
        let errors = Errors::one(t.tr("reset.username_missing"), &["username"]);
        return request_page(state, &headers, t, StatusCode::BAD_REQUEST, "", errors);
    }
    let caller = call.caller();
    match state.portal.request_reset(caller, admitted, &form.username) {
        Ok(()) => notice_page(
            t,
            t.tr("reset.sent_title"),
            t.tr("reset.sent_text"),
            "/login",
            t.tr("common.back_to_sign_in"),
        ),
        Err(_) => not_found_page(t),
    }
}

#[allow(clippy::too_many_arguments)]
fn confirm_page(
    state: &AppState,
    headers: &HeaderMap,
    t: Lang,
    status: StatusCode,
    token: &str,
    code_required: bool,
    errors: Errors,
) -> Response {
    let pair = csrf::for_page(state, headers);
    let page = ResetConfirmPage {
        t,
        title: t.tr("reset.confirm_title"),
        csrf: &pair.form_token,
        token,
        code_required,
        rules: state.portal.policy.reset_rules(t),
        errors: errors
            .with_heading(t.tr("password.not_changed"))
            .in_order(RESET_FIELDS),
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

/// The link from the mail: only shows the form (opening it twice consumes nothing).
pub async fn open(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let caller = call.caller();
    match state.portal.open_reset(caller, admitted, &token).await {
        Ok(link) => confirm_page(
            state,
            &headers,
            t,
            StatusCode::OK,
            &token,
            link.code_required,
            Errors::none(),
        ),
        Err(error) => refusal_page(t, &error).unwrap_or_else(|| invalid_link(t)),
    }
}

/// The pages for errors that do not go back to the form.
fn refusal_page(t: Lang, error: &ConfirmError) -> Option<Response> {
    match error {
        ConfirmError::Off => Some(not_found_page(t)),
        ConfirmError::InvalidToken => Some(invalid_link(t)),
        ConfirmError::Unavailable => Some(unavailable(t)),
        _ => None,
    }
}

csrf_form! {
    ConfirmForm { token, new_password, confirm_password, code, with_code } back to "/reset" titled "reset.confirm_title"
}

/// Each refusal the user can fix, on its field.
fn form_errors(t: Lang, error: &ConfirmError) -> (StatusCode, Errors) {
    match error {
        ConfirmError::Policy(violations) => (StatusCode::BAD_REQUEST, policy_errors(t, violations)),
        ConfirmError::InvalidCode(None) => (
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("reset.code_missing"), &["code"]),
        ),
        ConfirmError::InvalidCode(Some(TotpError::TooManyAttempts { retry_after })) => (
            StatusCode::TOO_MANY_REQUESTS,
            Errors::one(super::two_step::too_many_text(t, *retry_after), &["code"]),
        ),
        ConfirmError::InvalidCode(Some(_)) => (
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("reset.code_wrong"), &["code"]),
        ),
        ConfirmError::RejectedByTrueNas(messages) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            truenas_errors(t, messages),
        ),
        ConfirmError::Off | ConfirmError::InvalidToken | ConfirmError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            Errors::one(t.tr("common.unavailable"), &[]),
        ),
    }
}

pub async fn confirm(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let new = SecretString::from(form.new_password);
    let confirmation = SecretString::from(form.confirm_password);
    let code = SecretString::from(form.code);
    let input = ResetConfirm {
        token: &form.token,
        new: &new,
        confirmation: Some(&confirmation),
        code: Some(&code),
    };
    let caller = call.caller();
    match state.portal.confirm_reset(caller, admitted, input).await {
        Ok(()) => notice_page(
            t,
            t.tr("reset.done_title"),
            t.tr("reset.done_text"),
            "/login",
            t.tr("done.sign_in"),
        ),
        Err(error) => refusal_page(t, &error).unwrap_or_else(|| {
            let (status, errors) = form_errors(t, &error);
            // The code field is shown again when the form had it, or the answer asks for it.
            let with_code =
                !form.with_code.is_empty() || matches!(error, ConfirmError::InvalidCode(_));
            confirm_page(state, &headers, t, status, &form.token, with_code, errors)
        }),
    }
}

/// "This was not me": a page with one button, so a mail scanner that opens the link
/// cancels nothing.
pub async fn cancel_form(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let caller = call.caller();
    if let Err(error) = state.portal.open_reset(caller, admitted, &token).await {
        return refusal_page(t, &error).unwrap_or_else(|| invalid_link(t));
    }
    let pair = csrf::for_page(state, &headers);
    let page = ResetCancelPage {
        t,
        title: t.tr("reset.cancel_title"),
        csrf: &pair.form_token,
        token: &token,
    };
    with_csrf_cookie(state, &pair, render(StatusCode::OK, &page))
}

csrf_form! {
    CancelForm { token } back to "/login" titled "reset.cancel_title"
}

pub async fn cancel(
    call: Call<Page>,
    admitted: Admitted,
    CsrfForm(form): CsrfForm<CancelForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let caller = call.caller();
    match state
        .portal
        .cancel_reset(caller, admitted, &form.token)
        .await
    {
        Ok(()) => notice_page(
            t,
            t.tr("reset.cancelled_title"),
            t.tr("reset.cancelled_text"),
            "/login",
            t.tr("common.back_to_sign_in"),
        ),
        Err(error) => refusal_page(t, &error).unwrap_or_else(|| invalid_link(t)),
    }
}
