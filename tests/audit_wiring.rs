//! The audit store on the request path: flows produce rows carrying the request id sent to
//! the client, and after `kill -9` of a real `passgate serve` during writes the database
//! opens, the chain verifies, and every sign-in that was answered is in it. Failures are on
//! disk within the group-commit bound (250 ms) and `passgate audit list` shows them within a
//! second, while their minute is still open.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::json;
use support::fake_truenas::{FakeOptions, FakeTrueNas, FakeUser, Flavour};
use support::server_process::{ServeOptions, ServerProcess};

/// Rows as (event, outcome, username, request_id).
async fn rows(db: &std::path::Path) -> Vec<(String, String, Option<String>, Option<String>)> {
    let pool = passgate::db::open(db).await.expect("database opens");
    sqlx::query_as("SELECT event, outcome, username, request_id FROM audit_events ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("query")
}

async fn verify(data_dir: &std::path::Path) -> passgate::audit::chain::VerifyReport {
    let secret = passgate::keys::load_or_create_secret(None, data_dir).expect("secret");
    let keys = passgate::keys::Keys::derive(&SecretString::from(
        secrecy::ExposeSecret::expose_secret(&secret).to_string(),
    ));
    let pool = passgate::db::open(&data_dir.join("passgate.db"))
        .await
        .expect("db");
    passgate::audit::chain::verify(&pool, &keys.audit_key())
        .await
        .expect("verify runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_audit_queue() {
    let fake =
        FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", "alice-password")]).await;
    let mut server = ServerProcess::start(&fake, ServeOptions::default()).await;
    let base = server.base_url();
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let response = client
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": "alice", "password": "wrong-password"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401);
    }
    // The failures are coalesced in memory until their minute closes; SIGTERM must flush them.
    server.sigterm();
    let exit = server
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("passgate exits after SIGTERM");
    assert!(exit.success(), "passgate exited with {exit:?}");
    let data = server.data_dir();
    let pool = passgate::db::open(&data.join("passgate.db"))
        .await
        .expect("db");
    let (failures,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(SUM(count), 0) FROM audit_events WHERE event = 'login_failed' AND username = 'alice'",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    assert_eq!(failures, 20, "every failure is on disk after SIGTERM");
    assert!(verify(&data).await.is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_request_finishes_it_first() {
    // A wrong password makes the fake NAS sleep 2 to 4 s before it answers, as middlewared's
    // failure delay does: SIGTERM lands while that sign-in is in flight.
    let mut options = FakeOptions::new(Flavour::V26);
    options.failure_delay = Duration::from_secs(2);
    let fake =
        FakeTrueNas::start_with(options, vec![FakeUser::new("alice", "alice-password")]).await;
    let mut server = ServerProcess::start(&fake, ServeOptions::default()).await;
    let base = server.base_url();
    let before = password_logins(&fake);
    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": "alice", "password": "wrong-password"}))
            .send()
            .await
            .expect("the in-flight request gets an answer, not a reset")
    });
    // In flight: the NAS has the password and is still sleeping on it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while password_logins(&fake) == before {
        assert!(
            Instant::now() < deadline,
            "the sign-in never reached the NAS"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !request.is_finished(),
        "the fake answered within its failure delay"
    );
    server.sigterm();
    let response = request.await.expect("request task");
    assert_eq!(response.status(), 401);
    let exit = server
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("passgate exits after SIGTERM");
    assert!(exit.success(), "passgate exited with {exit:?}");
    let data = server.data_dir();
    let pool = passgate::db::open(&data.join("passgate.db"))
        .await
        .expect("db");
    let (failed,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(SUM(count), 0) FROM audit_events WHERE event = 'login_failed' AND username = 'alice'",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    assert_eq!(
        failed, 1,
        "the sign-in answered during shutdown is chained on disk"
    );
    assert!(verify(&data).await.is_intact());
}

/// `auth.login_ex` calls with a user's password the fake has received.
fn password_logins(fake: &FakeTrueNas) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.as_str() == "auth.login_ex:PASSWORD_PLAIN")
        .count()
}

/// Sum of `count` of one user's failed sign-ins, in the chain and still open.
async fn failures_on_disk(db: &std::path::Path, user: &str) -> (i64, i64) {
    let pool = passgate::db::open(db).await.expect("database opens");
    let open: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0) FROM audit_open WHERE event = 'login_failed' AND username = ?1",
    )
    .bind(user)
    .fetch_one(&pool)
    .await
    .expect("query");
    let chained: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0) FROM audit_events WHERE event = 'login_failed' AND username = ?1",
    )
    .bind(user)
    .fetch_one(&pool)
    .await
    .expect("query");
    pool.close().await;
    (open, chained)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_shortly_after_a_401_keeps_the_failure_and_the_next_start_chains_it() {
    let fake = FakeTrueNas::start(
        Flavour::V26,
        vec![
            FakeUser::new("alice", "alice-password"),
            FakeUser::new("bob", "bob-password"),
        ],
    )
    .await;
    let mut server = ServerProcess::start(&fake, ServeOptions::default()).await;
    let base = server.base_url();
    let data = server.data_dir();
    let client = reqwest::Client::new();
    // Two keys (alice three times, bob once): a new open row, and one whose count rises.
    for user in ["alice", "bob", "alice", "alice"] {
        let response = client
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": user, "password": "wrong-password"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401);
    }
    // The issue's bound: every failure answered more than 250 ms before the kill is on disk.
    // This wait is the condition under test, not a guess at how long something takes.
    tokio::time::sleep(Duration::from_millis(260)).await;
    server.sigkill();
    server
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("passgate dies on SIGKILL");
    let db = data.join("passgate.db");
    let (open_alice, chained_alice) = failures_on_disk(&db, "alice").await;
    let (open_bob, chained_bob) = failures_on_disk(&db, "bob").await;
    assert_eq!(
        (open_alice + chained_alice, open_bob + chained_bob),
        (3, 1),
        "failures answered 260 ms before kill -9 are on disk"
    );

    // The next server chains what the killed one left open.
    server.restart().await;
    server.sigterm();
    let exit = server.wait_exit(Duration::from_secs(60)).await;
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}");
    assert_eq!(failures_on_disk(&db, "alice").await, (0, 3));
    assert_eq!(failures_on_disk(&db, "bob").await, (0, 1));
    let report = verify(&data).await;
    assert!(report.is_intact(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_list_shows_a_failure_within_a_second() {
    let fake =
        FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("carol", "carol-password")]).await;
    let server = ServerProcess::start(&fake, ServeOptions::default()).await;
    let base = server.base_url();
    // The row must still be open (its minute running) when the list shows it.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        % 60_000
        > 55_000
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "carol", "password": "wrong-password"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let answered = Instant::now();
    let config = server.dir().join("passgate.toml");
    let shown = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_passgate"))
            .args(["audit", "--config"])
            .arg(&config)
            .args(["list", "--user", "carol", "--format", "json"])
            .output()
            .expect("passgate audit list");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("login_failed") {
            break text;
        }
        assert!(
            answered.elapsed() < Duration::from_secs(1),
            "audit list did not show the failure within 1 s: {text}"
        );
    };
    assert!(
        shown.contains("\"open\":true"),
        "still counting in its minute: {shown}"
    );
    server.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_answered_sign_in() {
    let fake =
        FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", "alice-password")]).await;
    let mut server = ServerProcess::start(&fake, ServeOptions::default()).await;
    let base = server.base_url();
    let data = server.data_dir();
    let client = reqwest::Client::new();

    // Keep sign-ins (and failures) flowing; kill -9 while they are in flight.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let client = client.clone();
        let base = base.clone();
        let answered = answered.clone();
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let password = if (i + w) % 3 == 0 {
                    "wrong-password"
                } else {
                    "alice-password"
                };
                let Ok(response) = client
                    .post(format!("{base}/api/v1/login"))
                    .json(&json!({"username": "alice", "password": password}))
                    .send()
                    .await
                else {
                    break;
                };
                if response.status() == 200 {
                    if let Some(id) = response
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                    {
                        answered.lock().expect("lock").push(id.to_string());
                    }
                }
            }
        }));
    }
    // Kill once enough sign-ins were answered (not after a fixed time: on a busy machine the
    // first ones, with the key login and 656,000-round hashes, can take seconds).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while answered.lock().expect("lock").len() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "too few sign-ins answered within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no drain, no destructor.
    server.sigkill();
    server
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("passgate dies on SIGKILL");
    for w in workers {
        let _ = w.await;
    }
    let answered = answered.lock().expect("lock").clone();
    assert!(
        answered.len() >= 5,
        "too few sign-ins before the kill: {}",
        answered.len()
    );

    let report = verify(&data).await;
    assert!(report.is_intact(), "chain broken after kill -9: {report}");
    let stored: std::collections::HashSet<String> = rows(&data.join("passgate.db"))
        .await
        .into_iter()
        .filter(|(event, ..)| event == "login_succeeded")
        .filter_map(|(.., id)| id)
        .collect();
    println!(
        "kill -9 after {} answered sign-ins; {} login_succeeded rows on disk",
        answered.len(),
        stored.len()
    );
    let missing: Vec<&String> = answered.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} answered sign-ins missing, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

#[tokio::test]
async fn flows_write_rows_with_the_request_id_the_client_saw() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("bob", "bob-password")]).await;
    let portal = support::portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    use axum::body::Body;
    use http::Request;
    let login = Request::post("/api/v1/login")
        .header("content-type", "application/json")
        .header("user-agent", "test-agent/1.0")
        .body(Body::from(
            json!({"username": "bob", "password": "bob-password"}).to_string(),
        ))
        .expect("request");
    let response = portal.send(login).await;
    assert_eq!(response.status(), 200);
    let login_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let token = support::portal::body_json(response).await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let change = Request::post("/api/v1/password")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(
            json!({"current_password": "bob-password", "new_password": "bob-new-password"})
                .to_string(),
        ))
        .expect("request");
    let response = portal.send(change).await;
    assert_eq!(response.status(), 200);
    let change_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_ne!(login_id, change_id);

    // Both are durable: present as soon as the responses were sent.
    let rows = rows(&portal.dir.path().join("data/passgate.db")).await;
    assert!(
        rows.iter().any(|r| r.0 == "login_succeeded"
            && r.2.as_deref() == Some("bob")
            && r.3.as_deref() == Some(login_id.as_str())),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r.0 == "password_changed"
            && r.1 == "success"
            && r.3.as_deref() == Some(change_id.as_str())),
        "{rows:?}"
    );
    let report = verify(&portal.dir.path().join("data")).await;
    assert!(report.is_intact(), "{report}");
}
