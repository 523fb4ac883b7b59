//! Prometheus metrics, written in the text exposition format. One process-wide registry,
//! fed from the audit entry point (events), the TrueNAS connection (calls) and the verifier
//! chain (latency). Every label value is a fixed string from passgate's own code: never a
//! username, an address or anything a client sent (cardinality and privacy).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::audit::{Event, Outcome};

/// Seconds; from a fast SMB refusal to a slow PAM check with TrueNAS' fail delay.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// TrueNAS methods passgate calls; anything else is counted as `other`.
const KNOWN_METHODS: &[&str] = &[
    "auth.login_ex",
    "auth.login_ex_continue",
    "auth.login_with_api_key",
    "auth.logout",
    "auth.mechanism_choices",
    "core.get_jobs",
    "core.ping",
    "group.query",
    "mail.config",
    "mail.send",
    "system.info",
    "system.security.config",
    "user.query",
    "user.set_password",
    "user.update",
];

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

fn with_registry(f: impl FnOnce(&mut Registry)) {
    // A poisoned lock only means a panic mid-update of a number: keep counting.
    let mut guard = registry().lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard);
}

fn count(name: &'static str, labels: Labels) {
    with_registry(|r| *r.counters.entry((name, labels)).or_default() += 1);
}

fn observe(name: &'static str, labels: Labels, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    with_registry(|r| {
        let h = r.histograms.entry((name, labels)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    });
}

/// Counts an audit event under the metric it belongs to (called by the audit entry point).
pub fn audit_event(event: Event, outcome: Outcome, verifier: Option<&str>) {
    let outcome = outcome.as_str();
    let verifier = verifier.map(|v| {
        ["truenas", "smb", "unixhash"]
            .into_iter()
            .find(|known| *known == v)
            .unwrap_or("other")
    });
    match event {
        Event::LoginSucceeded | Event::LoginFailed => count(
            "passgate_logins_total",
            vec![
                ("outcome", outcome),
                ("verifier", verifier.unwrap_or("none")),
            ],
        ),
        Event::PasswordChanged | Event::PasswordChangeFailed => count(
            "passgate_password_changes_total",
            vec![("outcome", outcome)],
        ),
        Event::TotpSucceeded | Event::TotpFailed => {
            count("passgate_totp_total", vec![("outcome", outcome)])
        }
        Event::RateLimited => count("passgate_refusals_total", vec![("kind", "rate_limited")]),
        Event::UserLockedOut => count("passgate_refusals_total", vec![("kind", "locked_out")]),
        _ => {}
    }
}

fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// One TrueNAS call: its latency, and an error count when it failed.
pub fn truenas_call(method: &str, elapsed: Duration, failed: bool) {
    let method = method_label(method);
    observe(
        "passgate_truenas_call_seconds",
        vec![("method", method)],
        elapsed,
    );
    if failed {
        count(
            "passgate_truenas_call_errors_total",
            vec![("method", method)],
        );
    }
}

/// TrueNAS answered "Rate Limit Exceeded": passgate's budget should make this never happen,
/// so it is counted apart from other failures, where an admin's alert can find it.
pub fn truenas_rate_limited(method: &str) {
    count(
        "passgate_truenas_rate_limited_total",
        vec![("method", method_label(method))],
    );
}

/// One verifier's answer time.
pub fn verifier_latency(verifier: &'static str, elapsed: Duration) {
    observe(
        "passgate_verifier_seconds",
        vec![("verifier", verifier)],
        elapsed,
    );
}

/// Connections open on every listener together; a gauge kept apart from the registry because
/// it moves at every accept and close, which must not wait for the registry lock.
static CONNECTIONS_OPEN: AtomicU64 = AtomicU64::new(0);

pub fn connection_opened() {
    CONNECTIONS_OPEN.fetch_add(1, Ordering::Relaxed);
}

pub fn connection_closed() {
    CONNECTIONS_OPEN.fetch_sub(1, Ordering::Relaxed);
}

/// A connection closed at accept because a cap was reached (`max_connections` or
/// `max_connections_per_ip`).
pub fn connection_refused(reason: &'static str) {
    count(
        "passgate_connections_refused_total",
        vec![("reason", reason)],
    );
}

/// A connection passgate closed because a client was too slow (`header_timeout`,
/// `body_timeout`, `idle_timeout`, `tls_handshake_timeout`).
pub fn connection_timed_out(phase: &'static str) {
    count(
        "passgate_connections_timed_out_total",
        vec![("phase", phase)],
    );
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "passgate_connections_refused_total",
        "counter",
        "Connections closed at accept because a connection cap was reached, by cap.",
    ),
    (
        "passgate_connections_timed_out_total",
        "counter",
        "Connections or requests cut off because the client was too slow, by phase.",
    ),
    (
        "passgate_logins_total",
        "counter",
        "Sign-in attempts by outcome and deciding verifier.",
    ),
    (
        "passgate_password_changes_total",
        "counter",
        "Password changes by outcome.",
    ),
    (
        "passgate_totp_total",
        "counter",
        "Two-step code checks by outcome.",
    ),
    (
        "passgate_refusals_total",
        "counter",
        "Requests refused by the per-client limiter or the per-user lockout.",
    ),
    (
        "passgate_truenas_call_errors_total",
        "counter",
        "TrueNAS API calls that failed, by method.",
    ),
    (
        "passgate_truenas_rate_limited_total",
        "counter",
        "TrueNAS calls answered \"Rate Limit Exceeded\", by method.",
    ),
    (
        "passgate_truenas_call_seconds",
        "histogram",
        "TrueNAS API call latency, by method.",
    ),
    (
        "passgate_verifier_seconds",
        "histogram",
        "Time each verifier took to answer.",
    ),
];

fn labels_text(labels: &[(&str, &str)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .chain(extra.as_ref())
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    parts.sort();
    format!("{{{}}}", parts.join(","))
}

/// The current values in the Prometheus text format, with the two gauges read at scrape time.
pub fn render(limiter_keys: usize, audit_queue_depth: usize, fail2ban_dropped: u64) -> String {
    let mut out = String::new();
    let guard = registry().lock().unwrap_or_else(|e| e.into_inner());
    for (name, kind, help) in HELP {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for ((n, labels), value) in guard.counters.iter().filter(|((n, _), _)| n == name) {
            let _ = writeln!(out, "{n}{} {value}", labels_text(labels, None));
        }
        for ((n, labels), h) in guard.histograms.iter().filter(|((n, _), _)| n == name) {
            for (bound, cumulative) in BUCKETS.iter().zip(h.buckets.iter()) {
                let le = bound.to_string();
                let _ = writeln!(
                    out,
                    "{n}_bucket{} {cumulative}",
                    labels_text(labels, Some(("le", &le)))
                );
            }
            let _ = writeln!(
                out,
                "{n}_bucket{} {}",
                labels_text(labels, Some(("le", "+Inf"))),
                h.count
            );
            let _ = writeln!(out, "{n}_sum{} {}", labels_text(labels, None), h.sum);
            let _ = writeln!(out, "{n}_count{} {}", labels_text(labels, None), h.count);
        }
    }
    drop(guard);
    let _ = writeln!(
        out,
        "# HELP passgate_limiter_tracked_clients Clients the per-client login limiter tracks."
    );
    let _ = writeln!(out, "# TYPE passgate_limiter_tracked_clients gauge");
    let _ = writeln!(out, "passgate_limiter_tracked_clients {limiter_keys}");
    let _ = writeln!(
        out,
        "# HELP passgate_audit_queue_depth Audit rows waiting for the writer."
    );
    let _ = writeln!(out, "# TYPE passgate_audit_queue_depth gauge");
    let _ = writeln!(out, "passgate_audit_queue_depth {audit_queue_depth}");
    let _ = writeln!(
        out,
        "# HELP passgate_fail2ban_dropped_total fail2ban lines dropped because 4 MiB were already waiting for the disk."
    );
    let _ = writeln!(out, "# TYPE passgate_fail2ban_dropped_total counter");
    let _ = writeln!(out, "passgate_fail2ban_dropped_total {fail2ban_dropped}");
    let _ = writeln!(
        out,
        "# HELP passgate_connections_open Client connections open on all listeners."
    );
    let _ = writeln!(out, "# TYPE passgate_connections_open gauge");
    let _ = writeln!(
        out,
        "passgate_connections_open {}",
        CONNECTIONS_OPEN.load(Ordering::Relaxed)
    );
    out
}
