//! `log.format = "json"` makes every line on standard error one JSON object; the default is
//! readable text. Checked on a real `passgate serve`.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `passgate serve` with `format` and returns its first log line.
fn first_line(format: Option<&str>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_passgate"));
    command
        .arg("serve")
        .env_remove("PASSGATE_CONFIG")
        .env("PASSGATE_LOG", "info")
        .env("PASSGATE_SERVER__LISTEN", "127.0.0.1:0")
        .env("PASSGATE_SERVER__DATA_DIR", dir.path().join("data"))
        // Nothing listens on port 9; the unchecked certificate is warned about at start.
        .env("PASSGATE_TRUENAS__URL", "https://127.0.0.1:9")
        .env("PASSGATE_TRUENAS__API_KEY", "1-not-a-real-key")
        .env("PASSGATE_TRUENAS__API_USER", "truenas_admin")
        .env("PASSGATE_TRUENAS__INSECURE_SKIP_VERIFY", "true")
        .env("PASSGATE_LOG__SYSLOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(format) = format {
        command.env("PASSGATE_LOG__FORMAT", format);
    }
    let mut child = command.spawn().expect("start passgate");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if !line.trim().is_empty() => break line,
            Ok(_) => continue,
            Err(e) => panic!("no log line from passgate serve: {e}"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn json_format_writes_one_object_per_line() {
    let line = first_line(Some("json"));
    let value: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert!(value["level"].is_string(), "{value}");
    assert!(value["timestamp"].is_string(), "{value}");
    assert!(value["fields"]["message"].is_string(), "{value}");
}

#[test]
fn the_default_format_is_text() {
    let line = first_line(None);
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "{line}"
    );
    assert!(line.contains("WARN") || line.contains("INFO"), "{line}");
}

/// Every line logged while a request is handled names its request id: here a failed sign-in's
/// audit warning, at `PASSGATE_LOG=warn`, in JSON, carries the id the client got back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_made_during_a_request_carry_its_request_id() {
    use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
    use support::server_process::{ServeOptions, ServerProcess};
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("dora", "dora-password")]).await;
    let server = ServerProcess::start(
        &fake,
        ServeOptions {
            log: Some(String::from("warn")),
            ..ServeOptions::default()
        }
        .env("PASSGATE_LOG__FORMAT", "json"),
    )
    .await;
    let base = server.base_url();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"username": "dora", "password": "wrong-password"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let found = server.stderr().lines().find_map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(|v| v["fields"]["event"] == "login_failed")
        });
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no login_failed line:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spans = line["spans"].as_array().expect("span list");
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "request" && s["id"] == id.as_str()),
        "the line names request {id}: {line}"
    );
}
