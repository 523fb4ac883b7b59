//! The one entry point for security events. For now it writes `tracing` events on the
//! `passgate::audit` target; the audit store, the fail2ban file and syslog will hang off
//! this same call so that they can never disagree.

use std::net::IpAddr;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    ConfigLoaded,
    LoginSucceeded,
    LoginFailed,
    PasswordChanged,
    PasswordChangeFailed,
    Logout,
    SessionRevoked,
    /// The per-client login limiter refused a request.
    RateLimited,
    /// A username was locked after too many failed verifications, or was refused because
    /// it is locked.
    UserLockedOut,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::ConfigLoaded => "config_loaded",
            Event::LoginSucceeded => "login_succeeded",
            Event::LoginFailed => "login_failed",
            Event::PasswordChanged => "password_changed",
            Event::PasswordChangeFailed => "password_change_failed",
            Event::Logout => "logout",
            Event::SessionRevoked => "session_revoked",
            Event::RateLimited => "rate_limited",
            Event::UserLockedOut => "user_locked_out",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Error => "error",
        }
    }
}

/// One security event. Never put a secret in any field.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub event: Event,
    pub outcome: Outcome,
    /// As typed by the user: hostile text, escaped wherever it is written.
    pub username: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    pub verifier: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub detail: Value,
}

impl<'a> Record<'a> {
    pub fn new(event: Event, outcome: Outcome) -> Self {
        Self {
            event,
            outcome,
            username: None,
            client_ip: None,
            verifier: None,
            reason: None,
            detail: Value::Null,
        }
    }

    pub fn user(mut self, username: &'a str) -> Self {
        self.username = Some(username);
        self
    }

    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    pub fn verifier(mut self, verifier: Option<&'a str>) -> Self {
        self.verifier = verifier;
        self
    }

    pub fn reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

#[derive(Clone, Default)]
pub struct Audit;

impl Audit {
    pub fn record(&self, r: Record<'_>) {
        let user = r.username.map(log_safe).unwrap_or_default();
        // Reasons and details are passgate's own text or TrueNAS messages; tracing quotes and
        // escapes them. Only the username is typed by a stranger and needs `log_safe`.
        let reason = r.reason.unwrap_or_default();
        let ip = r.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let detail = if r.detail.is_null() { String::new() } else { r.detail.to_string() };
        match r.outcome {
            Outcome::Success => tracing::info!(
                target: "passgate::audit",
                event = r.event.as_str(), outcome = r.outcome.as_str(), user, ip,
                verifier = r.verifier.unwrap_or_default(), reason = ?reason, detail = ?detail
            ),
            Outcome::Failure | Outcome::Error => tracing::warn!(
                target: "passgate::audit",
                event = r.event.as_str(), outcome = r.outcome.as_str(), user, ip,
                verifier = r.verifier.unwrap_or_default(), reason = ?reason, detail = ?detail
            ),
        }
    }
}

/// Makes user-controlled text safe for a one-line log: control characters, quotes,
/// backslashes and anything outside printable ASCII are escaped, and the length is capped,
/// so a crafted username cannot start a new line or forge a `key=value` field.
pub fn log_safe(text: &str) -> String {
    const MAX_CHARS: usize = 128;
    let mut out = String::with_capacity(text.len().min(MAX_CHARS * 2));
    for (count, c) in text.chars().enumerate() {
        if count == MAX_CHARS {
            out.push_str("...");
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            ' ' => out.push_str("\\x20"),
            '=' => out.push_str("\\x3d"),
            c if c.is_ascii_graphic() => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_usernames_stay_on_one_line_and_cannot_forge_fields() {
        let forged = log_safe("bob\n2026-01-01 passgate: login failed user=x rhost=203.0.113.9");
        assert!(!forged.contains('\n'));
        assert!(!forged.contains(' '));
        assert!(!forged.contains("rhost="));
        assert_eq!(log_safe("alice"), "alice");
        assert_eq!(log_safe("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(log_safe("jörg"), "j\\xc3\\xb6rg");
        assert!(log_safe(&"x".repeat(500)).len() < 140);
    }
}
