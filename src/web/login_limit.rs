//! The login limiter in front of every endpoint that leads to a password verification. It
//! runs before the handler, so a refused attempt never reaches a verifier or TrueNAS. Every
//! attempt counts, whatever its outcome (the limiter cannot know it in advance).

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, StatusCode};
use serde_json::json;

use crate::app::state::AppState;
use crate::audit::{Context, Event, Outcome, Record};
use crate::limiter::{key_for_ip, retry_after_secs, Decision};
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
    // Borrowed, not cloned: under a flood almost every request ends in the refusal below,
    // and it only needs to read the context.
    let Some(context) = request.extensions().get::<Context>() else {
        // The resolver runs first; without it there is no key, and no verification either.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let key = key_for_ip(context.client_ip, state.ipv6_prefix);
    match state.limiter.check_and_record(key, Instant::now()) {
        Decision::Allowed => next.run(request).await,
        Decision::Limited { retry_after } => {
            // Whole seconds, rounded up, so a client that waits exactly this long is let in.
            let secs = retry_after_secs(retry_after);
            let path = request.uri().path();
            state.audit.record(
                Record::new(Event::RateLimited, Outcome::Failure)
                    .context(context)
                    .reason("login attempts per client exceeded")
                    .detail(json!({"path": path, "retry_after": secs})),
            );
            if path.starts_with("/api/") {
                api_refusal(secs)
            } else {
                with_retry_after(rate_limited_page(lang_of(request.headers()), secs), secs)
            }
        }
    }
}

/// The API's 429, written directly: the only variable part is a number, so there is nothing
/// to escape, and a flood of refusals should not pay for building and serialising a JSON
/// tree each. Same shape as every other API error (`{"error": {"code", "message", …}}`).
fn api_refusal(secs: u64) -> Response {
    let body = format!(
        "{{\"error\":{{\"code\":\"rate_limited\",\"message\":\"Too many attempts from your address. \
         Try again in {secs} seconds.\",\"retry_after\":{secs}}}}}"
    );
    let response = (
        StatusCode::TOO_MANY_REQUESTS,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response();
    with_retry_after(response, secs)
}

fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_api_refusal_is_the_documented_json() {
        let response = api_refusal(42);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "42");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            body,
            json!({"error": {
                "code": "rate_limited",
                "message": "Too many attempts from your address. Try again in 42 seconds.",
                "retry_after": 42,
            }})
        );
    }
}
