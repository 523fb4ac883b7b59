//! The audit store and its hash chain against a real sqlite file: durability of
//! `submit_durable`, the coalescing row bound under a flood, `verify` catching each kind of
//! tampering done through a separate connection, pruning with a signed anchor, shutdown
//! draining the queue, and failure rows reaching `audit_open` by group commit before their
//! minute closes (and being chained by the next server after a crash).

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use passgate::audit::chain::{self, prune, verify, Tamper};
use passgate::audit::store::{
    AuditStore, NewRow, StoreError, StoreOptions, GROUP_COMMIT, MAX_KEYS_PER_MINUTE,
};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection, SqlitePool};
use support::clock::now_ms;

const KEY: [u8; 32] = [42u8; 32];

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    pool: SqlitePool,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passgate.db");
    let pool = passgate::db::open(&path).await.expect("open db");
    Db {
        _dir: dir,
        path,
        pool,
    }
}

/// A connection of its own, as an attacker editing the file would have.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

async fn exec(path: &Path, sql: &'static str) {
    let mut conn = raw(path).await;
    sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
}

fn row(event: &str, outcome: &str, user: &str, ip: &str) -> NewRow {
    let mut r = NewRow::new(event, outcome);
    r.username = Some(user.to_string());
    r.client_ip = Some(ip.to_string());
    r.request_id = Some(format!("req-{user}"));
    r.detail = serde_json::json!({ "who": user });
    r
}

/// Writes `n` distinct success rows (ids 1..=n) and returns the pool's store, stopped.
async fn seeded(n: usize) -> Db {
    let db = db().await;
    let store = AuditStore::start(
        db.pool.clone(),
        KEY,
        StoreOptions {
            queue: 1024,
            coalesce: false,
            ..StoreOptions::default()
        },
    );
    let base = now_ms() - 1000 * n as i64;
    for i in 0..n {
        // One second apart, so a prune cutoff can fall between any two rows.
        let mut r = row(
            "login_succeeded",
            "success",
            &format!("user{i}"),
            "192.0.2.1",
        );
        r.ts_ms = base + 1000 * i as i64;
        assert!(store.submit(r));
    }
    store.shutdown().await.expect("shutdown");
    let report = verify(&db.pool, &KEY).await.expect("verify");
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.rows_checked, n as u64);
    db
}

async fn problem(db: &Db) -> Tamper {
    let report = verify(&db.pool, &KEY).await.expect("verify runs");
    let p = report.problem.clone().expect("tampering detected");
    // Every report names what happened in words an admin can act on.
    assert!(report.to_string().contains("BROKEN"), "{report}");
    p
}

async fn scalar(pool: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

#[tokio::test]
async fn durable_rows_are_on_disk_when_submit_durable_returns() {
    let db = db().await;
    let store = AuditStore::start(db.pool.clone(), KEY, StoreOptions::default());
    let mut r = row("password_changed", "success", "alice", "198.51.100.7");
    r.verifier = Some("truenas".into());
    store.submit_durable(r).await.expect("durable");
    // Read through a connection of its own: the row is committed, not just queued.
    let mut conn = raw(&db.path).await;
    let (user, count, detail): (String, i64, String) = sqlx::query_as(
        "SELECT username, count, detail FROM audit_events WHERE event = 'password_changed'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("row present");
    assert_eq!((user.as_str(), count), ("alice", 1));
    assert_eq!(detail, r#"{"who":"alice"}"#);
    // A durable failure row is written at once too, never held for coalescing.
    store
        .submit_durable(row("login_failed", "failure", "bob", "198.51.100.8"))
        .await
        .expect("durable failure");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(n, 2);
    // Invalid rows are refused before they could poison a batch.
    assert!(matches!(
        store.submit_durable(NewRow::new("x", "maybe")).await,
        Err(StoreError::InvalidRow(_))
    ));
    assert!(!store.submit(NewRow::new("", "success")));
    assert_eq!(store.stats().rejected, 2);
    store.shutdown().await.expect("shutdown");
    assert!(verify(&db.pool, &KEY).await.expect("verify").is_intact());
}

#[tokio::test]
async fn a_flood_of_failures_stays_under_the_row_bound() {
    let db = db().await;
    let store = AuditStore::start(
        db.pool.clone(),
        KEY,
        StoreOptions {
            queue: 16_384,
            coalesce: true,
            ..StoreOptions::default()
        },
    );
    let start_minute = now_ms() / 60_000;
    for i in 0..10_000u32 {
        let j = i % 5000;
        let ip = format!("10.0.{}.{}", j / 256, j % 256);
        let mut r = row("login_failed", "failure", "admin", &ip);
        r.reason = Some("wrong_password".into());
        assert!(store.submit(r), "queue full at {i}");
    }
    // Two failure kinds, to check the overflow row is per event.
    for i in 0..50u32 {
        assert!(store.submit(row(
            "rate_limited",
            "failure",
            "admin",
            &format!("10.9.0.{i}")
        )));
    }
    store.flush().await.expect("flush");
    let minutes = now_ms() / 60_000 - start_minute + 1;

    let rows = scalar(&db.pool, "SELECT COUNT(*) FROM audit_events").await;
    let total = scalar(&db.pool, "SELECT SUM(count) FROM audit_events").await;
    // The stated bound: MAX_KEYS_PER_MINUTE + one overflow row per failure event kind, per
    // minute (the flood may straddle a minute boundary).
    let bound = (MAX_KEYS_PER_MINUTE as i64 + 2) * minutes;
    assert!(rows <= bound, "{rows} rows > bound {bound}");
    assert_eq!(total, 10_050);
    let failed_total = scalar(
        &db.pool,
        "SELECT SUM(count) FROM audit_events WHERE event = 'login_failed'",
    )
    .await;
    assert_eq!(failed_total, 10_000);
    if minutes == 1 {
        // 5,000 addresses, each twice: 1,000 keyed rows (count 2) plus one overflow row.
        let overflow: (i64, String) = sqlx::query_as(
            "SELECT count, detail FROM audit_events WHERE client_ip IS NULL AND event = 'login_failed'",
        )
        .fetch_one(&db.pool)
        .await
        .expect("one overflow row");
        assert_eq!(overflow.0, 10_000 - 2 * MAX_KEYS_PER_MINUTE as i64);
        let detail: serde_json::Value = serde_json::from_str(&overflow.1).expect("json");
        assert_eq!(detail["distinct_keys_dropped"], 5000 - MAX_KEYS_PER_MINUTE);
        let keyed_max = scalar(
            &db.pool,
            "SELECT MAX(count) FROM audit_events WHERE client_ip IS NOT NULL AND event = 'login_failed'",
        )
        .await;
        assert_eq!(keyed_max, 2);
        assert!(rows <= MAX_KEYS_PER_MINUTE as i64 + 2);
    }
    assert_eq!(store.stats().dropped, 0);
    store.shutdown().await.expect("shutdown");
    assert!(verify(&db.pool, &KEY).await.expect("verify").is_intact());
}

#[tokio::test]
async fn verify_names_an_edited_row() {
    let db = seeded(10).await;
    exec(
        &db.path,
        "UPDATE audit_events SET username = 'mallory' WHERE id = 5",
    )
    .await;
    assert_eq!(problem(&db).await, Tamper::Edited { id: 5 });
}

#[tokio::test]
async fn verify_names_a_deleted_row() {
    let db = seeded(10).await;
    exec(&db.path, "DELETE FROM audit_events WHERE id = 5").await;
    assert_eq!(
        problem(&db).await,
        Tamper::Deleted {
            id: 6,
            previous_id: 4,
            missing_from: 5,
            missing_to: 5
        }
    );
}

#[tokio::test]
async fn verify_names_reordered_rows() {
    let db = seeded(10).await;
    // Swap the whole content (hashes included) of rows 4 and 5, keeping the ids.
    exec(
        &db.path,
        "CREATE TEMP TABLE swap AS SELECT * FROM audit_events WHERE id IN (4, 5);
         UPDATE audit_events SET (ts_ms, last_ts_ms, count, event, outcome, username, client_ip,
             peer_ip, user_agent, request_id, verifier, reason, detail, prev_hash, hash) =
           (SELECT ts_ms, last_ts_ms, count, event, outcome, username, client_ip, peer_ip,
             user_agent, request_id, verifier, reason, detail, prev_hash, hash
            FROM swap WHERE swap.id = 9 - audit_events.id)
         WHERE id IN (4, 5);",
    )
    .await;
    let p = problem(&db).await;
    assert_eq!(
        p,
        Tamper::Reordered {
            id: 4,
            previous_id: 3
        }
    );
    assert!(p.to_string().contains("row 4"));
}

#[tokio::test]
async fn verify_detects_a_truncated_end() {
    let db = seeded(10).await;
    exec(&db.path, "DELETE FROM audit_events WHERE id >= 8").await;
    let p = problem(&db).await;
    assert_eq!(
        p,
        Tamper::HeadTruncated {
            first_missing: 8,
            head_last_id: 10
        }
    );
    assert_eq!(p.row_id(), Some(8));
}

#[tokio::test]
async fn verify_detects_a_head_forged_without_the_key() {
    let db = seeded(10).await;
    exec(&db.path, "DELETE FROM audit_events WHERE id >= 8").await;
    let mut conn = raw(&db.path).await;
    let hash: String = sqlx::query_scalar("SELECT hash FROM audit_events WHERE id = 7")
        .fetch_one(&mut conn)
        .await
        .expect("row 7");
    // The attacker knows the format but not the key.
    let mac = chain::head_mac(&[0u8; 32], 7, &hash, 7);
    sqlx::query("UPDATE audit_head SET last_id = 7, last_hash = ?1, row_count = 7, mac = ?2")
        .bind(&hash)
        .bind(&mac)
        .execute(&mut conn)
        .await
        .expect("forge");
    assert_eq!(problem(&db).await, Tamper::HeadForged);

    exec(&db.path, "DELETE FROM audit_head").await;
    assert_eq!(problem(&db).await, Tamper::HeadMissing);
}

#[tokio::test]
async fn verify_detects_rows_appended_without_the_key() {
    let db = seeded(3).await;
    let mut conn = raw(&db.path).await;
    let prev: String = sqlx::query_scalar("SELECT hash FROM audit_events WHERE id = 3")
        .fetch_one(&mut conn)
        .await
        .expect("row 3");
    let content = chain::RowContent {
        ts_ms: 1,
        last_ts_ms: 1,
        count: 1,
        event: "password_changed",
        outcome: "success",
        username: Some("root"),
        client_ip: None,
        peer_ip: None,
        user_agent: None,
        request_id: None,
        verifier: None,
        reason: None,
        detail: "null",
    };
    let hash = chain::row_hash(&chain::decode_hash(&prev).expect("hex"), &content);
    sqlx::query(
        "INSERT INTO audit_events (id, ts_ms, last_ts_ms, count, event, outcome, username, detail, prev_hash, hash)
         VALUES (4, 1, 1, 1, 'password_changed', 'success', 'root', 'null', ?1, ?2)",
    )
    .bind(&prev)
    .bind(hex::encode(hash))
    .execute(&mut conn)
    .await
    .expect("append");
    assert_eq!(problem(&db).await, Tamper::BeyondHead { id: 4 });
}

#[tokio::test]
async fn the_writer_does_not_re_sign_a_tampered_head() {
    let db = seeded(5).await;
    exec(
        &db.path,
        "DELETE FROM audit_events WHERE id = 5; DELETE FROM audit_head",
    )
    .await;
    let store = AuditStore::start(db.pool.clone(), KEY, StoreOptions::default());
    store
        .submit_durable(row("logout", "success", "carol", "192.0.2.9"))
        .await
        .expect("still writes");
    store.shutdown().await.expect("shutdown");
    // The new row is chained, but the head stays unsigned, so the deletion is not hidden.
    assert_eq!(problem(&db).await, Tamper::HeadForged);
}

#[tokio::test]
async fn prune_keeps_the_chain_verifiable_and_anchors_are_signed() {
    let db = db().await;
    let store = AuditStore::start(
        db.pool.clone(),
        KEY,
        StoreOptions {
            queue: 256,
            coalesce: false,
            ..StoreOptions::default()
        },
    );
    let now = now_ms();
    for i in 0..6 {
        let mut r = row(
            "login_succeeded",
            "success",
            &format!("old{i}"),
            "192.0.2.1",
        );
        r.ts_ms = now - 100 * 86_400_000 + i;
        assert!(store.submit(r));
    }
    for i in 0..4 {
        assert!(store.submit(row(
            "login_succeeded",
            "success",
            &format!("new{i}"),
            "192.0.2.1"
        )));
    }
    store.flush().await.expect("flush");

    let cutoff = now - 30 * 86_400_000;
    let pruned = prune(&db.pool, &KEY, cutoff).await.expect("prune");
    assert_eq!(pruned.pruned_rows, 6);
    assert_eq!(pruned.last_pruned_id, Some(6));
    let report = verify(&db.pool, &KEY).await.expect("verify");
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.first_id, report.rows_checked), (Some(7), 4));
    assert_eq!(report.anchor_id, pruned.anchor_id);

    // Appending after a prune, and pruning again with nothing old, both keep it intact.
    store
        .submit_durable(row("logout", "success", "new0", "192.0.2.1"))
        .await
        .expect("durable");
    let again = prune(&db.pool, &KEY, cutoff).await.expect("prune again");
    assert_eq!(again.pruned_rows, 0);
    // Pruning everything leaves only the anchor, which must still match the head.
    let all = prune(&db.pool, &KEY, now_ms() + 60_000)
        .await
        .expect("prune all");
    assert_eq!(all.pruned_rows, 5);
    let report = verify(&db.pool, &KEY).await.expect("verify");
    assert!(report.is_intact(), "{report}");
    store
        .submit_durable(row("logout", "success", "new1", "192.0.2.1"))
        .await
        .expect("durable after full prune");
    store.shutdown().await.expect("shutdown");
    let report = verify(&db.pool, &KEY).await.expect("verify");
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.first_id, Some(12));

    // An edited anchor no longer verifies.
    exec(&db.path, "UPDATE audit_anchors SET pruned_rows = pruned_rows + 1 WHERE id = (SELECT MAX(id) FROM audit_anchors)").await;
    assert!(matches!(problem(&db).await, Tamper::AnchorForged { .. }));
}

#[tokio::test]
async fn a_deleted_anchor_shows_as_deleted_rows_and_prune_refuses_a_broken_chain() {
    let db = seeded(8).await;
    // Back-dating rows to get them pruned sooner is tampering, and prune refuses to sign an
    // anchor over it (that would launder the edit).
    let cutoff: i64 = scalar(
        &db.pool,
        "SELECT last_ts_ms + 1 FROM audit_events WHERE id = 4",
    )
    .await;
    exec(
        &db.path,
        "UPDATE audit_events SET ts_ms = 0, last_ts_ms = 0 WHERE id <= 4",
    )
    .await;
    assert!(matches!(
        prune(&db.pool, &KEY, cutoff).await,
        Err(StoreError::Tampered { .. })
    ));

    let db = seeded(8).await;
    let cutoff = now_ms() + 60_000;
    exec(&db.path, "DELETE FROM audit_events WHERE id = 8").await;
    assert!(matches!(
        prune(&db.pool, &KEY, cutoff).await,
        Err(StoreError::Tampered { .. })
    ));

    let db = seeded(8).await;
    // Prune the first rows by cutting just after row 3's time.
    let cutoff = scalar(
        &db.pool,
        "SELECT last_ts_ms + 1 FROM audit_events WHERE id = 3",
    )
    .await;
    let pruned = prune(&db.pool, &KEY, cutoff).await.expect("prune");
    assert_eq!(pruned.last_pruned_id, Some(3));
    assert!(verify(&db.pool, &KEY).await.expect("verify").is_intact());
    exec(&db.path, "DELETE FROM audit_anchors").await;
    assert!(matches!(
        problem(&db).await,
        Tamper::Deleted {
            missing_from: 1,
            ..
        }
    ));
}

#[tokio::test]
async fn shutdown_drains_the_queue_and_the_coalescing_buffer() {
    let db = db().await;
    let store = AuditStore::start(
        db.pool.clone(),
        KEY,
        StoreOptions {
            queue: 4096,
            coalesce: true,
            ..StoreOptions::default()
        },
    );
    let other = store.clone();
    for i in 0..500 {
        assert!(store.submit(row(
            "session_revoked",
            "success",
            &format!("u{i}"),
            "192.0.2.1"
        )));
    }
    for _ in 0..300 {
        assert!(store.submit(row("login_failed", "failure", "bob", "203.0.113.5")));
    }
    store.shutdown().await.expect("shutdown");
    assert_eq!(
        scalar(
            &db.pool,
            "SELECT COUNT(*) FROM audit_events WHERE event = 'session_revoked'"
        )
        .await,
        500
    );
    assert_eq!(
        scalar(
            &db.pool,
            "SELECT SUM(count) FROM audit_events WHERE event = 'login_failed'"
        )
        .await,
        300
    );
    assert!(
        scalar(
            &db.pool,
            "SELECT COUNT(*) FROM audit_events WHERE event = 'login_failed'"
        )
        .await
            <= 2
    );
    // The writer is gone: other handles are refused, not silently buffered.
    assert!(!other.submit(row("logout", "success", "x", "192.0.2.1")));
    assert!(matches!(other.flush().await, Err(StoreError::Closed)));
    assert!(verify(&db.pool, &KEY).await.expect("verify").is_intact());
}

/// Polls `sql` (one number) on a connection of its own until it equals `want`, for at most
/// `within`; returns how long it took.
async fn until_equals(path: &Path, sql: &'static str, want: i64, within: Duration) -> Duration {
    let start = Instant::now();
    let mut conn = raw(path).await;
    loop {
        let got: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect(sql);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{sql} = {got}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Seconds left in the current UTC minute.
fn ms_left_in_minute() -> i64 {
    60_000 - now_ms() % 60_000
}

#[tokio::test]
async fn a_failure_is_on_disk_by_group_commit_long_before_its_minute_closes() {
    // The row must appear without the minute closing; give the test room to run inside one.
    while ms_left_in_minute() < 10_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = db().await;
    let store = AuditStore::start(db.pool.clone(), KEY, StoreOptions::default());
    assert!(store.submit(row("login_failed", "failure", "bob", "203.0.113.5")));
    let took = until_equals(
        &db.path,
        "SELECT COALESCE(SUM(count), 0) FROM audit_all WHERE event = 'login_failed'",
        1,
        Duration::from_secs(5),
    )
    .await;
    // The bound the README states is 250 ms; a busy machine gets the rest of a second here,
    // the benchmark-free check is that it did not wait for the minute.
    assert!(took < Duration::from_secs(1), "first failure took {took:?}");
    assert!(
        took >= GROUP_COMMIT / 2,
        "written before the group commit window: {took:?}"
    );
    // More of the same key raise the count of the one open row, in place.
    for _ in 0..9 {
        assert!(store.submit(row("login_failed", "failure", "bob", "203.0.113.5")));
    }
    until_equals(
        &db.path,
        "SELECT count FROM audit_open WHERE event = 'login_failed'",
        10,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(scalar(&db.pool, "SELECT COUNT(*) FROM audit_open").await, 1);
    assert_eq!(
        scalar(&db.pool, "SELECT COUNT(*) FROM audit_events").await,
        0
    );
    // The open row is not in the chain yet; flushing seals it there and empties audit_open.
    store.flush().await.expect("flush");
    assert_eq!(scalar(&db.pool, "SELECT COUNT(*) FROM audit_open").await, 0);
    assert_eq!(
        scalar(&db.pool, "SELECT SUM(count) FROM audit_events").await,
        10
    );
    let listed = passgate::audit::query::list(&db.pool, &Default::default())
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].open);
    store.shutdown().await.expect("shutdown");
    assert!(verify(&db.pool, &KEY).await.expect("verify").is_intact());
}

#[tokio::test]
async fn open_rows_are_listed_first_and_only_on_the_first_page() {
    while ms_left_in_minute() < 10_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = db().await;
    let store = AuditStore::start(db.pool.clone(), KEY, StoreOptions::default());
    for i in 0..3 {
        let r = row("login_succeeded", "success", &format!("ok{i}"), "192.0.2.1");
        store.submit_durable(r).await.expect("durable");
    }
    assert!(store.submit(row("login_failed", "failure", "mallory", "198.51.100.7")));
    until_equals(
        &db.path,
        "SELECT COUNT(*) FROM audit_open",
        1,
        Duration::from_secs(5),
    )
    .await;
    let first = passgate::audit::query::list(
        &db.pool,
        &passgate::audit::query::Filter {
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(first.len(), 2);
    assert!(first[0].open && first[0].id == 0);
    assert_eq!(first[0].username.as_deref(), Some("mallory"));
    assert!(!first[1].open);
    let next = passgate::audit::query::list(
        &db.pool,
        &passgate::audit::query::Filter {
            limit: 10,
            before_id: Some(passgate::audit::query::next_cursor(&first[1])),
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(
        next.len(),
        2,
        "the two older chain rows, and no open row again"
    );
    assert!(next.iter().all(|r| !r.open));
    // A page made only of open rows continues with the whole chain.
    assert_eq!(passgate::audit::query::next_cursor(&first[0]), i64::MAX);
    let summary = passgate::audit::query::summary(&db.pool, None, None)
        .await
        .expect("summary");
    assert_eq!(summary.failures_total, 1, "the summary counts open rows");
    store.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_server_chains_the_rows_a_killed_one_left_open_and_a_cli_does_not() {
    let db = db().await;
    // What a process killed mid-minute leaves behind: open rows of a writer that is gone.
    exec(
        &db.path,
        "INSERT INTO audit_open (writer, slot, updated_ms, ts_ms, last_ts_ms, count, event, \
         outcome, username, client_ip, detail) VALUES \
         ('dead', 1, 1700000000500, 1700000000000, 1700000000400, 7, 'login_failed', 'failure', \
          'bob', '203.0.113.5', '{}'), \
         ('dead', 2, 1700000000500, 1700000000100, 1700000000100, 1, 'rate_limited', 'failure', \
          NULL, '203.0.113.5', '{}')",
    )
    .await;
    // A CLI command's store leaves them alone: the server they belong to may be running.
    let cli = AuditStore::start(db.pool.clone(), KEY, StoreOptions::default());
    cli.submit_durable(row("totp_reset", "success", "admin", "192.0.2.1"))
        .await
        .expect("durable");
    cli.shutdown().await.expect("shutdown");
    assert_eq!(scalar(&db.pool, "SELECT COUNT(*) FROM audit_open").await, 2);
    // The next server chains them at start.
    let server = AuditStore::start(
        db.pool.clone(),
        KEY,
        StoreOptions {
            recover_open: true,
            ..StoreOptions::default()
        },
    );
    server.flush().await.expect("flush");
    assert_eq!(scalar(&db.pool, "SELECT COUNT(*) FROM audit_open").await, 0);
    assert_eq!(
        scalar(
            &db.pool,
            "SELECT SUM(count) FROM audit_events WHERE outcome = 'failure'"
        )
        .await,
        8
    );
    server.shutdown().await.expect("shutdown");
    let report = verify(&db.pool, &KEY).await.expect("verify");
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.rows_checked, 3);
}

fn key<'a>(user: &'a str, ip: &str) -> passgate::audit::store::FailureKey<'a> {
    passgate::audit::store::FailureKey {
        event: "rate_limited",
        outcome: "failure",
        client_ip: Some(ip.parse().expect("ip")),
        username: Some(user),
        reason: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_counted_on_the_request_side_lose_nothing_across_commits_and_flushes() {
    while ms_left_in_minute() < 15_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = db().await;
    let store = AuditStore::start(db.pool.clone(), KEY, StoreOptions::default());
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let submit = |store: &AuditStore| {
        store.submit_failure(key("mallory", "198.51.100.7"), || {
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            row("rate_limited", "failure", "mallory", "198.51.100.7")
        })
    };
    assert!(submit(&store));
    until_equals(
        &db.path,
        "SELECT COALESCE(SUM(count), 0) FROM audit_open",
        1,
        Duration::from_secs(5),
    )
    .await;
    // Repeats from four threads at once: counted, not sent, and committed by group commit
    // (the writer is woken by the first repeat).
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..2_500 {
                    assert!(submit(&store));
                }
            });
        }
    });
    until_equals(
        &db.path,
        "SELECT COALESCE(SUM(count), 0) FROM audit_open",
        10_001,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        sent.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "repeats build no row"
    );
    // A flush chains the row and seals its tally: the next repeat starts a new row.
    store.flush().await.expect("flush");
    for _ in 0..10 {
        assert!(submit(&store));
    }
    assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), 2);
    store.shutdown().await.expect("shutdown");
    assert_eq!(
        scalar(&db.pool, "SELECT SUM(count) FROM audit_events").await,
        10_011
    );
    assert_eq!(
        scalar(&db.pool, "SELECT COUNT(*) FROM audit_events").await,
        2
    );
    assert_eq!(scalar(&db.pool, "SELECT COUNT(*) FROM audit_open").await, 0);
    assert!(verify(&db.pool, &KEY).await.expect("verify").is_intact());
}

/// A flood from many addresses is mostly keys past the cap: those are counted on the
/// request side too, so the rows built are one per key up to the cap and one overflow row
/// per event, however many addresses there are.
#[tokio::test]
async fn keys_past_the_cap_are_counted_without_building_rows() {
    while ms_left_in_minute() < 10_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = db().await;
    let store = AuditStore::start(db.pool.clone(), KEY, StoreOptions::default());
    let built = std::cell::Cell::new(0);
    let failure = |event: &'static str, ip: &str| {
        let mut k = key("admin", ip);
        k.event = event;
        store.submit_failure(k, || {
            built.set(built.get() + 1);
            row(event, "failure", "admin", ip)
        })
    };
    for i in 0..3_000u32 {
        let ip = format!("10.1.{}.{}", i / 256, i % 256);
        assert!(failure("rate_limited", &ip));
        assert!(failure("rate_limited", &ip));
    }
    for i in 0..500u32 {
        assert!(failure(
            "login_failed",
            &format!("10.2.{}.{}", i / 256, i % 256)
        ));
    }
    assert_eq!(built.get(), MAX_KEYS_PER_MINUTE + 2);
    store.shutdown().await.expect("shutdown");
    assert_eq!(
        scalar(&db.pool, "SELECT SUM(count) FROM audit_events").await,
        6_500
    );
    let overflow: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT event, count, detail FROM audit_events WHERE client_ip IS NULL ORDER BY event",
    )
    .fetch_all(&db.pool)
    .await
    .expect("overflow rows");
    let found: Vec<(String, i64, serde_json::Value)> = overflow
        .into_iter()
        .map(|(e, c, d)| {
            (
                e,
                c,
                serde_json::from_str::<serde_json::Value>(&d).expect("json"),
            )
        })
        .map(|(e, c, d)| (e, c, d["distinct_keys_dropped"].clone()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("login_failed".to_string(), 500, serde_json::json!(500)),
            (
                "rate_limited".to_string(),
                2 * (3_000 - MAX_KEYS_PER_MINUTE as i64),
                serde_json::json!(3_000 - MAX_KEYS_PER_MINUTE)
            ),
        ]
    );
    assert!(verify(&db.pool, &KEY).await.expect("verify").is_intact());
}

#[tokio::test]
async fn distinct_keys_past_the_cap_still_reach_the_overflow_row() {
    let db = db().await;
    let store = AuditStore::start(
        db.pool.clone(),
        KEY,
        StoreOptions {
            queue: 16_384,
            ..StoreOptions::default()
        },
    );
    let start_minute = now_ms() / 60_000;
    for i in 0..3_000u32 {
        let ip = format!("10.1.{}.{}", i / 256, i % 256);
        for _ in 0..2 {
            assert!(store.submit_failure(key("admin", &ip), || row(
                "rate_limited",
                "failure",
                "admin",
                &ip
            )));
        }
    }
    store.shutdown().await.expect("shutdown");
    let minutes = now_ms() / 60_000 - start_minute + 1;
    assert_eq!(
        scalar(&db.pool, "SELECT SUM(count) FROM audit_events").await,
        6_000
    );
    let rows = scalar(&db.pool, "SELECT COUNT(*) FROM audit_events").await;
    assert!(
        rows <= (MAX_KEYS_PER_MINUTE as i64 + 1) * minutes,
        "{rows} rows"
    );
}
