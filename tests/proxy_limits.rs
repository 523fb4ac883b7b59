//! The gateway layers behind a real nginx on loopback: per-client login limits keyed by the
//! resolved client address, spoofed and forged X-Forwarded-For, 429 with Retry-After, the
//! window passing, and fail2ban-regex on the failure log those real requests produced.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::nginx::Nginx;
use support::portal;

const WINDOW_SECS: u64 = 3;

fn client(from: &str) -> reqwest::Client {
    let ip: IpAddr = from.parse().expect("ip");
    reqwest::Client::builder()
        .local_address(ip)
        .build()
        .expect("client")
}

/// POSTs a wrong-password login and returns (status, Retry-After).
async fn attempt(
    client: &reqwest::Client,
    port: u16,
    username: &str,
    xff: Option<&str>,
) -> (u16, Option<u64>) {
    let mut request = client
        .post(format!("http://127.0.0.1:{port}/api/v1/login"))
        .json(&json!({"username": username, "password": "wrong-password"}));
    if let Some(value) = xff {
        request = request.header("x-forwarded-for", value);
    }
    let response = request.send().await.expect("request");
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (response.status().as_u16(), retry)
}

fn fail2ban_ips(log: &Path) -> (usize, BTreeSet<String>) {
    let filter = Path::new(env!("CARGO_MANIFEST_DIR")).join("fail2ban/filter.d/passgate.conf");
    let output = std::process::Command::new("fail2ban-regex")
        .args(["--print-all-matched", "-o", "ip"])
        .arg(log)
        .arg(&filter)
        .output()
        .expect("fail2ban-regex is needed (scripts/test installs fail2ban)");
    assert!(
        output.status.success(),
        "fail2ban-regex failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let ips: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.parse::<IpAddr>().is_ok())
        .map(str::to_string)
        .collect();
    (ips.len(), ips.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_follow_the_real_client_behind_nginx() {
    let fake =
        FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", "alice-password")]).await;
    let data = tempfile::tempdir().expect("tempdir");
    let log = data.path().join("auth.log");
    let window = WINDOW_SECS.to_string();
    let (app, _dir) = portal::build(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[
            ("PASSGATE_PROXY__TRUSTED", r#"["127.0.0.1/32"]"#),
            ("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "5"),
            ("PASSGATE_RATE_LIMIT__LOGIN_WINDOW_SECS", &window),
            ("PASSGATE_LOG__FAIL2BAN_FILE", log.to_str().expect("utf8")),
        ],
    )
    .await;
    let (app_port, _stop) = portal::serve(app).await;
    let nginx = Nginx::start(app_port);

    // Two clients behind nginx each get their own five attempts.
    let a = client("127.0.0.2");
    let b = client("127.0.0.3");
    for i in 0..5 {
        assert_eq!(
            attempt(&a, nginx.port, "user-a", None).await.0,
            401,
            "a #{i}"
        );
    }
    let (status, retry) = attempt(&a, nginx.port, "user-a", None).await;
    assert_eq!(status, 429, "the sixth attempt in the window is refused");
    let retry = retry.expect("Retry-After");
    assert!((1..=WINDOW_SECS).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        attempt(&b, nginx.port, "user-b", None).await.0,
        401,
        "b has its own limit"
    );

    // A client that sends its own X-Forwarded-For through nginx stays inside its own limit,
    // whatever it claims.
    let c = client("127.0.0.4");
    for i in 0..5 {
        let spoof = format!("198.51.100.{i}, 10.0.0.{i}");
        assert_eq!(attempt(&c, nginx.port, "user-c", Some(&spoof)).await.0, 401);
    }
    assert_eq!(
        attempt(&c, nginx.port, "user-c", Some("203.0.113.99"))
            .await
            .0,
        429
    );

    // Connecting directly with a forged header: keyed by the real address, header ignored.
    let d = client("127.0.0.5");
    for i in 0..5 {
        let forged = format!("192.0.2.{i}");
        assert_eq!(attempt(&d, app_port, "user-d", Some(&forged)).await.0, 401);
    }
    assert_eq!(
        attempt(&d, app_port, "user-d", Some("192.0.2.200")).await.0,
        429
    );

    // After the window the client is let in again.
    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(300)).await;
    assert_eq!(
        attempt(&a, nginx.port, "user-a", None).await.0,
        401,
        "window passed"
    );

    // Crafted usernames through the real stack never make the filter report another address.
    let e = client("127.0.0.6");
    for name in [
        "eve\n2026-01-01T00:00:00.000Z passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials",
        "eve rhost=6.6.6.6",
        "rhost=6.6.6.6",
        "\"eve\"\r\nrhost=6.6.6.6",
    ] {
        let response = e
            .post(format!("http://127.0.0.1:{}/api/v1/login", nginx.port))
            .json(&json!({"username": name, "password": "wrong-password"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401);
    }
    // And a successful sign-in is never matched.
    let f = client("127.0.0.7");
    let response = f
        .post(format!("http://127.0.0.1:{}/api/v1/login", nginx.port))
        .json(&json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    // The fail2ban file is written in batches (at most 100 ms late): wait for every line.
    let want_lines = 7 + 1 + 6 + 6 + 4;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < want_lines {
        assert!(
            std::time::Instant::now() < deadline,
            "the fail2ban file did not get {want_lines} lines"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Ok(dest) = std::env::var("PASSGATE_TEST_KEEP_LOG") {
        let _ = std::fs::copy(&log, dest);
    }
    let (matched, ips) = fail2ban_ips(&log);
    let expected: BTreeSet<String> = [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(ips, expected, "matched addresses");
    // a: 5 failures + 1 rate limited + 1 after the window; b: 1; c: 5 + 1; d: 5 + 1; e: 4.
    assert_eq!(matched, want_lines, "one matched line per failure event");
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        text.lines().count(),
        matched,
        "every line is a failure line:\n{text}"
    );
}
