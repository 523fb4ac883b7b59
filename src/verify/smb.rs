//! Checks a password by logging in to the NAS over SMB (NTLMv2 against its `smbhash`).
//!
//! What proves the password is an authenticated session that gets somewhere. The default
//! share is `IPC$`, which every authenticated user may connect to, so this works for users
//! who own no share at all. On `IPC$` the probe opens the `srvsvc` pipe: `stat("/")` there
//! never succeeds (Samba 4.17 answers `NT_STATUS_CONNECTION_REFUSED` for the empty pipe name,
//! indistinguishable from a dead server). On any other share the probe is `stat("/")`.
//!
//! Settings that are not optional, each learned against a real smbd:
//! - `no_auto_anonymous_login`: libsmbclient otherwise retries a failed login anonymously,
//!   and an anonymous session opens `srvsvc` too — every wrong password would "verify".
//! - encryption level `Require`: it makes libsmbclient require signing, which a guest session
//!   cannot do. Without it a server with `map to guest = Bad Password` (or `Bad User`, for
//!   unknown names) turns a wrong password into a guest session that "verifies".
//! - No NUL, and at most 255 bytes, in the password and user name: libsmbclient takes them
//!   as C strings in 256-byte buffers (`fstring`) and pavao truncates silently, so `pw\0junk`
//!   would be checked as `pw`, and a 255-byte password followed by anything would be checked
//!   as its first 255 bytes (both seen to log in against smbd 4.17).
//!
//! pavao serialises every libsmbclient call in the process behind one global mutex, because
//! libsmbclient keeps global state. Verifications therefore run one at a time no matter how
//! many blocking threads wait; [`PAVAO_GATE`] makes them queue in async land (cheap, and
//! bounded by the request deadline) instead of parking a blocking thread each.

use std::net::Ipv6Addr;
use std::time::Duration;

use async_trait::async_trait;
use pavao::{SmbClient, SmbCredentials, SmbEncryptionLevel, SmbError, SmbOpenOptions, SmbOptions};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::{Account, Verdict, Verifier};

/// One permit for the whole process, mirroring pavao's process-wide lock. The permit moves
/// into the blocking task, so a libsmbclient call that outlives its request still holds it.
static PAVAO_GATE: Semaphore = Semaphore::const_new(1);

/// libsmbclient copies credentials into `fstring` buffers (256 bytes with the NUL).
const MAX_CREDENTIAL_BYTES: usize = 255;

/// Added to the configured timeout for the whole attempt. libsmbclient applies its timeout
/// per request (negotiate, session setup, tree connect, open), and its TCP connect has a
/// fixed 5 s limit of its own, so the outer deadline is what actually bounds a request.
const OUTER_MARGIN: Duration = Duration::from_secs(1);

const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A pipe every Samba and Windows server offers on `IPC$`.
const IPC_PROBE_PIPE: &str = "/srvsvc";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    OpenIpcPipe,
    StatShareRoot,
}

/// Verifies SMB users (`NasUser::smb`) by an SMB login to the NAS.
#[derive(Debug)]
pub struct SmbVerifier {
    /// `smb://host:port`, host percent-encoded; or why the configured host is unusable.
    server: Result<String, &'static str>,
    /// Share name without slashes, percent-encoded for the URL.
    share: String,
    probe: Probe,
    timeout: Duration,
}

impl SmbVerifier {
    /// `host` is a name or an IP address (IPv6 with or without brackets); `share` defaults to
    /// `IPC$` when empty and may carry leading `/` or `\\`. `timeout` is libsmbclient's
    /// per-request timeout, clamped to 100 ms ..= 300 s; a whole verification gives up after
    /// `timeout` + 1 s.
    pub fn new(host: String, port: u16, share: String, timeout: std::time::Duration) -> Self {
        let share = normalise_share(&share);
        let probe = if share.eq_ignore_ascii_case("IPC$") {
            Probe::OpenIpcPipe
        } else {
            Probe::StatShareRoot
        };
        Self {
            server: server_url(&host, port),
            share: percent_encode(&share),
            probe,
            timeout: timeout.clamp(MIN_TIMEOUT, MAX_TIMEOUT),
        }
    }

    /// The deadline for one whole verification, queueing included.
    pub fn deadline(&self) -> Duration {
        self.timeout + OUTER_MARGIN
    }

    async fn verify_login(&self, username: &str, password: &SecretString) -> Verdict {
        let server = match &self.server {
            Ok(server) => server.clone(),
            Err(why) => return Verdict::Unavailable(String::from(*why)),
        };
        if let Some(verdict) = refuse_before_c(username, password.expose_secret()) {
            return verdict;
        }
        let attempt = Attempt {
            server,
            share: self.share.clone(),
            probe: self.probe,
            timeout: self.timeout,
            username: username.to_owned(),
            password: password.clone(),
        };
        let deadline = self.deadline();
        let run = async {
            // The gate is never closed, so this only ever waits.
            let permit = PAVAO_GATE.acquire().await.ok();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                attempt.run()
            })
            .await
        };
        match tokio::time::timeout(deadline, run).await {
            Ok(Ok(result)) => classify(result),
            Ok(Err(_join_error)) => {
                tracing::error!("SMB verification task failed");
                Verdict::Unavailable(String::from("SMB check failed internally"))
            }
            Err(_elapsed) => {
                Verdict::Unavailable(format!("no answer within {} ms", deadline.as_millis()))
            }
        }
    }
}

#[async_trait]
impl Verifier for SmbVerifier {
    fn name(&self) -> &'static str {
        "smb"
    }

    async fn verify(&self, account: Account<'_>, password: &SecretString) -> Verdict {
        match account {
            Account::Real(user) if user.smb => self.verify_login(&user.username, password).await,
            // A ghost gets no SMB login: it may be a real but refused account (root, a
            // locked user), and logging in as it would test the password all the same.
            _ => Verdict::CantTell("not an SMB user"),
        }
    }
}

/// Inputs libsmbclient would silently misread; answered without calling C.
fn refuse_before_c(username: &str, password: &str) -> Option<Verdict> {
    if password.contains('\0') {
        return Some(Verdict::Rejected("password contains NUL"));
    }
    if password.is_empty() {
        // An empty password can end up as an anonymous login, which IPC$ accepts.
        return Some(Verdict::Rejected("empty password"));
    }
    if password.len() > MAX_CREDENTIAL_BYTES {
        // It would be truncated: neither a yes nor a no from SMB would mean anything.
        return Some(Verdict::CantTell("password too long for SMB"));
    }
    // `\`, `/` and `@` make libsmbclient read a domain or realm out of the name.
    let unusable = |c: char| matches!(c, '\0' | '\\' | '/' | '@' | '%') || c.is_control();
    if username.is_empty() || username.len() > MAX_CREDENTIAL_BYTES || username.contains(unusable) {
        return Some(Verdict::CantTell("user name not usable for SMB"));
    }
    None
}

/// Everything the blocking task needs, owned.
struct Attempt {
    server: String,
    share: String,
    probe: Probe,
    timeout: Duration,
    username: String,
    password: SecretString,
}

impl Attempt {
    /// Runs on the blocking pool; every pavao call below takes pavao's global lock.
    fn run(self) -> Result<(), SmbError> {
        let credentials = SmbCredentials::default()
            .server(&self.server)
            .share(format!("/{}", self.share))
            .username(&self.username)
            .password(self.password.expose_secret());
        let options = SmbOptions::default()
            .no_auto_anonymous_login(true)
            .encryption_level(SmbEncryptionLevel::Require);
        let client = SmbClient::new(credentials, options)?;
        // Without it a silent peer holds pavao's global lock, and every SMB check, for 20 s.
        client.set_timeout(self.timeout)?;
        match self.probe {
            Probe::OpenIpcPipe => client
                .open_with(IPC_PROBE_PIPE, SmbOpenOptions::default().read(true))
                .map(drop),
            Probe::StatShareRoot => client.stat("/").map(drop),
        }
    }
}

/// Maps pavao's answer to a verdict. Only a successful probe verifies; only "permission
/// denied" (logon failure, or the session refused) rejects; all else means "could not check".
fn classify(result: Result<(), SmbError>) -> Verdict {
    use std::io::ErrorKind;
    match result {
        Ok(()) => Verdict::Verified,
        Err(SmbError::Io(err)) => match err.kind() {
            ErrorKind::PermissionDenied => Verdict::Rejected("wrong password"),
            ErrorKind::ConnectionRefused => {
                Verdict::Unavailable(String::from("connection refused"))
            }
            ErrorKind::TimedOut => Verdict::Unavailable(String::from("timed out")),
            ErrorKind::InvalidInput => {
                Verdict::Unavailable(String::from("invalid input (host name or URL)"))
            }
            ErrorKind::NotFound => Verdict::Unavailable(String::from("share or pipe not found")),
            // io::Error's Display is the OS error text and number: no user input in it.
            _ => Verdict::Unavailable(format!("SMB error: {err}")),
        },
        Err(SmbError::NulInPath(_)) => Verdict::Unavailable(String::from("invalid input")),
        Err(SmbError::Mutex) => Verdict::Unavailable(String::from("pavao state poisoned")),
        Err(other) => Verdict::Unavailable(format!("SMB client error: {other}")),
    }
}

/// `IPC$` unless given; slashes and backslashes around the name are dropped.
fn normalise_share(share: &str) -> String {
    let trimmed = share.trim().trim_matches(|c| c == '/' || c == '\\');
    if trimmed.is_empty() {
        String::from("IPC$")
    } else {
        trimmed.to_owned()
    }
}

/// libsmbclient splits host and port at the first `:` and URL-decodes the host afterwards;
/// it has no bracket syntax (`smb://[::1]:445` is EINVAL in 4.17). An IPv6 literal therefore
/// goes in percent-encoded (`smb://%3A%3A1:445`), which 4.17 resolves and connects to.
fn server_url(host: &str, port: u16) -> Result<String, &'static str> {
    let host = host.trim();
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if unbracketed.is_empty() {
        return Err("SMB host is empty");
    }
    if port == 0 {
        return Err("SMB port is 0");
    }
    let is_ipv6 = unbracketed
        .split('%')
        .next()
        .is_some_and(|addr| addr.parse::<Ipv6Addr>().is_ok());
    if !is_ipv6 && unbracketed.contains(':') {
        return Err("SMB host must not contain a port");
    }
    Ok(format!("smb://{}:{port}", percent_encode(unbracketed)))
}

/// Encodes everything but unreserved characters (and `$`, common in share names).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'$') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truenas::NasUser;
    use std::io;

    fn user(smb: bool) -> NasUser {
        NasUser {
            smb,
            ..NasUser::sample("alice")
        }
    }

    #[test]
    fn share_names_are_normalised() {
        assert_eq!(normalise_share(""), "IPC$");
        assert_eq!(normalise_share("IPC$"), "IPC$");
        assert_eq!(normalise_share("/IPC$"), "IPC$");
        assert_eq!(normalise_share("\\\\IPC$"), "IPC$");
        assert_eq!(normalise_share("//data/"), "data");
        let v = SmbVerifier::new("nas".into(), 445, "\\ipc$".into(), Duration::from_secs(2));
        assert_eq!(v.probe, Probe::OpenIpcPipe);
        let v = SmbVerifier::new("nas".into(), 445, "data".into(), Duration::from_secs(2));
        assert_eq!(v.probe, Probe::StatShareRoot);
    }

    #[test]
    fn urls_for_names_and_addresses() {
        let cases = [
            ("nas.lan", 445, "smb://nas.lan:445"),
            ("192.0.2.7", 4450, "smb://192.0.2.7:4450"),
            ("::1", 445, "smb://%3A%3A1:445"),
            ("[fd00::2]", 445, "smb://fd00%3A%3A2:445"),
            ("fe80::1%eth0", 445, "smb://fe80%3A%3A1%25eth0:445"),
        ];
        for (host, port, url) in cases {
            assert_eq!(server_url(host, port).expect("valid host"), url, "{host}");
        }
        assert!(server_url("", 445).is_err());
        assert!(server_url("[]", 445).is_err());
        assert!(server_url("nas:445", 445).is_err());
        assert!(server_url("nas", 0).is_err());
        assert_eq!(percent_encode("My Share@x"), "My%20Share%40x");
    }

    #[test]
    fn inputs_c_would_misread_are_refused() {
        assert_eq!(
            refuse_before_c("alice", "pw\0junk"),
            Some(Verdict::Rejected("password contains NUL"))
        );
        assert_eq!(
            refuse_before_c("alice", ""),
            Some(Verdict::Rejected("empty password"))
        );
        let long = "a".repeat(256);
        assert_eq!(
            refuse_before_c("alice", &long),
            Some(Verdict::CantTell("password too long for SMB"))
        );
        assert_eq!(refuse_before_c("alice", &long[..255]), None);
        for name in ["", "dom\\alice", "alice@realm", "a/b", "a%b", "a\nb"] {
            assert_eq!(
                refuse_before_c(name, "pw"),
                Some(Verdict::CantTell("user name not usable for SMB")),
                "{name:?}"
            );
        }
    }

    #[test]
    fn errors_map_to_verdicts() {
        let io = |kind: io::ErrorKind| Err(SmbError::Io(io::Error::from(kind)));
        assert_eq!(classify(Ok(())), Verdict::Verified);
        assert_eq!(
            classify(io(io::ErrorKind::PermissionDenied)),
            Verdict::Rejected("wrong password")
        );
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut,
            io::ErrorKind::InvalidInput,
            io::ErrorKind::NotFound,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::Unsupported,
        ] {
            assert!(
                matches!(classify(io(kind)), Verdict::Unavailable(_)),
                "{kind:?}"
            );
        }
        assert!(matches!(
            classify(Err(SmbError::BadFileDescriptor)),
            Verdict::Unavailable(_)
        ));
        assert!(matches!(
            classify(Err(SmbError::Mutex)),
            Verdict::Unavailable(_)
        ));
    }

    #[tokio::test]
    async fn only_real_smb_users_are_checked() {
        let v = SmbVerifier::new("127.0.0.1".into(), 9, String::new(), Duration::from_secs(1));
        assert_eq!(v.name(), "smb");
        let pw = SecretString::from("pw");
        let not_smb = user(false);
        assert_eq!(
            v.verify(Account::Real(&not_smb), &pw).await,
            Verdict::CantTell("not an SMB user")
        );
        assert_eq!(
            v.verify(Account::Ghost("alice"), &pw).await,
            Verdict::CantTell("not an SMB user")
        );
    }

    #[tokio::test]
    async fn bad_configuration_is_unavailable_not_wrong_password() {
        let v = SmbVerifier::new("  ".into(), 445, String::new(), Duration::from_secs(1));
        let u = user(true);
        assert_eq!(
            v.verify(Account::Real(&u), &SecretString::from("pw")).await,
            Verdict::Unavailable("SMB host is empty".into())
        );
    }

    #[test]
    fn timeout_is_clamped() {
        let v = SmbVerifier::new("nas".into(), 445, String::new(), Duration::ZERO);
        assert_eq!(v.timeout, MIN_TIMEOUT);
        assert_eq!(v.deadline(), MIN_TIMEOUT + OUTER_MARGIN);
    }
}
