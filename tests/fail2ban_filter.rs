//! The fail2ban pipeline at the `Audit` level, proved with the real `fail2ban-regex` and the
//! shipped filter: every failure is matched with exactly the client's address, nothing else
//! is, and no username (newlines, `rhost=`, 10 kB, Unicode, NUL…) can make fail2ban see an
//! address other than the client's.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/logs.rs"]
mod logs;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use passgate::audit::{Audit, Event, Outcome, Record};
use passgate::config::LogConfig;

use logs::{fail2ban_regex, percent_decode};

fn audit_to(dir: &Path) -> (Audit, PathBuf) {
    let path = dir.join("auth.log");
    let log = LogConfig {
        fail2ban_file: Some(path.clone()),
        syslog: String::from("off"),
        ..LogConfig::default()
    };
    (Audit::from_config(&log).expect("audit from config"), path)
}

/// The file once it holds `lines` lines: the writer batches, so a line lands up to 100 ms
/// after its event. Polls with a deadline generous for a busy machine.
fn wait_for_lines(path: &Path, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches('\n').count() >= lines {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {lines} lines in the fail2ban file",
            text.matches('\n').count()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Client addresses: IPv4, IPv6 (several /64s and forms), and IPv4-mapped IPv6, which is
/// written (and must be banned) as plain IPv4.
fn clients() -> Vec<(IpAddr, IpAddr)> {
    let mut out = Vec::new();
    for i in 1..=20u8 {
        let v4 = ip(&format!("203.0.113.{i}"));
        out.push((v4, v4));
        let v4b = ip(&format!("198.51.100.{}", 200 + i / 4));
        out.push((v4b, v4b));
        let v6 = ip(&format!("2001:db8:{i:x}::{:x}", 0x1000 + u16::from(i)));
        out.push((v6, v6));
    }
    for text in [
        "2001:db8::1",
        "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe",
        "fe80::1",
        "::1",
        "127.0.0.1",
    ] {
        out.push((ip(text), ip(text)));
    }
    for i in 1..=5u8 {
        out.push((
            ip(&format!("::ffff:192.0.2.{i}")),
            ip(&format!("192.0.2.{i}")),
        ));
    }
    out
}

#[test]
fn every_failure_is_matched_with_the_client_address_and_nothing_else_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (audit, path) = audit_to(dir.path());
    let started = now_secs();

    let mut expected = Vec::new();
    let mut innocent = BTreeSet::new();
    for (n, (client, banned_as)) in clients().into_iter().enumerate() {
        let user = format!("user{n}");
        // Failures: one of each kind fail2ban counts.
        let failures = [
            Event::LoginFailed,
            Event::RateLimited,
            Event::UserLockedOut,
            Event::TotpFailed,
            Event::ResetTokenRejected,
        ];
        let kind = failures[n % failures.len()];
        audit.record(
            Record::new(kind, Outcome::Failure)
                .user(&user)
                .ip(client)
                .verifier(Some("smb"))
                .reason("wrong password"),
        );
        expected.push(banned_as);

        // Everything else is recorded from other addresses, which must never be banned.
        let other = ip(&format!("192.0.2.{}", 100 + n % 150));
        innocent.insert(other);
        audit.record(
            Record::new(Event::LoginSucceeded, Outcome::Success)
                .user(&user)
                .ip(other),
        );
        // Backend down: not the client's fault.
        audit.record(
            Record::new(Event::LoginFailed, Outcome::Error)
                .user(&user)
                .ip(other)
                .reason("TrueNAS unreachable"),
        );
        audit.record(
            Record::new(Event::PasswordChanged, Outcome::Success)
                .user(&user)
                .ip(other),
        );
        audit.record(
            Record::new(Event::PasswordChangeFailed, Outcome::Failure)
                .user(&user)
                .ip(other),
        );
        audit.record(
            Record::new(Event::Logout, Outcome::Success)
                .user(&user)
                .ip(other),
        );
        audit.record(
            Record::new(Event::SessionRevoked, Outcome::Success)
                .user(&user)
                .ip(other),
        );
        // Reset requests answer alike for every name: nothing there to ban for.
        audit.record(
            Record::new(Event::ResetRequested, Outcome::Failure)
                .user(&user)
                .ip(other)
                .reason("unknown_user"),
        );
        audit.record(
            Record::new(Event::PasswordResetFailed, Outcome::Failure)
                .user(&user)
                .ip(other)
                .reason("policy"),
        );
        audit.record(
            Record::new(Event::TotpFailed, Outcome::Error)
                .user(&user)
                .ip(other),
        );
        audit.record(Record::new(Event::ConfigLoaded, Outcome::Success));
    }
    // A failure without an address cannot be attributed: no line at all.
    audit.record(Record::new(Event::LoginFailed, Outcome::Failure).user("nobody"));
    // The last line, recorded after every other event: once it is in, all of them are.
    let last = ip("203.0.113.250");
    audit.record(
        Record::new(Event::LoginFailed, Outcome::Failure)
            .user("last")
            .ip(last),
    );
    expected.push(last);

    let text = wait_for_lines(&path, expected.len());
    assert_eq!(
        text.lines().count(),
        expected.len(),
        "one line per failure, none for the rest:\n{text}"
    );
    assert!(text.ends_with('\n'));

    let report = fail2ban_regex(&path);
    assert_eq!(report.lines, expected.len());
    assert_eq!(report.missed, 0, "missed lines: {:#?}", report.missed_lines);
    assert_eq!(report.matched, expected.len());
    assert_eq!(report.matched_lines.len(), expected.len());
    let hosts: Vec<IpAddr> = report.hosts.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        hosts, expected,
        "fail2ban must capture exactly the client address of each line, in order"
    );
    for host in &hosts {
        assert!(
            !innocent.contains(host),
            "{host} only had successes and errors but was matched"
        );
    }
    // Times parsed as UTC although fail2ban-regex ran nine hours east of it.
    let finished = now_secs();
    for (host, at) in &report.hosts {
        let at = at.unwrap_or_else(|| panic!("{host}: fail2ban read no time from the line"));
        assert!(
            at >= started - 2.0 && at <= finished + 2.0,
            "{host}: parsed time {at} is not now ({started}..{finished}): time zone handling is wrong"
        );
    }
}

/// Usernames an attacker would try in order to forge a failure line for someone else.
fn crafted_usernames() -> Vec<String> {
    let forged = "2026-01-01T00:00:00.000Z passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials";
    let mut names = vec![
        String::from("bob\n"),
        format!("bob\n{forged}"),
        format!("bob\r{forged}"),
        format!("bob\r\n{forged}"),
        format!("\r\n{forged}"),
        format!("{forged}\n"),
        format!("x reason=bad_credentials\n{forged}"),
        String::from(" rhost=6.6.6.6"),
        String::from("rhost=6.6.6.6"),
        String::from("bob rhost=6.6.6.6"),
        String::from("bob; rhost=6.6.6.6 user=x"),
        String::from("bob user=x reason=bad_credentials; rhost=6.6.6.6"),
        String::from("x\trhost=6.6.6.6"),
        String::from("bob smith"),
        String::from("   "),
        String::from("\"bob\" 'o'brien'"),
        String::from("%0a"),
        String::from("%0D%0A2026-01-01T00:00:00.000Z passgate[1]: totp failure; rhost=6.6.6.6"),
        String::from("%C3%28"),
        String::from("%FF%FE%00"),
        String::from("%"),
        String::from("%%"),
        String::from("%zz"),
        String::from("%E2%80%AE"),
        String::from("jörg"),
        String::from("\u{202e}6.6.6.6=tsohr"),
        String::from("bob\u{2028}rhost=6.6.6.6\u{2029}"),
        String::from("bob\u{85}rhost=6.6.6.6"),
        String::from("bob\u{b}\u{c}rhost=6.6.6.6"),
        String::from("nul\0rhost=6.6.6.6"),
        String::from("\0"),
        String::from("-"),
        String::new(),
        String::from("user=-"),
        String::from("[6.6.6.6]"),
        String::from("::ffff:6.6.6.6"),
        String::from("\u{feff}bob"),
        String::from("😀"),
        "A".repeat(10 * 1024),
        forged.repeat(100),
        format!("\n{forged}").repeat(100),
        "é".repeat(5000),
    ];
    // Every ASCII control character and a few more, each around a forged field.
    for b in (0u8..0x20).chain([0x7f]) {
        names.push(format!("a{}rhost=6.6.6.6", char::from(b)));
    }
    names
}

#[test]
fn crafted_usernames_never_make_fail2ban_see_another_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (audit, path) = audit_to(dir.path());
    let names = crafted_usernames();
    let kinds = [
        Event::LoginFailed,
        Event::RateLimited,
        Event::UserLockedOut,
        Event::TotpFailed,
    ];
    let mut expected = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let client = if n % 2 == 0 {
            ip(&format!("198.51.100.{}", n % 250 + 1))
        } else {
            ip(&format!("2001:db8:bad::{:x}", n + 1))
        };
        audit.record(
            Record::new(kinds[n % kinds.len()], Outcome::Failure)
                .user(name)
                .ip(client),
        );
        expected.push(client);
    }

    let text = wait_for_lines(&path, names.len());
    let lines: Vec<&str> = text.split('\n').collect();
    // One line per event, and the file ends with the last newline.
    assert_eq!(lines.len(), names.len() + 1, "{text}");
    assert_eq!(lines.last(), Some(&""));
    for (line, name) in lines.iter().zip(&names) {
        assert!(
            line.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "non-printable byte in {line:?}"
        );
        assert!(line.len() < 1000, "line not capped: {} bytes", line.len());
        assert_eq!(line.matches("rhost=").count(), 1, "{line}");
        // Exactly one `; `, and after it exactly the three fields `rhost= user= reason=`.
        assert_eq!(line.matches("; ").count(), 1, "{line}");
        let fields = line.split("; ").nth(1).unwrap_or_default();
        assert_eq!(fields.split(' ').count(), 3, "{line}");
        // The user field decodes back to the name (or its first 64 characters).
        let user = line
            .split(" user=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .expect("user field");
        if name.is_empty() {
            assert_eq!(user, "-");
            continue;
        }
        let (encoded, cut) = match user.strip_suffix("...") {
            Some(head) if name.chars().count() > 64 => (head, true),
            _ => (user, false),
        };
        let decoded = percent_decode(encoded).unwrap_or_else(|| panic!("bad encoding {user:?}"));
        let want: String = if cut {
            name.chars().take(64).collect()
        } else {
            name.clone()
        };
        assert_eq!(decoded, want.as_bytes(), "{line}");
    }

    let report = fail2ban_regex(&path);
    assert_eq!(report.lines, names.len());
    assert_eq!(report.missed, 0, "missed lines: {:#?}", report.missed_lines);
    assert_eq!(report.matched, names.len());
    let hosts: Vec<IpAddr> = report.hosts.iter().map(|(h, _)| *h).collect();
    assert_eq!(hosts, expected);
    let evil = ip("6.6.6.6");
    assert!(
        !hosts.contains(&evil),
        "a username made fail2ban see 6.6.6.6"
    );
    assert!(!hosts.contains(&ip("::ffff:6.6.6.6")));
}

#[test]
fn the_filter_rejects_lines_that_are_not_passgate_failure_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("foreign.log");
    let ts = "2026-11-22T10:00:00.123Z";
    let lines = [
        // Successes and unknown messages.
        format!("{ts} passgate[1]: login succeeded; rhost=6.6.6.6 user=bob reason=ok"),
        format!("{ts} passgate[1]: authentication success; rhost=6.6.6.6 user=bob reason=ok"),
        // A raw username with a space, as a logger that does not encode would write it.
        format!("{ts} passgate[1]: authentication failure; rhost=203.0.113.7 user=bob rhost=6.6.6.6 reason=bad_credentials"),
        format!("{ts} passgate[1]: authentication failure; rhost=203.0.113.7 user=bob smith reason=bad_credentials"),
        // The forged second half of a line split by a raw newline, without a timestamp.
        // (fail2ban cuts the timestamp before matching, so a dateless line that starts with
        // " passgate[" would match: no filter can tell a forged line from a real one. That
        // is why passgate percent-encodes usernames and never writes a raw newline, which
        // the crafted-username test above proves.)
        String::from("passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials"),
        // Something before the timestamp.
        format!("x {ts} passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials"),
        // Shifted or doubled fields.
        format!("{ts}  passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials"),
        format!("{ts} passgate[1]: authentication failure; user=x rhost=6.6.6.6 reason=bad_credentials"),
        format!("{ts} passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials extra=1"),
        format!("{ts} passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials "),
        format!("{ts} passgate[1]: authentication failure; rhost=6.6.6.6 user= reason=bad_credentials"),
        format!("{ts} passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=Bad credentials"),
        // Not an address.
        format!("{ts} passgate[1]: authentication failure; rhost=evil.example.org user=x reason=bad_credentials"),
        format!("{ts} passgate[1]: authentication failure; rhost= user=x reason=bad_credentials"),
        // Another program, another tag.
        format!("{ts} sshd[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials"),
        format!("{ts} passgatex[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials"),
        format!("{ts} passgate: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials"),
        // A timestamp without a zone.
        String::from("2026-11-22T10:00:00.123 passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials"),
    ];
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).expect("write");
    let report = fail2ban_regex(&path);
    assert_eq!(report.lines, lines.len());
    assert_eq!(report.matched, 0, "matched: {:#?}", report.matched_lines);
    assert!(report.hosts.is_empty());

    // The control: the same file plus one well-formed line matches exactly that line.
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str(&format!(
        "{ts} passgate[42]: user locked out; rhost=203.0.113.9 user=bob%0A reason=locked_out\n"
    ));
    std::fs::write(&path, text).expect("write");
    let report = fail2ban_regex(&path);
    assert_eq!(report.matched, 1);
    assert_eq!(
        report.hosts.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        vec![ip("203.0.113.9")]
    );
}

#[test]
fn concurrent_writers_never_interleave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (audit, path) = audit_to(dir.path());
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let audit = audit.clone();
            std::thread::spawn(move || {
                let name = format!("user{t}-{}", "x\n".repeat(30));
                for i in 0..250u8 {
                    let client = ip(&format!("10.{t}.{i}.1"));
                    audit.record(
                        Record::new(Event::LoginFailed, Outcome::Failure)
                            .user(&name)
                            .ip(client),
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer thread");
    }
    wait_for_lines(&path, 2000);
    let report = fail2ban_regex(&path);
    assert_eq!(report.lines, 2000);
    assert_eq!(report.matched, 2000, "missed: {:#?}", report.missed_lines);
    let distinct: BTreeSet<IpAddr> = report.hosts.iter().map(|(h, _)| *h).collect();
    assert_eq!(distinct.len(), 2000);
}

#[test]
fn reopen_follows_logrotate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (audit, path) = audit_to(dir.path());
    audit.record(
        Record::new(Event::LoginFailed, Outcome::Failure)
            .user("a")
            .ip(ip("203.0.113.1")),
    );
    let rotated = dir.path().join("auth.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    // Until passgate is told (SIGHUP), lines still go to the moved file.
    audit.record(
        Record::new(Event::LoginFailed, Outcome::Failure)
            .user("b")
            .ip(ip("203.0.113.2")),
    );
    audit.reopen();
    audit.record(
        Record::new(Event::LoginFailed, Outcome::Failure)
            .user("c")
            .ip(ip("203.0.113.3")),
    );
    // The reopen wrote the first two to the old file before swapping; the third is batched.
    wait_for_lines(&path, 1);

    let old = fail2ban_regex(&rotated);
    assert_eq!(
        old.hosts.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        vec![ip("203.0.113.1"), ip("203.0.113.2")]
    );
    let new = fail2ban_regex(&path);
    assert_eq!(
        new.hosts.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        vec![ip("203.0.113.3")]
    );
}

#[test]
fn an_unwritable_fail2ban_file_is_a_start_up_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = LogConfig {
        fail2ban_file: Some(dir.path().join("missing-dir/auth.log")),
        syslog: String::from("off"),
        ..LogConfig::default()
    };
    let err = Audit::from_config(&log)
        .expect_err("a file in a missing directory")
        .to_string();
    assert!(
        err.contains("log.fail2ban_file") && err.contains("missing-dir"),
        "{err}"
    );
}

/// A fail2ban server of our own (own socket, pid file, in-memory database, an action that
/// only records), stopped when dropped.
struct Fail2banServer {
    conf: PathBuf,
    run: PathBuf,
}

impl Fail2banServer {
    fn start(dir: &Path, logpath: &Path) -> Fail2banServer {
        let conf = dir.join("conf");
        let run = dir.join("run");
        for sub in ["filter.d", "action.d"] {
            std::fs::create_dir_all(conf.join(sub)).expect("conf dir");
        }
        std::fs::create_dir_all(&run).expect("run dir");
        std::fs::copy(logs::filter_path(), conf.join("filter.d/passgate.conf"))
            .expect("copy filter");
        std::fs::write(
            conf.join("fail2ban.conf"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {run}/fail2ban.log\nsocket = {run}/fail2ban.sock\n\
                 pidfile = {run}/fail2ban.pid\ndbfile = :memory:\n",
                run = run.display()
            ),
        )
        .expect("fail2ban.conf");
        // Bans are only recorded: no firewall, no root needed.
        std::fs::write(
            conf.join("action.d/record.conf"),
            "[Definition]\nactionstart =\nactionstop =\nactioncheck =\nactionban = true\nactionunban = true\n",
        )
        .expect("action");
        // The shipped jail's settings, with this test's log, the polling backend (no
        // inotify needed) and the recording action.
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fail2ban/jail.d/passgate.local"),
        )
        .expect("shipped jail");
        let mut jail = String::new();
        for line in shipped.lines() {
            let key = line.split('=').next().unwrap_or_default().trim();
            match key {
                "logpath" => jail.push_str(&format!("logpath  = {}\n", logpath.display())),
                "backend" => jail.push_str("backend  = polling\naction   = record\n"),
                _ => {
                    jail.push_str(line);
                    jail.push('\n');
                }
            }
        }
        assert!(
            jail.contains("maxretry = 5"),
            "the shipped jail changed:\n{jail}"
        );
        std::fs::write(conf.join("jail.conf"), jail).expect("jail.conf");

        let server = Fail2banServer { conf, run };
        let out = server.client(&["-x", "start"]);
        assert!(
            out.contains("Server ready"),
            "fail2ban did not start:\n{out}\n{}",
            server.log()
        );
        server
    }

    fn client(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("fail2ban-client")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run fail2ban-client ({e}). It comes with the Debian package `fail2ban` \
                     (scripts/install-deps test installs it); this test needs the real tool"
                )
            });
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.run.join("fail2ban.log")).unwrap_or_default()
    }

    fn banned(&self) -> BTreeSet<IpAddr> {
        let status = self.client(&["status", "passgate"]);
        status
            .lines()
            .find_map(|l| l.split("Banned IP list:").nth(1))
            .unwrap_or_else(|| panic!("no ban list in:\n{status}"))
            .split_whitespace()
            .map(ip)
            .collect()
    }
}

impl Drop for Fail2banServer {
    fn drop(&mut self) {
        let out = self.client(&["stop"]);
        if !out.contains("Shutdown successful") {
            // Stop our own server by the pid it wrote, nothing else.
            if let Ok(pid) = std::fs::read_to_string(self.run.join("fail2ban.pid")) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

#[test]
fn a_real_fail2ban_server_bans_exactly_the_attackers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (audit, path) = audit_to(dir.path());
    // The file exists (created by Audit) before the server starts tailing it.
    let server = Fail2banServer::start(dir.path(), &path);

    let forged = "x\n2026-01-01T00:00:00.000Z passgate[1]: authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials";
    let attacker_v4 = ip("203.0.113.7");
    let attacker_v6 = ip("2001:db8::99");
    for _ in 0..5 {
        // maxretry = 5: five failures ban. The names try to frame 6.6.6.6.
        audit.record(
            Record::new(Event::LoginFailed, Outcome::Failure)
                .user(forged)
                .ip(attacker_v4),
        );
        audit.record(
            Record::new(Event::TotpFailed, Outcome::Failure)
                .user(" rhost=6.6.6.6")
                .ip(attacker_v6),
        );
    }
    // Four failures stay below the limit.
    for _ in 0..4 {
        audit.record(
            Record::new(Event::RateLimited, Outcome::Failure)
                .user("bob")
                .ip(ip("198.51.100.4")),
        );
    }
    // Backend errors and successes never count, however many.
    for _ in 0..20 {
        audit.record(
            Record::new(Event::LoginFailed, Outcome::Error)
                .user("bob")
                .ip(ip("198.51.100.5")),
        );
        audit.record(
            Record::new(Event::LoginSucceeded, Outcome::Success)
                .user("bob")
                .ip(ip("198.51.100.5")),
        );
    }

    let want: BTreeSet<IpAddr> = [attacker_v4, attacker_v6].into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut banned = server.banned();
    while banned != want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
        banned = server.banned();
    }
    // Give it one more polling round to ban anything it should not.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    banned = server.banned();
    assert_eq!(banned, want, "fail2ban log:\n{}", server.log());
}
