//! The login limiter in front of every route that verifies a password or a code. It is a
//! `route_layer` on the routers of those routes (`routes::pages::limited`,
//! `routes::api::limited`), so it runs before the handler and a refused attempt never
//! reaches a verifier or TrueNAS. Every attempt counts, whatever its outcome (the limiter
//! cannot know it in advance). An admitted request carries the limiter's [`Admitted`] proof,
//! which the actions that verify require.
//!
//! Setting up TOTP is not limited here: it needs a full (or forced-enrollment) session
//! already, and its codes count toward the per-user TOTP limit, so an honest user who
//! mistypes while setting up is not locked out of the sign-in for the window.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::app::state::AppState;
use crate::audit::{Context, Event, Outcome, Record};
use crate::limiter::{key_for_ip, retry_after_secs, Admitted};
use crate::views::{lang_of, rate_limited_page};
use crate::web::responses::with_retry_after;

pub async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // Borrowed, not cloned: under a flood almost every request ends in the refusal below,
    // and it only needs to read the context.
    let Some(context) = request.extensions().get::<Context>() else {
        // The resolver runs first; without it there is no key, and no verification either.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let key = key_for_ip(context.client_ip, state.ipv6_prefix);
    match state.limiter.admit(key, Instant::now()) {
        Ok(admitted) => {
            request.extensions_mut().insert(admitted);
            next.run(request).await
        }
        Err(retry_after) => {
            // Whole seconds, rounded up, so a client that waits exactly this long is let in.
            let secs = retry_after_secs(retry_after);
            // The route's pattern, not the path: `/reset/{token}` must not put a live
            // token into the audit store.
            let path = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("?", MatchedPath::as_str);
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

/// The limiter's proof, taken from the request. Without the limiter in front the route
/// fails loudly (500) instead of verifying unlimited.
impl<S: Send + Sync> FromRequestParts<S> for Admitted {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.remove::<Admitted>().ok_or_else(|| {
            tracing::error!(
                path = parts.uri.path(),
                "route verifies without the login limiter"
            );
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::RETRY_AFTER;

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
