//! Prometheus metrics on `prometheus-client`: atomic counters, gauges and histograms in
//! labelled families, fed from the audit entry point (events), the TrueNAS connection (calls)
//! and the verifier chain (latency). Every label value is a fixed string from passgate's own
//! code: never a username, an address or anything a client sent (cardinality and privacy).
//! The crate writes OpenMetrics; `render` turns that into the classic text format 0.0.4
//! (see `to_text_format`), which every Prometheus scrapes and the tests parse.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

/// Verifier names a login is counted under; anything else is `other`.
const KNOWN_VERIFIERS: [&str; 3] = ["truenas", "smb", "unixhash"];

// Label sets: `&'static str` fields so a value can only be a string from passgate's code.
// Fields are in alphabetical order, as the hand-written exposition sorted them.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    outcome: &'static str,
    verifier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerifierLabels {
    verifier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram_family<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(|| Histogram::new(BUCKETS))
}

/// The process-wide metrics. Each family takes only a shared read lock on the hot path (a
/// write lock once, the first time a label set is seen); the numbers themselves are atomics.
struct Metrics {
    registry: Registry,
    logins: Family<LoginLabels, Counter>,
    password_changes: Family<OutcomeLabels, Counter>,
    totp: Family<OutcomeLabels, Counter>,
    refusals: Family<KindLabels, Counter>,
    truenas_call_errors: Family<MethodLabels, Counter>,
    truenas_rate_limited: Family<MethodLabels, Counter>,
    truenas_call_seconds: HistogramFamily<MethodLabels>,
    verifier_seconds: HistogramFamily<VerifierLabels>,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_timed_out: Family<PhaseLabels, Counter>,
    connections_open: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            logins: Family::default(),
            password_changes: Family::default(),
            totp: Family::default(),
            refusals: Family::default(),
            truenas_call_errors: Family::default(),
            truenas_rate_limited: Family::default(),
            truenas_call_seconds: histogram_family(),
            verifier_seconds: histogram_family(),
            connections_refused: Family::default(),
            connections_timed_out: Family::default(),
            connections_open: Gauge::default(),
        };
        let mut registry = Registry::default();
        // Counter names without `_total` (the crate adds it to samples); help texts without
        // the final period (the crate adds it).
        registry.register(
            "passgate_connections_refused",
            "Connections closed at accept because a connection cap was reached, by cap",
            m.connections_refused.clone(),
        );
        registry.register(
            "passgate_connections_timed_out",
            "Connections or requests cut off because the client was too slow, by phase",
            m.connections_timed_out.clone(),
        );
        registry.register(
            "passgate_logins",
            "Sign-in attempts by outcome and deciding verifier",
            m.logins.clone(),
        );
        registry.register(
            "passgate_password_changes",
            "Password changes by outcome",
            m.password_changes.clone(),
        );
        registry.register(
            "passgate_totp",
            "Two-step code checks by outcome",
            m.totp.clone(),
        );
        registry.register(
            "passgate_refusals",
            "Requests refused by the per-client limiter or the per-user lockout",
            m.refusals.clone(),
        );
        registry.register(
            "passgate_truenas_call_errors",
            "TrueNAS API calls that failed, by method",
            m.truenas_call_errors.clone(),
        );
        registry.register(
            "passgate_truenas_rate_limited",
            "TrueNAS calls answered \"Rate Limit Exceeded\", by method",
            m.truenas_rate_limited.clone(),
        );
        registry.register(
            "passgate_truenas_call_seconds",
            "TrueNAS API call latency, by method",
            m.truenas_call_seconds.clone(),
        );
        registry.register(
            "passgate_verifier_seconds",
            "Time each verifier took to answer",
            m.verifier_seconds.clone(),
        );
        registry.register(
            "passgate_connections_open",
            "Client connections open on all listeners",
            m.connections_open.clone(),
        );
        Metrics { registry, ..m }
    }
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts an audit event under the metric it belongs to (called by the audit entry point).
pub fn audit_event(event: Event, outcome: Outcome, verifier: Option<&str>) {
    let m = metrics();
    let outcome = outcome.as_str();
    let verifier = verifier.map(|v| {
        KNOWN_VERIFIERS
            .into_iter()
            .find(|known| *known == v)
            .unwrap_or("other")
    });
    match event {
        Event::LoginSucceeded | Event::LoginFailed => {
            let labels = LoginLabels {
                outcome,
                verifier: verifier.unwrap_or("none"),
            };
            m.logins.get_or_create(&labels).inc();
        }
        Event::PasswordChanged | Event::PasswordChangeFailed => {
            m.password_changes
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        }
        Event::TotpSucceeded | Event::TotpFailed => {
            m.totp.get_or_create(&OutcomeLabels { outcome }).inc();
        }
        Event::RateLimited => {
            let kind = "rate_limited";
            m.refusals.get_or_create(&KindLabels { kind }).inc();
        }
        Event::UserLockedOut => {
            let kind = "locked_out";
            m.refusals.get_or_create(&KindLabels { kind }).inc();
        }
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
    let m = metrics();
    let labels = MethodLabels {
        method: method_label(method),
    };
    m.truenas_call_seconds
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if failed {
        m.truenas_call_errors.get_or_create(&labels).inc();
    }
}

/// TrueNAS answered "Rate Limit Exceeded": passgate's budget should make this never happen,
/// so it is counted apart from other failures, where an admin's alert can find it.
pub fn truenas_rate_limited(method: &str) {
    let labels = MethodLabels {
        method: method_label(method),
    };
    metrics().truenas_rate_limited.get_or_create(&labels).inc();
}

/// One verifier's answer time.
pub fn verifier_latency(verifier: &'static str, elapsed: Duration) {
    metrics()
        .verifier_seconds
        .get_or_create(&VerifierLabels { verifier })
        .observe(elapsed.as_secs_f64());
}

/// Connections open on every listener together: one atomic, moved at every accept and close.
pub fn connection_opened() {
    metrics().connections_open.inc();
}

pub fn connection_closed() {
    metrics().connections_open.dec();
}

/// A connection closed at accept because a cap was reached (`max_connections` or
/// `max_connections_per_ip`).
pub fn connection_refused(reason: &'static str) {
    metrics()
        .connections_refused
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// A connection passgate closed because a client was too slow (`header_timeout`,
/// `body_timeout`, `idle_timeout`, `tls_handshake_timeout`).
pub fn connection_timed_out(phase: &'static str) {
    metrics()
        .connections_timed_out
        .get_or_create(&PhaseLabels { phase })
        .inc();
}

/// The current values in the Prometheus text format, with the values other modules own
/// (limiter size, audit queue, fail2ban drops) read at scrape time.
pub fn render(limiter_keys: usize, audit_queue_depth: usize, fail2ban_dropped: u64) -> String {
    let mut open_metrics = String::new();
    // Writing into a String cannot fail; on an encoder error the scrape shows what was
    // written so far rather than nothing.
    let _ = encode_registry(&mut open_metrics, &metrics().registry);
    let mut out = to_text_format(&open_metrics);
    // These three are kept by their modules, not in this registry: written as the lines they
    // always were, with values passgate computed itself (no label, nothing from a client).
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
    out
}

/// OpenMetrics (the crate's output) to the text format 0.0.4 that `/metrics` has always
/// served: a counter's HELP and TYPE name its `_total` sample, and a bucket's `le` label comes
/// first, as before. Label values are passgate's own fixed strings (no quote, comma or
/// newline), so a line-by-line rewrite is exact.
fn to_text_format(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len() + 256);
    let mut held_help: Option<&str> = None;
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Held until the TYPE line says whether the name needs `_total`.
            held_help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(help) = held_help.take() {
                let (help_name, text) = help.split_once(' ').unwrap_or((help, ""));
                let _ = writeln!(out, "# HELP {help_name}{suffix} {text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        out.push_str(&le_first(line));
        out.push('\n');
    }
    out
}

/// `x_bucket{method="m",le="0.5"} 3` → `x_bucket{le="0.5",method="m"} 3`.
fn le_first(line: &str) -> std::borrow::Cow<'_, str> {
    let Some(open) = line.find('{') else {
        return line.into();
    };
    let Some(start) = line.find(",le=\"") else {
        return line.into();
    };
    let value_start = start + ",le=\"".len();
    let Some(len) = line[value_start..].find('"') else {
        return line.into();
    };
    let end = value_start + len + 1;
    let le = &line[start + 1..end];
    format!(
        "{}{},{}{}",
        &line[..=open],
        le,
        &line[open + 1..start],
        &line[end..]
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_total_in_help_and_type() {
        let text =
            to_text_format("# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"y\"} 2\n# EOF\n");
        assert_eq!(
            text,
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"y\"} 2\n"
        );
    }

    #[test]
    fn bucket_le_moves_first() {
        assert_eq!(
            le_first("h_bucket{method=\"m\",le=\"0.5\"} 3"),
            "h_bucket{le=\"0.5\",method=\"m\"} 3"
        );
        assert_eq!(
            le_first("h_bucket{le=\"+Inf\"} 3"),
            "h_bucket{le=\"+Inf\"} 3"
        );
        assert_eq!(
            le_first("h_sum{method=\"m\"} 0.1"),
            "h_sum{method=\"m\"} 0.1"
        );
    }

    #[test]
    fn unknown_methods_and_verifiers_are_other() {
        assert_eq!(method_label("user.query"), "user.query");
        assert_eq!(method_label("alice"), "other");
        audit_event(Event::LoginFailed, Outcome::Failure, Some("evil\"label"));
        let text = render(0, 0, 0);
        assert!(text.contains(r#"passgate_logins_total{outcome="failure",verifier="other"}"#));
        assert!(!text.contains("evil"));
    }

    #[test]
    fn histogram_is_cumulative_with_le_first() {
        verifier_latency("smb", Duration::from_millis(20));
        let text = render(1, 2, 3);
        assert!(text.contains(r#"passgate_verifier_seconds_bucket{le="+Inf",verifier="smb"}"#));
        assert!(text.contains(r#"passgate_verifier_seconds_count{verifier="smb"}"#));
        assert!(text.contains("# TYPE passgate_verifier_seconds histogram"));
        assert!(text.contains("passgate_fail2ban_dropped_total 3"));
        assert!(!text.contains("# EOF"));
    }
}
