//! The server-rendered pages: sign in, change password, sign out. No JavaScript needed.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use http::header::{CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::api_error::BUSY_RETRY_AFTER_SECS;
use crate::audit::{Context, Event, Outcome, Record};
use crate::login_steps::StepError;
use crate::password_change::{change_password, finish_change, ChangeError, PasswordChange};
use crate::sessions::{Claims, Issued, Stage};
use crate::state::AppState;
use crate::totp::TotpMode;
use crate::verify::Decision;
use crate::views::{render, DonePage, LoginPage, MessagePage, PasswordPage};
use crate::web::{csrf, session};

pub(crate) const INVALID: &str = "Invalid username or password.";
pub(crate) const UNAVAILABLE: &str =
    "The password service cannot reach the NAS right now. Nothing was changed. Please try again in a few minutes.";
pub(crate) const BUSY: &str =
    "The portal is busy right now. Nothing was changed. Please try again in a few seconds.";
pub(crate) const CSRF_REFUSED: &str =
    "This form has expired or did not come from this site. Please try again.";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login_submit))
        .route("/password", get(password_form).post(password_submit))
        .route("/logout", axum::routing::post(logout))
        .route("/static/style.css", get(stylesheet))
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Redirect {
    match session::from_cookie_in(&state, &headers, ALL_STAGES).await {
        Some(claims) => Redirect::to(page_for(claims.stage)),
        None => Redirect::to("/login"),
    }
}

const ALL_STAGES: &[Stage] = &[
    Stage::Authenticated,
    Stage::TotpPending,
    Stage::NasOtpPending,
    Stage::TotpEnrollment,
];

/// Where a session of each stage continues.
pub(crate) fn page_for(stage: Stage) -> &'static str {
    match stage {
        Stage::Authenticated => "/password",
        Stage::TotpPending | Stage::NasOtpPending => "/login/totp",
        Stage::TotpEnrollment => "/totp",
    }
}

/// Sends the browser on to the page of the session's stage, with the session cookie.
pub(crate) fn continue_with(state: &AppState, issued: &Issued) -> Response {
    let cookie = state.cookies.set(
        state.cookies.session,
        &issued.token,
        issued.claims.exp.saturating_sub(issued.claims.iat),
    );
    let mut response = Redirect::to(page_for(issued.claims.stage)).into_response();
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        include_str!("../../static/style.css"),
    )
}

pub fn with_retry_after(mut response: Response, secs: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// Adds the CSRF cookie to a page response when a new one was made.
pub(crate) fn with_csrf_cookie(
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

pub(crate) fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let pair = csrf::for_page(state, headers);
    let page = LoginPage {
        title: "Sign in",
        csrf: &pair.form_token,
        username,
        error,
        notice,
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

pub(crate) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    link: &str,
    link_text: &str,
) -> Response {
    render(
        status,
        &MessagePage {
            title,
            message: text,
            link,
            link_text,
        },
    )
}

async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(claims) = session::from_cookie_in(&state, &headers, ALL_STAGES).await {
        return Redirect::to(page_for(claims.stage)).into_response();
    }
    login_page(&state, &headers, StatusCode::OK, "", None, None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login_submit(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return message(
            StatusCode::BAD_REQUEST,
            "Sign in",
            "The form could not be read. Please try again.",
            "/login",
            "Back to sign in",
        );
    };
    if !csrf::verify(&state, &headers, form.csrf.as_deref()) {
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &form.username,
            Some(CSRF_REFUSED),
            None,
        );
    }
    let password = SecretString::from(form.password);
    let result = state.auth.sign_in(&form.username, &password).await;
    result
        .audit(&state.audit, &form.username, &context, "web")
        .await;
    match (result.outcome.decision, result.verified_user()) {
        (Decision::Verified, Some(user)) => {
            let admin = state.admin.is_admin(state.nas.as_ref(), user).await;
            let nas_otp = result.outcome.nas_otp.clone();
            match state
                .steps
                .after_password(&user.username, &user.full_name, admin, nas_otp)
                .await
            {
                Ok(issued) => continue_with(&state, &issued),
                Err(StepError::Busy) => with_retry_after(
                    login_page(
                        &state,
                        &headers,
                        StatusCode::SERVICE_UNAVAILABLE,
                        &form.username,
                        Some(BUSY),
                        None,
                    ),
                    BUSY_RETRY_AFTER_SECS,
                ),
                Err(e) => {
                    tracing::error!(error = %e, "could not create a session");
                    login_page(
                        &state,
                        &headers,
                        StatusCode::SERVICE_UNAVAILABLE,
                        &form.username,
                        Some(UNAVAILABLE),
                        None,
                    )
                }
            }
        }
        (Decision::Unavailable, _) => login_page(
            &state,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            &form.username,
            Some(UNAVAILABLE),
            None,
        ),
        (Decision::Busy, _) => with_retry_after(
            login_page(
                &state,
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                &form.username,
                Some(BUSY),
                None,
            ),
            BUSY_RETRY_AFTER_SECS,
        ),
        _ => login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &form.username,
            Some(INVALID),
            None,
        ),
    }
}

fn password_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    errors: Vec<String>,
) -> Response {
    let (username, full_name) = (claims.sub.as_str(), claims.name.as_str());
    let pair = csrf::for_page(state, headers);
    let display_name = if full_name.is_empty() {
        username.to_string()
    } else {
        format!("{full_name} ({username})")
    };
    let policy = state.policy.summary();
    let page = PasswordPage {
        title: "Change your password",
        csrf: &pair.form_token,
        username,
        display_name: &display_name,
        policy: &policy,
        errors,
        admin: claims.admin,
        totp_link: state.totp.mode() != TotpMode::Off,
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

async fn password_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::from_cookie(&state, &headers).await {
        Some(claims) => password_page(&state, &headers, StatusCode::OK, &claims, Vec::new()),
        None => Redirect::to("/login").into_response(),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

async fn password_submit(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let Some(claims) = session::from_cookie(&state, &headers).await else {
        return login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            "",
            None,
            Some("Your session has ended. Please sign in again."),
        );
    };
    let Ok(Form(form)) = form else {
        return password_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            &claims,
            vec![String::from(
                "The form could not be read. Please try again.",
            )],
        );
    };
    if !csrf::verify(&state, &headers, form.csrf.as_deref()) {
        return password_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &claims,
            vec![CSRF_REFUSED.to_string()],
        );
    }
    let current = SecretString::from(form.current_password);
    let new = SecretString::from(form.new_password);
    let confirmation = SecretString::from(form.confirm_password);
    let change = PasswordChange {
        username: &claims.sub,
        current: &current,
        new: &new,
        confirmation: Some(&confirmation),
    };
    let result = change_password(&state.auth, state.nas.as_ref(), &state.policy, change).await;
    let error = match result {
        Ok(verifier) => {
            finish_change(
                &state.sessions,
                &state.audit,
                &claims.sub,
                &context,
                "web",
                verifier,
            )
            .await;
            let mut response = render(
                StatusCode::OK,
                &DonePage {
                    title: "Password changed",
                },
            );
            response
                .headers_mut()
                .append(SET_COOKIE, state.cookies.clear(state.cookies.session));
            return response;
        }
        Err(error) => error,
    };
    error.audit(&state.audit, &claims.sub, &context, "web");
    let page = |status: StatusCode, errors: Vec<String>| {
        password_page(&state, &headers, status, &claims, errors)
    };
    match error {
        ChangeError::Policy(violations) => page(
            StatusCode::BAD_REQUEST,
            violations.iter().map(ToString::to_string).collect(),
        ),
        ChangeError::WrongCurrentPassword { .. } => page(
            StatusCode::UNAUTHORIZED,
            vec![String::from("Your current password is not correct.")],
        ),
        ChangeError::RejectedByTrueNas(messages) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            messages
                .iter()
                .map(|m| crate::truenas_messages::plain_words(m))
                .collect(),
        ),
        ChangeError::Unavailable { .. } => page(
            StatusCode::SERVICE_UNAVAILABLE,
            vec![UNAVAILABLE.to_string()],
        ),
        ChangeError::Busy => with_retry_after(
            page(StatusCode::SERVICE_UNAVAILABLE, vec![BUSY.to_string()]),
            BUSY_RETRY_AFTER_SECS,
        ),
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn logout(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let token = form.ok().and_then(|Form(f)| f.csrf);
    if !csrf::verify(&state, &headers, token.as_deref()) {
        return message(
            StatusCode::FORBIDDEN,
            "Sign out",
            CSRF_REFUSED,
            "/password",
            "Back",
        );
    }
    if let Some(claims) = session::from_cookie_in(&state, &headers, ALL_STAGES).await {
        if let Err(e) = state.sessions.revoke(&claims.jti).await {
            tracing::error!(error = %e, "could not revoke a session at logout");
        }
        state.audit.record(
            Record::new(Event::Logout, Outcome::Success)
                .user(&claims.sub)
                .context(&context)
                .detail(json!({"via": "web"})),
        );
    }
    let mut response = login_page(
        &state,
        &headers,
        StatusCode::OK,
        "",
        None,
        Some("You have been signed out."),
    );
    response
        .headers_mut()
        .append(SET_COOKIE, state.cookies.clear(state.cookies.session));
    response
}
