//! How busy the attackers are: failures and refusals counted per time bucket, for the
//! admin page's charts (`crate::views::charts` draws them).
//!
//! Read from the view `audit_all` (migration 0004), so rows still being counted this minute
//! (`audit_open`) show up while an attack is going on, not when its minute closes.
//!
//! A row is bucketed by its *first* occurrence (`ts_ms`) and weighs its `count`. The writer
//! coalesces within one UTC minute, so per-minute buckets are exact and per-hour buckets are
//! too. Only `ts_ms` is constrained, so sqlite walks the `audit_events_by_time` index.
//!
//! The top addresses and usernames come from [`super::query::summary`]; this module does not
//! count them a second time.

use sqlx::sqlite::Sqlite;
use sqlx::{Connection, QueryBuilder, SqliteConnection, SqlitePool};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
/// Buckets of the "last hour" chart.
pub const LAST_HOUR_MINUTES: usize = 60;
/// At most this many hourly buckets (31 days); a longer period shows its newest part.
pub const MAX_HOURS: usize = 744;

/// A sign-in attempt that was answered and failed: a wrong password or a wrong code.
pub const FAILURE_EVENTS: [&str; 2] = ["login_failed", "totp_failed"];
/// An attempt turned away before any check: the rate limit or a locked username.
pub const REFUSAL_EVENTS: [&str; 2] = ["rate_limited", "user_locked_out"];

/// Which buckets to count: `len` buckets of `step_ms`, the first starting at `start_ms`
/// (aligned to UTC minutes or hours). Rows outside `from_ms..to_ms` are not counted, so the
/// first and last bucket may cover only part of their interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub start_ms: i64,
    pub step_ms: i64,
    pub len: usize,
    pub from_ms: i64,
    pub to_ms: i64,
    /// The requested period needed more than [`MAX_HOURS`] buckets; only its newest part is
    /// counted.
    pub capped: bool,
}

impl Plan {
    /// The last `minutes` whole UTC minutes, the current (still running) one included.
    pub fn last_minutes(now_ms: i64, minutes: usize) -> Plan {
        let end = floor_to(now_ms, MINUTE_MS) + MINUTE_MS;
        let len = minutes;
        let start = end - MINUTE_MS * to_i64(len);
        Plan {
            start_ms: start,
            step_ms: MINUTE_MS,
            len,
            from_ms: start,
            to_ms: end,
            capped: false,
        }
    }

    /// UTC hours covering `since_ms..until_ms` (until exclusive), at most `max` of them:
    /// beyond that, the newest `max` hours.
    pub fn hours(since_ms: i64, until_ms: i64, max: usize) -> Plan {
        let end = ceil_to(until_ms, HOUR_MS);
        let mut start = floor_to(since_ms, HOUR_MS).min(end);
        let mut from = since_ms;
        let wanted = usize::try_from((end - start) / HOUR_MS).unwrap_or(usize::MAX);
        let capped = wanted > max;
        if capped {
            start = end - HOUR_MS * to_i64(max);
            from = start;
        }
        Plan {
            start_ms: start,
            step_ms: HOUR_MS,
            len: wanted.min(max),
            from_ms: from,
            to_ms: until_ms.max(from),
            capped,
        }
    }

    /// The bucket `ts_ms` falls in, if any.
    pub fn index(&self, ts_ms: i64) -> Option<usize> {
        if ts_ms < self.from_ms || ts_ms >= self.to_ms || ts_ms < self.start_ms {
            return None;
        }
        let i = usize::try_from((ts_ms - self.start_ms) / self.step_ms).ok()?;
        (i < self.len).then_some(i)
    }

    pub fn bucket_start(&self, i: usize) -> i64 {
        self.start_ms + self.step_ms * to_i64(i)
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn floor_to(ms: i64, step: i64) -> i64 {
    ms.div_euclid(step) * step
}

fn ceil_to(ms: i64, step: i64) -> i64 {
    let floor = floor_to(ms, step);
    if floor == ms {
        ms
    } else {
        floor + step
    }
}

/// One bucket's sums of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bucket {
    pub start_ms: i64,
    pub failures: i64,
    pub refusals: i64,
}

impl Bucket {
    pub fn total(&self) -> i64 {
        self.failures.saturating_add(self.refusals)
    }
}

/// Every bucket of a [`Plan`], empty ones as zeros, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub plan: Plan,
    pub buckets: Vec<Bucket>,
}

impl Series {
    pub fn failures(&self) -> i64 {
        self.buckets.iter().map(|b| b.failures).sum()
    }

    pub fn refusals(&self) -> i64 {
        self.buckets.iter().map(|b| b.refusals).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.total() == 0)
    }
}

/// Both time series of the admin page, read in one transaction so they agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub last_hour: Series,
    pub period: Series,
}

/// The last hour (per minute, ending with the minute of `now_ms`) and the period
/// `since_ms..until_ms` (per hour, at most [`MAX_HOURS`]).
pub async fn read(
    pool: &SqlitePool,
    now_ms: i64,
    since_ms: i64,
    until_ms: i64,
) -> Result<Activity, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let last_hour = series(&mut tx, Plan::last_minutes(now_ms, LAST_HOUR_MINUTES)).await?;
    let period = series(&mut tx, Plan::hours(since_ms, until_ms, MAX_HOURS)).await?;
    tx.rollback().await?;
    Ok(Activity { last_hour, period })
}

#[derive(sqlx::FromRow)]
struct Sum {
    bucket: i64,
    refusal: bool,
    total: i64,
}

/// Counts the failures and refusals of `plan`'s buckets.
pub async fn series(conn: &mut SqliteConnection, plan: Plan) -> Result<Series, sqlx::Error> {
    let mut buckets: Vec<Bucket> = (0..plan.len)
        .map(|i| Bucket {
            start_ms: plan.bucket_start(i),
            ..Bucket::default()
        })
        .collect();
    if plan.len == 0 || plan.from_ms >= plan.to_ms {
        return Ok(Series { plan, buckets });
    }
    let mut q = sums_query("", &plan);
    let sums = q.build_query_as::<Sum>().fetch_all(&mut *conn).await?;
    for sum in sums {
        let Some(bucket) = usize::try_from(sum.bucket)
            .ok()
            .and_then(|i| buckets.get_mut(i))
        else {
            continue;
        };
        if sum.refusal {
            bucket.refusals = bucket.refusals.saturating_add(sum.total);
        } else {
            bucket.failures = bucket.failures.saturating_add(sum.total);
        }
    }
    Ok(Series { plan, buckets })
}

/// The query of [`series`]; `prefix` is for `EXPLAIN QUERY PLAN` in the tests.
fn sums_query(prefix: &str, plan: &Plan) -> QueryBuilder<Sqlite> {
    let mut q = QueryBuilder::<Sqlite>::new(prefix);
    q.push("SELECT (ts_ms - ")
        .push_bind(plan.start_ms)
        .push(") / ")
        .push_bind(plan.step_ms)
        .push(" AS bucket, event IN (");
    push_list(&mut q, &REFUSAL_EVENTS);
    q.push(") AS refusal, SUM(count) AS total FROM audit_all WHERE outcome = 'failure'");
    q.push(" AND event IN (");
    push_list(&mut q, &FAILURE_EVENTS);
    q.push(", ");
    push_list(&mut q, &REFUSAL_EVENTS);
    q.push(") AND ts_ms >= ")
        .push_bind(plan.from_ms.max(plan.start_ms))
        .push(" AND ts_ms < ")
        .push_bind(plan.to_ms)
        .push(" GROUP BY bucket, refusal");
    q
}

fn push_list(q: &mut QueryBuilder<Sqlite>, items: &[&'static str]) {
    let mut list = q.separated(", ");
    for item in items {
        list.push_bind(*item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_341_600_000; // 2026-11-22T10:00:00Z, a whole hour

    #[test]
    fn the_last_hour_ends_with_the_running_minute() {
        let plan = Plan::last_minutes(T0 + 42 * MINUTE_MS + 17_500, 60);
        assert_eq!(plan.len, 60);
        assert_eq!(plan.to_ms, T0 + 43 * MINUTE_MS);
        assert_eq!(plan.start_ms, T0 - 17 * MINUTE_MS);
        assert_eq!(plan.index(T0 + 42 * MINUTE_MS + 59_999), Some(59));
        assert_eq!(plan.index(T0 - 17 * MINUTE_MS), Some(0));
        assert_eq!(plan.index(T0 - 17 * MINUTE_MS - 1), None);
        assert_eq!(plan.index(T0 + 43 * MINUTE_MS), None);
    }

    #[test]
    fn hours_are_aligned_and_clipped_to_the_period() {
        // 24 h from 10:30: 25 aligned hours, the first and last only half counted.
        let plan = Plan::hours(T0 + 30 * MINUTE_MS, T0 + 24 * HOUR_MS + 30 * MINUTE_MS, 744);
        assert_eq!((plan.start_ms, plan.len, plan.capped), (T0, 25, false));
        assert_eq!(plan.index(T0 + 29 * MINUTE_MS), None, "before since");
        assert_eq!(plan.index(T0 + 30 * MINUTE_MS), Some(0));
        assert_eq!(plan.index(T0 + 24 * HOUR_MS + 29 * MINUTE_MS), Some(24));
        assert_eq!(
            plan.index(T0 + 24 * HOUR_MS + 30 * MINUTE_MS),
            None,
            "until is exclusive"
        );
        // Whole hours: exactly that many buckets.
        let plan = Plan::hours(T0, T0 + 3 * HOUR_MS, 744);
        assert_eq!(plan.len, 3);
        // An empty or inverted period has no buckets.
        assert_eq!(Plan::hours(T0, T0, 744).len, 0);
        assert_eq!(Plan::hours(T0 + HOUR_MS, T0, 744).len, 0);
    }

    #[test]
    fn a_long_period_keeps_its_newest_hours() {
        let plan = Plan::hours(T0 - 365 * 24 * HOUR_MS, T0 + 1, 744);
        assert!(plan.capped);
        assert_eq!(plan.len, 744);
        assert_eq!(plan.start_ms, T0 + HOUR_MS - 744 * HOUR_MS);
        assert_eq!(plan.from_ms, plan.start_ms);
        assert_eq!(plan.index(T0), Some(743));
        assert_eq!(plan.index(plan.start_ms - 1), None);
    }

    async fn pool() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = crate::db::open(&dir.path().join("t.db")).await.expect("db");
        (dir, pool)
    }

    /// Rows straight into the tables: the chain is not what is being tested here.
    async fn insert(
        pool: &SqlitePool,
        table: &str,
        ts_ms: i64,
        count: i64,
        event: &str,
        outcome: &str,
    ) {
        let sql = if table == "audit_open" {
            "INSERT INTO audit_open (writer, slot, updated_ms, ts_ms, last_ts_ms, count, event, \
             outcome, detail) VALUES ('w', (SELECT COUNT(*) FROM audit_open), ?1, ?1, ?1, ?2, ?3, ?4, '{}')"
        } else {
            "INSERT INTO audit_events (ts_ms, last_ts_ms, count, event, outcome, detail, \
             prev_hash, hash) VALUES (?1, ?1, ?2, ?3, ?4, '{}', '', '')"
        };
        sqlx::query(sql)
            .bind(ts_ms)
            .bind(count)
            .bind(event)
            .bind(outcome)
            .execute(pool)
            .await
            .expect("insert");
    }

    #[tokio::test]
    async fn sums_counts_per_bucket_from_chained_and_open_rows() {
        let (_dir, pool) = pool().await;
        let now = T0 + 30 * MINUTE_MS + 5_000;
        for (table, ts_ms, count, event, outcome) in [
            (
                "audit_events",
                T0 + 29 * MINUTE_MS,
                7,
                "login_failed",
                "failure",
            ),
            (
                "audit_events",
                T0 + 29 * MINUTE_MS + 100,
                2,
                "totp_failed",
                "failure",
            ),
            (
                "audit_events",
                T0 + 29 * MINUTE_MS,
                40,
                "rate_limited",
                "failure",
            ),
            (
                "audit_open",
                T0 + 30 * MINUTE_MS,
                5,
                "login_failed",
                "failure",
            ),
            (
                "audit_open",
                T0 + 30 * MINUTE_MS,
                1,
                "user_locked_out",
                "failure",
            ),
            // Not counted: a backend error, a success, another event, outside both windows.
            (
                "audit_events",
                T0 + 29 * MINUTE_MS,
                1,
                "login_failed",
                "error",
            ),
            (
                "audit_events",
                T0 + 29 * MINUTE_MS,
                1,
                "login_succeeded",
                "success",
            ),
            (
                "audit_events",
                T0 + 29 * MINUTE_MS,
                1,
                "password_change_failed",
                "failure",
            ),
            (
                "audit_events",
                T0 - 2 * HOUR_MS,
                3,
                "login_failed",
                "failure",
            ),
        ] {
            insert(&pool, table, ts_ms, count, event, outcome).await;
        }

        let a = read(&pool, now, T0 - HOUR_MS, now).await.expect("read");
        let minutes = &a.last_hour.buckets;
        assert_eq!(minutes.len(), 60);
        assert_eq!(minutes[59].start_ms, T0 + 30 * MINUTE_MS);
        assert_eq!((minutes[58].failures, minutes[58].refusals), (9, 40));
        assert_eq!(
            (minutes[59].failures, minutes[59].refusals),
            (5, 1),
            "open rows count"
        );
        assert_eq!(a.last_hour.failures(), 14);
        assert_eq!(a.last_hour.refusals(), 41);
        let hours = &a.period.buckets;
        assert_eq!(hours.len(), 2);
        assert_eq!((hours[0].failures, hours[0].refusals), (0, 0));
        assert_eq!((hours[1].failures, hours[1].refusals), (14, 41));

        let wide = read(&pool, now, T0 - 3 * HOUR_MS, now).await.expect("read");
        assert_eq!(wide.period.failures(), 17);
        assert_eq!(wide.period.buckets[1].failures, 3);
    }

    #[tokio::test]
    async fn an_empty_store_gives_zeros_everywhere() {
        let (_dir, pool) = pool().await;
        let a = read(&pool, T0, T0 - 24 * HOUR_MS, T0).await.expect("read");
        assert_eq!(a.last_hour.buckets.len(), 60);
        assert_eq!(a.period.buckets.len(), 24);
        assert!(a.last_hour.is_empty() && a.period.is_empty());
    }

    #[tokio::test]
    async fn the_time_index_is_used() {
        let (_dir, pool) = pool().await;
        let plan = Plan::hours(T0 - 24 * HOUR_MS, T0, MAX_HOURS);
        let rows: Vec<(i64, i64, i64, String)> = sums_query("EXPLAIN QUERY PLAN ", &plan)
            .build_query_as()
            .fetch_all(&pool)
            .await
            .expect("plan");
        let steps: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
        assert!(
            steps
                .iter()
                .any(|d| d.starts_with("SEARCH audit_events USING INDEX") && d.contains("ts_ms>?")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|d| d.starts_with("SCAN audit_events")),
            "{steps:?}"
        );
    }
}
