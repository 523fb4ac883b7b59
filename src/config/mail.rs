//! The `[reset]` and `[mail]` sections: password reset by a mailed link, and how mail leaves.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResetConfig {
    /// Offer "Forgot your password?": a single-use link mailed to the address TrueNAS has for
    /// the user. Needs `server.public_url` and a working `[mail]`.
    pub enabled: bool,
    /// How long a mailed link works.
    pub token_ttl_secs: u64,
    /// At most one reset mail per user in this many seconds; requests in between are audited
    /// `throttled` and send nothing.
    pub mail_interval_secs: u64,
    /// Accounts with any TrueNAS role (FULL_ADMIN, READONLY_ADMIN, …) are never reset by
    /// mail unless this is true: a mailbox must not be a way to the NAS' administration.
    pub allow_roles: bool,
}

impl Default for ResetConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token_ttl_secs: 900,
            mail_interval_secs: 600,
            allow_roles: false,
        }
    }
}

/// Where mail leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransportChoice {
    /// TrueNAS' own relay (`mail.send`, System → General Settings → Email).
    Truenas,
    /// An SMTP server of passgate's own (`smtp_url`), with TLS.
    Smtp,
    /// No mail: no reset links, no notices.
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub transport: MailTransportChoice,
    /// `smtp://[user@]host[:port]` (STARTTLS, required) or `smtps://[user@]host[:port]`
    /// (implicit TLS). Only for `transport = "smtp"`.
    pub smtp_url: Option<String>,
    #[serde(skip_serializing)]
    pub smtp_password: Option<SecretString>,
    pub smtp_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the SMTP server's certificate, when it is not in the
    /// system's store. The certificate is always verified.
    pub smtp_ca_file: Option<PathBuf>,
    /// The sender, e.g. `"NAS passwords <nas@example.org>"`. Required for `smtp`; with
    /// `truenas` TrueNAS' own sender is used.
    pub from: Option<String>,
    /// Mail the user after each change of their password or two-step sign-in.
    pub notify_changes: bool,
    /// How long one mail may take to be handed over (SMTP exchange or TrueNAS job).
    pub timeout_secs: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransportChoice::Truenas,
            smtp_url: None,
            smtp_password: None,
            smtp_password_file: None,
            smtp_ca_file: None,
            from: None,
            notify_changes: true,
            timeout_secs: 30,
        }
    }
}

/// Bounds of `reset.token_ttl_secs`: below a minute nobody can open their mail in time;
/// above a day a leaked mailbox archive stays dangerous for too long.
pub const TOKEN_TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=86_400;

impl super::Config {
    /// `[reset]`, `[mail]` and `server.public_url`, checked together: a reset link needs an
    /// address to point at and a way to be sent.
    pub(super) fn validate_mail(&self) -> Result<(), ConfigError> {
        if !TOKEN_TTL_RANGE.contains(&self.reset.token_ttl_secs) {
            return Err(invalid(format!(
                "reset.token_ttl_secs must be between {} and {} seconds",
                TOKEN_TTL_RANGE.start(),
                TOKEN_TTL_RANGE.end()
            )));
        }
        if self.reset.mail_interval_secs == 0 || self.reset.mail_interval_secs > 86_400 {
            return Err(invalid(
                "reset.mail_interval_secs must be between 1 and 86400 seconds",
            ));
        }
        if self.mail.timeout_secs == 0 || self.mail.timeout_secs > 300 {
            return Err(invalid("mail.timeout_secs must be between 1 and 300"));
        }
        if let Some(url) = &self.server.public_url {
            parse_public_url(url)?;
        }
        if self.reset.enabled {
            if self.server.public_url.is_none() {
                return Err(invalid(
                    "reset.enabled needs server.public_url: the https:// address users reach \
                     passgate at, which the mailed links point to",
                ));
            }
            if self.mail.transport == MailTransportChoice::Off {
                return Err(invalid(
                    "reset.enabled needs mail: set mail.transport to \"truenas\" or \"smtp\"",
                ));
            }
        }
        match self.mail.transport {
            MailTransportChoice::Smtp => {
                let url = self.mail.smtp_url.as_deref().ok_or_else(|| {
                    invalid("mail.transport = \"smtp\" needs mail.smtp_url (smtp:// or smtps://)")
                })?;
                parse_smtp_url(url)?;
                if self.mail.from.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(
                        "mail.transport = \"smtp\" needs mail.from, the sender address",
                    ));
                }
            }
            MailTransportChoice::Truenas | MailTransportChoice::Off => {
                if self.mail.smtp_url.is_some() || self.mail.smtp_password.is_some() {
                    return Err(invalid(
                        "mail.smtp_url and mail.smtp_password apply only to \
                         mail.transport = \"smtp\"",
                    ));
                }
            }
        }
        Ok(())
    }

    /// `server.public_url` without a trailing slash, for building links.
    pub fn public_base(&self) -> Option<String> {
        self.server
            .public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_string())
    }
}

/// `https://` anywhere; `http://` only for a loopback host (the demo, tests), since a link
/// that carries a reset token must not cross a network in clear.
pub fn parse_public_url(text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text)
        .map_err(|e| invalid(format!("server.public_url {text:?} is not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let ok_scheme = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !ok_scheme {
        return Err(invalid(format!(
            "server.public_url {text:?} must start with https:// (http:// only for localhost)"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(
            "server.public_url must be a plain address: no user, query or fragment",
        ));
    }
    Ok(url)
}

/// The SMTP server: `smtp://` means STARTTLS (required, never plain), `smtps://` implicit TLS.
pub fn parse_smtp_url(text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| invalid(format!("mail.smtp_url is not a URL ({e})")))?;
    if !matches!(url.scheme(), "smtp" | "smtps") {
        return Err(invalid(
            "mail.smtp_url must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("mail.smtp_url has no host"));
    }
    if url.password().is_some() {
        return Err(invalid(
            "mail.smtp_url must not hold the password; use mail.smtp_password_file",
        ));
    }
    Ok(url)
}

/// `[notify]`: reminders before a password expires (TrueNAS' `max_password_age`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Days before expiry at which a user is mailed, once each. Empty: no reminders.
    pub expiry_days: Vec<u32>,
    /// The language of the reminders (`en` or `de`): they answer no request to take it from.
    pub language: String,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            expiry_days: vec![14, 3],
            language: String::from("en"),
        }
    }
}

impl NotifyConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.expiry_days.iter().any(|d| *d > 365) {
            return Err(invalid(
                "notify.expiry_days: TrueNAS' max_password_age is at most 365 days",
            ));
        }
        if crate::i18n::Lang::by_tag(&self.language).is_none() {
            return Err(invalid(format!(
                "notify.language {:?} is not one of the portal's languages (en, de)",
                self.language
            )));
        }
        Ok(())
    }
}
