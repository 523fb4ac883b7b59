//! Page answers shared by the routes and the extractors' rejections: the sign-in page, the
//! redirect to a session's next step, and the headers that go with them.

use axum::response::{IntoResponse, Redirect, Response};
use http::header::{RETRY_AFTER, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::api_error::BUSY_RETRY_AFTER_SECS;
use super::csrf;
use crate::app::state::AppState;
use crate::auth::sessions::{Issued, Stage};
use crate::views::{render, Errors, LoginPage, LOGIN_FIELDS};

/// Where a session of each stage continues.
pub fn page_for(stage: Stage) -> &'static str {
    match stage {
        Stage::Authenticated => "/password",
        Stage::TotpPending | Stage::NasOtpPending => "/login/totp",
        Stage::TotpEnrollment => "/totp",
    }
}

/// The `Set-Cookie` value of an issued session.
pub fn session_cookie(state: &AppState, issued: &Issued) -> HeaderValue {
    state.cookies.set(
        state.cookies.session,
        &issued.token,
        issued.claims.exp.saturating_sub(issued.claims.iat),
    )
}

/// Sends the browser on to the page of the session's stage, with the session cookie.
pub fn continue_with(state: &AppState, issued: &Issued) -> Response {
    let mut response = Redirect::to(page_for(issued.claims.stage)).into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, session_cookie(state, issued));
    response
}

pub fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// A refusal page that, when the portal was `busy`, asks the browser to wait as long as the
/// API's 503 does.
pub fn retry_later_if(busy: bool, response: Response) -> Response {
    if busy {
        with_retry_after(response, BUSY_RETRY_AFTER_SECS)
    } else {
        response
    }
}

/// Ends the browser's session cookie on this answer.
pub fn clearing_session(state: &AppState, mut response: Response) -> Response {
    response
        .headers_mut()
        .append(SET_COOKIE, state.cookies.clear(state.cookies.session));
    response
}

/// Adds the CSRF cookie to a page response when a new one was made.
pub fn with_csrf_cookie(
    state: &AppState,
    pair: &csrf::CsrfPair,
    mut response: Response,
) -> Response {
    if pair.set_cookie {
        // The CSRF cookie outlives a session so that a form left open still submits.
        let cookie = state
            .cookies
            .set(state.cookies.csrf, &pair.cookie_value, 12 * 3600);
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

pub fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    username: &str,
    errors: Errors,
    notice: Option<&str>,
) -> Response {
    let t = crate::views::lang_of(headers);
    let pair = csrf::for_page(state, headers);
    let page = LoginPage {
        t,
        title: t.tr("login.title"),
        csrf: &pair.form_token,
        username,
        errors: errors.in_order(LOGIN_FIELDS),
        notice,
        forgot_link: state.portal.reset.enabled,
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}
