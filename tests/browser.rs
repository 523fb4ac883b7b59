//! Browser end-to-end flows: Debian's Chromium, driven by playwright-core
//! (`tests/browser/flows.mjs`), against real passgate servers on loopback and the fake
//! TrueNAS. axe-core checks every page visited. `scripts/install-deps test` installs
//! Chromium, Node.js and the npm packages; without them this test fails and says so.
//!
//! Screenshots land in `<target>/browser-screenshots/`.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::portal;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The flows take 30 to 90 s on a busy 2-core machine; this bounds a hung browser.
const FLOWS_TIMEOUT: Duration = Duration::from_secs(180);

const ADA_PW: &str = "Correct-Horse-Battery-42";
const ADA_NEW: &str = "Violet-Lantern-Orbit-77";
const CLEO_PW: &str = "Amber-Meadow-Falcon-31";
const CLEO_NEW: &str = "Quiet-River-Copper-58";
const GWEN_PW: &str = "Granite-Harbor-Sparrow-64";
const OTHER_PW: &str = "Maple-Tunnel-Zephyr-29";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`, wherever the target directory is.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("browser-screenshots")
}

/// Everything the flows need, or a panic that says how to get it.
fn check_prerequisites() {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("Chromium ({CHROMIUM}, Debian package chromium)"));
    }
    let runs = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs("node", "--version") {
        missing.push("node (Node.js)".to_string());
    }
    if !runs("oathtool", "--version") {
        missing.push("oathtool (Debian package oathtool)".to_string());
    }
    for package in ["playwright-core", "axe-core"] {
        let dir = browser_dir().join("node_modules").join(package);
        if !dir.join("package.json").exists() {
            missing.push(format!("npm package {package} in {}", dir.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "the browser tests need: {}.\nRun `scripts/install-deps test` (it installs them), \
         or use `scripts/test`, which does.",
        missing.join("; ")
    );
}

fn users() -> Vec<FakeUser> {
    let mut gwen = FakeUser::new("gwen", GWEN_PW);
    gwen.groups = vec!["builtin_administrators".to_string()];
    vec![
        FakeUser::new("ada", ADA_PW),
        FakeUser::new("ben", OTHER_PW),
        FakeUser::new("cleo", CLEO_PW),
        FakeUser::new("dan", OTHER_PW),
        FakeUser::new("eve", OTHER_PW),
        FakeUser::new("finn", OTHER_PW),
        gwen,
        FakeUser::new("hal", OTHER_PW),
    ]
}

/// The username the charts must show as text, never as markup.
const HOSTILE_USER: &str = "<script>&\"'";

/// An attack in progress, so the audit page's charts have bars to draw (and a hostile
/// username to escape) at once: rows the store is still counting (`audit_open`), and two
/// closed rows for the hostile name. Those are put into `audit_events` with ids far above
/// the chain's, outside the hash chain (this test never verifies it): the store would only
/// write them when their minute closes, too late for the flows.
async fn attack_in_progress(db: &Path) {
    let pool = passgate::db::open(db).await.expect("db");
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let rows: &[(bool, i64, &str, i64, &str, &str)] = &[
        (true, 55, "login_failed", 4, "admin", "203.0.113.9"),
        (true, 40, "login_failed", 9, "admin", "203.0.113.9"),
        (true, 38, "rate_limited", 30, "admin", "203.0.113.9"),
        (true, 21, "login_failed", 6, "root", "198.51.100.7"),
        (true, 20, "user_locked_out", 3, "root", "198.51.100.7"),
        (true, 12, "totp_failed", 2, "cleo", "192.0.2.44"),
        (false, 5, "login_failed", 7, HOSTILE_USER, "198.51.100.7"),
        (false, 3, "rate_limited", 12, HOSTILE_USER, "198.51.100.7"),
    ];
    for (slot, (open, minutes_ago, event, count, user, ip)) in rows.iter().enumerate() {
        let at = now - minutes_ago * 60_000;
        let sql = if *open {
            "INSERT INTO audit_open (writer, slot, updated_ms, ts_ms, last_ts_ms, count, \
             event, outcome, username, client_ip, detail) \
             VALUES ('browser-test', ?1, ?2, ?2, ?2, ?3, ?4, 'failure', ?5, ?6, '{}')"
        } else {
            "INSERT INTO audit_events (id, ts_ms, last_ts_ms, count, event, outcome, username, \
             client_ip, detail, prev_hash, hash) \
             VALUES (1000000000 + ?1, ?2, ?2, ?3, ?4, 'failure', ?5, ?6, '{}', '', '')"
        };
        sqlx::query(sql)
            .bind(i64::try_from(slot).expect("slot"))
            .bind(at)
            .bind(count)
            .bind(event)
            .bind(user)
            .bind(ip)
            .execute(&pool)
            .await
            .expect("insert an attack row");
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flows() {
    check_prerequisites();
    let started = Instant::now();
    let fake = FakeTrueNas::start(Flavour::V26, users()).await;
    // Plain http on loopback, like `passgate demo`: cookies without `__Host-`/`Secure`.
    let insecure = ("PASSGATE_SERVER__INSECURE_COOKIES", "true");
    let (app, main_dir) = portal::build(&fake, "jsonrpc", r#"["truenas"]"#, &[insecure]).await;
    attack_in_progress(&main_dir.path().join("data/passgate.db")).await;
    let (main_port, _stop_main) = portal::serve(app).await;
    // A second portal whose login limiter trips on the third attempt, so the 429 flow
    // leaves the main one alone.
    let (app, _limited_dir) = portal::build(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[insecure, ("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "2")],
    )
    .await;
    let (limited_port, _stop_limited) = portal::serve(app).await;

    let accounts = json!({
        "change": {"username": "ada", "password": ADA_PW, "new_password": ADA_NEW},
        "wrong": {"username": "ben"},
        "history": {"username": "cleo", "password": CLEO_PW, "new_password": CLEO_NEW},
        "limited": {"username": "dan"},
        "totp": {"username": "eve", "password": OTHER_PW},
        "csrf": {"username": "finn", "password": OTHER_PW, "new_password": ADA_NEW},
        "admin": {"username": "gwen", "password": GWEN_PW},
        "user": {"username": "hal", "password": OTHER_PW},
    });
    let shots = screenshot_dir();
    // Only this run's pictures (a failed flow leaves FAILED-<flow>.png).
    let _ = std::fs::remove_dir_all(&shots);
    let flows = tokio::process::Command::new("node")
        .arg("flows.mjs")
        .current_dir(browser_dir())
        .env("E2E_BASE_URL", format!("http://127.0.0.1:{main_port}"))
        .env(
            "E2E_LIMITED_URL",
            format!("http://127.0.0.1:{limited_port}"),
        )
        .env("E2E_SCREENSHOTS", &shots)
        .env("E2E_CHROMIUM", CHROMIUM)
        .env("E2E_ACCOUNTS", accounts.to_string())
        .env("E2E_HOSTILE_USER", HOSTILE_USER)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(FLOWS_TIMEOUT, flows).await {
        Ok(result) => result.expect("start node"),
        Err(_) => panic!("the browser flows did not finish within {FLOWS_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser flows failed ({}); screenshots in {}:\n{stdout}\n{stderr}",
        output.status,
        shots.display()
    );
    // Shown with `--nocapture`: each flow, the axe notes, the time.
    println!("{stdout}");
    println!(
        "browser flows took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
