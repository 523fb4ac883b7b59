//! Syslog: every security event (success, failure and error), one message each, e.g.
//!
//! ```text
//! login_failed outcome=failure rhost=203.0.113.7 user=bob verifier=smb reason=bad_credentials
//! ```
//!
//! Severity: failure → warning, success → info, error → err. RFC 3164 or RFC 5424 (app name
//! `passgate`, the process id, MSGID = the event name), framed by the `syslog` crate's
//! transports (`/dev/log`, a Unix socket path, UDP, TCP).
//!
//! Requests never wait for syslog: [`SyslogSink::send`] formats the message and hands it to
//! a background thread over a bounded channel; when the channel is full the message is
//! dropped and counted. The thread owns the connection. When the target is unreachable
//! (no `/dev/log` in a container, daemon down) it warns once per outage, drops messages
//! meanwhile, and tries to reconnect at most once a minute (when there is something to
//! send). Start-up never fails because syslog is unreachable, in any mode.

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syslog::{Facility, Formatter3164, LogFormat, LoggerBackend, Severity};
use time::OffsetDateTime;

use super::{
    canonical_ip, encode_user, percent_encode, utc_millis, AuditError, FailureKind, Outcome,
    Record, WarnThrottle,
};
use crate::config::SyslogFormat;

/// Facility names accepted in `log.syslog_facility`.
pub const VALID_FACILITIES: &[&str] = &[
    "auth", "authpriv", "daemon", "user", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Messages waiting for the sender thread. Far above any burst a login form produces; when
/// syslog is slower than that, dropping is better than holding requests.
const QUEUE: usize = 1024;
/// Reconnection attempts after a failure are at least this far apart.
const RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Bounds on how long the sender thread may wait for the network or a stuck daemon.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Free-text reasons are passgate's or TrueNAS' words; keep them short in syslog.
const MAX_REASON_CHARS: usize = 64;

/// Where syslog messages go, parsed from `log.syslog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// `/dev/log` (or `/var/run/syslog`, `/var/run/log`), as the `syslog` crate finds it.
    Local,
    /// A Unix socket path (datagram, or stream when the path is a stream socket).
    Unix(PathBuf),
    /// `host:port`, resolved when connecting.
    Udp(String),
    Tcp(String),
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Local => f.write_str("local"),
            SyslogTarget::Unix(path) => write!(f, "unix:{}", path.display()),
            SyslogTarget::Udp(addr) => write!(f, "udp://{addr}"),
            SyslogTarget::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl SyslogTarget {
    /// `None` for `off`.
    pub fn parse(value: &str) -> Result<Option<SyslogTarget>, AuditError> {
        let bad = |message: &str| AuditError::SyslogTarget {
            value: value.to_string(),
            message: message.to_string(),
        };
        let trimmed = value.trim();
        if trimmed.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        if trimmed.eq_ignore_ascii_case("local") {
            return Ok(Some(SyslogTarget::Local));
        }
        if let Some(path) = trimmed.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("no socket path after unix:"));
            }
            return Ok(Some(SyslogTarget::Unix(PathBuf::from(path))));
        }
        let (udp, rest) = if let Some(rest) = trimmed.strip_prefix("udp://") {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("tcp://") {
            (false, rest)
        } else {
            return Err(bad("unknown syslog target"));
        };
        let address = check_host_port(rest).map_err(bad)?;
        Ok(Some(if udp {
            SyslogTarget::Udp(address)
        } else {
            SyslogTarget::Tcp(address)
        }))
    }
}

/// Checks `host:port` / `[v6]:port` syntax; the name is resolved only when connecting.
fn check_host_port(text: &str) -> Result<String, &'static str> {
    let text = text.trim_end_matches('/');
    let (host, port) = text
        .rsplit_once(':')
        .ok_or("expected host:port, e.g. udp://127.0.0.1:514")?;
    let port: u16 = port
        .parse()
        .map_err(|_| "the port is not a number between 1 and 65535")?;
    if port == 0 {
        return Err("the port is not a number between 1 and 65535");
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let valid_host = match bare {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }
    };
    if !valid_host {
        return Err("the host must be a name, an IPv4 address or a [bracketed] IPv6 address");
    }
    Ok(format!("{host}:{port}"))
}

pub(super) fn parse_target(value: &str) -> Result<Option<SyslogTarget>, AuditError> {
    SyslogTarget::parse(value)
}

pub(super) fn parse_facility(name: &str) -> Result<Facility, AuditError> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "auth" => Facility::LOG_AUTH,
        "authpriv" => Facility::LOG_AUTHPRIV,
        "daemon" => Facility::LOG_DAEMON,
        "user" => Facility::LOG_USER,
        "local0" => Facility::LOG_LOCAL0,
        "local1" => Facility::LOG_LOCAL1,
        "local2" => Facility::LOG_LOCAL2,
        "local3" => Facility::LOG_LOCAL3,
        "local4" => Facility::LOG_LOCAL4,
        "local5" => Facility::LOG_LOCAL5,
        "local6" => Facility::LOG_LOCAL6,
        "local7" => Facility::LOG_LOCAL7,
        _ => return Err(AuditError::SyslogFacility(name.to_string())),
    })
}

fn severity(outcome: Outcome) -> Severity {
    match outcome {
        Outcome::Success => Severity::LOG_INFO,
        Outcome::Failure => Severity::LOG_WARNING,
        Outcome::Error => Severity::LOG_ERR,
    }
}

/// The message text (after the syslog header). Only ASCII from a fixed alphabet: the event
/// name, fixed tokens, an IP address and percent-encoded text.
pub(super) fn message(r: &Record<'_>) -> String {
    let rhost = r
        .client_ip
        .map(|ip| canonical_ip(ip).to_string())
        .unwrap_or_else(|| "-".into());
    let mut text = format!(
        "{} outcome={} rhost={rhost} user={}",
        r.event.as_str(),
        r.outcome.as_str(),
        encode_user(r.username)
    );
    if let Some(verifier) = r.verifier.filter(|v| !v.is_empty()) {
        text.push_str(" verifier=");
        text.push_str(&percent_encode(verifier, MAX_REASON_CHARS));
    }
    // Failures that fail2ban counts carry the same fixed token as the fail2ban line, so the
    // two sinks agree; other events carry the caller's reason, encoded.
    let reason = match FailureKind::of(r.event, r.outcome) {
        Some(kind) => Some(kind.reason().to_string()),
        None => r
            .reason
            .filter(|v| !v.is_empty())
            .map(|v| percent_encode(v, MAX_REASON_CHARS)),
    };
    if let Some(reason) = reason {
        text.push_str(" reason=");
        text.push_str(&reason);
    }
    text
}

/// RFC 5424 header: `<PRI>1 TIMESTAMP HOSTNAME passgate PID MSGID - MSG`. The `syslog`
/// crate's own RFC 5424 formatter takes a numeric MSGID; this one uses the event name, which
/// is what MSGID is for, and millisecond UTC timestamps like the fail2ban file.
#[derive(Debug, Clone)]
struct Rfc5424 {
    facility: Facility,
    hostname: Option<String>,
    pid: u32,
}

impl<T: fmt::Display> LogFormat<(&str, T)> for Rfc5424 {
    fn format<W: Write>(
        &self,
        w: &mut W,
        severity: Severity,
        (msgid, message): (&str, T),
    ) -> syslog::Result<()> {
        write!(
            w,
            "<{}>1 {} {} passgate {} {} - {}",
            self.facility as u8 | severity as u8,
            utc_millis(OffsetDateTime::now_utc()),
            self.hostname.as_deref().unwrap_or("-"),
            self.pid,
            msgid,
            message
        )
        .map_err(syslog::Error::Write)
    }
}

#[derive(Debug, Clone)]
enum Formatter {
    Rfc3164(Formatter3164),
    Rfc5424(Rfc5424),
}

/// The kernel's host name when it is a plain token; `None` otherwise (the receiver then
/// fills in the sender's address, or `-` is written for RFC 5424).
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let plain = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    plain.then(|| name.to_string())
}

pub(super) struct SyslogSink {
    describe: String,
    formatter: Formatter,
    /// TCP carries a stream of messages: each ends in `\n` (RFC 6587 non-transparent
    /// framing). Messages never contain a newline themselves.
    newline_framing: bool,
    tx: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    queue_warning: WarnThrottle,
}

impl SyslogSink {
    pub(super) fn start(
        target: SyslogTarget,
        facility: Facility,
        format: SyslogFormat,
    ) -> Result<Self, AuditError> {
        let pid = std::process::id();
        let remote = matches!(target, SyslogTarget::Udp(_) | SyslogTarget::Tcp(_));
        let formatter = match format {
            // The local daemon adds the host name itself; a remote one needs it in the header.
            SyslogFormat::Rfc3164 => Formatter::Rfc3164(Formatter3164 {
                facility,
                hostname: if remote { hostname() } else { None },
                process: String::from("passgate"),
                pid,
            }),
            SyslogFormat::Rfc5424 => Formatter::Rfc5424(Rfc5424 {
                facility,
                hostname: hostname(),
                pid,
            }),
        };
        let describe = target.to_string();
        let newline_framing = matches!(target, SyslogTarget::Tcp(_));
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            target,
            describe: describe.clone(),
            rx,
            dropped: dropped.clone(),
            conn: None,
            down: false,
            next_retry: Instant::now(),
        };
        // A plain thread, not a tokio task: the connection is blocking I/O, and the sink
        // also serves the CLI outside any runtime. It ends when the last `Audit` clone is
        // dropped (the channel closes).
        std::thread::Builder::new()
            .name(String::from("passgate-syslog"))
            .spawn(move || worker.run())
            .map_err(AuditError::SyslogThread)?;
        Ok(Self {
            describe,
            formatter,
            newline_framing,
            tx,
            dropped,
            queue_warning: WarnThrottle::default(),
        })
    }

    pub(super) fn describe(&self) -> &str {
        &self.describe
    }

    /// Formats now (so the timestamp is the event's) and queues; never blocks.
    pub(super) fn send(&self, r: &Record<'_>) {
        let text = message(r);
        let mut buf = Vec::with_capacity(text.len() + 128);
        let formatted = match &self.formatter {
            Formatter::Rfc3164(f) => {
                LogFormat::format(f, &mut buf, severity(r.outcome), text.as_str())
            }
            Formatter::Rfc5424(f) => LogFormat::format(
                f,
                &mut buf,
                severity(r.outcome),
                (r.event.as_str(), text.as_str()),
            ),
        };
        if let Err(e) = formatted {
            // Writing into a Vec does not fail; kept for completeness of the error path.
            tracing::warn!(
                target: "passgate::audit",
                syslog = %self.describe,
                error = %e,
                "cannot format a syslog message"
            );
            return;
        }
        if self.newline_framing {
            buf.push(b'\n');
        }
        match self.tx.try_send(buf) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if self.queue_warning.check().is_some() {
                    tracing::warn!(
                        target: "passgate::audit",
                        syslog = %self.describe,
                        dropped_total = total,
                        "syslog cannot keep up; audit messages are being dropped"
                    );
                }
            }
        }
    }
}

/// The sender thread: owns the connection, reconnects, counts losses.
struct Worker {
    target: SyslogTarget,
    describe: String,
    rx: Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    conn: Option<LoggerBackend>,
    /// Warned about the current outage already.
    down: bool,
    next_retry: Instant,
}

impl Worker {
    fn run(mut self) {
        // Connect at once, so an unreachable target is reported at start-up, not at the
        // first failed login.
        match connect(&self.target) {
            Ok(conn) => self.conn = Some(conn),
            Err(e) => self.went_down(&e),
        }
        while let Ok(message) = self.rx.recv() {
            self.deliver(&message);
        }
    }

    fn deliver(&mut self, message: &[u8]) {
        if self.conn.is_none() {
            if Instant::now() < self.next_retry {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            match connect(&self.target) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.came_back();
                }
                Err(e) => {
                    self.went_down(&e);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        if self.write(message).is_ok() {
            return;
        }
        // A send error on an established connection usually means the daemon restarted
        // (datagram peer gone, stream closed): reconnect once, right away.
        self.conn = None;
        let error = match connect(&self.target) {
            Ok(conn) => {
                self.conn = Some(conn);
                match self.write(message) {
                    Ok(()) => return,
                    Err(e) => {
                        self.conn = None;
                        e
                    }
                }
            }
            Err(e) => e,
        };
        self.went_down(&error);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&mut self, message: &[u8]) -> io::Result<()> {
        match self.conn.as_mut() {
            Some(conn) => conn.write_all(message).and_then(|()| conn.flush()),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
        }
    }

    fn went_down(&mut self, error: &io::Error) {
        self.next_retry = Instant::now() + RETRY_INTERVAL;
        if !self.down {
            self.down = true;
            tracing::warn!(
                target: "passgate::audit",
                syslog = %self.describe,
                error = %error,
                "syslog is unreachable; audit events still go to the log and the fail2ban file, \
                 syslog messages are dropped until it is back (retried at most once a minute)"
            );
        }
    }

    fn came_back(&mut self) {
        if self.down {
            self.down = false;
            tracing::info!(
                target: "passgate::audit",
                syslog = %self.describe,
                dropped_total = self.dropped.load(Ordering::Relaxed),
                "syslog is reachable again"
            );
        }
    }
}

fn resolve(address: &str) -> io::Result<Vec<SocketAddr>> {
    let addresses: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    if addresses.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the host name has no address",
        ));
    }
    Ok(addresses)
}

fn to_io(error: syslog::Error) -> io::Error {
    match error {
        syslog::Error::Io(e) | syslog::Error::Write(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn connect(target: &SyslogTarget) -> io::Result<LoggerBackend> {
    let backend = match target {
        // The crate tries /dev/log, /var/run/syslog and /var/run/log, and falls back to a
        // stream socket where the path is one (EPROTOTYPE). The formatter is not used.
        SyslogTarget::Local => syslog::unix(()).map_err(to_io)?.backend,
        SyslogTarget::Unix(path) => syslog::unix_custom((), path).map_err(to_io)?.backend,
        SyslogTarget::Udp(address) => {
            let server = resolve(address)?[0];
            let local: SocketAddr = if server.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let socket = UdpSocket::bind(local)?;
            // Connected, so an ICMP "port unreachable" surfaces as an error on a later send.
            socket.connect(server)?;
            LoggerBackend::Udp(socket, server)
        }
        SyslogTarget::Tcp(address) => {
            // The crate's `tcp()` has no connect timeout; a black-holed host would hold the
            // thread for minutes.
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            let mut stream = None;
            for server in resolve(address)? {
                match TcpStream::connect_timeout(&server, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let stream = stream.ok_or(last)?;
            stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
            let _ = stream.set_nodelay(true);
            LoggerBackend::Tcp(BufWriter::new(stream))
        }
    };
    // A stuck local daemon fills the socket buffer; without a timeout the thread would
    // block for good and everything else would queue up and be dropped silently.
    match &backend {
        LoggerBackend::Unix(socket) => socket.set_write_timeout(Some(WRITE_TIMEOUT))?,
        LoggerBackend::UnixStream(stream) => {
            stream.get_ref().set_write_timeout(Some(WRITE_TIMEOUT))?
        }
        LoggerBackend::Udp(..) | LoggerBackend::Tcp(_) => {}
    }
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;

    #[test]
    fn targets_parse() {
        assert_eq!(SyslogTarget::parse("off").expect("off"), None);
        assert_eq!(
            SyslogTarget::parse("local").expect("local"),
            Some(SyslogTarget::Local)
        );
        assert_eq!(
            SyslogTarget::parse("unix:/run/x.sock").expect("unix"),
            Some(SyslogTarget::Unix(PathBuf::from("/run/x.sock")))
        );
        assert_eq!(
            SyslogTarget::parse("udp://127.0.0.1:514").expect("udp"),
            Some(SyslogTarget::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            SyslogTarget::parse("tcp://[2001:db8::1]:6514").expect("tcp"),
            Some(SyslogTarget::Tcp("[2001:db8::1]:6514".into()))
        );
        assert_eq!(
            SyslogTarget::parse("tcp://logs.example.org:514/").expect("tcp"),
            Some(SyslogTarget::Tcp("logs.example.org:514".into()))
        );
        for bad in [
            "",
            "on",
            "unix:",
            "udp://",
            "udp://host",
            "udp://host:0",
            "udp://host:99999",
            "tcp://:514",
            "tcp://2001:db8::1:514",
            "tcp://[nope]:514",
            "tcp://a b:514",
            "http://x:1",
        ] {
            let err = SyslogTarget::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("udp://host:port"), "{bad}: {err}");
        }
    }

    #[test]
    fn facilities_parse_and_unknown_names_list_the_valid_ones() {
        assert!(matches!(parse_facility("auth"), Ok(Facility::LOG_AUTH)));
        assert!(matches!(parse_facility("LOCAL3"), Ok(Facility::LOG_LOCAL3)));
        let err = parse_facility("kernel").expect_err("unknown").to_string();
        assert!(err.contains("\"kernel\""), "{err}");
        assert!(
            err.contains("auth, authpriv, daemon, user, local0"),
            "{err}"
        );
    }

    #[test]
    fn message_escapes_user_text_and_uses_fixed_reasons_for_failures() {
        let ip: std::net::IpAddr = "::ffff:203.0.113.7".parse().expect("address");
        let failed = Record::new(Event::LoginFailed, Outcome::Failure)
            .user("bob\n x rhost=6.6.6.6")
            .ip(ip)
            .verifier(Some("smb"))
            .reason("wrong password\nforged");
        assert_eq!(
            message(&failed),
            "login_failed outcome=failure rhost=203.0.113.7 user=bob%0A%20x%20rhost%3D6.6.6.6 \
             verifier=smb reason=bad_credentials"
        );
        let error = Record::new(Event::LoginFailed, Outcome::Error).reason("TrueNAS unreachable");
        assert_eq!(
            message(&error),
            "login_failed outcome=error rhost=- user=- reason=TrueNAS%20unreachable"
        );
        let ok = Record::new(Event::LoginSucceeded, Outcome::Success)
            .user("alice")
            .ip(ip);
        assert_eq!(
            message(&ok),
            "login_succeeded outcome=success rhost=203.0.113.7 user=alice"
        );
    }

    #[test]
    fn rfc5424_header() {
        let f = Rfc5424 {
            facility: Facility::LOG_LOCAL3,
            hostname: Some("nas".into()),
            pid: 42,
        };
        let mut buf = Vec::new();
        LogFormat::format(&f, &mut buf, Severity::LOG_WARNING, ("login_failed", "x=y"))
            .expect("format");
        let text = String::from_utf8(buf).expect("utf-8");
        // local3 = 19, warning = 4: 19 * 8 + 4.
        assert!(text.starts_with("<156>1 "), "{text}");
        assert!(
            text.ends_with("Z nas passgate 42 login_failed - x=y"),
            "{text}"
        );
    }
}
