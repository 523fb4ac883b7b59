//! The syslog sink against a real Unix datagram socket (what /dev/log is): PRI values,
//! RFC 3164 and RFC 5424 framing, escaping, and what happens when nobody listens.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use passgate::audit::{Audit, Event, Outcome, Record};
use passgate::config::{LogConfig, SyslogFormat};
use tracing::field::{Field, Visit};
use tracing::{Event as TracingEvent, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

// ---- capturing passgate's own warnings (the sender thread logs them, so the subscriber
// ---- must be the global one)

static CAPTURED: Mutex<Vec<Captured>> = Mutex::new(Vec::new());

#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    fields: String,
}

struct Capture;

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &TracingEvent<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("passgate::audit") {
            return;
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let mut captured = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        captured.push(Captured {
            level: *event.metadata().level(),
            fields: fields.0,
        });
    }
}

fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber).expect("global subscriber");
    });
}

/// Warnings about `syslog_target` (the sink names its target in every message).
fn warnings_about(syslog_target: &str) -> Vec<Captured> {
    let needle = format!("syslog={syslog_target}");
    CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|c| c.level == Level::WARN && c.fields.split(' ').any(|f| f == needle))
        .cloned()
        .collect()
}

fn wait_for_warnings(syslog_target: &str, at_least: usize) -> Vec<Captured> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = warnings_about(syslog_target);
        if found.len() >= at_least || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- helpers

fn config(syslog: String, facility: &str, format: SyslogFormat) -> LogConfig {
    LogConfig {
        fail2ban_file: None,
        syslog,
        syslog_facility: facility.to_string(),
        syslog_format: format,
        ..LogConfig::default()
    }
}

fn listener(dir: &Path, name: &str) -> (UnixDatagram, PathBuf) {
    let path = dir.join(name);
    let socket = UnixDatagram::bind(&path).expect("bind syslog socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    (socket, path)
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).expect("a syslog datagram within 5 s");
    String::from_utf8(buf[..n].to_vec()).expect("syslog messages are ASCII")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// A forged line after a newline, short enough (54 characters) not to be cut.
const HOSTILE: &str = "bob\n2026-01-01T00:00:00Z passgate[1]: x; rhost=6.6.6.6";
const HOSTILE_ENCODED: &str =
    "bob%0A2026-01-01T00%3A00%3A00Z%20passgate%5B1%5D%3A%20x%3B%20rhost%3D6.6.6.6";

/// Records a success, a failure with a hostile name and a backend error, and checks the
/// three datagrams.
fn check(format: SyslogFormat, facility: &str, code: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, path) = listener(dir.path(), "log.sock");
    let audit = Audit::from_config(&config(
        format!("unix:{}", path.display()),
        facility,
        format,
    ))
    .expect("audit from config");
    let pid = std::process::id();

    audit.record(
        Record::new(Event::LoginSucceeded, Outcome::Success)
            .user("alice")
            .ip(ip("203.0.113.5"))
            .verifier(Some("truenas")),
    );
    audit.record(
        Record::new(Event::LoginFailed, Outcome::Failure)
            .user(HOSTILE)
            .ip(ip("2001:db8::7"))
            .verifier(Some("smb"))
            .reason("wrong password"),
    );
    audit.record(
        Record::new(Event::LoginFailed, Outcome::Error)
            .user("carol")
            .ip(ip("::ffff:198.51.100.9"))
            .reason("TrueNAS unreachable"),
    );
    audit.record(Record::new(Event::RateLimited, Outcome::Failure).ip(ip("198.51.100.10")));

    let success = receive(&socket);
    let failure = receive(&socket);
    let error = receive(&socket);
    let limited = receive(&socket);
    let failure_body = format!(
        "login_failed outcome=failure rhost=2001:db8::7 user={HOSTILE_ENCODED} verifier=smb reason=bad_credentials"
    );
    let expected = [
        (
            &success,
            6,
            "login_succeeded",
            "login_succeeded outcome=success rhost=203.0.113.5 user=alice verifier=truenas",
        ),
        (&failure, 4, "login_failed", failure_body.as_str()),
        (
            &error,
            3,
            "login_failed",
            "login_failed outcome=error rhost=198.51.100.9 user=carol reason=TrueNAS%20unreachable",
        ),
        (
            &limited,
            4,
            "rate_limited",
            "rate_limited outcome=failure rhost=198.51.100.10 user=- reason=rate_limited",
        ),
    ];
    for (datagram, severity, msgid, body) in expected {
        let pri = format!("<{}>", code * 8 + severity);
        assert!(
            datagram.starts_with(&pri),
            "{format:?}/{facility}: expected {pri} in {datagram:?}"
        );
        assert!(
            !datagram.contains('\n') && !datagram.contains('\r'),
            "{datagram:?}"
        );
        assert!(
            datagram.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{datagram:?}"
        );
        match format {
            // <PRI>Mmm dd hh:mm:ss passgate[PID]: MSG  (no host name on a local socket)
            SyslogFormat::Rfc3164 => {
                let tail = format!(" passgate[{pid}]: {body}");
                assert!(
                    datagram.ends_with(&tail),
                    "{datagram:?} should end with {tail:?}"
                );
                let stamp = &datagram[pri.len()..datagram.len() - tail.len()];
                assert_eq!(stamp.len(), "Nov 22 10:00:00".len(), "{datagram:?}");
            }
            // <PRI>1 TIMESTAMP HOST passgate PID MSGID - MSG
            SyslogFormat::Rfc5424 => {
                let rest = datagram
                    .strip_prefix(&format!("{pri}1 "))
                    .expect("version 1");
                let parts: Vec<&str> = rest.splitn(7, ' ').collect();
                assert_eq!(parts.len(), 7, "{datagram:?}");
                assert!(
                    parts[0].ends_with('Z') && parts[0].contains('T'),
                    "timestamp {:?}",
                    parts[0]
                );
                assert!(!parts[1].is_empty(), "host name or -");
                assert_eq!(parts[2], "passgate");
                assert_eq!(parts[3], pid.to_string());
                assert_eq!(parts[4], msgid);
                assert_eq!(parts[5], "-", "no structured data");
                assert_eq!(parts[6], body);
            }
        }
    }
    // The hostile name is never raw: no forged address, no second line.
    assert!(!failure.contains(" rhost=6.6.6.6"));
    assert_eq!(
        failure.matches("rhost=").count(),
        1,
        "only the real field: the name's `=` is encoded"
    );
}

#[test]
fn rfc3164_auth() {
    check(SyslogFormat::Rfc3164, "auth", 4);
}

#[test]
fn rfc3164_local3() {
    check(SyslogFormat::Rfc3164, "local3", 19);
}

#[test]
fn rfc5424_auth() {
    check(SyslogFormat::Rfc5424, "auth", 4);
}

#[test]
fn rfc5424_local3() {
    check(SyslogFormat::Rfc5424, "local3", 19);
}

#[test]
fn auth_pri_values_are_36_for_failures_and_38_for_successes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, path) = listener(dir.path(), "auth.sock");
    let audit = Audit::from_config(&config(
        format!("unix:{}", path.display()),
        "auth",
        SyslogFormat::Rfc3164,
    ))
    .expect("audit");
    audit.record(
        Record::new(Event::LoginFailed, Outcome::Failure)
            .user("bob")
            .ip(ip("203.0.113.7")),
    );
    audit.record(
        Record::new(Event::LoginSucceeded, Outcome::Success)
            .user("bob")
            .ip(ip("203.0.113.7")),
    );
    assert!(receive(&socket).starts_with("<36>"));
    assert!(receive(&socket).starts_with("<38>"));
}

#[test]
fn an_unreachable_socket_does_not_fail_start_up_and_warns_once() {
    capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nobody-listens.sock");
    let target = format!("unix:{}", path.display());
    let audit = Audit::from_config(&config(target.clone(), "auth", SyslogFormat::Rfc3164))
        .expect("an unreachable syslog must not fail start-up");
    for n in 0..50u8 {
        audit.record(
            Record::new(Event::LoginFailed, Outcome::Failure)
                .user("bob")
                .ip(ip(&format!("203.0.113.{n}"))),
        );
    }
    let first = wait_for_warnings(&target, 1);
    assert_eq!(first.len(), 1, "{first:#?}");
    // More events and time: still one warning (retries are at most once a minute and do
    // not warn again while the outage lasts).
    for _ in 0..50 {
        audit.record(
            Record::new(Event::LoginSucceeded, Outcome::Success)
                .user("bob")
                .ip(ip("203.0.113.1")),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let all = warnings_about(&target);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(all[0].fields.contains("unreachable"), "{:?}", all[0].fields);
}

#[test]
fn local_without_dev_log_does_not_fail_and_warns_once() {
    capture();
    let audit = Audit::from_config(&config(
        String::from("local"),
        "auth",
        SyslogFormat::Rfc3164,
    ))
    .expect("syslog = local must never fail start-up");
    for _ in 0..20 {
        audit.record(
            Record::new(Event::LoginFailed, Outcome::Failure)
                .user("bob")
                .ip(ip("203.0.113.7")),
        );
    }
    // The paths the `syslog` crate tries. Existing is not enough (here /var/run/log is a
    // directory): reachable means something accepts a connection.
    let local_syslog_reachable = ["/dev/log", "/var/run/syslog", "/var/run/log"]
        .iter()
        .any(|p| {
            UnixDatagram::unbound().is_ok_and(|s| s.connect(p).is_ok())
                || std::os::unix::net::UnixStream::connect(p).is_ok()
        });
    if local_syslog_reachable {
        // A syslog daemon is listening on this machine: the messages went there; nothing to
        // warn about.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            warnings_about("local").is_empty(),
            "{:#?}",
            warnings_about("local")
        );
    } else {
        let first = wait_for_warnings("local", 1);
        assert_eq!(first.len(), 1, "{first:#?}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(warnings_about("local").len(), 1);
    }
}

#[test]
fn a_restarted_daemon_is_reconnected_without_losing_the_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, path) = listener(dir.path(), "restart.sock");
    let audit = Audit::from_config(&config(
        format!("unix:{}", path.display()),
        "auth",
        SyslogFormat::Rfc3164,
    ))
    .expect("audit");
    audit.record(
        Record::new(Event::Logout, Outcome::Success)
            .user("one")
            .ip(ip("203.0.113.1")),
    );
    assert!(receive(&socket).contains("logout outcome=success rhost=203.0.113.1 user=one"));
    // The daemon restarts: its socket is replaced by a new one at the same path.
    drop(socket);
    std::fs::remove_file(&path).expect("remove old socket");
    let (socket, _) = listener(dir.path(), "restart.sock");
    audit.record(
        Record::new(Event::Logout, Outcome::Success)
            .user("two")
            .ip(ip("203.0.113.2")),
    );
    assert!(receive(&socket).contains("logout outcome=success rhost=203.0.113.2 user=two"));
}

#[test]
fn a_stuck_daemon_never_blocks_the_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bound but never read: the socket buffer fills and sends would block.
    let (_socket, path) = listener(dir.path(), "stuck.sock");
    let audit = Audit::from_config(&config(
        format!("unix:{}", path.display()),
        "auth",
        SyslogFormat::Rfc5424,
    ))
    .expect("audit");
    let started = Instant::now();
    for n in 0..5000u32 {
        audit.record(
            Record::new(Event::LoginFailed, Outcome::Failure)
                .user("bob")
                .ip(ip(&format!("10.0.{}.{}", n / 250, n % 250))),
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "5000 records took {elapsed:?}: syslog blocked the caller"
    );
}

#[test]
fn configuration_mistakes_are_start_up_errors() {
    let err = Audit::from_config(&config(
        String::from("local"),
        "kernel",
        SyslogFormat::Rfc3164,
    ))
    .expect_err("unknown facility")
    .to_string();
    assert!(
        err.contains("log.syslog_facility") && err.contains("\"kernel\""),
        "{err}"
    );
    for name in ["auth", "authpriv", "daemon", "user", "local0", "local7"] {
        assert!(err.contains(name), "{err} should list {name}");
    }
    for bad in [
        "udp://nohost",
        "tcp://host:notaport",
        "syslog.example.org",
        "unix:",
    ] {
        let err = Audit::from_config(&config(String::from(bad), "auth", SyslogFormat::Rfc3164))
            .expect_err(bad)
            .to_string();
        assert!(
            err.contains("log.syslog") && err.contains("udp://host:port"),
            "{bad}: {err}"
        );
    }
    // `off` ignores the facility altogether.
    Audit::from_config(&config(
        String::from("off"),
        "kernel",
        SyslogFormat::Rfc3164,
    ))
    .expect("off");
}

#[test]
fn udp_target_delivers() {
    let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = server.local_addr().expect("addr").port();
    let audit = Audit::from_config(&config(
        format!("udp://127.0.0.1:{port}"),
        "local3",
        SyslogFormat::Rfc5424,
    ))
    .expect("audit");
    audit.record(
        Record::new(Event::UserLockedOut, Outcome::Failure)
            .user("bob")
            .ip(ip("203.0.113.7")),
    );
    let mut buf = [0u8; 4096];
    let n = server.recv(&mut buf).expect("a datagram");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("<156>1 "), "{text}");
    assert!(
        text.ends_with(" user_locked_out - user_locked_out outcome=failure rhost=203.0.113.7 user=bob reason=locked_out"),
        "{text}"
    );
}

#[test]
fn tcp_target_delivers_newline_framed_messages() {
    use std::io::{BufRead, BufReader};
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp bind");
    let port = server.local_addr().expect("addr").port();
    let audit = Audit::from_config(&config(
        format!("tcp://127.0.0.1:{port}"),
        "auth",
        SyslogFormat::Rfc3164,
    ))
    .expect("audit");
    audit.record(
        Record::new(Event::TotpFailed, Outcome::Failure)
            .user("a\nb")
            .ip(ip("203.0.113.8")),
    );
    audit.record(
        Record::new(Event::PasswordChanged, Outcome::Success)
            .user("a")
            .ip(ip("203.0.113.8")),
    );
    let (stream, _) = server.accept().expect("accept");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut lines = BufReader::new(stream).lines();
    let first = lines.next().expect("first message").expect("read");
    let second = lines.next().expect("second message").expect("read");
    assert!(first.starts_with("<36>"), "{first}");
    assert!(
        first.ends_with(
            "totp_failed outcome=failure rhost=203.0.113.8 user=a%0Ab reason=totp_failed"
        ),
        "{first}"
    );
    // Remote targets carry the host name in RFC 3164: `<PRI>Mmm dd hh:mm:ss HOST passgate[PID]:`.
    assert!(
        first.contains(&format!(" passgate[{}]: ", std::process::id())),
        "{first}"
    );
    assert!(second.starts_with("<38>"), "{second}");
    assert!(
        second.ends_with("password_changed outcome=success rhost=203.0.113.8 user=a"),
        "{second}"
    );
}
