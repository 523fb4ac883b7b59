//! The operator's routes: `GET /healthz` (the process is up), `GET /readyz` (it can serve
//! sign-ins), and `GET /metrics` (Prometheus text format): on the main listener only for TCP
//! peers in `metrics.allow` (never by `X-Forwarded-For`), and on `server.metrics_listen` for
//! anyone who can reach that listener.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::app::state::AppState;
use crate::web::client_ip::PeerIp;

const CONTENT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(main_listener))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(not_ready) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "component": not_ready.component(),
                "reason": not_ready.public_reason(),
            })),
        )
            .into_response(),
    }
}

/// The router of the separate metrics listener.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(exposition))
        .with_state(state)
}

async fn main_listener(
    State(state): State<AppState>,
    Extension(PeerIp(peer)): Extension<PeerIp>,
) -> Response {
    if !state.metrics_allow.iter().any(|net| net.contains(&peer)) {
        // As if there were no such page: the main listener faces the internet.
        return StatusCode::NOT_FOUND.into_response();
    }
    exposition(State(state)).await
}

async fn exposition(State(state): State<AppState>) -> Response {
    let body = crate::metrics::render(
        state.limiter.tracked_keys(),
        state.audit.queue_depth(),
        state.audit.fail2ban_dropped(),
    );
    ([(CONTENT_TYPE, HeaderValue::from_static(CONTENT))], body).into_response()
}
