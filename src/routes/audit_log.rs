//! The audit log for admins: `/admin/audit` (page and download) and `GET /api/v1/audit`.
//! Only sessions marked admin at sign-in (TrueNAS groups in `admin.groups`, or users in
//! `admin.users`) get in; every view and export is itself audited.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::state::AppState;
use crate::audit::activity;
use crate::audit::query::{self, Filter, ROW_FIELDS};
use crate::audit::{Context, Event, Outcome, Record};
use crate::auth::sessions::Claims;
use crate::i18n::Lang;
use crate::views::charts as attack_charts;
use crate::views::{message_page, render, AdminAuditPage, AuditCharts, RowView};
use crate::web::api_error::ApiError;
use crate::web::extract::{AdminBearer, AdminCookie};

const PAGE_ROWS: u32 = 50;
const API_MAX_ROWS: u32 = 500;
/// A download stops here; narrow the filters for more.
const EXPORT_MAX_ROWS: usize = 100_000;
const DAY_MS: i64 = 86_400_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/audit", get(page))
        .route("/admin/audit/export", get(export))
        .route("/api/v1/audit", get(api_list))
}

/// The filters, as typed into the form or the query string.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub outcome: String,
    /// Cursor: only events with a smaller id (the next, older page).
    pub before: Option<i64>,
    pub cursor: Option<i64>,
    pub limit: Option<u32>,
    #[serde(default)]
    pub format: String,
}

fn some(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl AuditQuery {
    fn filter(&self, limit: u32) -> Result<Filter, String> {
        let time = |t: &str| -> Result<Option<i64>, String> {
            some(t)
                .map(|t| crate::cli::audit_command::parse_time(&t))
                .transpose()
        };
        let outcome = match some(&self.outcome).as_deref() {
            None => None,
            Some("ok" | "success") => Some(String::from("success")),
            Some("fail" | "failure") => Some(String::from("failure")),
            Some("error") => Some(String::from("error")),
            Some(other) => return Err(format!("unknown outcome {other:?}: use ok, fail or error")),
        };
        Ok(Filter {
            since_ms: time(&self.since)?,
            until_ms: time(&self.until)?,
            user: some(&self.user),
            ip: some(&self.ip),
            event: some(&self.event),
            outcome,
            limit,
            before_id: self.before.or(self.cursor),
        })
    }

    /// The filters as a query string, for links that keep them.
    fn query_string(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("since", &self.since),
            ("until", &self.until),
            ("user", &self.user),
            ("ip", &self.ip),
            ("event", &self.event),
            ("outcome", &self.outcome),
        ] {
            if !v.trim().is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }

    fn detail(&self) -> Value {
        json!({"since": self.since, "until": self.until, "user": self.user, "ip": self.ip,
               "event": self.event, "outcome": self.outcome})
    }
}

fn record(state: &AppState, event: Event, claims: &Claims, context: &Context, detail: Value) {
    state.audit.record(
        Record::new(event, Outcome::Success)
            .user(&claims.sub)
            .context(context)
            .detail(detail),
    );
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

fn store_unavailable(t: Lang, e: sqlx::Error) -> Response {
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

async fn page(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    t: Lang,
    AdminCookie(claims): AdminCookie,
    Query(q): Query<AuditQuery>,
) -> Response {
    let filter = match q.filter(PAGE_ROWS) {
        Ok(f) => f,
        Err(message) => return bad_filter_page(t, &message),
    };
    let rows = match query::list(&state.audit_pool, &filter).await {
        Ok(rows) => rows,
        Err(e) => return store_unavailable(t, e),
    };
    let now = crate::audit::store::now_ms();
    let since = filter.since_ms.unwrap_or(now - DAY_MS);
    let summary = match query::summary(&state.audit_pool, Some(since), filter.until_ms).await {
        Ok(s) => s,
        Err(e) => return store_unavailable(t, e),
    };
    let until = filter.until_ms.unwrap_or(now);
    let activity = match activity::read(&state.audit_pool, now, since, until).await {
        Ok(a) => a,
        Err(e) => return store_unavailable(t, e),
    };
    record(
        &state,
        Event::AdminViewedAudit,
        &claims,
        &context,
        q.detail(),
    );
    let query_string = q.query_string();
    let next = (rows.len() == PAGE_ROWS as usize)
        .then(|| rows.last().map(query::next_cursor))
        .flatten()
        .map(|id| {
            if query_string.is_empty() {
                format!("before={id}")
            } else {
                format!("{query_string}&before={id}")
            }
        });
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| String::from("-"));
    let entry = |ts_ms: i64, user: &Option<String>, ip: &Option<String>| {
        let time = query::format_ms(ts_ms);
        let (user, ip) = (text(user), text(ip));
        t.tr_with(
            "admin.entry",
            &[("time", &time), ("user", &user), ("ip", &ip)],
        )
    };
    let totals = t.tr_with(
        "admin.totals",
        &[
            ("failures", &summary.failures_total),
            ("limited", &summary.rate_limited_total),
        ],
    );
    let page = AdminAuditPage {
        t,
        title: t.tr("admin.title"),
        admin: &claims.sub,
        f: &q,
        query: &query_string,
        totals,
        charts: AuditCharts {
            last_hour: attack_charts::time_chart(
                t,
                "chart-last-hour",
                t.tr("charts.last_hour"),
                &activity.last_hour,
            ),
            period: attack_charts::time_chart(
                t,
                "chart-period",
                t.tr("charts.per_hour"),
                &activity.period,
            ),
            top_ips: attack_charts::top_chart(
                t,
                "chart-top-ips",
                t.tr("admin.top_ips"),
                t.tr("admin.col_ip"),
                &summary.top_failing_ips,
            ),
            top_users: attack_charts::top_chart(
                t,
                "chart-top-users",
                t.tr("admin.top_users"),
                t.tr("admin.col_user"),
                &summary.top_failing_users,
            ),
        },
        changes: summary
            .password_changes
            .iter()
            .map(|c| entry(c.ts_ms, &c.username, &c.client_ip))
            .collect(),
        lockouts: summary
            .lockouts
            .iter()
            .map(|l| entry(l.ts_ms, &l.username, &l.client_ip))
            .collect(),
        rows: rows
            .iter()
            .map(|r| RowView {
                time: query::format_ms(r.ts_ms),
                event: r.event.clone(),
                outcome: r.outcome.clone(),
                user: text(&r.username),
                ip: text(&r.client_ip),
                count: r.count,
                open: r.open,
                reason: text(&r.reason),
            })
            .collect(),
        next,
    };
    render(StatusCode::OK, &page)
}

async fn export(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    t: Lang,
    AdminCookie(claims): AdminCookie,
    Query(q): Query<AuditQuery>,
) -> Response {
    let csv = match q.format.as_str() {
        "csv" => true,
        "json" => false,
        _ => {
            return message_page(
                t,
                StatusCode::BAD_REQUEST,
                t.tr("admin.title"),
                t.tr("admin.choose_format"),
                "/admin/audit",
                t.tr("common.back"),
            )
        }
    };
    let filter = match q.filter(0) {
        Ok(f) => f,
        Err(message) => return bad_filter_page(t, &message),
    };
    let mut conn = match state.audit_pool.acquire().await {
        Ok(c) => c,
        Err(e) => return store_unavailable(t, e),
    };
    let mut body = String::new();
    if csv {
        body.push_str(&ROW_FIELDS.join(","));
        body.push_str("\r\n");
    }
    let mut after = 0;
    let mut written = 0;
    loop {
        let rows = match query::page_oldest_first(&mut conn, &filter, after).await {
            Ok(rows) => rows,
            Err(e) => return store_unavailable(t, e),
        };
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in &rows {
            let value = query::row_json(row);
            if csv {
                let cells: Vec<String> = ROW_FIELDS
                    .iter()
                    .map(|f| match &value[*f] {
                        Value::Null => String::new(),
                        Value::String(s) => crate::cli::audit_command::csv_cell(s),
                        other => crate::cli::audit_command::csv_cell(&other.to_string()),
                    })
                    .collect();
                body.push_str(&cells.join(","));
                body.push_str("\r\n");
            } else {
                body.push_str(&value.to_string());
                body.push('\n');
            }
            written += 1;
        }
        if written >= EXPORT_MAX_ROWS {
            break;
        }
    }
    let mut detail = q.detail();
    detail["format"] = json!(q.format);
    detail["rows"] = json!(written);
    record(&state, Event::AdminExportedAudit, &claims, &context, detail);
    let (content_type, name) = if csv {
        ("text/csv; charset=utf-8", "passgate-audit.csv")
    } else {
        ("application/x-ndjson", "passgate-audit.jsonl")
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    response
}

async fn api_list(
    State(state): State<AppState>,
    Extension(context): Extension<Context>,
    AdminBearer(claims): AdminBearer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, API_MAX_ROWS);
    let filter = q.filter(limit).map_err(ApiError::bad_request)?;
    let rows = query::list(&state.audit_pool, &filter).await.map_err(|e| {
        tracing::error!(error = %e, "audit query failed");
        ApiError::internal()
    })?;
    record(
        &state,
        Event::AdminViewedAudit,
        &claims,
        &context,
        q.detail(),
    );
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(query::next_cursor))
        .flatten();
    let events: Vec<Value> = rows.iter().map(query::row_json).collect();
    Ok(Json(json!({"events": events, "next_cursor": next_cursor})).into_response())
}
