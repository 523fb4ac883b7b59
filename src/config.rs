//! Typed configuration, loaded once: defaults, then the TOML file, then the original Flask
//! app's variables (for migrating users), then `PASSGATE_<SECTION>__<KEY>` variables.
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use url::Url;

use crate::totp::{TotpMode, TotpSettings};

mod mail;
mod ssh_keys;
pub use mail::{
    parse_public_url, parse_smtp_url, MailConfig, MailTransportChoice, NotifyConfig, ResetConfig,
};
pub use ssh_keys::SshKeysConfig;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub truenas: TrueNasConfig,
    pub auth: AuthConfig,
    pub policy: PolicyConfig,
    pub proxy: ProxyConfig,
    pub rate_limit: RateLimitConfig,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub admin: AdminConfig,
    pub totp: TotpConfig,
    pub metrics: MetricsConfig,
    pub reset: ResetConfig,
    pub mail: MailConfig,
    pub notify: NotifyConfig,
    pub ssh_keys: SshKeysConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing)]
    pub secret_key: Option<SecretString>,
    pub secret_key_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub session_ttl_secs: u64,
    /// Development only: serve plain HTTP cookies (no `__Host-` prefix, no `Secure`).
    pub insecure_cookies: bool,
    /// A second listener that serves only `GET /metrics` (Prometheus). Unset: none.
    pub metrics_listen: Option<SocketAddr>,
    /// A connection whose request headers are not complete this long after it opened (or
    /// after its previous answer) is closed.
    pub header_timeout_secs: u64,
    /// A request body that sends nothing for this long is cut off (408).
    pub body_timeout_secs: u64,
    /// A keep-alive connection with no request in flight for this long is closed.
    pub idle_timeout_secs: u64,
    /// Open connections on one listener, all clients together.
    pub max_connections: usize,
    /// Open connections from one TCP peer (IPv6: one `rate_limit.ipv6_prefix` network).
    /// Peers in `proxy.trusted` are exempt.
    pub max_connections_per_ip: usize,
    /// On SIGTERM, how long requests in flight may take to finish before their connections
    /// are dropped.
    pub shutdown_grace_secs: u64,
    /// The `https://` address users reach passgate at; mailed links point here.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            secret_key: None,
            secret_key_file: None,
            data_dir: PathBuf::from("./data"),
            session_ttl_secs: 600,
            insecure_cookies: false,
            metrics_listen: None,
            header_timeout_secs: 10,
            body_timeout_secs: 20,
            idle_timeout_secs: 60,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            shutdown_grace_secs: 10,
            public_url: None,
        }
    }
}

/// Upper bound on every edge timeout: a day. Larger values are typos, and would let a client
/// pin a connection for longer than anyone means to.
const MAX_EDGE_TIMEOUT_SECS: u64 = 86_400;

impl ServerConfig {
    /// The timeouts and caps of the server edge: 0 would mean "no deadline" or "no
    /// connections" in the libraries underneath, so it is refused rather than guessed at.
    fn validate_edge(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("shutdown_grace_secs", self.shutdown_grace_secs),
        ] {
            if value == 0 || value > MAX_EDGE_TIMEOUT_SECS {
                return Err(invalid(format!(
                    "server.{key} must be between 1 and {MAX_EDGE_TIMEOUT_SECS} seconds \
                     (0 would turn the deadline off; every connection needs one)"
                )));
            }
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(invalid(
                "server.max_connections and server.max_connections_per_ip must be at least 1 \
                 (0 would refuse every connection)",
            ));
        }
        if self.max_connections_per_ip > self.max_connections {
            return Err(invalid(
                "server.max_connections_per_ip must not be above server.max_connections",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiChoice {
    Auto,
    Jsonrpc,
    Rest,
}

/// How the portal's own connections log in with the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAuthChoice {
    /// SCRAM where `auth.mechanism_choices` offers it (26+) and `api_user` is set, else plain.
    Auto,
    /// SCRAM-SHA-512 only: the key never crosses the wire. Needs TrueNAS 26+ and `api_user`.
    Scram,
    /// `API_KEY_PLAIN` (or `auth.login_with_api_key` without `api_user`), over TLS.
    Plain,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrueNasConfig {
    pub url: Option<String>,
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    pub api_key_file: Option<PathBuf>,
    pub api_user: Option<String>,
    pub api: ApiChoice,
    pub auth: AdminAuthChoice,
    pub ca_file: Option<PathBuf>,
    pub tls_fingerprint: Option<String>,
    pub insecure_skip_verify: bool,
    pub timeout_secs: u64,
}

impl Default for TrueNasConfig {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            api_key_file: None,
            api_user: None,
            api: ApiChoice::Auto,
            auth: AdminAuthChoice::Auto,
            ca_file: None,
            tls_fingerprint: None,
            insecure_skip_verify: false,
            timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifierName {
    Truenas,
    Smb,
    Unixhash,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub verifiers: Vec<VerifierName>,
    pub smb_host: Option<String>,
    pub smb_port: u16,
    pub smb_share: String,
    pub smb_timeout_secs: u64,
    /// Let `root` use the portal (other builtin accounts never can).
    pub allow_root: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            verifiers: vec![
                VerifierName::Truenas,
                VerifierName::Smb,
                VerifierName::Unixhash,
            ],
            smb_host: None,
            smb_port: 445,
            smb_share: String::from("IPC$"),
            smb_timeout_secs: 5,
            allow_root: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub min_length: usize,
    /// The zxcvbn score (0 = no check … 4) a new password needs.
    pub min_strength: u8,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_length: 8,
            min_strength: 2,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers are believed. Empty:
    /// forwarding headers are ignored completely.
    pub trusted: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Attempts per client (IPv4 address or IPv6 prefix) per window on the login, TOTP and
    /// password-change endpoints.
    pub login_attempts: u32,
    pub login_window_secs: u64,
    /// IPv6 clients are grouped by this prefix length.
    pub ipv6_prefix: u8,
    /// Upper bound on clients tracked by the login limiter.
    pub max_tracked_keys: usize,
    /// Upper bound on usernames tracked by the lockout.
    pub max_tracked_users: usize,
    /// Failed verifications of one username within `user_window_secs` before it is locked.
    pub user_failures: u32,
    pub user_window_secs: u64,
    /// First lockout; each further lockout doubles it, up to `user_lockout_max_secs`.
    pub user_lockout_secs: u64,
    pub user_lockout_max_secs: u64,
    /// Global throttle on every route, per client IP (token bucket).
    pub global_per_second: u32,
    pub global_burst: u32,
    /// Expensive verifications (hash, SMB, TrueNAS PAM) running at once, across all clients.
    pub verify_concurrency: usize,
    /// How long a sign-in may wait for a verification slot before a fast 503.
    pub verify_wait_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login_attempts: 10,
            login_window_secs: 300,
            ipv6_prefix: 64,
            max_tracked_keys: 1_000_000,
            max_tracked_users: 100_000,
            user_failures: 10,
            user_window_secs: 900,
            user_lockout_secs: 900,
            user_lockout_max_secs: 86_400,
            global_per_second: 20,
            global_burst: 60,
            verify_concurrency: 8,
            verify_wait_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    Rfc3164,
    Rfc5424,
}

/// How passgate's own log lines (standard error) are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// File that receives one line per failure event, for fail2ban. Unset: no file.
    pub fail2ban_file: Option<PathBuf>,
    /// `off`, `local` (/dev/log), `unix:/path/to/socket`, `udp://host:port`, `tcp://host:port`.
    pub syslog: String,
    /// Syslog facility name: `auth`, `authpriv`, `daemon`, `local0` … `local7`, `user`.
    pub syslog_facility: String,
    pub syslog_format: SyslogFormat,
    /// `human` or `json`, for the log on standard error.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            fail2ban_file: None,
            syslog: String::from("local"),
            syslog_facility: String::from("auth"),
            format: LogFormat::Human,
            syslog_format: SyslogFormat::Rfc3164,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The audit database; unset: `<data_dir>/passgate.db`.
    pub database: Option<PathBuf>,
    /// Rows older than this are pruned (with a signed anchor, so the chain still verifies).
    /// 0 keeps everything.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            database: None,
            retention_days: 365,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// TrueNAS groups whose members may review the audit log.
    pub groups: Vec<String>,
    /// TrueNAS users who may review the audit log, whatever their groups.
    pub users: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            groups: vec![String::from("builtin_administrators")],
            users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpConfig {
    /// `off`, `optional` (users may enroll; enrolled users must give a code) or `required`
    /// (users without TOTP enroll right after the password step).
    pub mode: TotpMode,
    /// Shown by authenticator apps next to the username.
    pub issuer: String,
    /// Wrong codes per user within `failure_window_secs` before codes are refused.
    pub max_failures: u32,
    pub failure_window_secs: u64,
    /// Lifetime of the session between the password and the code (at most 300).
    pub pending_ttl_secs: u64,
    /// How long a started enrollment (and the forced-enrollment session) stays valid.
    pub enrollment_ttl_secs: u64,
}

impl Default for TotpConfig {
    fn default() -> Self {
        Self {
            mode: TotpMode::Optional,
            issuer: String::from("passgate"),
            max_failures: 5,
            failure_window_secs: 300,
            pending_ttl_secs: 300,
            enrollment_ttl_secs: 900,
        }
    }
}

impl TotpConfig {
    pub fn settings(&self) -> TotpSettings {
        TotpSettings {
            mode: self.mode,
            issuer: self.issuer.clone(),
            max_failures: self.max_failures,
            failure_window: Duration::from_secs(self.failure_window_secs),
            enrollment_ttl: Duration::from_secs(self.enrollment_ttl_secs),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// TCP peers (CIDRs) allowed to read `GET /metrics` on the main listener. Empty: the
    /// main listener has no `/metrics` (use `server.metrics_listen` instead).
    pub allow: Vec<ipnet::IpNet>,
}

/// The TrueNAS endpoint, parsed once.
#[derive(Debug, Clone)]
pub struct TrueNasEndpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl TrueNasEndpoint {
    /// Base URL for HTTP (`https://host:port`), with IPv6 literals bracketed.
    pub fn http_base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host_for_url(), self.port)
    }

    pub fn ws_base(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}:{}", self.host_for_url(), self.port)
    }

    fn host_for_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl Config {
    /// Loads and validates. `file` is optional: without it only defaults and environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Same as [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.display().to_string(),
                    message: String::from("not found or not a regular file"),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Serialized::defaults(flask_overrides(&env)?));
        // PASSGATE_CONFIG names the file and PASSGATE_LOG sets log verbosity; neither is a
        // configuration key (PASSGATE_LOG would otherwise collide with the [log] section).
        let passgate_env: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with("PASSGATE_") && !NOT_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        figment = figment.merge(env_provider(passgate_env));

        let mut config: Config = figment
            .extract()
            .map_err(|e| describe_figment_error(e, file))?;
        config.read_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        self.server.secret_key = pick_secret(
            "server.secret_key",
            self.server.secret_key.take(),
            self.server.secret_key_file.as_deref(),
        )?;
        self.truenas.api_key = pick_secret(
            "truenas.api_key",
            self.truenas.api_key.take(),
            self.truenas.api_key_file.as_deref(),
        )?;
        self.mail.smtp_password = pick_secret(
            "mail.smtp_password",
            self.mail.smtp_password.take(),
            self.mail.smtp_password_file.as_deref(),
        )?;
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let endpoint = self.truenas_endpoint()?;
        if let (Some(_), Some(endpoint)) = (&self.truenas.api_key, &endpoint) {
            if !endpoint.tls {
                return Err(invalid(
                    "truenas.url uses http:// but an API key is configured. TrueNAS revokes an \
                     API key the first time it is sent without TLS. Use https:// \
                     (with truenas.ca_file or truenas.tls_fingerprint for a self-signed \
                     certificate).",
                ));
            }
        }
        if let Some(key) = &self.server.secret_key {
            if key.expose_secret().len() < 32 {
                return Err(invalid(
                    "server.secret_key is shorter than 32 characters; sessions signed with it \
                     could be forged. Generate one with `openssl rand -hex 32`, or remove it to \
                     let passgate generate and keep one in server.data_dir.",
                ));
            }
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid(
                    "set both server.tls_cert and server.tls_key to serve HTTPS, or neither",
                ))
            }
            _ => {}
        }
        if let Some(fp) = &self.truenas.tls_fingerprint {
            parse_fingerprint(fp)?;
        }
        if self.server.session_ttl_secs == 0 || self.server.session_ttl_secs > 86_400 {
            return Err(invalid(
                "server.session_ttl_secs must be between 1 and 86400",
            ));
        }
        self.server.validate_edge()?;
        self.validate_mail()?;
        self.notify.validate()?;
        self.ssh_keys.validate()?;
        if self.truenas.timeout_secs == 0 || self.auth.smb_timeout_secs == 0 {
            return Err(invalid(
                "truenas.timeout_secs and auth.smb_timeout_secs must be at least 1",
            ));
        }
        if self.auth.verifiers.is_empty() {
            return Err(invalid(
                "auth.verifiers is empty: list at least one of \"truenas\", \"smb\", \"unixhash\"",
            ));
        }
        let mut seen = Vec::new();
        for v in &self.auth.verifiers {
            if seen.contains(v) {
                return Err(invalid(format!("auth.verifiers lists {v:?} twice")));
            }
            seen.push(*v);
        }
        if self.policy.min_length == 0 || self.policy.min_length > 1024 {
            return Err(invalid("policy.min_length must be between 1 and 1024"));
        }
        if self.policy.min_strength > crate::policy::MAX_STRENGTH {
            return Err(invalid(
                "policy.min_strength must be between 0 (no check) and 4 (zxcvbn's scale)",
            ));
        }
        let r = &self.rate_limit;
        if r.login_attempts == 0 || r.login_window_secs == 0 {
            return Err(invalid(
                "rate_limit.login_attempts and rate_limit.login_window_secs must be at least 1",
            ));
        }
        if r.ipv6_prefix == 0 || r.ipv6_prefix > 128 {
            return Err(invalid(
                "rate_limit.ipv6_prefix must be between 1 and 128 (64 is usual)",
            ));
        }
        if r.max_tracked_keys < 1_000 || r.max_tracked_users < 1_000 {
            return Err(invalid("rate_limit.max_tracked_keys and rate_limit.max_tracked_users must be at least 1000"));
        }
        if r.user_failures == 0 || r.user_window_secs == 0 || r.user_lockout_secs == 0 {
            return Err(invalid("rate_limit.user_failures, user_window_secs and user_lockout_secs must be at least 1"));
        }
        if r.user_lockout_max_secs < r.user_lockout_secs {
            return Err(invalid(
                "rate_limit.user_lockout_max_secs must not be below rate_limit.user_lockout_secs",
            ));
        }
        if r.global_per_second == 0 || r.global_burst == 0 {
            return Err(invalid(
                "rate_limit.global_per_second and rate_limit.global_burst must be at least 1",
            ));
        }
        if r.verify_concurrency == 0 || r.verify_wait_secs == 0 {
            return Err(invalid(
                "rate_limit.verify_concurrency and rate_limit.verify_wait_secs must be at least 1",
            ));
        }
        let t = &self.totp;
        if t.issuer.trim().is_empty()
            || t.issuer.chars().count() > 64
            || t.issuer.contains(':')
            || t.issuer.chars().any(char::is_control)
        {
            return Err(invalid(
                "totp.issuer must be 1 to 64 characters without ':' (authenticator apps use ':' \
                 to separate the issuer from the username)",
            ));
        }
        if t.max_failures == 0 || t.failure_window_secs == 0 {
            return Err(invalid(
                "totp.max_failures and totp.failure_window_secs must be at least 1",
            ));
        }
        if t.pending_ttl_secs == 0 || t.pending_ttl_secs > 300 {
            return Err(invalid("totp.pending_ttl_secs must be between 1 and 300"));
        }
        if t.enrollment_ttl_secs < 60 || t.enrollment_ttl_secs > 3600 {
            return Err(invalid(
                "totp.enrollment_ttl_secs must be between 60 and 3600",
            ));
        }
        if self.truenas.auth == AdminAuthChoice::Scram && self.truenas.api_user.is_none() {
            return Err(invalid(
                "truenas.auth = \"scram\" needs truenas.api_user: SCRAM names the user that owns the key",
            ));
        }
        if let Some(user) = &self.truenas.api_user {
            if user.trim().is_empty() {
                return Err(invalid(
                    "truenas.api_user is empty; remove it or name the key's owner",
                ));
            }
        }
        Ok(())
    }

    /// Checks what `serve` needs on top of [`Config::load`]: a TrueNAS to talk to.
    pub fn require_truenas(&self) -> Result<TrueNasEndpoint, ConfigError> {
        let endpoint = self.truenas_endpoint()?.ok_or_else(|| {
            invalid("truenas.url is not set (e.g. url = \"https://truenas.local\")")
        })?;
        if self.truenas.api_key.is_none() {
            return Err(invalid(
                "truenas.api_key (or truenas.api_key_file) is not set: create an API key for a \
                 FULL_ADMIN user in the TrueNAS web interface",
            ));
        }
        Ok(endpoint)
    }

    pub fn truenas_endpoint(&self) -> Result<Option<TrueNasEndpoint>, ConfigError> {
        let Some(raw) = &self.truenas.url else {
            return Ok(None);
        };
        let url = Url::parse(raw).map_err(|e| {
            invalid(format!(
                "truenas.url {raw:?} is not a URL ({e}); expected https://host[:port]"
            ))
        })?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(invalid(format!(
                    "truenas.url scheme {other:?} is not supported; use https://host[:port]"
                )))
            }
        };
        if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
            return Err(invalid(format!(
                "truenas.url {raw:?} has a path or query; give only https://host[:port]"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("truenas.url must not contain credentials"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(invalid(format!("truenas.url {raw:?} has no host"))),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Ok(Some(TrueNasEndpoint { tls, host, port }))
    }

    pub fn audit_database(&self) -> PathBuf {
        self.audit
            .database
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("passgate.db"))
    }

    pub fn smb_host(&self) -> Option<String> {
        self.auth
            .smb_host
            .clone()
            .or_else(|| self.truenas_endpoint().ok().flatten().map(|e| e.host))
    }

    pub fn tls_fingerprint(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        self.truenas
            .tls_fingerprint
            .as_deref()
            .map(parse_fingerprint)
            .transpose()
    }

    /// The effective configuration as TOML with every secret masked, for `check-config`.
    pub fn render_masked(&self) -> String {
        let mut out =
            toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        let mut notes = String::new();
        let _ = writeln!(
            notes,
            "\n# secrets (masked)\n# server.secret_key = {}\n# truenas.api_key = {}",
            mask(
                self.server.secret_key.as_ref(),
                "generated and kept in server.data_dir"
            ),
            mask(self.truenas.api_key.as_ref(), "not set"),
        );
        if self.mail.transport == MailTransportChoice::Smtp {
            let _ = writeln!(
                notes,
                "# mail.smtp_password = {}",
                mask(self.mail.smtp_password.as_ref(), "not set")
            );
        }
        if self.auth.smb_host.is_none() {
            if let Some(host) = self.smb_host() {
                let _ = writeln!(
                    notes,
                    "# auth.smb_host = {host:?} (the host of truenas.url)"
                );
            }
        }
        out.push_str(&notes);
        out
    }
}

fn mask(secret: Option<&SecretString>, unset: &str) -> String {
    match secret {
        Some(_) => String::from("\"********\""),
        None => format!("({unset})"),
    }
}

/// Parses `sha256:<hex>` (colons between bytes allowed, as browsers and openssl print them).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], ConfigError> {
    let hex_part = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))
        .ok_or_else(|| invalid("truenas.tls_fingerprint must look like sha256:<64 hex digits>"))?;
    let cleaned: String = hex_part.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&cleaned).map_err(|_| {
        invalid("truenas.tls_fingerprint is not hex; expected sha256:<64 hex digits>")
    })?;
    bytes.try_into().map_err(|_| {
        invalid("truenas.tls_fingerprint must be 32 bytes (64 hex digits) after sha256:")
    })
}

fn pick_secret(
    key: &str,
    inline: Option<SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(invalid(format!(
            "both {key} and {key}_file are set; keep only one"
        ))),
        (Some(value), None) => {
            if value.expose_secret().is_empty() {
                Err(invalid(format!("{key} is empty")))
            } else {
                Ok(Some(value))
            }
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(format!("{key}_file {}: cannot read ({e})", path.display()))
            })?;
            // Files written by `echo` or editors end in a newline that is not part of the key.
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                return Err(invalid(format!("{key}_file {} is empty", path.display())));
            }
            Ok(Some(SecretString::from(value)))
        }
        (None, None) => Ok(None),
    }
}

/// The original Flask app's variables, mapped onto passgate keys.
fn flask_overrides(env: &BTreeMap<String, String>) -> Result<serde_json::Value, ConfigError> {
    let mut truenas = serde_json::Map::new();
    let mut server = serde_json::Map::new();
    if let Some(host) = env.get("TRUENAS_HOST") {
        let use_ssl = match env
            .get("TRUENAS_USE_SSL")
            .map(|s| s.trim().to_ascii_lowercase())
        {
            None => true,
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => true,
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => false,
            Some(v) => {
                return Err(invalid(format!(
                    "TRUENAS_USE_SSL={v:?} is not true or false"
                )))
            }
        };
        let port: u16 = match env.get("TRUENAS_PORT") {
            None => 443,
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| invalid(format!("TRUENAS_PORT={p:?} is not a port number")))?,
        };
        let host = host.trim();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let scheme = if use_ssl { "https" } else { "http" };
        truenas.insert("url".into(), format!("{scheme}://{host}:{port}").into());
    }
    if let Some(key) = env.get("TRUENAS_API_KEY") {
        truenas.insert("api_key".into(), key.clone().into());
    }
    if let Some(key) = env.get("SECRET_KEY") {
        server.insert("secret_key".into(), key.clone().into());
    }
    let mut root = serde_json::Map::new();
    if !truenas.is_empty() {
        root.insert("truenas".into(), truenas.into());
    }
    if !server.is_empty() {
        root.insert("server".into(), server.into());
    }
    Ok(root.into())
}

fn env_provider(vars: Vec<(String, String)>) -> Serialized<serde_json::Value> {
    // figment's Env reads the process environment; tests pass their own, so the mapping
    // `PASSGATE_SECTION__KEY` → `section.key` is done here on an explicit list.
    let mut root = serde_json::Map::new();
    for (name, value) in vars {
        let path = name.trim_start_matches("PASSGATE_").to_ascii_lowercase();
        let mut parts = path.splitn(2, "__");
        let section = parts.next().unwrap_or_default().to_string();
        let is_text = parts
            .clone()
            .next()
            .is_some_and(|key| TEXT_KEYS.contains(&key));
        let parsed = if is_text {
            serde_json::Value::String(value)
        } else {
            parse_env_value(&value)
        };
        match parts.next() {
            Some(key) => {
                let entry = root
                    .entry(section)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let serde_json::Value::Object(map) = entry {
                    map.insert(key.to_string(), parsed);
                }
            }
            // A variable without `__` names no key; keep it so extraction reports it.
            None => {
                root.insert(section, parsed);
            }
        }
    }
    Serialized::defaults(serde_json::Value::Object(root))
}

/// `PASSGATE_*` variables that are not configuration keys.
const NOT_KEYS: &[&str] = &["PASSGATE_CONFIG", "PASSGATE_LOG"];

/// Keys whose values stay text even when they look like a number (a hex secret can be all
/// digits).
const TEXT_KEYS: &[&str] = &[
    "secret_key",
    "secret_key_file",
    "api_key",
    "api_key_file",
    "api_user",
    "url",
    "smb_host",
    "smb_share",
    "tls_fingerprint",
    "listen",
    "tls_cert",
    "tls_key",
    "data_dir",
    "ca_file",
    "fail2ban_file",
    "syslog",
    "syslog_facility",
    "public_url",
    "smtp_url",
    "smtp_password",
    "smtp_password_file",
    "smtp_ca_file",
    "from",
];

/// Environment values are strings; lists, numbers and booleans are written as TOML values
/// (`PASSGATE_AUTH__VERIFIERS='["smb","unixhash"]'`, `PASSGATE_POLICY__MIN_LENGTH=12`).
fn parse_env_value(value: &str) -> serde_json::Value {
    let wrapped = format!("v = {value}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut table) => match table.remove("v").map(serde_json::to_value) {
            Some(Ok(v)) => v,
            _ => serde_json::Value::String(value.to_string()),
        },
        Err(_) => serde_json::Value::String(value.to_string()),
    }
}

fn describe_figment_error(error: figment::Error, file: Option<&Path>) -> ConfigError {
    let mut messages = Vec::new();
    for e in error {
        let key = if e.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", e.path.join("."))
        };
        let hint = match &e.kind {
            figment::error::Kind::UnknownField(field, _) => format!(
                "unknown key {field:?}. Check the spelling against config/passgate.example.toml"
            ),
            other => other.to_string(),
        };
        // Only the TOML provider has a meaningful name; the others are environment variables.
        let from_file = e.metadata.as_ref().is_some_and(|m| m.name.contains("TOML"));
        let source = match (from_file, file) {
            (true, Some(path)) => format!(" (in {})", path.display()),
            (true, None) => String::new(),
            (false, _) => String::from(" (from the environment)"),
        };
        messages.push(format!("{key}{hint}{source}"));
    }
    invalid(messages.join("\n"))
}

#[cfg(test)]
mod tests;
