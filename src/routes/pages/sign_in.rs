//! The sign-in and sign-out pages.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, StatusCode};
use secrecy::SecretString;

use crate::app::state::AppState;
use crate::auth::sign_in::SignInOutcome;
use crate::i18n::Lang;
use crate::limiter::Admitted;
use crate::views::Errors;
use crate::web::api_error::BUSY_RETRY_AFTER_SECS;
use crate::web::extract::{csrf_form, AnyStage, Call, CookieSession, CsrfForm, Page};
use crate::web::responses::{
    clearing_session, continue_with, login_page, page_for, with_retry_after,
};

pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Option<CookieSession<AnyStage>>,
) -> Response {
    if let Some(session) = session {
        return Redirect::to(page_for(session.claims.stage)).into_response();
    }
    login_page(&state, &headers, StatusCode::OK, "", Errors::none(), None)
}

csrf_form! {
    LoginForm { username, password } back to "/login" titled "login.title"
}

/// Empty fields are named before anything is verified.
fn missing_fields(t: Lang, form: &LoginForm) -> Errors {
    let mut errors = Errors::none();
    if form.username.trim().is_empty() {
        errors.push(t.tr("login.username_missing"), Vec::new(), &["username"]);
    }
    if form.password.is_empty() {
        errors.push(t.tr("login.password_missing"), Vec::new(), &["password"]);
    }
    errors
}

pub async fn submit(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let page = |status, errors| login_page(state, &headers, status, &form.username, errors, None);
    let missing = missing_fields(t, &form);
    if !missing.is_empty() {
        return page(StatusCode::BAD_REQUEST, missing);
    }
    let password = SecretString::from(form.password.clone());
    let caller = call.caller();
    let general = |status, key| page(status, Errors::one(t.tr(key), &[]));
    match state
        .portal
        .sign_in(caller, admitted, &form.username, &password)
        .await
    {
        SignInOutcome::Issued { issued, .. } => continue_with(state, &issued),
        SignInOutcome::Busy => with_retry_after(
            general(StatusCode::SERVICE_UNAVAILABLE, "common.busy"),
            BUSY_RETRY_AFTER_SECS,
        ),
        SignInOutcome::Unavailable | SignInOutcome::SessionFailed => {
            general(StatusCode::SERVICE_UNAVAILABLE, "common.unavailable")
        }
        // Both fields are marked: the page must not say which of the two was wrong.
        SignInOutcome::Refused => page(
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("login.invalid"), &["username", "password"]),
        ),
    }
}

csrf_form! {
    SignOutForm {  } back to "/password" titled "common.sign_out"
}

/// Whatever the revocation did, the browser's cookie is cleared and the user is out.
pub async fn sign_out(
    call: Call<Page>,
    headers: HeaderMap,
    session: Option<CookieSession<AnyStage>>,
    CsrfForm(_): CsrfForm<SignOutForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    if let Some(session) = session {
        let caller = call.caller();
        // A failure is logged and audited by the action.
        let _ = state.portal.sign_out(caller, &session.claims).await;
    }
    let page = login_page(
        state,
        &headers,
        StatusCode::OK,
        "",
        Errors::none(),
        Some(t.tr("login.signed_out")),
    );
    clearing_session(state, page)
}
