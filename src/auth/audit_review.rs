//! The admin's audit views, one function per action: the page ([`AuditReview::view_page`]),
//! the API listing ([`AuditReview::list`]) and the download ([`AuditReview::export`]).
//!
//! Callers have checked that the session is an admin's; every action that shows data records
//! its own audit event, so no surface can show the log without leaving a trace of it.

use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::SqlitePool;

use crate::audit::activity::{self, Activity};
use crate::audit::chain::StoredRow;
use crate::audit::export::{self, Format, Pages};
use crate::audit::query::{self, Filter, Summary};
use crate::audit::{Audit, Context, Event, Outcome, Record};
use crate::auth::sessions::Claims;

/// Rows on one page of `/admin/audit`.
pub const PAGE_ROWS: u32 = 50;
/// Most rows one API call returns.
pub const API_MAX_ROWS: u32 = 500;
/// A download stops here; narrow the filters for more.
pub const EXPORT_MAX_ROWS: usize = 100_000;
/// Rows per query of a download.
const EXPORT_PAGE: u32 = 1000;
/// The page's charts and totals cover the last day unless the filter says otherwise.
const DAY_MS: i64 = 86_400_000;

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
    /// The store's filter, `limit` rows a page; `Err` explains (in English) what is wrong.
    pub fn filter(&self, limit: u32) -> Result<Filter, String> {
        let time = |t: &str| -> Result<Option<i64>, String> {
            some(t).map(|t| export::parse_time(&t)).transpose()
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
    pub fn query_string(&self) -> String {
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

    /// The filters as typed, for the audit event of a view.
    fn detail(&self) -> Value {
        json!({"since": self.since, "until": self.until, "user": self.user, "ip": self.ip,
               "event": self.event, "outcome": self.outcome})
    }
}

/// Why an audit view shows nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The filter's own (English, technical) explanation.
    #[error("bad filter: {0}")]
    BadFilter(String),
    #[error("audit store: {0}")]
    Store(#[from] sqlx::Error),
}

/// What `/admin/audit` shows.
#[derive(Debug)]
pub struct PageView {
    /// Newest first, at most [`PAGE_ROWS`].
    pub rows: Vec<StoredRow>,
    /// The cursor of the next (older) page, when this one is full.
    pub next_before: Option<i64>,
    pub summary: Summary,
    pub activity: Activity,
}

/// What `GET /api/v1/audit` returns.
#[derive(Debug)]
pub struct Listing {
    pub rows: Vec<StoredRow>,
    pub next_cursor: Option<i64>,
}

/// The admin audit actions over one store.
#[derive(Clone, Copy)]
pub struct AuditReview<'a> {
    pub audit: &'a Audit,
    pub pool: &'a SqlitePool,
}

impl AuditReview<'_> {
    /// The page: a page of rows, the period's summary and the attack charts.
    pub async fn view_page(
        &self,
        admin: &Claims,
        q: &AuditQuery,
        context: &Context,
    ) -> Result<PageView, ReviewError> {
        let filter = q.filter(PAGE_ROWS).map_err(ReviewError::BadFilter)?;
        let rows = query::list(self.pool, &filter).await?;
        let now = crate::audit::store::now_ms();
        let since = filter.since_ms.unwrap_or(now - DAY_MS);
        let summary = query::summary(self.pool, Some(since), filter.until_ms).await?;
        let until = filter.until_ms.unwrap_or(now);
        let activity = activity::read(self.pool, now, since, until).await?;
        self.record(Event::AdminViewedAudit, admin, context, q.detail());
        Ok(PageView {
            next_before: next_cursor(&rows, PAGE_ROWS),
            rows,
            summary,
            activity,
        })
    }

    /// One page of rows for the API, `limit` (1 to [`API_MAX_ROWS`], default 100) long.
    pub async fn list(
        &self,
        admin: &Claims,
        q: &AuditQuery,
        context: &Context,
    ) -> Result<Listing, ReviewError> {
        let limit = q.limit.unwrap_or(100).clamp(1, API_MAX_ROWS);
        let filter = q.filter(limit).map_err(ReviewError::BadFilter)?;
        let rows = query::list(self.pool, &filter).await?;
        self.record(Event::AdminViewedAudit, admin, context, q.detail());
        Ok(Listing {
            next_cursor: next_cursor(&rows, limit),
            rows,
        })
    }

    /// The download: every matching row of the chain, oldest first, at most
    /// [`EXPORT_MAX_ROWS`], as a stream of text chunks (a header, then one chunk per page).
    ///
    /// The first page is read before this returns, so a store that cannot answer is an
    /// `Err` here (an error page), not a cut-off download. The export's audit event is
    /// recorded now, when the stream starts, with the filter and the format: a download is
    /// audited even if the client never reads it. A second `AdminExportedAudit` row, with the
    /// number of rows sent and whether the stream ran to its end, is recorded when the
    /// stream ends or is dropped (client gone, store failed mid-way).
    pub async fn export(
        &self,
        admin: &Claims,
        q: &AuditQuery,
        format: Format,
        context: &Context,
    ) -> Result<impl Stream<Item = Result<String, ReviewError>> + Send + 'static, ReviewError> {
        let filter = q.filter(EXPORT_PAGE).map_err(ReviewError::BadFilter)?;
        let mut pages = Pages::new(filter, Some(EXPORT_MAX_ROWS));
        let first = {
            let mut conn = self.pool.acquire().await?;
            pages.next(&mut conn).await?
        };
        let mut detail = q.detail();
        detail["format"] = json!(q.format);
        self.record(Event::AdminExportedAudit, admin, context, detail);
        let mut head = match format {
            Format::Csv => export::csv_header_bare(),
            Format::Json => String::new(),
        };
        let sent = ExportEnd {
            audit: self.audit.clone(),
            admin: admin.sub.clone(),
            context: context.clone(),
            format: q.format.clone(),
            rows: 0,
            complete: false,
            failed: false,
        };
        if let Some(page) = &first {
            head.push_str(&lines(format, page));
        }
        let state = Download {
            pool: self.pool.clone(),
            pages,
            format,
            head: Some(head),
            end: sent,
            first_rows: first.map_or(0, |p| p.len()),
        };
        Ok(stream::unfold(state, Download::next_chunk))
    }

    fn record(&self, event: Event, admin: &Claims, context: &Context, detail: Value) {
        self.audit.record(
            Record::new(event, Outcome::Success)
                .user(&admin.sub)
                .context(context)
                .detail(detail),
        );
    }
}

/// The cursor of the page after `rows`, when `rows` filled a page of `limit`.
fn next_cursor(rows: &[StoredRow], limit: u32) -> Option<i64> {
    (rows.len() == limit as usize)
        .then(|| rows.last().map(query::next_cursor))
        .flatten()
}

fn lines(format: Format, rows: &[StoredRow]) -> String {
    rows.iter().map(|row| format.line(row)).collect()
}

/// A download in progress. Each page takes a pooled connection only while it is read: a
/// slow client must not hold one of the store's few connections for the whole download.
struct Download {
    pool: SqlitePool,
    pages: Pages,
    format: Format,
    /// The header and the first page, read before the stream started.
    head: Option<String>,
    end: ExportEnd,
    first_rows: usize,
}

impl Download {
    async fn next_chunk(mut self) -> Option<(Result<String, ReviewError>, Self)> {
        if let Some(head) = self.head.take() {
            self.end.rows = self.first_rows;
            return Some((Ok(head), self));
        }
        if self.end.complete || self.end.failed {
            return None;
        }
        match self.read_page().await {
            Ok(Some(page)) => {
                self.end.rows += page.len();
                let chunk = lines(self.format, &page);
                Some((Ok(chunk), self))
            }
            Ok(None) => {
                self.end.complete = true;
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "audit export failed mid-way");
                self.end.failed = true;
                // The error aborts the response, so the client sees a broken download
                // rather than a short one that looks complete.
                Some((Err(e), self))
            }
        }
    }

    async fn read_page(&mut self) -> Result<Option<Vec<StoredRow>>, ReviewError> {
        let mut conn = self.pool.acquire().await?;
        Ok(self.pages.next(&mut conn).await?)
    }
}

/// Records how a download ended when its stream is dropped: after the last page, when the
/// client went away, or after a store error.
struct ExportEnd {
    audit: Audit,
    admin: String,
    context: Context,
    format: String,
    rows: usize,
    complete: bool,
    failed: bool,
}

impl Drop for ExportEnd {
    fn drop(&mut self) {
        let outcome = if self.failed {
            Outcome::Error
        } else {
            Outcome::Success
        };
        self.audit.record(
            Record::new(Event::AdminExportedAudit, outcome)
                .user(&self.admin)
                .context(&self.context)
                .detail(json!({
                    "format": self.format,
                    "rows": self.rows,
                    "complete": self.complete,
                })),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::store::{AuditStore, StoreOptions};
    use futures_util::StreamExt;

    fn admin() -> Claims {
        serde_json::from_value(json!({"iss": "passgate", "aud": "passgate", "sub": "ada",
            "iat": 0, "exp": 0, "jti": "j", "stage": crate::auth::sessions::Stage::Authenticated,
            "admin": true}))
        .expect("claims")
    }

    #[tokio::test]
    async fn an_export_is_audited_when_it_starts_and_when_it_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = crate::db::open(&dir.path().join("a.db")).await.expect("db");
        let store = AuditStore::start(pool.clone(), [7; 32], StoreOptions::default());
        let audit = Audit::default().with_store(store);
        let context = Context {
            client_ip: "192.0.2.1".parse().expect("ip"),
            peer_ip: "192.0.2.1".parse().expect("ip"),
            user_agent: None,
            request_id: String::from("r1"),
        };
        for _ in 0..3 {
            audit
                .record_durable(Record::new(Event::Logout, Outcome::Success).user("bob"))
                .await;
        }
        let review = AuditReview {
            audit: &audit,
            pool: &pool,
        };
        let q = AuditQuery {
            event: String::from("logout"),
            format: String::from("csv"),
            ..AuditQuery::default()
        };
        let chunks = review
            .export(&admin(), &q, Format::Csv, &context)
            .await
            .expect("export");
        let text: Vec<String> = chunks.map(|c| c.expect("chunk")).collect().await;
        let text = text.concat();
        assert!(text.starts_with("id,time,"), "{text}");
        assert_eq!(text.lines().count(), 4, "{text}");
        audit.shutdown().await;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT outcome, detail FROM audit_events WHERE event = 'admin_exported_audit' ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .expect("rows");
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows[0].1.contains("\"event\":\"logout\""), "{rows:?}");
        assert!(
            rows[1].1.contains("\"rows\":3") && rows[1].1.contains("\"complete\":true"),
            "{rows:?}"
        );
    }
}
