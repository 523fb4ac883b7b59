//! `passgate audit …` against a real database written by the real store: filters in every
//! format, output escaping of hostile usernames, export file safety, verify before and
//! after tampering, the summary, and reading while a writer holds the database.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};

mod support;

use passgate::audit::store::{AuditStore, NewRow, StoreOptions};
use passgate::keys::Keys;
use secrecy::SecretString;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use support::clock::now_ms;

const SECRET: &str = "0123456789abcdef0123456789abcdef-audit-cli-test";
const HOSTILE: &str = "\x1b[31mevil=cmd|' /C calc'!A0";
const FORMULA: &str = "=cmd|' /C calc'!A0";

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fixture {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn db(&self) -> PathBuf {
        self.data_dir().join("passgate.db")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_passgate"))
            .arg("audit")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("PASSGATE_CONFIG")
            .env_remove("PASSGATE_LOG")
            .output()
            .expect("run passgate")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "passgate audit {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut full = args.to_vec();
        full.extend(["--format", "json"]);
        self.ok(&full)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
            .collect()
    }
}

fn row(event: &str, outcome: &str, user: &str, ip: &str) -> NewRow {
    let mut r = NewRow::new(event, outcome);
    r.username = Some(user.to_string());
    r.client_ip = Some(ip.to_string());
    r.peer_ip = Some(String::from("10.0.0.1"));
    r.user_agent = Some(String::from("curl/8.0"));
    r.request_id = Some(format!("req-{event}-{ip}"));
    r.detail = serde_json::json!({ "note": "test" });
    r
}

fn audit_key() -> [u8; 32] {
    Keys::derive(&SecretString::from(SECRET.to_string())).audit_key()
}

/// Rows, in id order:
///  1 login_succeeded   success alice   192.0.2.10   (3 days ago)
///  2 login_succeeded   success alice   192.0.2.10
///  3 login_succeeded   success bob     192.0.2.11
///  4 password_changed  success alice   192.0.2.10
///  5 login_failed      error   carol   192.0.2.12   (backend down)
///  6 login_failed      failure HOSTILE 198.51.100.66
///  7 user_locked_out   failure mallory 203.0.113.7
///  then, coalesced by the writer (order between them not fixed):
///    login_failed failure mallory 203.0.113.7   x5
///    login_failed failure bob     198.51.100.2  x2
///    rate_limited failure -       203.0.113.7   x3
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data.join("secret_key"))
        .expect("secret file");
    std::io::Write::write_all(&mut f, SECRET.as_bytes()).expect("write secret");
    let config = dir.path().join("passgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {:?}\n\n[log]\nsyslog = \"off\"\n",
            data.display().to_string()
        ),
    )
    .expect("config");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pool = passgate::db::open(&data.join("passgate.db"))
            .await
            .expect("open db");
        let store = AuditStore::start(pool.clone(), audit_key(), StoreOptions::default());
        let mut old = row("login_succeeded", "success", "alice", "192.0.2.10");
        old.ts_ms = now_ms() - 3 * 86_400_000;
        for r in [
            old,
            row("login_succeeded", "success", "alice", "192.0.2.10"),
            row("login_succeeded", "success", "bob", "192.0.2.11"),
            row("password_changed", "success", "alice", "192.0.2.10"),
            row("login_failed", "error", "carol", "192.0.2.12"),
            row("login_failed", "failure", HOSTILE, "198.51.100.66"),
            row("user_locked_out", "failure", "mallory", "203.0.113.7"),
        ] {
            store.submit_durable(r).await.expect("durable row");
        }
        for _ in 0..5 {
            assert!(store.submit(row("login_failed", "failure", "mallory", "203.0.113.7")));
        }
        for _ in 0..2 {
            assert!(store.submit(row("login_failed", "failure", "bob", "198.51.100.2")));
        }
        for _ in 0..3 {
            let mut r = row("rate_limited", "failure", "", "203.0.113.7");
            r.username = None;
            assert!(store.submit(r));
        }
        store.shutdown().await.expect("shutdown");
        pool.close().await;
    });
    Fixture { dir, config }
}

fn ids(rows: &[serde_json::Value]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}

#[test]
fn list_filters_in_json() {
    let fx = fixture();
    let all = fx.json(&["list"]);
    assert_eq!(all.len(), 10);
    // Newest first.
    assert_eq!(ids(&all), (1..=10).rev().collect::<Vec<_>>());
    let fields: Vec<&str> = all[0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = passgate::audit::query::ROW_FIELDS.to_vec();
    expected.sort_unstable();
    let mut got = fields.clone();
    got.sort_unstable();
    assert_eq!(got, expected);
    let pc = &all[6];
    assert_eq!(pc["event"], "password_changed");
    assert_eq!(pc["username"], "alice");
    assert_eq!(pc["client_ip"], "192.0.2.10");
    assert_eq!(pc["peer_ip"], "10.0.0.1");
    assert_eq!(pc["user_agent"], "curl/8.0");
    assert_eq!(pc["count"], 1);
    assert_eq!(pc["detail"]["note"], "test");
    let time = pc["time"].as_str().expect("time");
    assert!(time.ends_with('Z') && time.len() == 24, "{time}");

    assert_eq!(ids(&fx.json(&["list", "--user", "alice"])), [4, 2, 1]);
    assert_eq!(ids(&fx.json(&["list", "--ip", "192.0.2.11"])), [3]);
    assert_eq!(
        ids(&fx.json(&["list", "--ip", "::ffff:192.0.2.11"])),
        [3],
        "an IPv4-mapped filter matches the stored IPv4"
    );
    assert_eq!(ids(&fx.json(&["list", "--event", "password_changed"])), [4]);
    assert_eq!(ids(&fx.json(&["list", "--outcome", "error"])), [5]);
    assert_eq!(ids(&fx.json(&["list", "--outcome", "ok"])), [4, 3, 2, 1]);
    let failures = fx.json(&["list", "--outcome", "fail"]);
    assert_eq!(failures.len(), 5);
    assert!(failures.iter().all(|r| r["outcome"] == "failure"));
    assert_eq!(ids(&fx.json(&["list", "--limit", "2"])), [10, 9]);
    // The 3-day-old row drops out of a relative window.
    let recent = fx.json(&["list", "--since", "24h", "--user", "alice"]);
    assert_eq!(ids(&recent), [4, 2]);
    assert_eq!(
        ids(&fx.json(&["list", "--until", "2d", "--user", "alice"])),
        [1]
    );
    let mallory = fx.json(&["list", "--user", "mallory", "--event", "login_failed"]);
    assert_eq!(mallory.len(), 1);
    assert_eq!(mallory[0]["count"], 5);
    // Hostile text round-trips exactly in JSON (escaped by serde_json, not altered).
    let hostile = fx.json(&["list", "--ip", "198.51.100.66"]);
    assert_eq!(hostile[0]["username"], HOSTILE);
    assert!(!fx.ok(&["list", "--format", "json"]).contains('\x1b'));
    // A filter value is data, not SQL.
    assert!(fx.json(&["list", "--user", "x' OR '1'='1"]).is_empty());
}

#[test]
fn list_in_table_and_csv() {
    let fx = fixture();
    let table = fx.ok(&["list"]);
    assert!(!table.contains('\x1b'), "raw ESC reached the terminal");
    assert!(table.contains("\\u{1b}[31mevil"), "{table}");
    assert!(table.lines().next().is_some_and(|h| h.starts_with("ID")));
    assert_eq!(table.lines().count(), 11);
    let alice = fx.ok(&["list", "--user", "alice", "--since", "24h"]);
    assert_eq!(alice.lines().count(), 3, "{alice}");
    assert!(alice.contains("password_changed"));

    let csv = fx.ok(&["list", "--format", "csv", "--user", HOSTILE]);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{csv:?}");
    assert!(lines[0].starts_with("\"id\",\"time\",\"last_time\",\"count\",\"event\""));
    assert!(lines[0].ends_with("\"request_id\",\"verifier\",\"reason\",\"detail\",\"open\""));
    // The username cell is quoted and does not start with `=`.
    assert!(lines[1].contains(&format!("\"{HOSTILE}\"")));
    let ip_csv = fx.ok(&["list", "--format", "csv", "--ip", "198.51.100.66"]);
    assert!(ip_csv.contains("\"\x1b[31mevil=cmd|' /C calc'!A0\""));
    // A cell starting with a formula character gets a leading quote.
    let formula = fx.ok(&["list", "--format", "csv", "--event", "password_changed"]);
    assert!(
        formula.contains("\"{\"\"note\"\":\"\"test\"\"}\""),
        "{formula}"
    );
    assert!(!formula.contains(&format!(",\"{FORMULA}")));

    let csv_fail = fx.ok(&[
        "list",
        "--format",
        "csv",
        "--outcome",
        "fail",
        "--limit",
        "3",
    ]);
    assert_eq!(csv_fail.split("\r\n").filter(|l| !l.is_empty()).count(), 4);
}

#[test]
fn csv_neutralises_a_formula_username() {
    let fx = fixture();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pool = passgate::db::open(&fx.db()).await.expect("open");
        let store = AuditStore::start(pool.clone(), audit_key(), StoreOptions::default());
        store
            .submit_durable(row("login_failed", "error", FORMULA, "192.0.2.99"))
            .await
            .expect("row");
        store.shutdown().await.expect("shutdown");
        pool.close().await;
    });
    let csv = fx.ok(&["list", "--format", "csv", "--ip", "192.0.2.99"]);
    assert!(
        csv.contains(",\"'=cmd|' /C calc'!A0\","),
        "formula not neutralised: {csv}"
    );
    let json = fx.json(&["list", "--ip", "192.0.2.99"]);
    assert_eq!(json[0]["username"], FORMULA, "JSON keeps the exact text");
}

#[test]
fn export_writes_private_file_and_never_overwrites() {
    let fx = fixture();
    let out = fx.dir.path().join("export.jsonl");
    let out_s = out.to_str().expect("utf-8 path");
    fx.ok(&["export", "--format", "json", "--output", out_s]);
    let mode = std::fs::metadata(&out)
        .expect("exported")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // All rows, oldest first.
    assert_eq!(ids(&rows), (1..=10).collect::<Vec<_>>());

    let before = std::fs::read(&out).expect("read");
    let again = fx.run(&["export", "--format", "csv", "--output", out_s]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read(&out).expect("read"), before, "file untouched");

    let csv = fx.ok(&["export", "--format", "csv", "--user", "alice"]);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[1].starts_with("\"1\","));
    assert!(lines[3].starts_with("\"4\","));
}

#[test]
fn verify_passes_then_names_the_edited_row() {
    let fx = fixture();
    let ok = fx.ok(&["verify"]);
    assert!(ok.starts_with("audit chain intact: 10 rows"), "{ok}");
    assert_eq!(ok.lines().count(), 1);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut conn =
            SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(fx.db()))
                .await
                .expect("raw connection");
        sqlx::query("UPDATE audit_events SET username = 'eve' WHERE id = 4")
            .execute(&mut conn)
            .await
            .expect("tamper");
        conn.close().await.expect("close");
    });
    let bad = fx.run(&["verify"]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("row 4 was edited"), "{stderr}");
}

#[test]
fn verify_refuses_without_a_secret_and_never_creates_one() {
    let fx = fixture();
    let secret = fx.data_dir().join("secret_key");
    std::fs::remove_file(&secret).expect("remove secret");
    let out = fx.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server secret"));
    assert!(!secret.exists(), "verify must not create a secret");
}

#[test]
fn missing_database_is_an_error() {
    let fx = fixture();
    std::fs::remove_file(fx.db()).expect("remove db");
    let out = fx.run(&["list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(
        !fx.db().exists(),
        "a read-only open must not create the database"
    );
}

#[test]
fn summary_lists_top_failing_ip() {
    let fx = fixture();
    let text = fx.ok(&["summary", "--format", "json"]);
    let s: serde_json::Value = serde_json::from_str(&text).expect("summary json");
    // 203.0.113.7: lockout 1 + 5 failed logins + 3 rate limited.
    assert_eq!(s["top_failing_ips"][0]["key"], "203.0.113.7");
    assert_eq!(s["top_failing_ips"][0]["total"], 9);
    assert_eq!(s["top_failing_users"][0]["key"], "mallory");
    assert_eq!(s["top_failing_users"][0]["total"], 6);
    assert_eq!(s["failures_total"], 12);
    assert_eq!(s["rate_limited_total"], 3);
    assert_eq!(s["password_changes"][0]["username"], "alice");
    assert_eq!(s["password_changes"][0]["client_ip"], "192.0.2.10");
    assert_eq!(s["lockouts"][0]["username"], "mallory");

    let table = fx.ok(&["summary"]);
    assert!(!table.contains('\x1b'));
    let top = table
        .lines()
        .skip_while(|l| !l.starts_with("Top failing client IPs"))
        .nth(2)
        .expect("first IP line");
    assert!(top.trim_start().starts_with("203.0.113.7"), "{table}");
    assert!(table.contains("Lockouts") && table.contains("mallory"));
}

#[test]
fn reads_while_a_writer_holds_the_database() {
    let fx = fixture();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pool = passgate::db::open(&fx.db()).await.expect("open");
        let store = AuditStore::start(pool.clone(), audit_key(), StoreOptions::default());
        store
            .submit_durable(row("logout", "success", "alice", "192.0.2.10"))
            .await
            .expect("row");
        // An open write transaction, as the server's writer would hold mid-batch.
        let mut writer = pool.acquire().await.expect("conn");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *writer)
            .await
            .expect("begin");
        let started = std::time::Instant::now();
        let list = fx.json(&["list", "--limit", "1"]);
        assert_eq!(list[0]["event"], "logout");
        let verify = fx.ok(&["verify"]);
        assert!(
            verify.starts_with("audit chain intact: 11 rows"),
            "{verify}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "readers waited for the writer"
        );
        sqlx::query("ROLLBACK")
            .execute(&mut *writer)
            .await
            .expect("rollback");
        drop(writer);
        store.shutdown().await.expect("shutdown");
        pool.close().await;
    });
}
