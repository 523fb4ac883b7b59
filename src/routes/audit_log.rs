//! The audit log for admins: `/admin/audit` (page and download) and `GET /api/v1/audit`.
//! Only sessions marked admin at sign-in (TrueNAS groups in `admin.groups`, or users in
//! `admin.users`) get in; every view and export is itself audited (by the use cases in
//! [`crate::auth::audit_review`]). Here: the typed admin session, the call, the page or JSON.

use axum::body::Body;
use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::app::state::AppState;
use crate::audit::export::Format;
use crate::audit::query;
use crate::auth::audit_review::{AuditQuery, AuditReview, ReviewError};
use crate::i18n::Lang;
use crate::views::{message_page, render, AdminAuditPage};
use crate::web::api_error::ApiError;
use crate::web::extract::{AdminBearer, AdminCookie, Api, Call, Page};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/audit", get(page))
        .route("/admin/audit/export", get(export))
        .route("/api/v1/audit", get(api_list))
}

fn review(state: &AppState) -> AuditReview<'_> {
    AuditReview {
        audit: &state.audit,
        pool: &state.audit_pool,
    }
}

/// `detail` is the filter parser's own (English, technical) explanation.
fn bad_filter_page(t: Lang, detail: &str) -> Response {
    let text = t.tr_with("admin.bad_filter", &[("detail", &detail)]);
    message_page(
        t,
        StatusCode::BAD_REQUEST,
        t.tr("admin.title"),
        &text,
        "/admin/audit",
        t.tr("admin.clear_filters"),
    )
}

fn store_unavailable(t: Lang, e: &sqlx::Error) -> Response {
    tracing::error!(error = %e, "audit query failed");
    message_page(
        t,
        StatusCode::SERVICE_UNAVAILABLE,
        t.tr("admin.title"),
        t.tr("admin.unavailable"),
        "/admin/audit",
        t.tr("admin.try_again"),
    )
}

/// The page's error for a use case's.
fn review_error_page(t: Lang, e: &ReviewError) -> Response {
    match e {
        ReviewError::BadFilter(message) => bad_filter_page(t, message),
        ReviewError::Store(e) => store_unavailable(t, e),
    }
}

async fn page(
    call: Call<Page>,
    AdminCookie(claims): AdminCookie,
    Query(q): Query<AuditQuery>,
) -> Response {
    let view = match review(&call.state)
        .view_page(&claims, &q, &call.context)
        .await
    {
        Ok(view) => view,
        Err(e) => return review_error_page(call.t, &e),
    };
    let query_string = q.query_string();
    let page = AdminAuditPage::new(call.t, &claims.sub, &q, &query_string, &view);
    render(StatusCode::OK, &page)
}

async fn export(
    call: Call<Page>,
    AdminCookie(claims): AdminCookie,
    Query(q): Query<AuditQuery>,
) -> Response {
    let format = match q.format.as_str() {
        "csv" => Format::Csv,
        "json" => Format::Json,
        _ => {
            return message_page(
                call.t,
                StatusCode::BAD_REQUEST,
                call.t.tr("admin.title"),
                call.t.tr("admin.choose_format"),
                "/admin/audit",
                call.t.tr("common.back"),
            )
        }
    };
    let chunks = match review(&call.state)
        .export(&claims, &q, format, &call.context)
        .await
    {
        Ok(chunks) => chunks,
        Err(e) => return review_error_page(call.t, &e),
    };
    let (content_type, name) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "passgate-audit.csv"),
        Format::Json => ("application/x-ndjson", "passgate-audit.jsonl"),
    };
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    response
}

async fn api_list(
    call: Call<Api>,
    AdminBearer(claims): AdminBearer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let listing = review(&call.state)
        .list(&claims, &q, &call.context)
        .await
        .map_err(|e| match e {
            ReviewError::BadFilter(message) => ApiError::bad_request(message),
            ReviewError::Store(e) => {
                tracing::error!(error = %e, "audit query failed");
                ApiError::internal()
            }
        })?;
    let events: Vec<Value> = listing.rows.iter().map(query::row_json).collect();
    Ok(Json(json!({"events": events, "next_cursor": listing.next_cursor})).into_response())
}
