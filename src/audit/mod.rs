//! The one entry point for security events. [`Audit::record`] writes a `tracing` event on
//! the `passgate::audit` target and, when configured, one line to the fail2ban file and one
//! syslog message. All three are fed by the same call from the same [`Record`], so they can
//! never disagree about what happened, to whom, or from which address.
//!
//! User-typed text (the username) is never written raw anywhere: `tracing` gets
//! [`log_safe`], the fail2ban file and syslog get [`percent_encode`]. A username with a
//! newline, `rhost=` or spaces therefore cannot forge or shift a fail2ban match.

pub mod activity;
pub mod chain;
pub mod export;
mod fail2ban;
pub mod query;
pub mod store;
mod syslog_sink;

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU8;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use time::format_description::well_known::iso8601::{self, EncodedConfig};
use time::format_description::well_known::Iso8601;
use time::{OffsetDateTime, UtcOffset};

use crate::config::LogConfig;

pub use fail2ban::{format_line as fail2ban_line, FailureKind};
pub use syslog_sink::{SyslogTarget, VALID_FACILITIES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    ConfigLoaded,
    LoginSucceeded,
    /// Record with `Outcome::Failure` for a refused sign-in (a fail2ban line), with
    /// `Outcome::Error` when the backend could not answer (no fail2ban line: not the
    /// client's fault).
    LoginFailed,
    PasswordChanged,
    PasswordChangeFailed,
    Logout,
    SessionRevoked,
    /// An admin opened the audit page or listed events through the API.
    AdminViewedAudit,
    /// An admin downloaded the audit log.
    AdminExportedAudit,
    /// The per-client login limiter refused a request. Record with `Outcome::Failure`.
    RateLimited,
    /// A username was locked after too many failed verifications, or was refused because
    /// it is locked. Record with `Outcome::Failure`.
    UserLockedOut,
    /// A wrong TOTP (or backup, or TrueNAS-side OTP) code. Record with `Outcome::Failure`.
    TotpFailed,
    /// A code step passed (detail: which factor, TOTP or backup code).
    TotpSucceeded,
    /// A user confirmed a new TOTP enrollment (replacing an earlier one if `replaced`).
    TotpEnrolled,
    /// A user turned their TOTP off with their password and a code.
    TotpDisabled,
    /// An admin reset a user's TOTP (`passgate totp reset`).
    TotpReset,
    /// An admin listed TOTP enrollments (`passgate totp status`).
    TotpStatusViewed,
    /// Someone asked for a reset link; `reason` is what really happened (`sent`,
    /// `no_email`, `unknown_user`, `excluded`, `throttled`, `mail_failed`). Never a fail2ban
    /// line: the answer is the same for every name, so there is nothing to guess at.
    ResetRequested,
    /// A reset link that is unknown, used, expired or cancelled. Record with
    /// `Outcome::Failure`: a fail2ban line (`reset token invalid`).
    ResetTokenRejected,
    /// A password was set with a reset link.
    PasswordReset,
    /// A valid reset link was used, but the new password was refused (policy, TrueNAS,
    /// a missing or wrong code) or TrueNAS could not be reached.
    PasswordResetFailed,
    /// The user voided their reset link ("this was not me").
    ResetCancelled,
    /// A change notice was mailed, or could not be (`reason`).
    ChangeNoticeMailed,
    /// A reminder that the user's password expires soon was mailed, or could not be.
    ExpiryReminderMailed,
    /// A user replaced their SSH public keys (detail: fingerprints added and removed).
    SshKeysChanged,
    /// A change of SSH keys was refused (keys, account, TrueNAS) or could not be made. A
    /// wrong current password is a `login_failed` row, as for turning TOTP off.
    SshKeysChangeFailed,
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
            Event::AdminViewedAudit => "admin_viewed_audit",
            Event::AdminExportedAudit => "admin_exported_audit",
            Event::UserLockedOut => "user_locked_out",
            Event::TotpFailed => "totp_failed",
            Event::TotpSucceeded => "totp_succeeded",
            Event::TotpEnrolled => "totp_enrolled",
            Event::TotpDisabled => "totp_disabled",
            Event::TotpReset => "totp_reset",
            Event::TotpStatusViewed => "totp_status_viewed",
            Event::ResetRequested => "reset_requested",
            Event::ResetTokenRejected => "reset_token_rejected",
            Event::PasswordReset => "password_reset",
            Event::PasswordResetFailed => "password_reset_failed",
            Event::ResetCancelled => "reset_cancelled",
            Event::ChangeNoticeMailed => "change_notice_mailed",
            Event::ExpiryReminderMailed => "expiry_reminder_mailed",
            Event::SshKeysChanged => "ssh_keys_changed",
            Event::SshKeysChangeFailed => "ssh_keys_change_failed",
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
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Error => "error",
        }
    }
}

/// Who a request came from, resolved once per request by the web layer.
#[derive(Debug, Clone)]
pub struct Context {
    pub client_ip: IpAddr,
    pub peer_ip: IpAddr,
    /// Truncated; typed by the client, so hostile.
    pub user_agent: Option<String>,
    pub request_id: String,
}

/// One security event. Never put a secret in any field.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub event: Event,
    pub outcome: Outcome,
    /// As typed by the user: hostile text, escaped wherever it is written.
    pub username: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    pub peer_ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
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
            peer_ip: None,
            user_agent: None,
            request_id: None,
            verifier: None,
            reason: None,
            detail: Value::Null,
        }
    }

    /// Client and peer address, user agent and request id of the request.
    pub fn context(mut self, context: &'a Context) -> Self {
        self.client_ip = Some(context.client_ip);
        self.peer_ip = Some(context.peer_ip);
        self.user_agent = context.user_agent.as_deref();
        self.request_id = Some(&context.request_id);
        self
    }

    /// Takes the record: its detail moves into the row instead of being copied.
    fn into_row(self) -> store::NewRow {
        let mut row = store::NewRow::new(self.event.as_str(), self.outcome.as_str());
        row.username = self.username.map(str::to_string);
        row.client_ip = self.client_ip.map(|ip| canonical_ip(ip).to_string());
        row.peer_ip = self.peer_ip.map(|ip| canonical_ip(ip).to_string());
        row.user_agent = self.user_agent.map(str::to_string);
        row.request_id = self.request_id.map(str::to_string);
        row.verifier = self.verifier.map(str::to_string);
        row.reason = self.reason.map(str::to_string);
        row.detail = if self.detail.is_null() {
            Value::Object(Default::default())
        } else {
            self.detail
        };
        row
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

/// Why the audit sinks could not be set up. Only configuration mistakes and an unopenable
/// fail2ban file are errors; an unreachable syslog is not (it is warned about and retried).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("log.fail2ban_file {}: cannot open for appending ({source})", path.display())]
    Fail2banFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("log.syslog_facility {0:?} is not a syslog facility; use one of: {list}", list = VALID_FACILITIES.join(", "))]
    SyslogFacility(String),
    #[error(
        "log.syslog {value:?}: {message}; use off, local (/dev/log), unix:/path/to/socket, \
         udp://host:port or tcp://host:port"
    )]
    SyslogTarget { value: String, message: String },
    #[error("cannot start the syslog sender thread ({0})")]
    SyslogThread(#[source] std::io::Error),
    #[error("cannot start the fail2ban writer thread ({0})")]
    Fail2banThread(#[source] std::io::Error),
}

/// The configured sinks besides `tracing`.
struct Sinks {
    fail2ban: Option<fail2ban::Fail2banFile>,
    syslog: Option<syslog_sink::SyslogSink>,
    /// Failure events without a client address cannot be written for fail2ban.
    missing_ip_warning: WarnThrottle,
}

/// Cheap to clone: every clone feeds the same file handle and syslog sender.
/// `Audit::default()` writes to `tracing` only.
#[derive(Clone, Default)]
pub struct Audit {
    inner: Option<Arc<Sinks>>,
    store: Option<store::AuditStore>,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sinks = self.inner.as_deref();
        f.debug_struct("Audit")
            .field(
                "fail2ban_file",
                &sinks.and_then(|s| s.fail2ban.as_ref()).map(|f| f.path()),
            )
            .field(
                "syslog",
                &sinks.and_then(|s| s.syslog.as_ref()).map(|s| s.describe()),
            )
            .finish()
    }
}

/// Which level an event's structured log line has. A flood's refusals would be one line
/// each, tens of thousands a second into journald; they are already in the fail2ban file,
/// syslog and (coalesced) the store, so their log line is `debug`.
fn trace_level(r: &Record<'_>) -> tracing::Level {
    match (r.event, r.outcome) {
        (Event::RateLimited, _) => tracing::Level::DEBUG,
        (_, Outcome::Success) => tracing::Level::INFO,
        (_, Outcome::Failure | Outcome::Error) => tracing::Level::WARN,
    }
}

impl Audit {
    fn trace_line(&self, r: &Record<'_>) {
        let level = trace_level(r);
        let enabled = match level {
            tracing::Level::DEBUG => {
                tracing::enabled!(target: "passgate::audit", tracing::Level::DEBUG)
            }
            tracing::Level::INFO => {
                tracing::enabled!(target: "passgate::audit", tracing::Level::INFO)
            }
            _ => tracing::enabled!(target: "passgate::audit", tracing::Level::WARN),
        };
        if !enabled {
            return;
        }
        let user = r.username.map(log_safe).unwrap_or_default();
        // Reasons and details are passgate's own text or TrueNAS messages; tracing quotes and
        // escapes them. Only the username is typed by a stranger and needs `log_safe`.
        let reason = r.reason.unwrap_or_default();
        let ip = r.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let detail = if r.detail.is_null() {
            String::new()
        } else {
            r.detail.to_string()
        };
        macro_rules! line {
            ($mac:ident) => {
                tracing::$mac!(
                    target: "passgate::audit",
                    event = r.event.as_str(), outcome = r.outcome.as_str(), user, ip,
                    verifier = r.verifier.unwrap_or_default(), reason = ?reason, detail = ?detail
                )
            };
        }
        match level {
            tracing::Level::DEBUG => line!(debug),
            tracing::Level::INFO => line!(info),
            _ => line!(warn),
        }
    }

    /// Opens the fail2ban file (append, created 0640 if missing) and starts the syslog
    /// sender. Fails on configuration mistakes (unknown facility, malformed target) and on a
    /// fail2ban file that cannot be opened: the operator asked for it, and a ban list that
    /// silently stays empty is worse than a refusal to start. An unreachable syslog is *not*
    /// an error: it is warned about once and retried at most once a minute.
    /// Checks the log settings without opening anything, for `check-config`.
    pub fn validate(log: &LogConfig) -> Result<(), AuditError> {
        if syslog_sink::parse_target(&log.syslog)?.is_some() {
            syslog_sink::parse_facility(&log.syslog_facility)?;
        }
        Ok(())
    }

    pub fn from_config(log: &LogConfig) -> Result<Audit, AuditError> {
        let fail2ban = log
            .fail2ban_file
            .as_deref()
            .map(fail2ban::Fail2banFile::open)
            .transpose()?;
        let syslog = match syslog_sink::parse_target(&log.syslog)? {
            None => None,
            Some(target) => {
                let facility = syslog_sink::parse_facility(&log.syslog_facility)?;
                Some(syslog_sink::SyslogSink::start(
                    target,
                    facility,
                    log.syslog_format,
                )?)
            }
        };
        if fail2ban.is_none() && syslog.is_none() {
            return Ok(Audit::default());
        }
        Ok(Audit {
            inner: Some(Arc::new(Sinks {
                fail2ban,
                syslog,
                missing_ip_warning: WarnThrottle::default(),
            })),
            store: None,
        })
    }

    /// Reopens the fail2ban file by path, so that logrotate can move it away: call on
    /// SIGHUP. Pending lines are first written to the old handle (they were recorded
    /// before the rotation). On failure the old handle is kept (lines keep going to the
    /// rotated file rather than nowhere) and a warning is logged.
    pub fn reopen(&self) {
        let Some(file) = self.inner.as_deref().and_then(|s| s.fail2ban.as_ref()) else {
            return;
        };
        match file.reopen() {
            Ok(()) => tracing::info!(
                target: "passgate::audit",
                path = %file.path().display(),
                "reopened the fail2ban file"
            ),
            Err(e) => tracing::warn!(
                target: "passgate::audit",
                path = %file.path().display(),
                error = %e,
                "cannot reopen the fail2ban file; still writing to the old handle"
            ),
        }
    }

    /// Adds the sqlite audit store to the sinks.
    pub fn with_store(mut self, store: store::AuditStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Records an event; the store row is queued (failures are coalesced per minute) and
    /// written by the store's writer task.
    pub fn record(&self, r: Record<'_>) {
        self.record_lines(&r);
        if let Some(store) = &self.store {
            // A full queue is counted by the store; the tracing, fail2ban and syslog lines
            // above were written regardless.
            if r.outcome == Outcome::Failure {
                let key = store::FailureKey {
                    event: r.event.as_str(),
                    outcome: r.outcome.as_str(),
                    client_ip: r.client_ip.map(canonical_ip),
                    username: r.username,
                    reason: r.reason,
                };
                let _ = store.submit_failure(key, || r.into_row());
            } else {
                let _ = store.submit(r.into_row());
            }
        }
    }

    /// Records an event whose row must be on disk before the caller answers the request
    /// (successful sign-ins and password changes).
    pub async fn record_durable(&self, r: Record<'_>) {
        self.record_lines(&r);
        if let Some(store) = &self.store {
            let event = r.event;
            if let Err(e) = store.submit_durable(r.into_row()).await {
                tracing::error!(
                    target: "passgate::audit",
                    event = event.as_str(),
                    error = %e,
                    "could not commit an audit row"
                );
            }
        }
    }

    /// Rows waiting for the store's writer (a gauge for `/metrics`).
    pub fn queue_depth(&self) -> usize {
        self.store
            .as_ref()
            .map_or(0, store::AuditStore::queue_depth)
    }

    /// fail2ban lines dropped because the file did not keep up (a gauge for `/metrics`).
    pub fn fail2ban_dropped(&self) -> u64 {
        self.inner
            .as_deref()
            .and_then(|s| s.fail2ban.as_ref())
            .map_or(0, fail2ban::Fail2banFile::dropped)
    }

    /// Writes the pending fail2ban lines, then drains the store's queue and coalescing
    /// buffers (at shutdown).
    pub async fn shutdown(&self) {
        if let Some(file) = self.inner.as_deref().and_then(|s| s.fail2ban.as_ref()) {
            // One write of at most a few MiB, once, at exit: not worth a blocking-pool hop.
            file.flush();
        }
        if let Some(store) = self.store.clone() {
            if let Err(e) = store.shutdown().await {
                tracing::error!(error = %e, "audit store shutdown");
            }
        }
    }

    fn record_lines(&self, r: &Record<'_>) {
        crate::metrics::audit_event(r.event, r.outcome, r.verifier);
        self.trace_line(r);
        let Some(sinks) = self.inner.as_deref() else {
            return;
        };
        if let Some(file) = &sinks.fail2ban {
            if let Some(kind) = FailureKind::of(r.event, r.outcome) {
                match r.client_ip {
                    Some(ip) => file.write(kind, ip, r.username),
                    // fail2ban bans by address: a line without one is useless, and writing a
                    // placeholder could ban something innocent. This is a bug in the caller.
                    None => {
                        if let Some(suppressed) = sinks.missing_ip_warning.check() {
                            tracing::warn!(
                                target: "passgate::audit",
                                event = r.event.as_str(),
                                suppressed,
                                "failure event without a client address; no fail2ban line written"
                            );
                        }
                    }
                }
            }
        }
        if let Some(syslog) = &sinks.syslog {
            syslog.send(r);
        }
    }
}

/// Canonical form of a client address for log lines: IPv4-mapped IPv6 addresses
/// (`::ffff:192.0.2.1`, seen when listening on `[::]`) become plain IPv4, so that fail2ban
/// bans the address the firewall actually sees.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// `2026-11-22T10:00:00.123Z`: UTC, milliseconds, `Z`, by `time`'s ISO 8601 formatter set
/// to RFC 3339's profile. (Its `Rfc3339` formatter trims the fraction, `10:00:00Z` beside
/// `10:00:00.5Z`; audit times keep three digits so they line up and sort as text.)
pub(crate) fn utc_millis(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(&Iso8601::<UTC_MILLIS>)
        // Only a year outside 0..=9999 fails, which no system clock gives: the hand-written
        // form below clamps it instead.
        .unwrap_or_else(|_| {
            let mut out = String::with_capacity(24);
            push_utc_millis(&mut out, at);
            out
        })
}

const UTC_MILLIS: EncodedConfig = iso8601::Config::DEFAULT
    .set_time_precision(iso8601::TimePrecision::Second {
        decimal_digits: NonZeroU8::new(3),
    })
    .encode();

/// [`utc_millis`] appended to `out`, for the fail2ban line.
// By hand for speed: under a flood of refusals formatting was most of a line's cost (profile).
pub(crate) fn push_utc_millis(out: &mut String, at: OffsetDateTime) {
    fn digits(out: &mut String, value: u32, width: u32) {
        for place in (0..width).rev() {
            let digit = (value / 10u32.pow(place)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
    }
    let t = at.to_offset(UtcOffset::UTC);
    // Years before 0 or after 9999 cannot come from a system clock; clamp rather than
    // widen the field the filter parses.
    digits(out, t.year().clamp(0, 9999) as u32, 4);
    out.push('-');
    digits(out, u32::from(u8::from(t.month())), 2);
    out.push('-');
    digits(out, u32::from(t.day()), 2);
    out.push('T');
    digits(out, u32::from(t.hour()), 2);
    out.push(':');
    digits(out, u32::from(t.minute()), 2);
    out.push(':');
    digits(out, u32::from(t.second()), 2);
    out.push('.');
    digits(out, u32::from(t.millisecond()), 3);
    out.push('Z');
}

/// Longest username (in characters) written to the fail2ban file and syslog; longer names
/// are cut and end in [`TRUNCATED`].
pub const MAX_USER_CHARS: usize = 64;
/// Marks a cut field. Made of characters that percent-encoding leaves alone, so it is safe
/// in every sink.
pub const TRUNCATED: &str = "...";

/// Percent-encodes user-controlled text for a `key=value` log field: every byte outside
/// `[A-Za-z0-9._@-]` becomes `%XX` (upper-case hex), so a space, `=`, `;`, `%`, quotes,
/// control characters (newline, CR, NUL) and non-ASCII can never appear raw. At most
/// `max_chars` characters are encoded; longer text ends in [`TRUNCATED`].
pub fn percent_encode(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 12) + TRUNCATED.len());
    push_percent_encoded(&mut out, text, max_chars);
    out
}

/// [`percent_encode`], appended to `out`.
pub(crate) fn push_percent_encoded(out: &mut String, text: &str, max_chars: usize) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push_str(TRUNCATED);
            break;
        }
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-') {
                out.push(char::from(b));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
}

/// The `user=` value of the fail2ban line and syslog message: percent-encoded and capped;
/// `-` when absent or empty. A username that is literally `-` is written `%2D` so the two
/// cannot be confused.
pub fn encode_user(username: Option<&str>) -> String {
    let mut out = String::new();
    push_user(&mut out, username);
    out
}

/// [`encode_user`], appended to `out`.
pub(crate) fn push_user(out: &mut String, username: Option<&str>) {
    match username {
        None | Some("") => out.push('-'),
        Some("-") => out.push_str("%2D"),
        Some(name) => push_percent_encoded(out, name, MAX_USER_CHARS),
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

/// Lets a repeated warning through at most once per interval (a minute by default), and
/// counts what it held back, so a failing disk or a flood cannot flood the log in turn.
pub(crate) struct WarnThrottle {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Default for WarnThrottle {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

impl WarnThrottle {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a warning may be logged now (`n` were held back since the last one),
    /// `None` when it must be held back.
    pub(crate) fn check(&self) -> Option<u64> {
        // A poisoned lock only means another thread panicked while holding a timestamp;
        // the timestamp itself is still usable.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *last {
            Some(at) if now.duration_since(at) < self.interval => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
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

    fn only_safe_bytes(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-%".contains(&b))
    }

    #[test]
    fn percent_encoding_keeps_the_safe_set_and_encodes_everything_else() {
        assert_eq!(percent_encode("bob", 64), "bob");
        assert_eq!(
            percent_encode("Jane.Doe_1@example-corp", 64),
            "Jane.Doe_1@example-corp"
        );
        assert_eq!(percent_encode("a b", 64), "a%20b");
        assert_eq!(percent_encode("x\ny", 64), "x%0Ay");
        assert_eq!(percent_encode("x\r\ny", 64), "x%0D%0Ay");
        assert_eq!(percent_encode("rhost=6.6.6.6", 64), "rhost%3D6.6.6.6");
        assert_eq!(percent_encode("a;b", 64), "a%3Bb");
        assert_eq!(percent_encode("%0a", 64), "%250a");
        assert_eq!(percent_encode("\"'\\", 64), "%22%27%5C");
        assert_eq!(percent_encode("jörg", 64), "j%C3%B6rg");
        assert_eq!(percent_encode("a\u{202e}b", 64), "a%E2%80%AEb");
        assert_eq!(percent_encode("nul\0", 64), "nul%00");
        assert_eq!(percent_encode("tab\tdel\u{7f}", 64), "tab%09del%7F");
    }

    #[test]
    fn percent_encoding_caps_by_characters_and_marks_the_cut() {
        let long = "x".repeat(10_000);
        let encoded = percent_encode(&long, MAX_USER_CHARS);
        assert_eq!(
            encoded,
            format!("{}{TRUNCATED}", "x".repeat(MAX_USER_CHARS))
        );
        // Exactly the limit: no marker.
        assert_eq!(percent_encode(&"y".repeat(64), 64), "y".repeat(64));
        // Multi-byte characters are never split: 64 characters of 2 bytes each.
        let umlauts = "ö".repeat(100);
        let encoded = percent_encode(&umlauts, 64);
        assert_eq!(encoded, format!("{}{TRUNCATED}", "%C3%B6".repeat(64)));
        assert!(only_safe_bytes(&encoded));
    }

    #[test]
    fn user_field_marks_absent_and_empty_names() {
        assert_eq!(encode_user(None), "-");
        assert_eq!(encode_user(Some("")), "-");
        assert_eq!(encode_user(Some("-")), "%2D");
        assert_eq!(encode_user(Some("--")), "--");
        assert_eq!(encode_user(Some("bob smith")), "bob%20smith");
    }

    #[test]
    fn every_char_encodes_to_the_safe_alphabet() {
        // Every Unicode scalar value in the BMP and a sample above it.
        for c in (0u32..0x1_0000)
            .chain([0x1_F600, 0x10_FFFF])
            .filter_map(char::from_u32)
        {
            let encoded = percent_encode(&c.to_string(), 4);
            assert!(only_safe_bytes(&encoded), "{c:?} -> {encoded}");
            assert!(!encoded.is_empty());
        }
    }

    #[test]
    fn utc_millis_pads_every_field() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_000_000_000_007_000_000)
            .expect("timestamp")
            .to_offset(UtcOffset::from_hms(-5, 0, 0).expect("offset"));
        assert_eq!(utc_millis(at), "2001-09-09T01:46:40.007Z");
        let early = OffsetDateTime::from_unix_timestamp(86_400 * 31 + 3_661).expect("epoch");
        assert_eq!(utc_millis(early), "1970-02-01T01:01:01.000Z");
    }

    #[test]
    fn the_fail2ban_stamp_matches_the_time_crate_one() {
        for ms in [0_i64, 999, 1_795_341_600_123, 253_402_300_799_999] {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .expect("timestamp");
            let mut by_hand = String::new();
            push_utc_millis(&mut by_hand, at);
            assert_eq!(by_hand, utc_millis(at));
        }
    }

    #[test]
    fn mapped_ipv6_becomes_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("address");
        assert_eq!(canonical_ip(mapped).to_string(), "192.0.2.1");
        let v6: IpAddr = "2001:db8::1".parse().expect("address");
        assert_eq!(canonical_ip(v6), v6);
    }

    #[test]
    fn warn_throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let throttle = WarnThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.check(), Some(0));
        assert_eq!(throttle.check(), None);
        assert_eq!(throttle.check(), None);
        let quick = WarnThrottle::new(Duration::ZERO);
        assert_eq!(quick.check(), Some(0));
        assert_eq!(quick.check(), Some(0));
    }

    #[tokio::test]
    async fn shutdown_writes_the_pending_fail2ban_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.log");
        // An hour's delay: only the shutdown can write the line before the read below.
        let tuning = fail2ban::Tuning {
            max_delay: Duration::from_secs(3600),
            ..fail2ban::Tuning::default()
        };
        let audit = Audit {
            inner: Some(Arc::new(Sinks {
                fail2ban: Some(fail2ban::Fail2banFile::open_tuned(&path, tuning).expect("open")),
                syslog: None,
                missing_ip_warning: WarnThrottle::default(),
            })),
            store: None,
        };
        let ip: IpAddr = "203.0.113.9".parse().expect("address");
        audit.record(
            Record::new(Event::LoginFailed, Outcome::Failure)
                .user("bob")
                .ip(ip),
        );
        assert_eq!(std::fs::read_to_string(&path).expect("file"), "");
        audit.shutdown().await;
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(
            text.ends_with("rhost=203.0.113.9 user=bob reason=bad_credentials\n"),
            "{text:?}"
        );
        assert_eq!(audit.fail2ban_dropped(), 0);
    }

    #[test]
    fn default_audit_is_tracing_only_and_accepts_every_event() {
        let audit = Audit::default();
        audit.reopen();
        audit.record(Record::new(Event::LoginFailed, Outcome::Failure).user("bob\nx"));
        assert!(format!("{audit:?}").contains("fail2ban_file: None"));
    }
}
