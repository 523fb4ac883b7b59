//! `GET /metrics`: the Prometheus text format, counters that move with real flows, no
//! usernames or addresses in labels, and who may read it.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::portal::{self, body_text, Portal};

/// Parses the text exposition format strictly enough to catch a malformed line: returns
/// every sample as `name{labels}` → value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name");
            assert!(name_ok(name), "bad HELP line: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().expect("name"), parts.next().expect("kind"));
            assert!(name_ok(name), "bad TYPE line: {line}");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type: {line}"
            );
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"))
        };
        let name = series.split('{').next().expect("name");
        assert!(name_ok(name), "bad metric name: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("bad labels: {line}"));
                for pair in inner.split(',') {
                    let (k, v) = pair.split_once('=').expect("k=v");
                    assert!(name_ok(k), "bad label name: {line}");
                    assert!(v.starts_with('"') && v.ends_with('"'), "unquoted: {line}");
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample before its TYPE: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn scrape(portal: &Portal) -> (u16, String) {
    let request = http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = portal.send(request).await;
    let status = response.status().as_u16();
    (status, body_text(response).await)
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_with_real_flows_and_labels_name_no_one() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", "alice-pw-1")]).await;
    let portal = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[("PASSGATE_METRICS__ALLOW", r#"["127.0.0.1/32"]"#)],
    )
    .await;
    let (status, before) = scrape(&portal).await;
    assert_eq!(status, 200, "{before}");
    let before = parse(&before);

    assert_eq!(portal.login("alice", "wrong-password").await.0, 401);
    assert_eq!(portal.login("alice", "alice-pw-1").await.0, 200);

    let (_, text) = scrape(&portal).await;
    let after = parse(&text);
    let ok = r#"passgate_logins_total{outcome="success",verifier="truenas"}"#;
    let failed = r#"passgate_logins_total{outcome="failure",verifier="truenas"}"#;
    // Other tests in this binary run in the same process: compare deltas, at least one.
    assert!(value(&after, ok) >= value(&before, ok) + 1.0, "{text}");
    assert!(
        value(&after, failed) >= value(&before, failed) + 1.0,
        "{text}"
    );
    let pings = r#"passgate_truenas_call_seconds_count{method="auth.login_ex"}"#;
    assert!(
        value(&after, pings) >= value(&before, pings) + 2.0,
        "{text}"
    );
    assert!(
        value(
            &after,
            r#"passgate_verifier_seconds_count{verifier="truenas"}"#
        ) >= 2.0,
        "{text}"
    );
    assert!(
        after.contains_key("passgate_limiter_tracked_clients"),
        "{text}"
    );
    assert!(after.contains_key("passgate_audit_queue_depth"), "{text}");
    assert_eq!(
        after.get("passgate_fail2ban_dropped_total"),
        Some(&0.0),
        "{text}"
    );
    // Histogram buckets are cumulative.
    let buckets: Vec<f64> = after
        .iter()
        .filter(|(k, _)| k.starts_with(r#"passgate_verifier_seconds_bucket{le="#))
        .map(|(_, v)| *v)
        .collect();
    assert!(!buckets.is_empty());
    let label_values: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split('"').skip(1).step_by(2))
        .collect();
    for forbidden in ["alice", "127.0.0.1", "wrong-password"] {
        assert!(
            !label_values.contains(forbidden) && !text.contains(forbidden),
            "{forbidden} in /metrics: {text}"
        );
    }
}

#[tokio::test]
async fn the_main_listener_hides_metrics_unless_the_peer_is_allowed() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", "alice-pw-1")]).await;
    let closed = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    assert_eq!(scrape(&closed).await.0, 404);
    let elsewhere = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[("PASSGATE_METRICS__ALLOW", r#"["10.0.0.0/8"]"#)],
    )
    .await;
    assert_eq!(scrape(&elsewhere).await.0, 404);
    // A forged X-Forwarded-For from an allowed-looking address changes nothing: only the
    // TCP peer counts.
    let request = http::Request::get("/metrics")
        .header("x-forwarded-for", "10.1.2.3")
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(elsewhere.send(request).await.status(), 404);
}

#[test]
fn a_separate_listener_serves_only_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let main_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_passgate"))
        .arg("serve")
        .env_remove("PASSGATE_CONFIG")
        .env("PASSGATE_LOG", "error")
        .env("PASSGATE_SERVER__LISTEN", format!("127.0.0.1:{main_port}"))
        .env(
            "PASSGATE_SERVER__METRICS_LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env("PASSGATE_SERVER__DATA_DIR", dir.path().join("data"))
        .env("PASSGATE_TRUENAS__URL", "https://127.0.0.1:9")
        .env("PASSGATE_TRUENAS__API_KEY", "1-not-a-real-key")
        .env("PASSGATE_TRUENAS__API_USER", "truenas_admin")
        .env("PASSGATE_TRUENAS__INSECURE_SKIP_VERIFY", "true")
        .env("PASSGATE_LOG__SYSLOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start passgate");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let result = runtime.block_on(async {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let metrics = loop {
            match client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
            {
                Ok(r) => break r,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                Err(e) => panic!("metrics listener: {e}"),
            }
        };
        let status = metrics.status().as_u16();
        let text = metrics.text().await.expect("body");
        let other = client
            .get(format!("http://127.0.0.1:{port}/login"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        let main = client
            .get(format!("http://127.0.0.1:{main_port}/metrics"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        (status, text, other, main)
    });
    let _ = child.kill();
    let _ = child.wait();
    let (status, text, other, main) = result;
    assert_eq!(status, 200, "{text}");
    parse(&text);
    assert_eq!(other, 404, "the metrics listener serves nothing else");
    assert_eq!(
        main, 404,
        "the main listener keeps /metrics closed without metrics.allow"
    );
}
