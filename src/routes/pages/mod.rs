//! The server-rendered pages: sign in, change password, sign out. They work without
//! JavaScript; `/static/app.js` only adds the show/hide buttons and the live strength meter,
//! which asks `POST /password/strength`.

pub mod two_step;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use http::header::{CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::app::state::AppState;
use crate::audit::{Context, Event, Outcome, Record};
use crate::auth::change_password::{change_password, finish_change, ChangeError, PasswordChange};
use crate::auth::password_aging::PasswordAging;
use crate::auth::sessions::{Claims, Issued, Stage};
use crate::auth::steps::StepError;
use crate::i18n::Lang;
use crate::policy::{feedback_texts, score_label, user_inputs, Violation};
use crate::totp::TotpMode;
use crate::verify::Decision;
use crate::views::{
    aging_notice, message_page, render, DonePage, Errors, LoginPage, PasswordPage, LOGIN_FIELDS,
    PASSWORD_FIELDS,
};
use crate::web::api_error::{ApiError, BUSY_RETRY_AFTER_SECS};
use crate::web::{csrf, session};

/// The header that carries the CSRF token of a script's request (the page's form token).
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login_submit))
        .route("/password", get(password_form).post(password_submit))
        .route("/password/strength", post(strength))
        .route("/logout", post(logout))
        .route("/static/style.css", get(stylesheet))
        .route("/static/app.js", get(script))
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
        include_str!("../../../static/style.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        include_str!("../../../static/app.js"),
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
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

/// The login page with one general message (no field to blame).
fn login_refusal(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    username: &str,
    text: &str,
) -> Response {
    login_page(
        state,
        headers,
        status,
        username,
        Errors::one(text, &[]),
        None,
    )
}

/// The page of "try again in a few seconds", with its `Retry-After`.
fn login_busy(state: &AppState, headers: &HeaderMap, t: Lang, username: &str) -> Response {
    with_retry_after(
        login_refusal(
            state,
            headers,
            StatusCode::SERVICE_UNAVAILABLE,
            username,
            t.tr("common.busy"),
        ),
        BUSY_RETRY_AFTER_SECS,
    )
}

async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(claims) = session::from_cookie_in(&state, &headers, ALL_STAGES).await {
        return Redirect::to(page_for(claims.stage)).into_response();
    }
    login_page(&state, &headers, StatusCode::OK, "", Errors::none(), None)
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

/// Empty fields are named before anything is verified.
fn missing_login_fields(t: Lang, form: &LoginForm) -> Errors {
    let mut errors = Errors::none();
    if form.username.trim().is_empty() {
        errors.push(t.tr("login.username_missing"), Vec::new(), &["username"]);
    }
    if form.password.is_empty() {
        errors.push(t.tr("login.password_missing"), Vec::new(), &["password"]);
    }
    errors
}

async fn login_submit(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    t: Lang,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return message_page(
            t,
            StatusCode::BAD_REQUEST,
            t.tr("login.title"),
            t.tr("common.form_unreadable"),
            "/login",
            t.tr("common.back_to_sign_in"),
        );
    };
    if !csrf::verify(&state, &headers, form.csrf.as_deref()) {
        let text = t.tr("common.csrf_refused");
        return login_refusal(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &form.username,
            text,
        );
    }
    let missing = missing_login_fields(t, &form);
    if !missing.is_empty() {
        return login_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            &form.username,
            missing,
            None,
        );
    }
    let password = SecretString::from(form.password);
    let result = state.auth.sign_in(&form.username, &password).await;
    result
        .audit(&state.audit, &form.username, &context, "web")
        .await;
    let unavailable = |status| {
        let text = t.tr("common.unavailable");
        login_refusal(&state, &headers, status, &form.username, text)
    };
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
                Err(StepError::Busy) => login_busy(&state, &headers, t, &form.username),
                Err(e) => {
                    tracing::error!(error = %e, "could not create a session");
                    unavailable(StatusCode::SERVICE_UNAVAILABLE)
                }
            }
        }
        (Decision::Unavailable, _) => unavailable(StatusCode::SERVICE_UNAVAILABLE),
        (Decision::Busy, _) => login_busy(&state, &headers, t, &form.username),
        // Both fields are marked: the page must not say which of the two was wrong.
        _ => login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &form.username,
            Errors::one(t.tr("login.invalid"), &["username", "password"]),
            None,
        ),
    }
}

/// The change form, with what TrueNAS says about the password's age above it when `aging`
/// is given.
fn password_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    errors: Errors,
    aging: Option<PasswordAging>,
) -> Response {
    let t = crate::views::lang_of(headers);
    let (username, full_name) = (claims.sub.as_str(), claims.name.as_str());
    let pair = csrf::for_page(state, headers);
    let display_name = if full_name.is_empty() {
        username.to_string()
    } else {
        format!("{full_name} ({username})")
    };
    let page = PasswordPage {
        t,
        title: t.tr("password.title"),
        csrf: &pair.form_token,
        username,
        display_name: &display_name,
        rules: state.policy.rules(t),
        errors: errors
            .with_heading(t.tr("password.not_changed"))
            .in_order(PASSWORD_FIELDS),
        admin: claims.admin,
        totp_link: state.totp.mode() != TotpMode::Off,
        aging: aging.and_then(|a| aging_notice(t, &a)),
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

async fn password_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::from_cookie(&state, &headers).await {
        Some(claims) => {
            // Read fresh on every view: one user lookup, the maximum age cached.
            let aging = state.auth.password_aging(&claims.sub).await;
            password_page(
                &state,
                &headers,
                StatusCode::OK,
                &claims,
                Errors::none(),
                aging,
            )
        }
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

/// Each broken rule, on the field to fix, with zxcvbn's advice under a weak password.
fn violation_errors(t: Lang, violations: &[Violation]) -> Errors {
    let mut errors = Errors::none();
    for v in violations {
        let field = if v.is_confirmation() {
            "confirm_password"
        } else {
            "new_password"
        };
        errors.push(v.describe(t), v.details(t), &[field]);
    }
    errors
}

/// What a refused change means for the page: status and the messages on their fields.
fn change_refusal(t: Lang, error: &ChangeError) -> (StatusCode, Errors) {
    match error {
        ChangeError::Policy(violations) => {
            (StatusCode::BAD_REQUEST, violation_errors(t, violations))
        }
        ChangeError::WrongCurrentPassword { .. } => (
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("password.wrong_current"), &["current_password"]),
        ),
        ChangeError::RejectedByTrueNas(messages) => {
            let mut errors = Errors::none();
            for m in messages {
                let text = crate::views::truenas_messages::plain_words(m, t);
                errors.push(text, Vec::new(), &["new_password"]);
            }
            (StatusCode::UNPROCESSABLE_ENTITY, errors)
        }
        ChangeError::Unavailable { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Errors::one(t.tr("common.unavailable"), &[]),
        ),
        ChangeError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            Errors::one(t.tr("common.busy"), &[]),
        ),
    }
}

async fn password_submit(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    t: Lang,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let Some(claims) = session::from_cookie(&state, &headers).await else {
        let notice = t.tr("common.session_ended");
        return login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            "",
            Errors::none(),
            Some(notice),
        );
    };
    // A refused form is shown without the aging sentence: a refusal the portal decides
    // alone (policy, CSRF) must not cost a TrueNAS call.
    let refuse = |status: StatusCode, errors: Errors| {
        password_page(&state, &headers, status, &claims, errors, None)
    };
    let Ok(Form(form)) = form else {
        let errors = Errors::one(t.tr("common.form_unreadable"), &[]);
        return refuse(StatusCode::BAD_REQUEST, errors);
    };
    if !csrf::verify(&state, &headers, form.csrf.as_deref()) {
        let errors = Errors::one(t.tr("common.csrf_refused"), &[]);
        return refuse(StatusCode::FORBIDDEN, errors);
    }
    let current = SecretString::from(form.current_password);
    let new = SecretString::from(form.new_password);
    let confirmation = SecretString::from(form.confirm_password);
    let change = PasswordChange {
        username: &claims.sub,
        full_name: &claims.name,
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
            let page = DonePage {
                t,
                title: t.tr("done.title"),
            };
            let mut response = render(StatusCode::OK, &page);
            response
                .headers_mut()
                .append(SET_COOKIE, state.cookies.clear(state.cookies.session));
            return response;
        }
        Err(error) => error,
    };
    error.audit(&state.audit, &claims.sub, &context, "web");
    let (status, errors) = change_refusal(t, &error);
    let response = refuse(status, errors);
    if matches!(error, ChangeError::Busy) {
        with_retry_after(response, BUSY_RETRY_AFTER_SECS)
    } else {
        response
    }
}

#[derive(Deserialize)]
struct StrengthBody {
    #[serde(default)]
    password: String,
}

/// The live strength meter's question. Needs the session and the page's CSRF token in the
/// `X-CSRF-Token` header. Neither audited nor logged: the body is a password candidate.
/// Answers `{"score","min_score","acceptable","summary","feedback":[…],"problems":[…]}`
/// in the page's language; `problems` are the other rules the candidate breaks.
async fn strength(
    State(state): State<AppState>,
    t: Lang,
    headers: HeaderMap,
    body: Result<Json<StrengthBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let claims = session::from_cookie(&state, &headers)
        .await
        .ok_or_else(ApiError::unauthenticated)?;
    let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !csrf::verify(&state, &headers, token) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_refused",
            "Missing or wrong X-CSRF-Token header.",
        ));
    }
    let Json(body) = body?;
    let policy = &state.policy;
    let inputs = user_inputs(&claims.sub, &claims.name);
    let estimate = policy.strength(&body.password, &inputs);
    let acceptable = estimate.score >= policy.min_strength;
    let label = t.tr_with(
        "strength.label",
        &[
            (
                "label",
                &score_label(estimate.score, t) as &dyn std::fmt::Display,
            ),
            ("score", &estimate.score),
        ],
    );
    let verdict = if acceptable {
        t.tr("strength.enough").to_string()
    } else {
        t.tr_with("strength.not_enough", &[("min", &policy.min_strength)])
    };
    // Length and the like; the strength itself is reported above.
    let problems: Vec<String> = policy
        .check_characters(&body.password)
        .iter()
        .map(|v| v.describe(t))
        .collect();
    let feedback = if acceptable {
        Vec::new()
    } else {
        feedback_texts(&estimate.feedback, t)
    };
    Ok(Json(json!({
        "score": estimate.score,
        "min_score": policy.min_strength,
        "acceptable": acceptable && problems.is_empty(),
        "summary": format!("{label} {verdict}"),
        "feedback": feedback,
        "problems": problems,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn logout(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    t: Lang,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let token = form.ok().and_then(|Form(f)| f.csrf);
    if !csrf::verify(&state, &headers, token.as_deref()) {
        return message_page(
            t,
            StatusCode::FORBIDDEN,
            t.tr("common.sign_out"),
            t.tr("common.csrf_refused"),
            "/password",
            t.tr("common.back"),
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
        Errors::none(),
        Some(t.tr("login.signed_out")),
    );
    response
        .headers_mut()
        .append(SET_COOKIE, state.cookies.clear(state.cookies.session));
    response
}
