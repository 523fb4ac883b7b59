//! The load harness: passgate under a login flood, against a baseline, in one run.
//! `cargo bench --bench load` (release build; needs `wrk`: `scripts/install-deps bench`).
//! Everything listens on and talks to 127.0.0.1 only. docs/PERFORMANCE.md explains the
//! measures and keeps the figures.
//!
//! - (a) baseline: a bare axum handler returning a static body, served by this process;
//! - (b) rejected logins: `POST /api/v1/login` from wrk through a trusted proxy address, with
//!   `X-Forwarded-For` cycling over 100,000 addresses that have all used up their allowance,
//!   so the limiter refuses every one (the run fails if any answer is not 429);
//! - (c) honest-user latency: `GET /login` from a separate client at 10 requests a second,
//!   without and during (b);
//! - (d) passgate's RSS after (b) and after 1,000,000 distinct addresses, and how much the
//!   audit database (and the fail2ban file) grew during (b). The 1,000,000-address fill
//!   runs once per harness run; run the harness more than once for its median.
//!
//! - (e) a flood from one address refused by the login limiter (429), against `GET /healthz`
//!   on the same passgate process (a second one, started after (a)-(d), see `flood_from_one`).
//!
//! `LOAD_ONLY=e` runs only (e); `LOAD_ONLY=ab` only (a) and (b) (no (c) baseline, no (d)),
//! for quick comparisons while profiling.
//!
//! passgate runs as its own process (the release binary, `passgate serve`) against the fake
//! TrueNAS of tests/support, so its RSS is its own. Each measure runs `LOAD_RUNS` times
//! (default 3) and the medians are printed; every wrk run is bounded by its duration.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};

const FLOOD_IPS: u32 = 100_000;
const MANY_IPS: u32 = 1_000_000;
const HONEST_RATE: Duration = Duration::from_millis(100);

/// One wrk run, as printed by the Lua `done` hook.
#[derive(Debug, Clone)]
struct WrkRun {
    requests: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    status_429: f64,
    status_other: f64,
    errors: f64,
}

fn runs() -> usize {
    std::env::var("LOAD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The wrk script: cycles `X-Forwarded-For` over `LOAD_IPS` addresses (each thread starts
/// at its own offset), counts answers by status and prints one `LOADRESULT` JSON line.
const WRK_SCRIPT: &str = r#"
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  n_ips = tonumber(os.getenv("LOAD_IPS") or "0")
  method = os.getenv("LOAD_METHOD") or "GET"
  path = os.getenv("LOAD_PATH") or "/"
  body = os.getenv("LOAD_BODY")
  step = tonumber(os.getenv("LOAD_THREADS") or "1")
  counter = id
  s429 = 0
  other = 0
end
function request()
  local headers = {}
  if n_ips > 0 then
    local i = counter % n_ips
    counter = counter + step
    headers["X-Forwarded-For"] = string.format("10.%d.%d.%d",
      math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
  end
  if body then headers["Content-Type"] = "application/json" end
  return wrk.format(method, path, headers, body)
end
function response(status, headers, body)
  if status == 429 then s429 = s429 + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local s, o = 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("s429")
    o = o + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'LOADRESULT {"requests":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"status_429":%d,"status_other":%d,"errors":%d}\n',
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, s, o,
    e.connect + e.read + e.write + e.timeout))
end
"#;

struct Wrk {
    script: PathBuf,
}

impl Wrk {
    fn new(dir: &Path) -> Self {
        let script = dir.join("load.lua");
        std::fs::write(&script, WRK_SCRIPT).expect("write the wrk script");
        Self { script }
    }

    /// Runs wrk for `secs` against `url` and returns its counts and figures.
    fn run(&self, url: &str, secs: u64, env: &[(&str, &str)]) -> WrkRun {
        let threads = "2";
        let output = Command::new("wrk")
            .args(["-t", threads, "-c", "64", "-d", &format!("{secs}s")])
            .args(["--timeout", "5s", "--latency", "-s"])
            .arg(&self.script)
            .arg(url)
            .env("LOAD_THREADS", threads)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run wrk ({e}): install it with `scripts/install-deps bench`")
            });
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "wrk failed: {stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("LOADRESULT "))
            .unwrap_or_else(|| panic!("no LOADRESULT from wrk:\n{stdout}"));
        let v: Value = serde_json::from_str(line).expect("LOADRESULT is JSON");
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        WrkRun {
            requests: f("requests"),
            rps: f("rps"),
            p50_ms: f("p50_ms"),
            p99_ms: f("p99_ms"),
            status_429: f("status_429"),
            status_other: f("status_other"),
            errors: f("errors"),
        }
    }
}

/// passgate as a child process (`passgate serve`), configured like a deployment behind a
/// reverse proxy on 127.0.0.1, with a fail2ban file.
struct Passgate {
    child: Child,
    url: String,
    data: PathBuf,
    fail2ban: PathBuf,
}

impl Passgate {
    /// `extra` is applied last, over the defaults below.
    async fn start(fake: &FakeTrueNas, dir: &Path, extra: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir).expect("passgate dir");
        let port = free_port();
        let data = dir.join("data");
        let fail2ban = dir.join("auth.log");
        let child = Command::new(env!("CARGO_BIN_EXE_passgate"))
            .arg("serve")
            .env_remove("PASSGATE_CONFIG")
            .env("PASSGATE_LOG", "warn")
            .env("PASSGATE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("PASSGATE_SERVER__DATA_DIR", &data)
            .env("PASSGATE_TRUENAS__URL", fake.url())
            .env("PASSGATE_TRUENAS__API", "jsonrpc")
            .env("PASSGATE_TRUENAS__API_KEY", fake.api_key())
            .env("PASSGATE_TRUENAS__API_USER", fake.api_user())
            .env("PASSGATE_TRUENAS__TLS_FINGERPRINT", fake.fingerprint())
            .env("PASSGATE_AUTH__VERIFIERS", r#"["truenas"]"#)
            .env("PASSGATE_PROXY__TRUSTED", r#"["127.0.0.1/32"]"#)
            // One attempt per address: the warm-up uses it, so the flood is all refusals.
            .env("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "1")
            .env("PASSGATE_LOG__FAIL2BAN_FILE", &fail2ban)
            .env("PASSGATE_LOG__SYSLOG", "off")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            // Its log (every refusal is an audit line at warn level) goes to a file, as
            // journald would take it, not to this terminal.
            .stderr(std::fs::File::create(dir.join("passgate.log")).expect("log file"))
            .spawn()
            .expect("start passgate");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "passgate did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            child,
            url,
            data,
            fail2ban,
        }
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn disk_bytes(&self) -> (u64, u64) {
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let db = size(self.data.join("passgate.db"))
            + size(self.data.join("passgate.db-wal"))
            + size(self.data.join("passgate.db-shm"));
        (db, size(self.fail2ban.clone()))
    }

    async fn audit_rows(&self) -> i64 {
        let path = self.data.join("passgate.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("open the audit database");
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
            .fetch_one(&pool)
            .await
            .expect("count audit rows");
        pool.close().await;
        n
    }
}

impl Drop for Passgate {
    fn drop(&mut self) {
        // SIGTERM lets it drain the audit queue like a real stop.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Sequential `GET /login` at `HONEST_RATE` until `stop`; returns sorted latencies in ms.
async fn honest_client(url: String, stop: tokio::sync::watch::Receiver<bool>) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(HONEST_RATE);
    while !*stop.borrow() {
        tick.tick().await;
        let start = Instant::now();
        match client.get(format!("{url}/login")).send().await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                samples.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(r) => panic!("the honest client got {}", r.status()),
            Err(e) => panic!("the honest client failed: {e}"),
        }
    }
    samples.sort_by(f64::total_cmp);
    samples
}

/// The bare axum baseline on its own port.
async fn baseline_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Runs `secs` of wrk on a blocking thread while the honest client measures.
async fn with_honest_client(
    url: &str,
    during: impl FnOnce() -> WrkRun + Send + 'static,
) -> (WrkRun, Vec<f64>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let honest = tokio::spawn(honest_client(url.to_string(), stop_rx));
    let run = tokio::task::spawn_blocking(during)
        .await
        .expect("wrk thread");
    let _ = stop_tx.send(true);
    let samples = honest.await.expect("honest client");
    (run, samples)
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: the harness takes
    // minutes and needs wrk, so it runs only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("load harness: skipped outside `cargo bench --bench load`");
        return;
    }
    let runs = runs();
    let only = std::env::var("LOAD_ONLY").unwrap_or_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let wrk = Wrk::new(dir.path());
    let fake = FakeTrueNas::start(
        Flavour::V26,
        vec![FakeUser::new("alice", "alice-password-1")],
    )
    .await;
    println!("load harness: {runs} run(s) per measure, wrk -t2 -c64, 127.0.0.1 only");
    println!();
    println!("| Measure | Median of {runs} | Target |");
    println!("|---|---|---|");
    if only != "e" {
        flood_from_many(&wrk, &fake, &dir.path().join("b"), runs, only == "ab").await;
    }
    if only.is_empty() || only == "e" {
        flood_from_one(&wrk, &fake, &dir.path().join("e"), runs).await;
    }
}

/// (e): one address, no proxy in front (the TCP peer 127.0.0.1 is the client, no
/// `X-Forwarded-For`), flooding `POST /api/v1/login` so that the login limiter answers 429,
/// against `GET /healthz` on the same process with the same wrk settings, the two
/// interleaved run by run. The global throttle (20 a second per client by default) would
/// otherwise answer both floods itself: it is raised out of the way for this process only,
/// so what is measured is the login limiter's refusal.
async fn flood_from_one(wrk: &Wrk, fake: &FakeTrueNas, dir: &Path, runs: usize) {
    let passgate = Passgate::start(
        fake,
        dir,
        &[
            ("PASSGATE_PROXY__TRUSTED", "[]"),
            ("PASSGATE_RATE_LIMIT__GLOBAL_PER_SECOND", "1000000000"),
            ("PASSGATE_RATE_LIMIT__GLOBAL_BURST", "1000000000"),
        ],
    )
    .await;
    let login = format!("{}/api/v1/login", passgate.url);
    // The one attempt of 127.0.0.1 goes to a malformed body (400, no verification), so
    // every request below is refused by the limiter. The window (300 s) outlasts the runs.
    let warm = reqwest::Client::new()
        .post(&login)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("warm-up request");
    assert_eq!(warm.status(), 400, "the warm-up must use the one attempt");
    let login_body = r#"{"username":"alice","password":"not-her-password"}"#;
    let mut health = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..runs {
        health.push(wrk.run(&format!("{}/healthz", passgate.url), 10, &[]));
        let run = wrk.run(
            &login,
            10,
            &[
                ("LOAD_METHOD", "POST"),
                ("LOAD_PATH", "/api/v1/login"),
                ("LOAD_BODY", login_body),
            ],
        );
        assert_eq!(
            run.status_other, 0.0,
            "every flood request must be refused by the login limiter: {run:?}"
        );
        refused.push(run);
    }
    let (_, f2b) = passgate.disk_bytes();
    let mut h_rps: Vec<f64> = health.iter().map(|r| r.rps).collect();
    let mut r_rps: Vec<f64> = refused.iter().map(|r| r.rps).collect();
    let mut h_p50: Vec<f64> = health.iter().map(|r| r.p50_ms).collect();
    let mut r_p50: Vec<f64> = refused.iter().map(|r| r.p50_ms).collect();
    let h = median(&mut h_rps);
    let r = median(&mut r_rps);
    println!(
        "| (e) `GET /healthz`, one address, requests/s | {h:.0} (wrk latency p50 {:.2} ms) | |",
        median(&mut h_p50)
    );
    println!(
        "| (e) limiter 429s, one address, requests/s | {r:.0} (wrk latency p50 {:.2} ms; fail2ban file {:.1} MiB) | |",
        median(&mut r_p50),
        f2b as f64 / (1024.0 * 1024.0)
    );
    println!("| (e) 429 / healthz throughput | {:.2} | ≥ 0.9 |", r / h);
    let errors: f64 = health.iter().chain(&refused).map(|r| r.errors).sum();
    println!("wrk socket errors in (e): {errors}");
}

/// (a) to (d). With `quick`, only (a) and (b): no honest client, no disk and memory figures.
async fn flood_from_many(wrk: &Wrk, fake: &FakeTrueNas, dir: &Path, runs: usize, quick: bool) {
    let passgate = Passgate::start(fake, dir, &[]).await;
    let baseline = baseline_server().await;
    let login_body = r#"{"username":"alice","password":"not-her-password"}"#;
    let ips = FLOOD_IPS.to_string();

    // (a) the baseline.
    let a: Vec<WrkRun> = (0..runs).map(|_| wrk.run(&baseline, 10, &[])).collect();

    // (c) without a flood, as many runs as the others.
    let mut quiet_runs = Vec::new();
    for _ in 0..if quick { 0 } else { runs } {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let client = tokio::spawn(honest_client(passgate.url.clone(), stop_rx));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = stop_tx.send(true);
        quiet_runs.push(client.await.expect("honest client"));
    }

    // Rows and time are counted from before the warm-up, whose own refusals are coalesced
    // into the same minutes.
    let (db_before, f2b_before) = passgate.disk_bytes();
    let rows_before = passgate.audit_rows().await;
    let flood_started = Instant::now();

    // Warm-up: every flood address uses its one attempt on a malformed body (400, no
    // verification), so that the flood below is refused by the limiter alone.
    let warm = wrk.run(
        &format!("{}/api/v1/login", passgate.url),
        10,
        &[
            ("LOAD_IPS", ips.as_str()),
            ("LOAD_METHOD", "POST"),
            ("LOAD_PATH", "/api/v1/login"),
            ("LOAD_BODY", "{"),
        ],
    );
    assert!(
        warm.requests >= f64::from(FLOOD_IPS),
        "the warm-up did not reach every address ({} requests)",
        warm.requests
    );

    // (b) the flood, with (c) measured during it, and (d) disk growth.
    let mut b = Vec::new();
    let mut during = Vec::new();
    let mut rss_after_b = Vec::new();
    for _ in 0..runs {
        let url = format!("{}/api/v1/login", passgate.url);
        let script = wrk.script.clone();
        let ips = ips.clone();
        let (run, samples) = with_honest_client(&passgate.url, move || {
            Wrk { script }.run(
                &url,
                15,
                &[
                    ("LOAD_IPS", ips.as_str()),
                    ("LOAD_METHOD", "POST"),
                    ("LOAD_PATH", "/api/v1/login"),
                    ("LOAD_BODY", login_body),
                ],
            )
        })
        .await;
        assert_eq!(
            run.status_other, 0.0,
            "every flood request must be refused by the limiter: {run:?}"
        );
        b.push(run);
        during.push(samples);
        rss_after_b.push(passgate.rss_mib().0);
    }
    let mut a_rps: Vec<f64> = a.iter().map(|r| r.rps).collect();
    let mut b_rps: Vec<f64> = b.iter().map(|r| r.rps).collect();
    let mut b_p99: Vec<f64> = b.iter().map(|r| r.p99_ms).collect();
    let mut a_p50: Vec<f64> = a.iter().map(|r| r.p50_ms).collect();
    let mut b_p50: Vec<f64> = b.iter().map(|r| r.p50_ms).collect();
    let a_rps = median(&mut a_rps);
    let b_rps = median(&mut b_rps);
    println!(
        "| (a) baseline, requests/s | {a_rps:.0} (wrk latency p50 {:.2} ms) | |",
        median(&mut a_p50)
    );
    println!(
        "| (b) refused logins, requests/s | {b_rps:.0} (wrk latency p50 {:.2} / p99 {:.2} ms) | |",
        median(&mut b_p50),
        median(&mut b_p99)
    );
    println!("| (b)/(a) throughput | {:.2} | ≥ 0.6 |", b_rps / a_rps);
    let errors: f64 = a.iter().chain(&b).map(|r| r.errors).sum();
    if quick {
        println!("wrk socket errors in (a) and (b): {errors}");
        return;
    }
    // Coalesced failures reach the store when their minute closes.
    tokio::time::sleep(Duration::from_secs(65)).await;
    let flood_minutes = flood_started.elapsed().as_secs_f64() / 60.0;
    let (db_after, f2b_after) = passgate.disk_bytes();
    let rows_after = passgate.audit_rows().await;
    let (_, hwm_b) = passgate.rss_mib();
    let rss_b = median(&mut rss_after_b);

    // (d) a million distinct addresses.
    let many = MANY_IPS.to_string();
    let fill = wrk.run(
        &format!("{}/api/v1/login", passgate.url),
        60,
        &[
            ("LOAD_IPS", many.as_str()),
            ("LOAD_METHOD", "POST"),
            ("LOAD_PATH", "/api/v1/login"),
            ("LOAD_BODY", "{"),
        ],
    );
    let (rss_many, hwm_many) = passgate.rss_mib();

    // The rest of the report.
    let mut during_p50: Vec<f64> = during.iter().map(|s| percentile(s, 0.50)).collect();
    let mut during_p99: Vec<f64> = during.iter().map(|s| percentile(s, 0.99)).collect();
    let during_p99 = median(&mut during_p99);
    let mut quiet_p50: Vec<f64> = quiet_runs.iter().map(|s| percentile(s, 0.50)).collect();
    let mut quiet_p99: Vec<f64> = quiet_runs.iter().map(|s| percentile(s, 0.99)).collect();
    let quiet_p99 = median(&mut quiet_p99);
    let rows = rows_after - rows_before;
    println!(
        "| (c) honest GET /login p50 / p99, no flood | {:.2} / {quiet_p99:.2} ms ({} samples per run) | |",
        median(&mut quiet_p50),
        quiet_runs.iter().map(Vec::len).min().unwrap_or(0)
    );
    println!(
        "| (c) honest GET /login p50 / p99, during (b) | {:.2} / {during_p99:.2} ms ({} samples per run) | p99 ≤ 25 ms |",
        median(&mut during_p50),
        during.iter().map(Vec::len).min().unwrap_or(0)
    );
    println!(
        "| (c) p99 during / without flood | {:.2} | |",
        during_p99 / quiet_p99
    );
    println!(
        "| (d) RSS after each (b) run (100,000 addresses) | {rss_b:.1} MiB (peak {hwm_b:.1}) | |"
    );
    println!(
        "| (d) RSS after 1,000,000 addresses | {rss_many:.1} MiB (peak {hwm_many:.1}; {:.0} requests) | ≤ 150 MiB |",
        fill.requests
    );
    println!(
        "| (d) audit rows added during warm-up and (b) | {rows} in {flood_minutes:.1} min = {:.0}/min | ≤ 1,004/min |",
        rows as f64 / flood_minutes.max(1.0)
    );
    println!(
        "| (d) audit database growth during warm-up and (b) | {:.1} KiB | |",
        (db_after.saturating_sub(db_before)) as f64 / 1024.0
    );
    println!(
        "| (d) fail2ban file growth during warm-up and (b) | {:.1} MiB; (b) alone refused {:.0} | |",
        (f2b_after.saturating_sub(f2b_before)) as f64 / (1024.0 * 1024.0),
        b.iter().map(|r| r.status_429).sum::<f64>()
    );
    println!("wrk socket errors in (a) and (b): {errors}");
    drop(passgate);
}
