//! Talking to TrueNAS. Everything above this module sees only the [`NasClient`] trait, so the
//! JSON-RPC client, the legacy REST client and the demo's simulation are interchangeable.

pub mod admin_login;
pub mod budget;
pub mod connect;
pub mod error;
pub mod jsonrpc;
pub mod mail_job;
pub mod path_stat;
pub mod pool;
pub mod rest;
pub mod rpc_conn;
pub mod scram;
pub mod sim;
pub mod tls;
pub mod tls_diagnosis;
pub mod users;
pub mod version;

use async_trait::async_trait;
use secrecy::SecretString;

pub use error::NasError;
pub use version::ServerVersion;

/// The fields of a TrueNAS `user.query` entry that passgate uses.
#[derive(Clone)]
pub struct NasUser {
    pub id: i64,
    pub uid: i64,
    pub username: String,
    pub full_name: String,
    pub local: bool,
    pub locked: bool,
    pub password_disabled: bool,
    pub smb: bool,
    pub builtin: bool,
    /// TrueNAS-side two-factor authentication is configured for the user.
    pub twofactor: bool,
    /// Database ids of the user's groups (`group.query` gives their names).
    pub groups: Vec<i64>,
    /// `None` when the server masked it (`"********"`) or did not send it.
    pub unixhash: Option<SecretString>,
    /// Password-aging fields of `user.query` (25.04.1+); all `None` on older servers.
    pub aging: UserAging,
    /// `email`: where TrueNAS mails the user (`None` when unset, and for directory users).
    pub email: Option<String>,
    /// `roles`: the TrueNAS roles the user holds through their groups (FULL_ADMIN, …).
    pub roles: Vec<String>,
    /// `home`: `/var/empty` (TrueNAS' default) for users without one.
    pub home: Option<String>,
    /// `sshpubkey`: `~/.ssh/authorized_keys` as TrueNAS read it (stripped); `None` when there
    /// is no such file. Public keys, not secrets.
    pub ssh_keys: Option<String>,
}

/// What `user.query` says about the age of a user's password (plugins/account.py
/// `user_extend`). Every field is optional: servers before 25.04.1 send none of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserAging {
    /// `last_password_change`, in seconds since the Unix epoch.
    pub last_change_secs: Option<i64>,
    /// `password_age`, whole days since the last change (`None` for a change "in the future").
    pub age_days: Option<i64>,
    /// `password_change_required`: TrueNAS' own "change it soon" flag.
    pub change_required: Option<bool>,
}

#[cfg(test)]
impl NasUser {
    /// A local user with no hash, no SMB and no aging data, for unit tests.
    pub fn sample(username: &str) -> NasUser {
        NasUser {
            id: 1,
            uid: 1000,
            username: username.into(),
            full_name: String::from("Alice"),
            local: true,
            locked: false,
            password_disabled: false,
            smb: false,
            builtin: false,
            twofactor: false,
            groups: Vec::new(),
            unixhash: None,
            aging: UserAging::default(),
            email: None,
            roles: Vec::new(),
            home: None,
            ssh_keys: None,
        }
    }
}

impl std::fmt::Debug for NasUser {
    // Hand-written so the hash can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NasUser")
            .field("id", &self.id)
            .field("uid", &self.uid)
            .field("username", &self.username)
            .field("local", &self.local)
            .field("locked", &self.locked)
            .field("password_disabled", &self.password_disabled)
            .field("smb", &self.smb)
            .field("builtin", &self.builtin)
            .field("twofactor", &self.twofactor)
            .field("aging", &self.aging)
            .field("has_email", &self.email.is_some())
            .field("roles", &self.roles)
            .field("unixhash", &self.unixhash.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// What `auth.login_ex` with `PASSWORD_PLAIN` answered, before any version-specific reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordLogin {
    Success,
    /// 26.0+: PAM accepted the password but the user has no API access.
    Denied,
    OtpRequired,
    AuthErr,
    Expired,
    Redirect,
    /// The API in use cannot check a password on the NAS (legacy REST).
    NotSupported,
}

/// What `check_password` learned: the answer, and for `OtpRequired` the half-finished login
/// that is waiting for the user's TrueNAS code.
pub struct PasswordCheck {
    pub login: PasswordLogin,
    pub otp: Option<NasOtp>,
}

impl PasswordCheck {
    pub fn answer(login: PasswordLogin) -> Self {
        Self { login, otp: None }
    }
}

/// TrueNAS' answer to the code sent after `OTP_REQUIRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpAnswer {
    /// `SUCCESS`, `DENIED` (no API access, code right) or `EXPIRED` (code right, password
    /// expired): the second factor is proven.
    Accepted,
    /// `OTP_REQUIRED` again: a wrong code, and TrueNAS allows another try on this login.
    WrongCodeRetry,
    /// `AUTH_ERR`: a wrong code, and this login is over (the user must sign in again).
    WrongCodeFinal,
}

/// A login that TrueNAS answered with `OTP_REQUIRED`, held open so the code can be sent on the
/// same connection (TrueNAS keeps the user's identity there, never asking for it again).
#[async_trait]
pub trait OtpContinuation: Send + Sync {
    async fn submit(&self, code: &SecretString) -> Result<OtpAnswer, NasError>;

    /// False once the connection behind it has closed.
    fn is_open(&self) -> bool;
}

/// A shared handle to an [`OtpContinuation`], comparable by identity so verdicts stay `Eq`.
#[derive(Clone)]
pub struct NasOtp(pub std::sync::Arc<dyn OtpContinuation>);

impl std::fmt::Debug for NasOtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NasOtp(..)")
    }
}

impl PartialEq for NasOtp {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NasOtp {}

/// Which API a client speaks; kept for `check-config`, logs and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    JsonRpc,
    Rest,
    Simulated,
}

/// One TrueNAS, seen through the portal's admin API key.
#[async_trait]
pub trait NasClient: Send + Sync {
    fn api_kind(&self) -> ApiKind;

    /// The server version, once known (after the first successful connection).
    fn server_version(&self) -> Option<ServerVersion>;

    /// `user.query` by exact username with the admin session. `Ok(None)` when no such user.
    async fn get_user(&self, username: &str) -> Result<Option<NasUser>, NasError>;

    /// Every local user (`user.query [["local","=",true]]`), for the expiry reminders.
    async fn list_users(&self) -> Result<Vec<NasUser>, NasError>;

    /// `auth.login_ex` `PASSWORD_PLAIN` on a connection already logged in with the API key
    /// (middlewared does not rate-limit those). When the answer is `OTP_REQUIRED`, that
    /// connection stays open in the returned `otp`.
    async fn check_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<PasswordCheck, NasError>;

    /// `user.set_password` (or `user.update` where that does not exist) as the admin.
    async fn set_password(
        &self,
        user: &NasUser,
        new_password: &SecretString,
    ) -> Result<(), NasError>;

    /// Names of the groups with these database ids (`group.query`), for the admin check.
    async fn group_names(&self, ids: &[i64]) -> Result<Vec<String>, NasError>;

    /// A cheap liveness call on the admin session (`core.ping`).
    async fn ping(&self) -> Result<(), NasError>;

    /// `system.security.config` `max_password_age`: days after which a password expires, or
    /// `None` when password aging is off (or the server has no such setting, before 25.04.1).
    /// Not cached here; `password_aging::MaxAgeCache` keeps it for a few minutes.
    async fn password_max_age(&self) -> Result<Option<i64>, NasError>;

    /// `mail.send` through TrueNAS' relay to one address, with `queue: false` (a link must
    /// not be retried for hours), waiting up to `timeout` for the job to end. `Ok` once the
    /// job succeeded.
    async fn send_mail(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        timeout: std::time::Duration,
    ) -> Result<(), NasError>;

    /// `user.update [ID, {"sshpubkey": KEYS}]` as the admin: TrueNAS overwrites the user's
    /// `authorized_keys` with `keys` (an empty string deletes it). Returns the user as TrueNAS
    /// reads it back, which is the only proof that anything was written: for a missing home
    /// directory the call succeeds and writes nothing.
    async fn set_ssh_keys(&self, user: &NasUser, keys: &str) -> Result<NasUser, NasError>;

    /// `filesystem.stat` as the admin, not following a final symlink; `None` when nothing is
    /// at `path`.
    async fn stat_path(&self, path: &str) -> Result<Option<path_stat::PathStat>, NasError>;
}
