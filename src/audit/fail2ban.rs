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
//!
//! Lines are batched (see [`Fail2banFile`]): a line reaches the file at most 100 ms after
//! its event, in the order the events were recorded, and everything pending is written on
//! SIGTERM (`Audit::shutdown`) and SIGHUP (`Audit::reopen`, before the handle is swapped).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::{canonical_ip, push_user, push_utc_millis, AuditError, Event, Outcome, WarnThrottle};

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
    /// `reset token invalid`, `reason=invalid_token`.
    ResetTokenInvalid,
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
            Event::ResetTokenRejected => Some(FailureKind::ResetTokenInvalid),
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
            | Event::TotpStatusViewed
            | Event::ResetRequested
            | Event::PasswordReset
            | Event::PasswordResetFailed
            | Event::ResetCancelled
            | Event::ChangeNoticeMailed
            | Event::ExpiryReminderMailed
            | Event::SshKeysChanged
            | Event::SshKeysChangeFailed => None,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            FailureKind::BadCredentials => "authentication failure",
            FailureKind::RateLimited => "rate limited",
            FailureKind::LockedOut => "user locked out",
            FailureKind::TotpFailed => "totp failure",
            FailureKind::ResetTokenInvalid => "reset token invalid",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            FailureKind::BadCredentials => "bad_credentials",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::LockedOut => "locked_out",
            FailureKind::TotpFailed => "totp_failed",
            FailureKind::ResetTokenInvalid => "invalid_token",
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
    use std::fmt::Write as _;
    // One allocation, sized for a typical line: this runs for every refusal of a flood.
    let mut line = String::with_capacity(128);
    push_utc_millis(&mut line, at);
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        " passgate[{pid}]: {}; rhost={} user=",
        kind.message(),
        canonical_ip(client_ip)
    );
    push_user(&mut line, username);
    line.push_str(" reason=");
    line.push_str(kind.reason());
    line.push('\n');
    line
}

/// When the writer writes. The defaults are the promise made in the README; tests shorten
/// or lengthen them to make one trigger the only one that can fire.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuning {
    /// No line waits longer than this (after it was formatted) for its `write(2)`.
    pub(super) max_delay: Duration,
    /// As soon as this many bytes are pending, they are written without waiting.
    pub(super) batch_bytes: usize,
    /// Pending bytes (including a batch being written) beyond which new lines are dropped
    /// and counted: a disk that stops taking writes must not grow passgate's memory.
    pub(super) max_pending: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            max_delay: Duration::from_millis(100),
            batch_bytes: 64 * 1024,
            max_pending: 4 * 1024 * 1024,
        }
    }
}

/// The fail2ban file and its writer thread. A request formats its line and appends it to one
/// buffer under one lock (so lines keep the order in which their appends took the lock);
/// the thread writes the buffer out at least every `max_delay`, or at once when it holds
/// `batch_bytes`. Under a flood this is one `write(2)` per 64 KiB instead of one per line,
/// and the request never waits for the disk.
///
/// Dropping it (the last `Audit` clone going away) writes what is pending and stops the
/// thread.
pub(super) struct Fail2banFile {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    pid: u32,
}

struct Shared {
    path: PathBuf,
    tuning: Tuning,
    pending: Mutex<Pending>,
    /// The writer thread waits here for the first line of a batch, a full batch or the end.
    wake: Condvar,
    /// Held for a whole flush, from taking the batch to the end of its write, so that two
    /// flushes (the thread, `reopen`, `shutdown`) can never write batches out of order, and
    /// `reopen` swaps the handle between two batches. Lock order: `file`, then `pending`.
    file: Mutex<File>,
    write_warning: WarnThrottle,
    drop_warning: WarnThrottle,
    dropped: AtomicU64,
}

struct Pending {
    buf: Vec<u8>,
    /// An emptied buffer kept for the next swap, so a flood does not allocate per batch.
    spare: Vec<u8>,
    /// Bytes taken out of `buf` by a flush and not yet written: still counted against
    /// `max_pending`.
    in_flight: usize,
    /// When `buf` last became non-empty (or the last failed write): its oldest line is due
    /// `max_delay` later.
    since: Instant,
    /// The last write failed: wait `max_delay` before the next attempt, even with a full
    /// batch, instead of spinning on a full disk.
    failing: bool,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a writer panicked mid-call; a byte buffer and a file handle
    // are still usable, and O_APPEND puts the next write at the end regardless.
    m.lock().unwrap_or_else(|e| e.into_inner())
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

/// Writes `buf` until done or the first error, and says how far it got, so a failed batch
/// is retried from the first byte the kernel did not take (never duplicated, never cut).
fn write_fully(file: &mut File, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while written < buf.len() {
        match file.write(&buf[written..]) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

/// Buffers above this are not kept as the spare after a write (one that grew during an
/// outage would otherwise hold its megabytes for good).
const KEEP_CAPACITY: usize = 256 * 1024;

impl Shared {
    /// Appends one formatted line; never blocks on the disk.
    fn push(&self, line: &[u8]) {
        let tuning = self.tuning;
        let mut p = lock(&self.pending);
        if p.buf.len() + p.in_flight + line.len() > tuning.max_pending {
            drop(p);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = self.drop_warning.check() {
                tracing::warn!(
                    target: "passgate::audit",
                    path = %self.path.display(),
                    suppressed,
                    max_pending_bytes = tuning.max_pending,
                    "the fail2ban file is not keeping up; failure lines are being dropped"
                );
            }
            return;
        }
        let was_empty = p.buf.is_empty();
        if was_empty {
            p.since = Instant::now();
        }
        let before = p.buf.len();
        p.buf.extend_from_slice(line);
        let filled = before < tuning.batch_bytes && p.buf.len() >= tuning.batch_bytes;
        drop(p);
        // Only the two transitions the writer waits for cost a wake-up; every other line is
        // a copy under the lock.
        if was_empty || filled {
            self.wake.notify_one();
        }
    }

    /// Writes everything pending to `file` (the caller holds the `file` lock). On an error
    /// the unwritten bytes go back in front of the buffer, ahead of lines added meanwhile.
    fn flush_into(&self, file: &mut File) {
        let mut batch = {
            let mut p = lock(&self.pending);
            if p.buf.is_empty() {
                return;
            }
            let spare = std::mem::take(&mut p.spare);
            let batch = std::mem::replace(&mut p.buf, spare);
            p.in_flight = batch.len();
            batch
        };
        let result = write_fully(file, &batch);
        let mut p = lock(&self.pending);
        p.in_flight = 0;
        match result {
            Ok(()) => {
                p.failing = false;
                batch.clear();
                if batch.capacity() <= KEEP_CAPACITY {
                    p.spare = batch;
                }
            }
            Err((written, e)) => {
                batch.drain(..written);
                batch.extend_from_slice(&p.buf);
                p.buf = batch;
                p.failing = true;
                p.since = Instant::now();
                let pending = p.buf.len();
                drop(p);
                if let Some(suppressed) = self.write_warning.check() {
                    tracing::warn!(
                        target: "passgate::audit",
                        path = %self.path.display(),
                        error = %e,
                        pending_bytes = pending,
                        suppressed,
                        "cannot write to the fail2ban file; lines are kept for the next attempt"
                    );
                }
            }
        }
    }

    fn flush(&self) {
        let mut file = lock(&self.file);
        self.flush_into(&mut file);
    }

    /// The writer thread: sleeps until there is a line, then until its batch is due.
    fn run(&self) {
        loop {
            let closed = {
                let mut p = lock(&self.pending);
                loop {
                    if p.closed {
                        break;
                    }
                    if p.buf.is_empty() {
                        p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                        continue;
                    }
                    if !p.failing && p.buf.len() >= self.tuning.batch_bytes {
                        break;
                    }
                    let due = p.since + self.tuning.max_delay;
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    p = self
                        .wake
                        .wait_timeout(p, due - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                p.closed
            };
            self.flush();
            if closed {
                return;
            }
        }
    }
}

impl Fail2banFile {
    pub(super) fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_tuned(path, Tuning::default())
    }

    pub(super) fn open_tuned(path: &Path, tuning: Tuning) -> Result<Self, AuditError> {
        let file = open_append(path).map_err(|source| AuditError::Fail2banFile {
            path: path.to_path_buf(),
            source,
        })?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            tuning,
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                spare: Vec::new(),
                in_flight: 0,
                since: Instant::now(),
                failing: false,
                closed: false,
            }),
            wake: Condvar::new(),
            file: Mutex::new(file),
            write_warning: WarnThrottle::default(),
            drop_warning: WarnThrottle::default(),
            dropped: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name(String::from("passgate-fail2ban"))
            .spawn(move || thread_shared.run())
            .map_err(AuditError::Fail2banThread)?;
        Ok(Self {
            shared,
            writer: Some(writer),
            pid: std::process::id(),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Lines dropped because `max_pending` bytes were waiting (since start).
    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes every pending line now (SIGTERM, and before a reopen). A write error is warned
    /// about and the lines stay pending.
    pub(super) fn flush(&self) {
        self.shared.flush();
    }

    /// Writes what is pending to the current handle (logrotate has moved it: those lines
    /// belong to the old file), then opens the path again and swaps the handle. Writers
    /// never wait for this: they only append to the buffer.
    pub(super) fn reopen(&self) -> io::Result<()> {
        let mut file = lock(&self.shared.file);
        self.shared.flush_into(&mut file);
        *file = open_append(&self.shared.path)?;
        Ok(())
    }

    /// Formats one line and queues it. Never fails the request and never waits for the
    /// disk: a write error is warned about (at most once a minute) and the line is kept
    /// for the next attempt, up to `max_pending` bytes.
    pub(super) fn write(&self, kind: FailureKind, client_ip: IpAddr, username: Option<&str>) {
        let line = format_line(
            OffsetDateTime::now_utc(),
            self.pid,
            kind,
            client_ip,
            username,
        );
        self.shared.push(line.as_bytes());
    }
}

impl Drop for Fail2banFile {
    fn drop(&mut self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake.notify_one();
        // The thread's last act is a flush; joining it means nothing pending is left behind
        // when the last `Audit` goes away.
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
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
        // Every event with what it is written as when recorded as a failure.
        let all = [
            (ConfigLoaded, None),
            (LoginSucceeded, None),
            (LoginFailed, Some(FailureKind::BadCredentials)),
            (PasswordChanged, None),
            (PasswordChangeFailed, None),
            (Logout, None),
            (SessionRevoked, None),
            (AdminViewedAudit, None),
            (AdminExportedAudit, None),
            (RateLimited, Some(FailureKind::RateLimited)),
            (UserLockedOut, Some(FailureKind::LockedOut)),
            (TotpFailed, Some(FailureKind::TotpFailed)),
            (TotpSucceeded, None),
            (TotpEnrolled, None),
            (TotpDisabled, None),
            (TotpReset, None),
            (TotpStatusViewed, None),
            (ResetRequested, None),
            (ResetTokenRejected, Some(FailureKind::ResetTokenInvalid)),
            (PasswordReset, None),
            (PasswordResetFailed, None),
            (ResetCancelled, None),
            (ChangeNoticeMailed, None),
            (ExpiryReminderMailed, None),
            (SshKeysChanged, None),
            (SshKeysChangeFailed, None),
        ];
        for (event, as_failure) in all {
            assert_eq!(FailureKind::of(event, Outcome::Success), None, "{event:?}");
            assert_eq!(FailureKind::of(event, Outcome::Error), None, "{event:?}");
            assert_eq!(
                FailureKind::of(event, Outcome::Failure),
                as_failure,
                "{event:?}"
            );
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Polls until `path` holds `lines` lines; the content then. Panics after `within`.
    fn wait_for_lines(path: &Path, lines: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = read(path);
            if text.lines().count() >= lines {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {lines} lines after {within:?}",
                text.lines().count()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn ip() -> IpAddr {
        "203.0.113.7".parse().expect("address")
    }

    /// Only the size trigger or an explicit flush can write.
    fn never_by_time() -> Tuning {
        Tuning {
            max_delay: Duration::from_secs(3600),
            ..Tuning::default()
        }
    }

    #[test]
    fn file_is_created_0640_and_rotated_lines_stay_in_the_old_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.log");
        let file = Fail2banFile::open_tuned(&path, never_by_time()).expect("open");
        file.write(FailureKind::BadCredentials, ip(), Some("a"));
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        // The process umask can only take bits away.
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        // logrotate: move the file away, then SIGHUP. Lines recorded before the reopen
        // (still pending: only the reopen can write them here) belong to the old file.
        let rotated = dir.path().join("auth.log.1");
        std::fs::rename(&path, &rotated).expect("rename");
        file.write(FailureKind::BadCredentials, ip(), Some("b"));
        file.reopen().expect("reopen");
        file.write(FailureKind::BadCredentials, ip(), Some("c"));
        let old = read(&rotated);
        assert_eq!(old.lines().count(), 2, "{old}");
        assert!(old.contains("user=a ") && old.contains("user=b "), "{old}");
        assert_eq!(
            read(&path),
            "",
            "the new file is empty until its batch is due"
        );
        drop(file);
        let new = read(&path);
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("user=c "), "{new}");
    }

    #[test]
    fn a_line_reaches_the_file_within_the_delay_without_a_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.log");
        let file = Fail2banFile::open(&path).expect("open");
        for round in 0..3 {
            let started = Instant::now();
            file.write(FailureKind::RateLimited, ip(), Some("x"));
            // 100 ms promised; the rest is slack for a busy 2-core machine.
            wait_for_lines(&path, round + 1, Duration::from_millis(1500));
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(50),
                "written at once ({took:?}): not batched"
            );
        }
    }

    #[test]
    fn a_full_batch_is_written_without_waiting_for_the_delay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.log");
        let file = Fail2banFile::open_tuned(&path, never_by_time()).expect("open");
        let one = format_line(
            OffsetDateTime::now_utc(),
            file.pid,
            FailureKind::BadCredentials,
            ip(),
            Some("bob"),
        )
        .len();
        let lines = (64 * 1024_usize).div_ceil(one);
        for _ in 0..lines - 1 {
            file.write(FailureKind::BadCredentials, ip(), Some("bob"));
        }
        // One line short of 64 KiB: nothing may be written (the delay is an hour). The
        // writer runs on its own thread; give it time to misbehave.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(read(&path), "", "written before the batch was full");
        file.write(FailureKind::BadCredentials, ip(), Some("bob"));
        let text = wait_for_lines(&path, lines, Duration::from_secs(10));
        assert_eq!(text.lines().count(), lines);
    }

    #[test]
    fn concurrent_writers_keep_their_order_and_lose_nothing() {
        const TASKS: usize = 8;
        const LINES: usize = 3000;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.log");
        // Small batches: many writes interleave with the appends.
        let file = Arc::new(
            Fail2banFile::open_tuned(
                &path,
                Tuning {
                    batch_bytes: 4096,
                    ..Tuning::default()
                },
            )
            .expect("open"),
        );
        let threads: Vec<_> = (0..TASKS)
            .map(|t| {
                let file = Arc::clone(&file);
                std::thread::spawn(move || {
                    for i in 0..LINES {
                        file.write(
                            FailureKind::BadCredentials,
                            ip(),
                            Some(&format!("t{t}-{i}")),
                        );
                    }
                })
            })
            .collect();
        // Two flushers of their own race the writer thread until the writers are done, as
        // SIGTERM or SIGHUP would: batches taken by different flushers must still land in
        // the order they were taken.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flushers: Vec<_> = (0..2)
            .map(|_| {
                let file = Arc::clone(&file);
                let done = Arc::clone(&done);
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        file.flush();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer");
        }
        done.store(true, Ordering::Relaxed);
        for thread in flushers {
            thread.join().expect("flusher");
        }
        let text = wait_for_lines(&path, TASKS * LINES, Duration::from_secs(10));
        let mut next = [0usize; TASKS];
        for line in text.lines() {
            let user = line
                .split(" user=t")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or_else(|| panic!("no user in {line:?}"));
            let (t, i) = user.split_once('-').expect("t-i");
            let t: usize = t.parse().expect("task");
            let i: usize = i.parse().expect("line");
            assert_eq!(i, next[t], "task {t} out of order");
            next[t] += 1;
        }
        assert_eq!(next, [LINES; TASKS], "lines lost");
        assert_eq!(file.dropped(), 0);
    }

    #[test]
    fn a_failing_disk_keeps_lines_up_to_the_cap_and_counts_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.log");
        let line_len = format_line(
            OffsetDateTime::now_utc(),
            std::process::id(),
            FailureKind::BadCredentials,
            ip(),
            Some("u0000"),
        )
        .len();
        let file = Fail2banFile::open_tuned(
            &path,
            Tuning {
                max_pending: 10 * line_len,
                ..never_by_time()
            },
        )
        .expect("open");
        // A full disk: every write fails with ENOSPC.
        let good = std::mem::replace(
            &mut *lock(&file.shared.file),
            OpenOptions::new()
                .append(true)
                .open("/dev/full")
                .expect("/dev/full"),
        );
        for i in 0..15 {
            file.write(FailureKind::BadCredentials, ip(), Some(&format!("u{i:04}")));
            if i == 4 {
                file.flush();
            }
        }
        file.flush();
        assert_eq!(file.dropped(), 5);
        // The disk recovers: the kept lines go out, in order, once each.
        *lock(&file.shared.file) = good;
        file.flush();
        let text = read(&path);
        let users: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split(" user=").nth(1)?.split(' ').next())
            .collect();
        let want: Vec<String> = (0..10).map(|i| format!("u{i:04}")).collect();
        assert_eq!(users, want);
    }
}
