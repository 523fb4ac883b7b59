//! `mail.config` and `mail.send` (a job).
//!
//! ≤ 26: src/middlewared/middlewared/plugins/mail.py (`send`, `send_raw`, `_get_smtp_server`);
//! 27: plugins/mail/send.py, plugins/mail/config.py `validate_config`, plugins/mail/smtp.py.
//! The message is validated like its pydantic model (api/v25_10_1/mail.py `MailSendMessage`:
//! `subject` required, unknown keys refused; 27 has no `interval`/`channel`) before the job
//! exists; everything else happens inside the job, which then ends FAILED with `str(exc)`.
//! Nothing is delivered over SMTP: a configured fake records the message instead.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::errors::{RpcError, EFAULT};
use super::jobs::{Job, JobError, JobState};
use super::options::{MailSettings, SentMail};
use super::state::Shared;
use super::Flavour;

/// `network.globalconfiguration` `gc_hostname` and `gc_domain` of the fake.
pub(super) const HOSTNAME: &str = "fake-nas";
const DOMAIN: &str = "local";
/// How long a send job stays RUNNING (an SMTP exchange takes a moment).
const SEND_TIME: Duration = Duration::from_millis(200);

const MESSAGE_KEYS: &[&str] = &[
    "subject",
    "text",
    "html",
    "to",
    "cc",
    "timeout",
    "attachments",
    "queue",
    "extra_headers",
];
/// 25.04–26 only; 27 dropped them.
const INTERVAL_KEYS: &[&str] = &["interval", "channel"];
const CONFIG_KEYS: &[&str] = &[
    "fromemail",
    "fromname",
    "outgoingserver",
    "port",
    "security",
    "smtp",
    "user",
    "pass",
    "oauth",
];

/// The effective settings: a fresh TrueNAS has an empty server and sender.
#[derive(Clone)]
struct Config {
    fromemail: String,
    outgoingserver: String,
    port: u64,
    smtp: bool,
    user: Option<String>,
}

impl Config {
    fn from_settings(settings: Option<&MailSettings>) -> Config {
        match settings {
            Some(s) => Config {
                fromemail: s.fromemail.clone(),
                outgoingserver: s.outgoingserver.clone(),
                port: u64::from(s.port),
                smtp: s.smtp,
                user: s.user.clone(),
            },
            None => Config {
                fromemail: String::new(),
                outgoingserver: String::new(),
                port: 25,
                smtp: false,
                user: None,
            },
        }
    }

    fn apply(&mut self, overrides: &Map<String, Value>) {
        if let Some(v) = overrides.get("fromemail").and_then(Value::as_str) {
            v.clone_into(&mut self.fromemail);
        }
        if let Some(v) = overrides.get("outgoingserver").and_then(Value::as_str) {
            v.clone_into(&mut self.outgoingserver);
        }
        if let Some(v) = overrides.get("port").and_then(Value::as_u64) {
            self.port = v;
        }
        if let Some(v) = overrides.get("smtp").and_then(Value::as_bool) {
            self.smtp = v;
        }
        if let Some(v) = overrides.get("user") {
            self.user = v.as_str().map(str::to_owned);
        }
    }
}

/// `mail.config` (`MailEntry`).
pub(super) fn config(shared: &Shared) -> Value {
    let inner = shared.lock();
    let settings = inner.mail.as_ref();
    json!({
        "id": 1,
        "fromemail": settings.map_or("", |s| &s.fromemail),
        "fromname": settings.map_or("", |s| &s.fromname),
        "outgoingserver": settings.map_or("", |s| &s.outgoingserver),
        "port": settings.map_or(25, |s| s.port),
        "security": settings.map_or("PLAIN", |s| &s.security),
        "smtp": settings.is_some_and(|s| s.smtp),
        "user": settings.and_then(|s| s.user.clone()),
        "pass": null,
        "oauth": null,
    })
}

/// `mail.send [message, config?]` → a job id.
pub(super) fn send(
    shared: &Arc<Shared>,
    owner: &str,
    credential: &'static str,
    params: &[Value],
) -> Result<Value, RpcError> {
    let message = validate_message(shared.flavour, params.first())?;
    let overrides = validate_config(params.get(1))?;

    let id = {
        let mut inner = shared.lock();
        let id = inner.jobs.iter().map(|j| j.id).max().unwrap_or(0) + 1;
        inner.jobs.push(Job {
            id,
            method: "mail.send",
            arguments: json!([message, overrides]),
            owner: owner.to_owned(),
            credential,
            state: JobState::Running,
            result: Value::Null,
            error: None,
            time_started: SystemTime::now(),
            time_finished: None,
        });
        id
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(SEND_TIME).await;
        let outcome = run(&shared, message, &overrides);
        let mut inner = shared.lock();
        // A restart forgets jobs; a job of the old "process" has nowhere to report.
        let Some(job) = inner.jobs.iter_mut().find(|j| j.id == id) else {
            return;
        };
        job.time_finished = Some(SystemTime::now());
        match outcome {
            Ok(sent) => {
                job.state = JobState::Success;
                // 26 changed `send` to return nothing.
                job.result = if shared.flavour == Flavour::V25_10 {
                    json!(true)
                } else {
                    Value::Null
                };
                inner.sent_mail.push(sent);
            }
            Err(error) => {
                job.state = JobState::Failed;
                job.error = Some(error);
            }
        }
    });
    Ok(json!(id))
}

fn validate_message(flavour: Flavour, message: Option<&Value>) -> Result<Value, RpcError> {
    let Some(object) = message.and_then(Value::as_object) else {
        return Err(RpcError::validation(
            "mail.send.message",
            "Input should be a valid dictionary",
        ));
    };
    let mut errors = Vec::new();
    for key in object.keys() {
        let known = MESSAGE_KEYS.contains(&key.as_str())
            || (flavour != Flavour::V27 && INTERVAL_KEYS.contains(&key.as_str()));
        if !known {
            errors.push(invalid(
                &format!("mail.send.message.{key}"),
                "Extra inputs are not permitted",
            ));
        }
    }
    match object.get("subject") {
        None => errors.push(invalid("mail.send.message.subject", "Field required")),
        Some(Value::String(_)) => {}
        Some(_) => errors.push(invalid(
            "mail.send.message.subject",
            "Input should be a valid string",
        )),
    }
    for list in ["to", "cc"] {
        if let Some(value) = object.get(list) {
            let ok = value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string));
            if !ok {
                errors.push(invalid(
                    &format!("mail.send.message.{list}"),
                    "Input should be a valid list of strings",
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(object.clone()))
    } else {
        Err(RpcError::Validation(errors))
    }
}

fn validate_config(config: Option<&Value>) -> Result<Map<String, Value>, RpcError> {
    let object = match config {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(object)) => object,
        Some(_) => {
            return Err(RpcError::validation(
                "mail.send.config",
                "Input should be a valid dictionary",
            ))
        }
    };
    let errors: Vec<_> = object
        .keys()
        .filter(|key| !CONFIG_KEYS.contains(&key.as_str()))
        .map(|key| {
            invalid(
                &format!("mail.send.config.{key}"),
                "Extra inputs are not permitted",
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(object.clone())
    } else {
        Err(RpcError::Validation(errors))
    }
}

fn invalid(attribute: &str, message: &str) -> super::errors::Invalid {
    (
        Some(attribute.to_owned()),
        message.to_owned(),
        super::errors::EINVAL,
    )
}

/// The body of the job, in the order of the source.
fn run(
    shared: &Shared,
    message: Value,
    overrides: &Map<String, Value>,
) -> Result<SentMail, JobError> {
    let flavour = shared.flavour;
    let subject = message["subject"].as_str().unwrap_or_default();
    let subject = format!("TrueNAS {HOSTNAME}.{DOMAIN}: {subject}");

    let explicit_no_html = message.get("html").is_some_and(Value::is_null);
    let html = message
        .get("html")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let text = match (message.get("text").and_then(Value::as_str), &html) {
        (Some(text), _) => text.to_owned(),
        (None, Some(html)) => strip_tags(html),
        (None, None) => {
            return Err(match flavour {
                Flavour::V27 => {
                    JobError::validation("text", "Text is required when HTML is not set")
                }
                _ => JobError::validation_errors(
                    "mail_message.text",
                    "Text is required when HTML is not set",
                ),
            })
        }
    };
    let html = match (html, explicit_no_html) {
        (Some(html), _) => Some(html),
        (None, true) => None,
        (None, false) => Some(render_text(flavour, &text)),
    };

    let mut config = Config::from_settings(shared.lock().mail.as_ref());
    config.apply(overrides);

    if flavour == Flavour::V27 {
        if config.smtp && config.user.as_deref().unwrap_or_default().is_empty() {
            return Err(JobError::validation(
                "user",
                "This field is required when SMTP authentication is enabled",
            ));
        }
        if config.fromemail.is_empty() {
            return Err(JobError::validation("fromemail", "This field is required"));
        }
    }

    let strings = |key: &str| -> Vec<String> {
        message
            .get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut to = strings("to");
    if to.is_empty() {
        to = local_administrators_emails(shared);
        if to.is_empty() {
            return Err(JobError::call(
                EFAULT,
                "None of the local administrators has an e-mail address configured",
            ));
        }
    }

    // A plain ValueError from `_get_smtp_server`, re-raised as CallError(str(e)).
    if config.outgoingserver.is_empty() || config.port == 0 {
        return Err(JobError::call(
            EFAULT,
            "You must provide an outgoing mailserver and mail server port when sending mail",
        ));
    }
    Ok(SentMail {
        to,
        cc: strings("cc"),
        subject,
        text,
        html,
    })
}

/// `mail.local_administrators_emails`: addresses of local FULL_ADMIN users.
fn local_administrators_emails(shared: &Shared) -> Vec<String> {
    shared
        .lock()
        .users
        .iter()
        .filter(|u| u.profile.local && u.profile.full_admin)
        .filter_map(|u| u.profile.email.clone())
        .filter(|e| !e.is_empty())
        .collect()
}

/// The body TrueNAS puts into its mail template for a text-only message.
fn render_text(flavour: Flavour, text: &str) -> String {
    let escaped = escape(text);
    match flavour {
        Flavour::V25_10 => escaped.replace('\n', "<br>\n"),
        _ => {
            format!("<div style=\"font-family: monospace; white-space: pre-wrap;\">{escaped}</div>")
        }
    }
}

/// Python's `html.escape` (quotes included).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// A rough stand-in for `html2text`: the text between tags.
fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}
