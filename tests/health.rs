//! `/healthz` and `/readyz` against the fake TrueNAS: ready flips to 503 with a reason when
//! TrueNAS goes away, and back to 200 when it returns; health stays 200 throughout.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use sqlx::Connection;

use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::portal::{self, Portal};

async fn get(portal: &Portal, path: &str) -> (u16, serde_json::Value) {
    let request = http::Request::get(path)
        .body(axum::body::Body::empty())
        .expect("request");
    let response = portal.send(request).await;
    let status = response.status().as_u16();
    let text = support::portal::body_text(response).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Polls `/readyz` until it answers `want`, for at most `limit`.
async fn readyz_becomes(portal: &Portal, want: u16, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = get(portal, "/readyz").await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} ({body}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn readyz_follows_truenas_down_and_back() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", "alice-pw-1")]).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    let body = readyz_becomes(&portal, 200, Duration::from_secs(10)).await;
    assert_eq!(body["status"], "ready");

    fake.set_down(true);
    let body = readyz_becomes(&portal, 503, Duration::from_secs(15)).await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["component"], "truenas", "{body}");
    let reason = body["reason"].as_str().expect("reason");
    assert!(
        !reason.contains("127.0.0.1"),
        "no internal address in the answer: {reason}"
    );
    assert_eq!(
        get(&portal, "/healthz").await.0,
        200,
        "the process is still up"
    );

    fake.set_down(false);
    // The admin connection comes back after its reconnect backoff.
    let body = readyz_becomes(&portal, 200, Duration::from_secs(45)).await;
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn readyz_reports_an_audit_database_that_takes_no_writes() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", "alice-pw-1")]).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    readyz_becomes(&portal, 200, Duration::from_secs(10)).await;
    // Another connection holds the write lock, as a stuck writer would.
    let path = portal.dir.path().join("data").join("passgate.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut blocker = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("open");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .expect("lock");
    let body = readyz_becomes(&portal, 503, Duration::from_secs(20)).await;
    assert_eq!(body["component"], "audit_database", "{body}");
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("unlock");
    readyz_becomes(&portal, 200, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_in_a_loop_shares_one_ping_per_two_seconds() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", "alice-pw-1")]).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    readyz_becomes(&portal, 200, Duration::from_secs(10)).await;
    let pings = || fake.calls().iter().filter(|c| *c == "core.ping").count();
    let burst = || async {
        let calls = (0..50).map(|_| get(&portal, "/readyz"));
        for (status, body) in futures_util::future::join_all(calls).await {
            assert_eq!(status, 200, "{body}");
        }
    };
    // Let the answer of `readyz_becomes` age out: the cache lifetime is the condition here.
    tokio::time::sleep(passgate::app::readiness::CACHE_FOR + Duration::from_millis(100)).await;
    let before = pings();
    burst().await;
    assert_eq!(
        pings() - before,
        1,
        "50 concurrent probes share one core.ping"
    );
    burst().await;
    let start = Instant::now();
    let mut probes = 100;
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(get(&portal, "/readyz").await.0, 200);
        probes += 1;
    }
    let used = pings() - before;
    let allowed = 2 + (start.elapsed().as_secs_f64() / 2.0).floor() as usize;
    assert!(
        used <= allowed,
        "{probes} probes cost {used} pings, more than one per 2 s ({allowed})"
    );
}
