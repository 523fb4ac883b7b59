//! Browser end-to-end flows: Debian's Chromium, driven by playwright-core
//! (`tests/browser/flows.mjs`), against real passgate servers on loopback and the fake
//! TrueNAS. axe-core checks every page visited. `scripts/install-deps test` installs
//! Chromium, Node.js and the npm packages; without them this test fails and says so.
//!
//! Screenshots land in `<target>/browser-screenshots/`.
//!
//! The reset flows need a link that exists only once the browser has asked for it: while
//! node runs, this side polls the fake's outbox and writes each reset mail's links to
//! `<mailbox>/<address>.json` (E2E_MAILBOX), which the flows wait for.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_truenas::{FakeOptions, FakeTrueNas, FakeUser, Flavour, MailSettings, SentMail};
use support::keygen::{fingerprint, keygen};
use support::portal;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The flows take 40 to 120 s on a busy 2-core machine; this bounds a hung browser.
const FLOWS_TIMEOUT: Duration = Duration::from_secs(240);

const ADA_PW: &str = "Correct-Horse-Battery-42";
const ADA_NEW: &str = "Violet-Lantern-Orbit-77";
const CLEO_PW: &str = "Amber-Meadow-Falcon-31";
const CLEO_NEW: &str = "Quiet-River-Copper-58";
const GWEN_PW: &str = "Granite-Harbor-Sparrow-64";
const OTHER_PW: &str = "Maple-Tunnel-Zephyr-29";
const IRIS_PW: &str = "Cobalt-Window-Thistle-46";
const IRIS_NEW: &str = "Saffron-Bridge-Lantern-83";
const JONAS_PW: &str = "Hazel-Compass-Ember-19";
const JONAS_NEW: &str = "Birke-Laterne-Hafen-57";
const KIM_PW: &str = "Walnut-Signal-Meadow-72";
const LEA_PW: &str = "Juniper-Anchor-Pebble-35";

/// Where the reset portal's mailed links point. The server's port is known only once it
/// serves, so the links name this address and the flows open their paths at the portal's
/// loopback address instead.
const PUBLIC: &str = "https://nas.example";
/// The accounts the reset flows reset (EN, DE) or whose request they cancel, by address.
const RESET_MAILS: &[(&str, &str)] = &[
    ("reset", "iris@example.org"),
    ("reset-de", "jonas@example.org"),
    ("reset-cancel", "kim@example.org"),
];

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
    let with_email = |name: &str, password: &str| {
        let mut user = FakeUser::new(name, password);
        user.email = Some(format!("{name}@example.org"));
        user
    };
    vec![
        FakeUser::new("ada", ADA_PW),
        FakeUser::new("ben", OTHER_PW),
        FakeUser::new("cleo", CLEO_PW),
        FakeUser::new("dan", OTHER_PW),
        FakeUser::new("eve", OTHER_PW),
        FakeUser::new("finn", OTHER_PW),
        gwen,
        FakeUser::new("hal", OTHER_PW),
        with_email("iris", IRIS_PW),
        with_email("jonas", JONAS_PW),
        with_email("kim", KIM_PW),
        with_email("lea", LEA_PW),
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

/// The token of the reset link in a mail's text (`<PUBLIC>/reset/<token>`); `None` for a
/// mail without one (the notice after a change).
fn reset_token(text: &str) -> Option<String> {
    let prefix = format!("{PUBLIC}/reset/");
    let start = text.find(&prefix)? + prefix.len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (token.len() == 43).then_some(token)
}

/// Hands the reset mails delivered since `seen` to the flows: the paths of their links, in
/// `<mailbox>/<address>.json`, written under another name and renamed, so the flows never
/// read half a file. The flows delete each file they have read.
fn deliver(fake: &FakeTrueNas, mailbox: &Path, seen: &mut usize) {
    let sent = fake.sent_mail();
    for mail in sent.iter().skip(*seen) {
        let Some(token) = reset_token(&mail.text) else {
            continue;
        };
        let cancel = format!("/reset/{token}/cancel");
        let links = json!({
            "link": format!("/reset/{token}"),
            // Only when the mail has it: the cancel flow asserts that it does.
            "cancel": mail.text.contains(&format!("{PUBLIC}{cancel}")).then_some(cancel),
            "subject": mail.subject,
        });
        for to in &mail.to {
            let partial = mailbox.join(format!(".{to}.partial"));
            std::fs::write(&partial, links.to_string()).expect("write to the mailbox");
            std::fs::rename(&partial, mailbox.join(format!("{to}.json"))).expect("deliver");
        }
    }
    *seen = sent.len();
}

/// Whether `flow` ran: E2E_ONLY (passed on to node) may have left it out.
fn flow_ran(flow: &str) -> bool {
    std::env::var("E2E_ONLY")
        .map(|only| only.split(',').any(|f| f == flow))
        .unwrap_or(true)
}

/// The mails to `address`, once one matches `wanted` (mail goes out after the page answered).
async fn mails_to(
    fake: &FakeTrueNas,
    address: &str,
    wanted: impl Fn(&SentMail) -> bool,
) -> Vec<SentMail> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mine: Vec<SentMail> = fake
            .sent_mail()
            .into_iter()
            .filter(|m| m.to == [address])
            .collect();
        if mine.iter().any(&wanted) {
            return mine;
        }
        assert!(
            Instant::now() < deadline,
            "no such mail to {address} arrived: {mine:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the reset flows must have mailed: one reset mail to each account, in the language
/// of the browser that asked, with both links; after a reset, the notice of the change.
async fn check_reset_mails(fake: &FakeTrueNas) {
    for &(flow, address) in RESET_MAILS {
        if !flow_ran(flow) {
            continue;
        }
        let german = flow.ends_with("-de");
        let mine = mails_to(fake, address, |m| reset_token(&m.text).is_some()).await;
        let resets: Vec<&SentMail> = mine
            .iter()
            .filter(|m| reset_token(&m.text).is_some())
            .collect();
        assert_eq!(resets.len(), 1, "one reset mail to {address}: {mine:#?}");
        let mail = resets[0];
        let subject = if german {
            "Ihr NAS-Passwort zurücksetzen"
        } else {
            "Reset your NAS password"
        };
        assert!(mail.subject.ends_with(subject), "{}", mail.subject);
        let token = reset_token(&mail.text).expect("token");
        assert!(
            mail.text
                .contains(&format!("{PUBLIC}/reset/{token}/cancel")),
            "{}",
            mail.text
        );
        if flow == "reset-cancel" {
            continue;
        }
        let changed = if german {
            "Ihr NAS-Konto wurde geändert"
        } else {
            "Your NAS account was changed"
        };
        let is_notice = |m: &SentMail| m.subject.ends_with(changed);
        let mine = mails_to(fake, address, is_notice).await;
        let notice = mine.iter().find(|m| is_notice(m)).expect("notice");
        assert!(
            reset_token(&notice.text).is_none(),
            "no link in the notice: {}",
            notice.text
        );
    }
}

/// The SSH keys flow's account: two keys, a private key to be refused, and the first key's
/// fingerprint as `ssh-keygen -l` shows it.
fn keys_account(dir: &Path) -> serde_json::Value {
    let ed25519 = ["-t", "ed25519"];
    let (key, private_key) = keygen(dir, "phone", &ed25519);
    let (second_key, _) = keygen(dir, "laptop", &ed25519);
    let fingerprint = fingerprint(dir, "phone");
    json!({"username": "lea", "password": LEA_PW, "key": key, "second_key": second_key,
           "private_key": private_key, "fingerprint": fingerprint})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flows() {
    check_prerequisites();
    let started = Instant::now();
    let mut options = FakeOptions::new(Flavour::V26);
    // TrueNAS' mail settings, for the reset portal: its `mail.send` jobs land in the fake's
    // outbox (`sent_mail`). Only the reset accounts have an address.
    options.mail = Some(MailSettings::relay("127.0.0.1", 25, "nas@example.org"));
    let fake = FakeTrueNas::start_with(options, users()).await;
    // Plain http on loopback, like `passgate demo`: cookies without `__Host-`/`Secure`.
    let insecure = ("PASSGATE_SERVER__INSECURE_COOKIES", "true");
    let keys_on = ("PASSGATE_SSH_KEYS__ENABLED", "true");
    let (app, main_dir) =
        portal::build(&fake, "jsonrpc", r#"["truenas"]"#, &[insecure, keys_on]).await;
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
    // A third offers "Forgot your password?"; the other two do not.
    let (app, _reset_dir) = portal::build(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[
            insecure,
            ("PASSGATE_RESET__ENABLED", "true"),
            ("PASSGATE_SERVER__PUBLIC_URL", PUBLIC),
        ],
    )
    .await;
    let (reset_port, _stop_reset) = portal::serve(app).await;

    let keys_dir = tempfile::tempdir().expect("keys");
    let accounts = json!({
        "change": {"username": "ada", "password": ADA_PW, "new_password": ADA_NEW},
        "wrong": {"username": "ben"},
        "history": {"username": "cleo", "password": CLEO_PW, "new_password": CLEO_NEW},
        "limited": {"username": "dan"},
        "totp": {"username": "eve", "password": OTHER_PW},
        "csrf": {"username": "finn", "password": OTHER_PW, "new_password": ADA_NEW},
        "admin": {"username": "gwen", "password": GWEN_PW},
        "user": {"username": "hal", "password": OTHER_PW},
        "reset": {"username": "iris", "email": RESET_MAILS[0].1,
                  "password": IRIS_PW, "new_password": IRIS_NEW},
        "reset_de": {"username": "jonas", "email": RESET_MAILS[1].1,
                     "password": JONAS_PW, "new_password": JONAS_NEW},
        "reset_cancel": {"username": "kim", "email": RESET_MAILS[2].1, "password": KIM_PW},
        "keys": keys_account(keys_dir.path()),
    });
    let mailbox = tempfile::tempdir().expect("mailbox");
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
        .env("E2E_RESET_URL", format!("http://127.0.0.1:{reset_port}"))
        .env("E2E_MAILBOX", mailbox.path())
        .env("E2E_SCREENSHOTS", &shots)
        .env("E2E_CHROMIUM", CHROMIUM)
        .env("E2E_ACCOUNTS", accounts.to_string())
        .env("E2E_HOSTILE_USER", HOSTILE_USER)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    // The flows, and beside them the postman that hands them the reset links as the fake
    // delivers the mails.
    let with_postman = async {
        tokio::pin!(flows);
        let mut seen = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = &mut flows => break result,
                _ = tick.tick() => deliver(&fake, mailbox.path(), &mut seen),
            }
        }
    };
    let output = match tokio::time::timeout(FLOWS_TIMEOUT, with_postman).await {
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
    check_reset_mails(&fake).await;
    let unread: Vec<_> = std::fs::read_dir(mailbox.path())
        .expect("mailbox")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(unread.is_empty(), "links the flows never took: {unread:?}");
    println!(
        "browser flows took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
