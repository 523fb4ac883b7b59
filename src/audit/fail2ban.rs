//! The fail2ban file: one line per client failure, in a fixed format that
//! `fail2ban/filter.d/passgate.conf` matches as a whole line.
//!
//! ```text
//! 2026-11-22T10:00:00.123Z passgate[1234]: authentication failure; rhost=203.0.113.7 user=bob reason=bad_credentials
//! ```
//!
//! * timestamp: UTC, milliseconds, `Z` (the filter parses the `Z` as a zone, so the host's
//!   time zone does not matter);
//! * `passgate[<pid>]:`;
//! * one of four fixed messages (see [`FailureKind`]);
//! * `rhost=` the resolved client address, always the first field, always an IP;
//! * `user=` the username percent-encoded to `[A-Za-z0-9._@%-]` (`-` when absent), so it can
//!   contain neither a space, `=`, `;` nor a line break;
//! * `reason=` a fixed token, never free text.
//!
//! Successes and backend errors are never written: fail2ban must only count what the client
//! did wrong.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use time::OffsetDateTime;

use super::{canonical_ip, encode_user, utc_millis, Event, Outcome, WarnThrottle};

/// The kinds of event that become a fail2ban line, with their fixed message and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// `authentication failure`, `reason=bad_credentials`.
    BadCredentials,
    /// `rate limited`, `reason=rate_limited`.
    RateLimited,
    /// `user locked out`, `reason=locked_out`.
    LockedOut,
    /// `totp failure`, `reason=totp_failed`.
    TotpFailed,
}

impl FailureKind {
    /// Which events are client failures. Only `Outcome::Failure` counts: `Error` means
    /// passgate or TrueNAS could not answer, and a ban for that would punish the innocent.
    pub fn of(event: Event, outcome: Outcome) -> Option<FailureKind> {
        if outcome != Outcome::Failure {
            return None;
        }
        match event {
            Event::LoginFailed => Some(FailureKind::BadCredentials),
            Event::RateLimited => Some(FailureKind::RateLimited),
            Event::UserLockedOut => Some(FailureKind::LockedOut),
            Event::TotpFailed => Some(FailureKind::TotpFailed),
            Event::ConfigLoaded
            | Event::LoginSucceeded
            | Event::PasswordChanged
            | Event::PasswordChangeFailed
            | Event::Logout
            | Event::SessionRevoked
            | Event::AdminViewedAudit
            | Event::AdminExportedAudit
            | Event::TotpSucceeded
            | Event::TotpEnrolled
            | Event::TotpDisabled
            | Event::TotpReset
            | Event::TotpStatusViewed => None,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            FailureKind::BadCredentials => "authentication failure",
            FailureKind::RateLimited => "rate limited",
            FailureKind::LockedOut => "user locked out",
            FailureKind::TotpFailed => "totp failure",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            FailureKind::BadCredentials => "bad_credentials",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::LockedOut => "locked_out",
            FailureKind::TotpFailed => "totp_failed",
        }
    }
}

/// One full line, newline included. Public for tests and documentation; `at` is converted to
/// UTC.
pub fn format_line(
    at: OffsetDateTime,
    pid: u32,
    kind: FailureKind,
    client_ip: IpAddr,
    username: Option<&str>,
) -> String {
    format!(
        "{} passgate[{pid}]: {}; rhost={} user={} reason={}\n",
        utc_millis(at),
        kind.message(),
        canonical_ip(client_ip),
        encode_user(username),
        kind.reason(),
    )
}

pub(super) struct Fail2banFile {
    path: PathBuf,
    /// One lock around the handle: a line is written with one `write_all` while holding it,
    /// so lines from concurrent requests never interleave, and `reopen` swaps the handle
    /// between two lines.
    file: Mutex<File>,
    write_warning: WarnThrottle,
    pid: u32,
}

fn open_append(path: &Path) -> io::Result<File> {
    // 0640: the log names users and addresses; fail2ban runs as root and reads it anyway,
    // an admin group may read it too, the world may not. Applies only when the file is
    // created (an existing file keeps its mode, which logrotate's `create` sets).
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl Fail2banFile {
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        let file = open_append(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            write_warning: WarnThrottle::default(),
            pid: std::process::id(),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again (after logrotate moved the old file) and swaps the handle. The
    /// new file is opened before the lock is taken, so writers wait only for the swap.
    pub(super) fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        *file = fresh;
        Ok(())
    }

    /// Writes one line. Never fails the request: an error is warned about (at most once a
    /// minute) and the line is lost.
    pub(super) fn write(&self, kind: FailureKind, client_ip: IpAddr, username: Option<&str>) {
        let line = format_line(
            OffsetDateTime::now_utc(),
            self.pid,
            kind,
            client_ip,
            username,
        );
        let result = {
            // A poisoned lock means a writer panicked mid-call; the handle is still valid
            // and O_APPEND puts the next line at the end regardless.
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(line.as_bytes())
        };
        if let Err(e) = result {
            if let Some(suppressed) = self.write_warning.check() {
                tracing::warn!(
                    target: "passgate::audit",
                    path = %self.path.display(),
                    error = %e,
                    suppressed,
                    "cannot write to the fail2ban file; failure lines are being lost"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::UtcOffset;

    fn at() -> OffsetDateTime {
        // 2026-11-22T10:00:00.123Z
        OffsetDateTime::from_unix_timestamp_nanos(1_795_341_600_123_456_789)
            .expect("valid timestamp")
    }

    #[test]
    fn line_has_the_documented_format() {
        let ip: IpAddr = "203.0.113.7".parse().expect("address");
        assert_eq!(
            format_line(at(), 1234, FailureKind::BadCredentials, ip, Some("bob")),
            "2026-11-22T10:00:00.123Z passgate[1234]: authentication failure; rhost=203.0.113.7 user=bob reason=bad_credentials\n"
        );
        let v6: IpAddr = "2001:db8::7".parse().expect("address");
        assert_eq!(
            format_line(at(), 1, FailureKind::RateLimited, v6, None),
            "2026-11-22T10:00:00.123Z passgate[1]: rate limited; rhost=2001:db8::7 user=- reason=rate_limited\n"
        );
        assert_eq!(
            format_line(at(), 1, FailureKind::LockedOut, ip, Some("")),
            "2026-11-22T10:00:00.123Z passgate[1]: user locked out; rhost=203.0.113.7 user=- reason=locked_out\n"
        );
        assert_eq!(
            format_line(at(), 1, FailureKind::TotpFailed, ip, Some("jörg")),
            "2026-11-22T10:00:00.123Z passgate[1]: totp failure; rhost=203.0.113.7 user=j%C3%B6rg reason=totp_failed\n"
        );
    }

    #[test]
    fn timestamp_is_utc_whatever_the_offset() {
        let ip: IpAddr = "192.0.2.1".parse().expect("address");
        let tokyo = at().to_offset(UtcOffset::from_hms(9, 0, 0).expect("offset"));
        assert!(format_line(tokyo, 1, FailureKind::BadCredentials, ip, None)
            .starts_with("2026-11-22T10:00:00.123Z "));
        let early = OffsetDateTime::from_unix_timestamp(0).expect("epoch");
        assert!(format_line(early, 1, FailureKind::BadCredentials, ip, None)
            .starts_with("1970-01-01T00:00:00.000Z "));
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4() {
        let mapped: IpAddr = "::ffff:198.51.100.4".parse().expect("address");
        assert!(
            format_line(at(), 1, FailureKind::BadCredentials, mapped, None)
                .contains(" rhost=198.51.100.4 ")
        );
    }

    #[test]
    fn forged_username_stays_inside_the_user_field() {
        let ip: IpAddr = "203.0.113.7".parse().expect("address");
        let forged = "x reason=bad_credentials\r\n2026-01-01T00:00:00.000Z passgate[1]: \
                      authentication failure; rhost=6.6.6.6 user=x reason=bad_credentials";
        let line = format_line(at(), 1, FailureKind::BadCredentials, ip, Some(forged));
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with(" reason=bad_credentials\n"));
        assert!(!line.contains('\r'));
        assert_eq!(line.matches("rhost=").count(), 1);
        assert_eq!(line.matches(" ").count(), 6, "{line}");
        let user = line
            .split(" user=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .expect("user field");
        assert!(user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-%".contains(&b)));
    }

    #[test]
    fn only_client_failures_are_written() {
        use Event::*;
        let all = [
            ConfigLoaded,
            LoginSucceeded,
            LoginFailed,
            PasswordChanged,
            PasswordChangeFailed,
            Logout,
            SessionRevoked,
            RateLimited,
            UserLockedOut,
            TotpFailed,
            TotpSucceeded,
            TotpEnrolled,
            TotpDisabled,
            TotpReset,
            TotpStatusViewed,
        ];
        for event in all {
            assert_eq!(FailureKind::of(event, Outcome::Success), None, "{event:?}");
            assert_eq!(FailureKind::of(event, Outcome::Error), None, "{event:?}");
        }
        assert_eq!(
            FailureKind::of(LoginFailed, Outcome::Failure),
            Some(FailureKind::BadCredentials)
        );
        assert_eq!(
            FailureKind::of(RateLimited, Outcome::Failure),
            Some(FailureKind::RateLimited)
        );
        assert_eq!(
            FailureKind::of(UserLockedOut, Outcome::Failure),
            Some(FailureKind::LockedOut)
        );
        assert_eq!(
            FailureKind::of(TotpFailed, Outcome::Failure),
            Some(FailureKind::TotpFailed)
        );
        assert_eq!(
            FailureKind::of(PasswordChangeFailed, Outcome::Failure),
            None
        );
    }

    #[test]
    fn file_is_created_0640_appended_and_reopened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.log");
        let file = Fail2banFile::open(&path).expect("open");
        let ip: IpAddr = "203.0.113.7".parse().expect("address");
        file.write(FailureKind::BadCredentials, ip, Some("a"));
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        // The process umask can only take bits away.
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        // logrotate: move the file away, then reopen.
        let rotated = dir.path().join("auth.log.1");
        std::fs::rename(&path, &rotated).expect("rename");
        file.write(FailureKind::BadCredentials, ip, Some("b"));
        file.reopen().expect("reopen");
        file.write(FailureKind::BadCredentials, ip, Some("c"));
        let old = std::fs::read_to_string(&rotated).expect("rotated");
        let new = std::fs::read_to_string(&path).expect("new");
        assert_eq!(old.lines().count(), 2);
        assert!(old.contains("user=a ") && old.contains("user=b "));
        assert_eq!(new.lines().count(), 1);
        assert!(new.contains("user=c "));
    }
}
