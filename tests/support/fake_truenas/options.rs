//! How a fake is started: flavour, timings, certificate, security and mail settings.

use std::time::Duration;

use super::Flavour;

/// Options of [`super::FakeTrueNas::start_with`]. [`FakeOptions::new`] gives TrueNAS' own
/// figures except for the failure delay, which stays short so that tests stay fast.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    pub flavour: Flavour,
    /// AAL1's `min_fail_delay` (utils/auth.py `ServerAAL.get_delay_interval`): a failed login
    /// sleeps uniform(d, 2d); TrueNAS' own is 1 s, i.e. uniform(1, 2) s. Default 100 ms.
    pub failure_delay: Duration,
    /// Sleep before answering "Rate Limit Exceeded" (utils/rate_limit/cache.py
    /// `sleep_start`/`sleep_end`: uniform(1, 10) s).
    pub rate_limit_sleep: (Duration, Duration),
    /// Rate-limit window (`RateLimitConfig.max_period`, 60 s).
    pub rate_limit_window: Duration,
    pub cert: CertKind,
    /// `system.security` `max_password_age` in days (`None`: password aging disabled).
    pub max_password_age: Option<u32>,
    /// `None`: mail is not configured (a fresh TrueNAS), so `mail.send` jobs fail.
    pub mail: Option<MailSettings>,
    /// PBKDF2 rounds of the API key's SCRAM credentials. The middleware uses 500,000
    /// (`utils/crypto.py` `generate_api_key_auth_data`); the default here is 50,000, the least
    /// truenas_scram accepts, because the fake's own PBKDF2 runs unoptimised in test builds.
    pub scram_iterations: u32,
    /// Answer SCRAM with a server signature that does not prove the key, as an impostor would.
    pub scram_wrong_signature: bool,
}

impl FakeOptions {
    pub fn new(flavour: Flavour) -> Self {
        FakeOptions {
            flavour,
            failure_delay: Duration::from_millis(100),
            rate_limit_sleep: (Duration::from_secs(1), Duration::from_secs(10)),
            rate_limit_window: Duration::from_secs(60),
            cert: CertKind::TrueNasDefault,
            max_password_age: None,
            mail: None,
            scram_iterations: 50_000,
            scram_wrong_signature: false,
        }
    }
}

/// Which certificate the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// What a fresh TrueNAS serves: valid for `localhost` only, so a client reaching it by IP
    /// fails name verification even when it trusts the certificate (pin it instead).
    TrueNasDefault,
    /// Same, plus `IP:127.0.0.1` in the SAN, for tests that trust the certificate as a CA file
    /// and reach the fake by its address.
    LoopbackIp,
}

/// The outgoing mail settings (`mail.config`, plugins/mail.py `MailModel`).
#[derive(Clone, Debug)]
pub struct MailSettings {
    pub fromemail: String,
    pub fromname: String,
    pub outgoingserver: String,
    pub port: u16,
    /// `PLAIN`, `SSL` or `TLS`.
    pub security: String,
    /// SMTP authentication with `user` and a password.
    pub smtp: bool,
    pub user: Option<String>,
}

impl MailSettings {
    /// A plain SMTP relay without authentication.
    pub fn relay(outgoingserver: &str, port: u16, fromemail: &str) -> Self {
        MailSettings {
            fromemail: fromemail.to_owned(),
            fromname: String::new(),
            outgoingserver: outgoingserver.to_owned(),
            port,
            security: "PLAIN".to_owned(),
            smtp: false,
            user: None,
        }
    }
}

/// One message a `mail.send` job delivered, as TrueNAS would have sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMail {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// With TrueNAS' prefix: `TrueNAS <hostname>.<domain>: <subject>`.
    pub subject: String,
    pub text: String,
    /// `None` when the caller sent `html: null`; otherwise the caller's HTML or the body
    /// TrueNAS renders into its mail template from the text (the template itself is not
    /// reproduced).
    pub html: Option<String>,
}
