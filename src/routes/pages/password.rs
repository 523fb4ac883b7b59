//! The password page: the change form and the live strength meter's question.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::app::state::AppState;
use crate::auth::change_password::{ChangeError, PasswordChange};
use crate::auth::password_aging::PasswordAging;
use crate::auth::sessions::Claims;
use crate::i18n::Lang;
use crate::limiter::Admitted;
use crate::policy::{feedback_texts, score_label, user_inputs};
use crate::totp::TotpMode;
use crate::views::{
    aging_notice, policy_errors, render, truenas_errors, DonePage, Errors, PasswordPage,
    PASSWORD_FIELDS,
};
use crate::web::api_error::ApiError;
use crate::web::csrf;
use crate::web::extract::{csrf_form, Call, CookieSession, CsrfForm, CsrfHeader, Full, Page};
use crate::web::responses::{clearing_session, retry_later_if, with_csrf_cookie};

/// The change form, with what TrueNAS says about the password's age above it when `aging`
/// is given.
fn page(
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
        rules: state.portal.policy.rules(t),
        errors: errors
            .with_heading(t.tr("password.not_changed"))
            .in_order(PASSWORD_FIELDS),
        admin: claims.admin,
        totp_link: state.portal.totp.mode() != TotpMode::Off,
        keys_link: state.portal.ssh_keys.enabled,
        aging: aging.and_then(|a| aging_notice(t, &a)),
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: CookieSession<Full>,
) -> Response {
    // Read fresh on every view: one user lookup, the maximum age cached.
    let aging = state
        .portal
        .authenticator
        .password_aging(&session.claims.sub)
        .await;
    let status = StatusCode::OK;
    page(
        &state,
        &headers,
        status,
        &session.claims,
        Errors::none(),
        aging,
    )
}

csrf_form! {
    ChangeForm { current_password, new_password, confirm_password } back to "/password" titled "password.title"
}

/// What a refused change means for the page: status and the messages on their fields.
fn refusal(t: Lang, error: &ChangeError) -> (StatusCode, Errors) {
    match error {
        ChangeError::Policy(violations) => (StatusCode::BAD_REQUEST, policy_errors(t, violations)),
        ChangeError::WrongCurrentPassword { .. } => (
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("password.wrong_current"), &["current_password"]),
        ),
        ChangeError::RejectedByTrueNas(messages) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            truenas_errors(t, messages),
        ),
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

pub async fn submit(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    session: CookieSession<Full>,
    CsrfForm(form): CsrfForm<ChangeForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let current = SecretString::from(form.current_password);
    let new = SecretString::from(form.new_password);
    let confirmation = SecretString::from(form.confirm_password);
    let change = PasswordChange {
        current: &current,
        new: &new,
        confirmation: Some(&confirmation),
    };
    let caller = call.caller();
    let claims = &session.claims;
    match state
        .portal
        .change_password(caller, admitted, claims, change)
        .await
    {
        Ok(()) => {
            let done = DonePage {
                t,
                title: t.tr("done.title"),
            };
            clearing_session(state, render(StatusCode::OK, &done))
        }
        Err(error) => {
            // Shown without the aging sentence: a refusal the portal decides alone (policy)
            // must not cost a TrueNAS call.
            let (status, errors) = refusal(t, &error);
            let response = page(state, &headers, status, claims, errors, None);
            retry_later_if(matches!(error, ChangeError::Busy), response)
        }
    }
}

#[derive(Deserialize)]
pub struct StrengthBody {
    #[serde(default)]
    password: String,
}

/// The live strength meter's question. Needs the session and the page's CSRF token in the
/// `X-CSRF-Token` header. Neither audited nor logged: the body is a password candidate.
/// Answers `{"score","min_score","acceptable","summary","feedback":[…],"problems":[…]}`
/// in the page's language; `problems` are the other rules the candidate breaks.
pub async fn strength(
    State(state): State<AppState>,
    t: Lang,
    session: Option<CookieSession<Full>>,
    csrf: Result<CsrfHeader, ApiError>,
    body: Result<Json<StrengthBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    // The session is checked before the CSRF header, so an anonymous caller learns nothing.
    let claims = session.ok_or_else(ApiError::unauthenticated)?.claims;
    csrf?;
    let Json(body) = body?;
    let policy = &state.portal.policy;
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
