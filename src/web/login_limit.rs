//! The login limiter in front of every endpoint that leads to a password verification. It
//! runs before the handler, so a refused attempt never reaches a verifier or TrueNAS. Every
//! attempt counts, whatever its outcome (the limiter cannot know it in advance).

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Method, StatusCode};
use serde_json::json;

use crate::audit::{Context, Event, Outcome, Record};
use crate::i18n::Lang;
use crate::limiter::{key_for_ip, retry_after_secs, Decision};
use crate::state::AppState;
use crate::views::{lang_of, rate_limited_page};

/// POST endpoints that verify a password, and the code step that follows one. Setting up
/// TOTP is left out: it needs a full (or forced-enrollment) session already, and its codes
/// count toward the per-user TOTP limit, so an honest user who mistypes while setting up is
/// not locked out of the sign-in for the window.
pub const LIMITED_PATHS: &[&str] = &[
    "/login",
    "/login/totp",
    "/password",
    "/totp/disable",
    "/api/v1/login",
    "/api/v1/login/totp",
    "/api/v1/password",
    "/api/v1/totp/disable",
];

pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !LIMITED_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let Some(context) = request.extensions().get::<Context>().cloned() else {
        // The resolver runs first; without it there is no key, and no verification either.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let key = key_for_ip(context.client_ip, state.ipv6_prefix);
    match state.limiter.check_and_record(key, Instant::now()) {
        Decision::Allowed => next.run(request).await,
        Decision::Limited { retry_after } => {
            // Whole seconds, rounded up, so a client that waits exactly this long is let in.
            let secs = retry_after_secs(retry_after);
            state.audit.record(
                Record::new(Event::RateLimited, Outcome::Failure)
                    .context(&context)
                    .reason("login attempts per client exceeded")
                    .detail(json!({"path": request.uri().path(), "retry_after": secs})),
            );
            let lang = lang_of(request.headers());
            refusal(request.uri().path().starts_with("/api/"), secs, lang)
        }
    }
}

fn refusal(api: bool, secs: u64, lang: Lang) -> Response {
    let mut response = if api {
        let body = json!({"error": {
            "code": "rate_limited",
            "message": format!("Too many attempts from your address. Try again in {secs} seconds."),
            "retry_after": secs,
        }});
        (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
    } else {
        rate_limited_page(lang, secs)
    };
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}
