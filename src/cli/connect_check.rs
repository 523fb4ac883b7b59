//! `passgate check-config --connect`: tries the configuration against the real NAS, one step
//! at a time, and says in plain words what works and what to change. Stops at the first
//! failure, because every later step depends on the earlier ones.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{ApiChoice, Config, MailTransportChoice, VerifierName};
use crate::mail::Mailer as _;
use crate::truenas::connect::{trust_mode, versions_probe, VersionsProbe};
use crate::truenas::jsonrpc::JsonRpcClient;
use crate::truenas::tls_diagnosis;
use crate::truenas::NasError;

/// What one step found.
pub enum Step {
    Ok(String),
    /// Works, but something will not (mail for reset links, say).
    Warn(String),
    Fail(String),
}

/// The steps in order; `Err` carries the steps up to and including the failing one.
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Fail(_)))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let (tag, text) = match step {
                Step::Ok(t) => ("[ok]  ", t),
                Step::Warn(t) => ("[warn]", t),
                Step::Fail(t) => ("[FAIL]", t),
            };
            let mut lines = text.lines();
            let _ = writeln!(out, "{tag} {}", lines.next().unwrap_or_default());
            for line in lines {
                let _ = writeln!(out, "       {line}");
            }
        }
        out
    }
}

/// Runs every step until one fails.
pub async fn run(config: &Config) -> Report {
    let mut report = Report { steps: Vec::new() };
    macro_rules! step {
        ($e:expr) => {{
            let step = $e;
            let stop = matches!(step, Step::Fail(_));
            report.steps.push(step);
            if stop {
                return report;
            }
        }};
    }
    let endpoint = match config.require_truenas() {
        Ok(e) => e,
        Err(e) => {
            step!(Step::Fail(e.to_string()));
            return report;
        }
    };
    let timeout = Duration::from_secs(config.truenas.timeout_secs);

    step!(tls_step(config, &endpoint.host, endpoint.port, timeout).await);

    let versions = versions_probe(config).await;
    let rest = match &versions {
        Ok(VersionsProbe::JsonRpc(newest)) => {
            let newest = newest
                .map(|v| format!(", newest API version {v}"))
                .unwrap_or_default();
            if config.truenas.api == ApiChoice::Rest {
                step!(Step::Warn(format!(
                    "API: this TrueNAS has JSON-RPC 2.0 (/api/current{newest}) but truenas.api = \"rest\"; \
                     REST is deprecated and gone in 26: use api = \"auto\""
                )));
                true
            } else {
                step!(Step::Ok(format!(
                    "API: JSON-RPC 2.0 over WebSocket on /api/current{newest}"
                )));
                false
            }
        }
        Ok(VersionsProbe::RestOnly) => {
            step!(Step::Ok(String::from(
                "API: legacy REST /api/v2.0 (no /api/versions: TrueNAS 24.10 or older)"
            )));
            true
        }
        Err(e) => {
            step!(Step::Fail(format!("API: {e}")));
            true
        }
    };
    if rest {
        step!(rest_steps(config).await);
    } else {
        match crate::truenas::connect::jsonrpc_client(config, None) {
            Ok(client) => {
                for s in jsonrpc_steps(config, &client).await {
                    step!(s);
                }
            }
            Err(e) => step!(Step::Fail(e.to_string())),
        }
    }
    if config.auth.verifiers.contains(&VerifierName::Smb) {
        step!(smb_step(config, timeout).await);
    }
    report
}

async fn tls_step(config: &Config, host: &str, port: u16, timeout: Duration) -> Step {
    let trust = match trust_mode(config) {
        Ok(t) => t,
        Err(e) => return Step::Fail(format!("TLS: {e}")),
    };
    let how = match trust {
        crate::truenas::tls::TrustMode::Pinned(_) => " (pinned by truenas.tls_fingerprint)",
        crate::truenas::tls::TrustMode::Insecure => {
            " (NOT checked: truenas.insecure_skip_verify is true)"
        }
        crate::truenas::tls::TrustMode::Roots { ca_file: Some(_) } => {
            " (trusted through truenas.ca_file)"
        }
        crate::truenas::tls::TrustMode::Roots { ca_file: None } => " (trusted by the system roots)",
    };
    match tls_diagnosis::probe(host, port, host, trust, timeout).await {
        Ok(report) if report.outcome.is_ok() => {
            let text = report.to_string();
            let mut lines = text.trim_end().splitn(2, '\n');
            let first = lines.next().unwrap_or_default();
            let rest = lines.next().map(|r| format!("\n{r}")).unwrap_or_default();
            Step::Ok(format!("{first}{how}{rest}"))
        }
        Ok(report) => Step::Fail(report.to_string()),
        Err(e) => Step::Fail(format!("TLS: {e}")),
    }
}

async fn jsonrpc_steps(config: &Config, client: &JsonRpcClient) -> Vec<Step> {
    let mut steps = Vec::new();
    let version = match client.ping_and_version().await {
        Ok(v) => v,
        Err(e) => {
            steps.push(Step::Fail(login_failure(&e)));
            return steps;
        }
    };
    let mechanism = client.mechanism().map(|m| m.as_str()).unwrap_or("unknown");
    let owner = config
        .truenas
        .api_user
        .as_deref()
        .map(|u| format!(" as {u}"))
        .unwrap_or_default();
    let version = version
        .map(|v| format!("TrueNAS {v}"))
        .unwrap_or_else(|| String::from("TrueNAS version not readable"));
    let secrecy_note = match client.mechanism() {
        Some(crate::truenas::admin_login::Mechanism::Scram) => " (the key never crossed the wire)",
        _ => " (the key was sent inside TLS)",
    };
    steps.push(Step::Ok(format!(
        "API key login: {mechanism}{owner}{secrecy_note}; {version}"
    )));

    steps.push(owner_step(config, client).await);
    if matches!(steps.last(), Some(Step::Fail(_))) {
        return steps;
    }
    steps.push(mail_step(config, client).await);
    steps
}

fn login_failure(e: &NasError) -> String {
    match e {
        NasError::AdminAuth(why) => format!(
            "API key login: refused: {why}\nCreate a key in TrueNAS (user menu → API Keys) for a FULL_ADMIN user \
             and set truenas.api_key_file and truenas.api_user"
        ),
        NasError::RateLimited(why) => format!(
            "API key login: {why}\nTrueNAS limits unauthenticated calls to 20 a minute per address: wait a minute"
        ),
        other => format!("API key login: {other}"),
    }
}

/// The key must be FULL_ADMIN: only then does `user.query` return hashes and
/// `user.set_password` skip the old password (which the portal has checked itself).
async fn owner_step(config: &Config, client: &JsonRpcClient) -> Step {
    let filter = match &config.truenas.api_user {
        Some(owner) => json!([[["username", "=", owner]]]),
        None => json!([[["local", "=", true]]]),
    };
    let users = match client.admin_call("user.query", filter).await {
        Ok(Value::Array(users)) => users,
        Ok(_) => return Step::Fail(String::from("user.query: not a list")),
        Err(e) => return Step::Fail(format!("user.query: {e}")),
    };
    let masked = users
        .iter()
        .any(|u| u.get("unixhash").and_then(Value::as_str) == Some("********"));
    let hashes = if masked {
        return Step::Fail(String::from(
            "user.query masks password hashes (\"********\"): the API key's owner is not FULL_ADMIN.\n\
             The unixhash verifier and set_password need a key of a FULL_ADMIN user",
        ));
    } else {
        "user.query returns password hashes"
    };
    match &config.truenas.api_user {
        Some(owner) => {
            let Some(entry) = users.first() else {
                return Step::Fail(format!(
                    "truenas.api_user {owner:?} is not a TrueNAS user: name the user that owns the key"
                ));
            };
            let full_admin = entry
                .get("roles")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|r| r == "FULL_ADMIN"));
            if full_admin {
                Step::Ok(format!("Key owner {owner} is FULL_ADMIN; {hashes}"))
            } else {
                Step::Fail(format!(
                    "Key owner {owner} is not FULL_ADMIN (roles: {}): the portal needs a FULL_ADMIN key",
                    entry.get("roles").cloned().unwrap_or(Value::Null)
                ))
            }
        }
        None => Step::Ok(format!(
            "{hashes} (set truenas.api_user to also check the key owner's role)"
        )),
    }
}

/// Whether mail can be sent the way `[mail]` says; a failure when reset by mail depends on
/// it, a warning otherwise (only the change notices are lost).
async fn mail_step(config: &Config, client: &JsonRpcClient) -> Step {
    let needed = |why: String| {
        if config.reset.enabled {
            Step::Fail(format!("{why}; reset.enabled needs it"))
        } else {
            Step::Warn(why)
        }
    };
    match config.mail.transport {
        MailTransportChoice::Off => Step::Ok(String::from(
            "Mail: off (mail.transport = \"off\"): no reset links and no change notices",
        )),
        MailTransportChoice::Smtp => {
            let checked = match crate::mail::smtp::SmtpMailer::new(&config.mail) {
                Ok(mailer) => mailer.check().await,
                Err(e) => Err(e),
            };
            match checked {
                Ok(sentence) => Step::Ok(sentence),
                Err(e) => needed(format!("Mail: {e}")),
            }
        }
        MailTransportChoice::Truenas => match truenas_mail_step(client).await {
            Step::Warn(why) => needed(why),
            other => other,
        },
    }
}

async fn truenas_mail_step(client: &JsonRpcClient) -> Step {
    match client.admin_call("mail.config", json!([])).await {
        Ok(mail) => {
            let server = mail
                .get("outgoingserver")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let port = mail.get("port").and_then(Value::as_u64).unwrap_or(0);
            if server.is_empty() || port == 0 {
                Step::Warn(String::from(
                    "Mail: TrueNAS has no outgoing mail server (System → General Settings → Email): \
                     passgate cannot send mail through it",
                ))
            } else {
                Step::Ok(format!("Mail: TrueNAS sends mail through {server}:{port}"))
            }
        }
        Err(e) => Step::Warn(format!("Mail: could not read mail.config: {e}")),
    }
}

async fn rest_steps(config: &Config) -> Step {
    let nas = match crate::truenas::connect::build(config) {
        Ok(nas) => nas,
        Err(e) => return Step::Fail(e.to_string()),
    };
    match nas.ping().await {
        Ok(()) => Step::Warn(String::from(
            "API key login over REST works. The REST API is deprecated (removed in 26); \
             owner role and mail are checked only over JSON-RPC",
        )),
        Err(e) => Step::Fail(login_failure(&e)),
    }
}

async fn smb_step(config: &Config, timeout: Duration) -> Step {
    let Some(host) = config.smb_host() else {
        return Step::Fail(String::from(
            "SMB: auth.verifiers lists smb but no auth.smb_host is set or derivable",
        ));
    };
    let port = config.auth.smb_port;
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => Step::Ok(format!("SMB: {target} answers")),
        Ok(Err(e)) => Step::Fail(format!(
            "SMB: {target}: {e}\nIs the SMB service running? Or remove smb from auth.verifiers"
        )),
        Err(_) => Step::Fail(format!(
            "SMB: {target} did not answer within {}s",
            timeout.as_secs()
        )),
    }
}
