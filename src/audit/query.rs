//! Read-side queries over the view `audit_all` (the chain in `audit_events` and the failure
//! rows still being counted in `audit_open`), shared by `passgate audit`, the admin page
//! and `GET /api/v1/audit`. Open rows have id 0 and `open` set; they come first on the first
//! page and never on later ones. An export reads the chain only (see [`page_oldest_first`]).
//!
//! Every value a caller supplies is bound as a parameter; only fixed SQL fragments are
//! concatenated, so no filter can change the shape of a query.
//!
//! # Time windows
//!
//! A coalesced row covers `ts_ms..=last_ts_ms` (see `store.rs`), so a row matches a window
//! when it overlaps it: `last_ts_ms >= since_ms` and `ts_ms < until_ms`. `until` is
//! exclusive. To let sqlite use the `ts_ms` index for `since`, rows whose *first* occurrence
//! is more than [`MAX_ROW_SPAN_MS`] before `since` are not considered: the writer coalesces
//! within one UTC minute, so a real row never spans more than that.

use serde_json::{json, Value};
use sqlx::sqlite::Sqlite;
use sqlx::{Connection, QueryBuilder, SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use super::chain::StoredRow;

/// Largest page [`list`] returns, so one request cannot pull the whole table into memory.
pub const MAX_LIMIT: u32 = 10_000;
/// Default page size.
pub const DEFAULT_LIMIT: u32 = 100;
/// How many entries each top-N list of [`Summary`] holds.
pub const SUMMARY_TOP: i64 = 10;
/// How many recent password changes and lockouts [`Summary`] holds.
pub const SUMMARY_RECENT: i64 = 50;
/// Upper bound on `last_ts_ms - ts_ms` assumed by the index-friendly `since` bound. The writer
/// coalesces within one minute; an hour leaves room for queue latency and clock steps.
pub const MAX_ROW_SPAN_MS: i64 = 3_600_000;

/// The event names the summary looks for (see `Event::as_str`).
pub const EVENT_PASSWORD_CHANGED: &str = "password_changed";
pub const EVENT_USER_LOCKED_OUT: &str = "user_locked_out";
pub const EVENT_RATE_LIMITED: &str = "rate_limited";

const COLUMNS: &str = "SELECT id, ts_ms, last_ts_ms, count, event, outcome, username, \
     client_ip, peer_ip, user_agent, request_id, verifier, reason, detail, prev_hash, hash, open \
     FROM audit_all WHERE 1 = 1";

/// The same columns from the chain alone (`open` is false by default).
const CHAIN_COLUMNS: &str = "SELECT id, ts_ms, last_ts_ms, count, event, outcome, username, \
     client_ip, peer_ip, user_agent, request_id, verifier, reason, detail, prev_hash, hash \
     FROM audit_events WHERE 1 = 1";

/// Which rows to return. Every `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// UTC ms; rows whose last occurrence is at or after it.
    pub since_ms: Option<i64>,
    /// UTC ms, exclusive; rows whose first occurrence is before it.
    pub until_ms: Option<i64>,
    /// Exact username as typed.
    pub user: Option<String>,
    /// Exact client IP; an IPv4-mapped IPv6 address is matched as plain IPv4, as stored.
    pub ip: Option<String>,
    pub event: Option<String>,
    /// The stored outcome: `success`, `failure` or `error`.
    pub outcome: Option<String>,
    /// Page size, at most [`MAX_LIMIT`]; 0 means [`DEFAULT_LIMIT`].
    pub limit: u32,
    /// Cursor for newest-first paging: only rows with `id < before_id`.
    pub before_id: Option<i64>,
}

impl Filter {
    /// Rows per page: `limit`, or the default for 0, at most [`MAX_LIMIT`].
    pub(crate) fn page_size(&self) -> i64 {
        match self.limit {
            0 => i64::from(DEFAULT_LIMIT),
            n => i64::from(n.min(MAX_LIMIT)),
        }
    }

    /// Appends ` AND …` clauses for every set field (not the cursor or the limit).
    fn push_conditions(&self, q: &mut QueryBuilder<Sqlite>) {
        push_window(q, self.since_ms, self.until_ms);
        if let Some(user) = &self.user {
            q.push(" AND username = ").push_bind(user.clone());
        }
        if let Some(ip) = &self.ip {
            q.push(" AND client_ip = ").push_bind(canonical_ip_text(ip));
        }
        if let Some(event) = &self.event {
            q.push(" AND event = ").push_bind(event.clone());
        }
        if let Some(outcome) = &self.outcome {
            q.push(" AND outcome = ").push_bind(outcome.clone());
        }
    }
}

fn push_window(q: &mut QueryBuilder<Sqlite>, since_ms: Option<i64>, until_ms: Option<i64>) {
    if let Some(since) = since_ms {
        q.push(" AND last_ts_ms >= ").push_bind(since);
        q.push(" AND ts_ms >= ")
            .push_bind(since.saturating_sub(MAX_ROW_SPAN_MS));
    }
    if let Some(until) = until_ms {
        q.push(" AND ts_ms < ").push_bind(until);
    }
}

/// The store writes `IpAddr::to_canonical()` text; a filter typed as `::ffff:192.0.2.1` or
/// with different IPv6 zero compression must still find those rows.
fn canonical_ip_text(ip: &str) -> String {
    match ip.trim().parse::<std::net::IpAddr>() {
        Ok(addr) => addr.to_canonical().to_string(),
        Err(_) => ip.to_string(),
    }
}

/// The `before_id` that continues a listing after `row`: the whole chain after an open row.
pub fn next_cursor(row: &StoredRow) -> i64 {
    if row.open {
        i64::MAX
    } else {
        row.id
    }
}

/// Matching rows, newest first (open rows, then highest id first), at most `filter.limit`.
/// Pass [`next_cursor`] of the last row as `before_id` to get the next page.
pub async fn list(pool: &SqlitePool, filter: &Filter) -> Result<Vec<StoredRow>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    list_on(&mut conn, filter).await
}

/// [`list`] on a given connection (inside a caller's transaction, for instance).
pub async fn list_on(
    conn: &mut SqliteConnection,
    filter: &Filter,
) -> Result<Vec<StoredRow>, sqlx::Error> {
    let limit = filter.page_size();
    // Two queries rather than one ORDER BY over the view: the chain part then pages by its
    // primary key instead of sorting every matching row.
    let mut rows = Vec::new();
    if filter.before_id.is_none() {
        let mut q = QueryBuilder::<Sqlite>::new(COLUMNS);
        q.push(" AND open = 1");
        filter.push_conditions(&mut q);
        q.push(" ORDER BY last_ts_ms DESC LIMIT ").push_bind(limit);
        rows = q
            .build_query_as::<StoredRow>()
            .fetch_all(&mut *conn)
            .await?;
    }
    let rest = limit - i64::try_from(rows.len()).unwrap_or(limit);
    if rest > 0 {
        let mut q = QueryBuilder::<Sqlite>::new(CHAIN_COLUMNS);
        filter.push_conditions(&mut q);
        if let Some(before) = filter.before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(rest);
        rows.extend(
            q.build_query_as::<StoredRow>()
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(rows)
}

/// Matching rows with `id > after_id`, oldest first, at most `filter.limit`: the pages of an
/// export. `before_id` still bounds the ids from above when set.
pub async fn page_oldest_first(
    conn: &mut SqliteConnection,
    filter: &Filter,
    after_id: i64,
) -> Result<Vec<StoredRow>, sqlx::Error> {
    // The chain only: an export must verify row by row, and open rows are not chained yet.
    let mut q = QueryBuilder::<Sqlite>::new(CHAIN_COLUMNS);
    filter.push_conditions(&mut q);
    if let Some(before) = filter.before_id {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" AND id > ").push_bind(after_id);
    q.push(" ORDER BY id ASC LIMIT ")
        .push_bind(filter.page_size());
    q.build_query_as::<StoredRow>().fetch_all(&mut *conn).await
}

/// One entry of a top-N list: a client IP or username and its summed failure `count`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Tally {
    pub key: String,
    /// Sum of `count` (coalesced rows count every occurrence).
    pub total: i64,
    /// Rows that contributed.
    pub rows: i64,
    pub last_ms: i64,
}

/// A password change: who, from where, when.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PasswordChange {
    pub id: i64,
    pub ts_ms: i64,
    pub username: Option<String>,
    pub client_ip: Option<String>,
}

/// A `user_locked_out` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Lockout {
    pub id: i64,
    pub ts_ms: i64,
    pub last_ts_ms: i64,
    pub count: i64,
    pub username: Option<String>,
    pub client_ip: Option<String>,
    pub reason: Option<String>,
}

/// What happened in a period. Failures are rows with outcome `failure` (failed logins,
/// wrong TOTP codes, rate limits and lockouts alike), weighted by their `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Total failure occurrences in the period.
    pub failures_total: i64,
    pub top_failing_ips: Vec<Tally>,
    pub top_failing_users: Vec<Tally>,
    /// Newest first, at most [`SUMMARY_RECENT`].
    pub password_changes: Vec<PasswordChange>,
    /// Newest first, at most [`SUMMARY_RECENT`].
    pub lockouts: Vec<Lockout>,
    /// Summed `count` of `rate_limited` rows.
    pub rate_limited_total: i64,
    pub top_rate_limited_ips: Vec<Tally>,
}

/// The period summary, read in one transaction so its parts agree with each other.
pub async fn summary(
    pool: &SqlitePool,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<Summary, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let failures_total = total(&mut tx, since_ms, until_ms, None).await?;
    let top_failing_ips = top(&mut tx, "client_ip", since_ms, until_ms, None).await?;
    let top_failing_users = top(&mut tx, "username", since_ms, until_ms, None).await?;
    let rate_limited_total = total(&mut tx, since_ms, until_ms, Some(EVENT_RATE_LIMITED)).await?;
    let top_rate_limited_ips = top(
        &mut tx,
        "client_ip",
        since_ms,
        until_ms,
        Some(EVENT_RATE_LIMITED),
    )
    .await?;

    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT id, ts_ms, username, client_ip FROM audit_all WHERE outcome = 'success'",
    );
    q.push(" AND event = ").push_bind(EVENT_PASSWORD_CHANGED);
    push_window(&mut q, since_ms, until_ms);
    q.push(" ORDER BY id DESC LIMIT ").push_bind(SUMMARY_RECENT);
    let password_changes = q
        .build_query_as::<PasswordChange>()
        .fetch_all(&mut *tx)
        .await?;

    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT id, ts_ms, last_ts_ms, count, username, client_ip, reason FROM audit_all \
         WHERE 1 = 1",
    );
    q.push(" AND event = ").push_bind(EVENT_USER_LOCKED_OUT);
    push_window(&mut q, since_ms, until_ms);
    q.push(" ORDER BY id DESC LIMIT ").push_bind(SUMMARY_RECENT);
    let lockouts = q.build_query_as::<Lockout>().fetch_all(&mut *tx).await?;

    tx.rollback().await?;
    Ok(Summary {
        since_ms,
        until_ms,
        failures_total,
        top_failing_ips,
        top_failing_users,
        password_changes,
        lockouts,
        rate_limited_total,
        top_rate_limited_ips,
    })
}

async fn total(
    conn: &mut SqliteConnection,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    event: Option<&'static str>,
) -> Result<i64, sqlx::Error> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT COALESCE(SUM(count), 0) FROM audit_all WHERE outcome = 'failure'",
    );
    if let Some(event) = event {
        q.push(" AND event = ").push_bind(event);
    }
    push_window(&mut q, since_ms, until_ms);
    let (n,): (i64,) = q.build_query_as().fetch_one(&mut *conn).await?;
    Ok(n)
}

/// Top [`SUMMARY_TOP`] values of `column` among failure rows. `column` is one of two fixed
/// names chosen in this module, never caller input.
async fn top(
    conn: &mut SqliteConnection,
    column: &'static str,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    event: Option<&'static str>,
) -> Result<Vec<Tally>, sqlx::Error> {
    debug_assert!(matches!(column, "client_ip" | "username"));
    let mut q = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {column} AS \"key\", SUM(count) AS total, COUNT(*) AS \"rows\", \
         MAX(last_ts_ms) AS last_ms FROM audit_all WHERE outcome = 'failure' AND {column} IS NOT NULL"
    ));
    if let Some(event) = event {
        q.push(" AND event = ").push_bind(event);
    }
    push_window(&mut q, since_ms, until_ms);
    q.push(format!(
        " GROUP BY {column} ORDER BY total DESC, \"key\" ASC LIMIT "
    ))
    .push_bind(SUMMARY_TOP);
    q.build_query_as::<Tally>().fetch_all(&mut *conn).await
}

/// `2026-11-22T10:00:00.123Z` for UTC milliseconds (out-of-range values print as the raw
/// number rather than failing the whole listing).
pub fn format_ms(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(at) => super::utc_millis(at),
        Err(_) => ms.to_string(),
    }
}

/// The stable JSON form of a row, field names documented in the README. `detail` is the
/// stored JSON parsed back (a string holding the raw text if it somehow does not parse).
pub fn row_json(row: &StoredRow) -> Value {
    let detail = serde_json::from_str::<Value>(&row.detail)
        .unwrap_or_else(|_| Value::String(row.detail.clone()));
    json!({
        "id": row.id,
        "time": format_ms(row.ts_ms),
        "last_time": format_ms(row.last_ts_ms),
        "count": row.count,
        "event": row.event,
        "outcome": row.outcome,
        "username": row.username,
        "client_ip": row.client_ip,
        "peer_ip": row.peer_ip,
        "user_agent": row.user_agent,
        "request_id": row.request_id,
        "verifier": row.verifier,
        "reason": row.reason,
        "detail": detail,
        "open": row.open,
    })
}

/// Field names of [`row_json`], in order; also the CSV header.
pub const ROW_FIELDS: [&str; 15] = [
    "id",
    "time",
    "last_time",
    "count",
    "event",
    "outcome",
    "username",
    "client_ip",
    "peer_ip",
    "user_agent",
    "request_id",
    "verifier",
    "reason",
    "detail",
    "open",
];

fn tally_json(t: &Tally) -> Value {
    json!({
        "key": t.key,
        "total": t.total,
        "rows": t.rows,
        "last_time": format_ms(t.last_ms),
    })
}

/// The JSON form of a [`Summary`].
pub fn summary_json(s: &Summary) -> Value {
    json!({
        "since": s.since_ms.map(format_ms),
        "until": s.until_ms.map(format_ms),
        "failures_total": s.failures_total,
        "top_failing_ips": s.top_failing_ips.iter().map(tally_json).collect::<Vec<_>>(),
        "top_failing_users": s.top_failing_users.iter().map(tally_json).collect::<Vec<_>>(),
        "password_changes": s.password_changes.iter().map(|p| json!({
            "id": p.id,
            "time": format_ms(p.ts_ms),
            "username": p.username,
            "client_ip": p.client_ip,
        })).collect::<Vec<_>>(),
        "lockouts": s.lockouts.iter().map(|l| json!({
            "id": l.id,
            "time": format_ms(l.ts_ms),
            "last_time": format_ms(l.last_ts_ms),
            "count": l.count,
            "username": l.username,
            "client_ip": l.client_ip,
            "reason": l.reason,
        })).collect::<Vec<_>>(),
        "rate_limited_total": s.rate_limited_total,
        "top_rate_limited_ips": s.top_rate_limited_ips.iter().map(tally_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_ms_and_canonical_ip() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_341_600_123), "2026-11-22T10:00:00.123Z");
        assert_eq!(canonical_ip_text("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(canonical_ip_text("not an ip"), "not an ip");
    }
}
