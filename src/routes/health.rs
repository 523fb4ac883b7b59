//! `GET /healthz` (the process is up) and `GET /readyz` (it can serve sign-ins).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

use crate::app::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
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
