//! Outgoing mail: reset links, change notices. Through TrueNAS' own relay (`mail.send`, so an
//! admin sets nothing up twice), through an SMTP server of passgate's own (`lettre`), or off.
//! Everything above sees only [`Mailer`]; what the mails say is in `letters`.

pub mod smtp;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

/// One plain-text mail to one address. The text may hold a reset link, so a `Mail` is never
/// logged: its `Debug` shows the subject only.
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a mail was not sent. The texts are safe to log and to audit: they never hold the
/// message body.
#[derive(Debug, Error)]
pub enum MailError {
    /// Nothing is set up to send mail (`mail.transport = "off"`, or TrueNAS has no relay).
    #[error("mail is not configured: {0}")]
    NotConfigured(String),
    /// The relay or server refused or failed this message.
    #[error("mail was not sent: {0}")]
    Failed(String),
    /// The relay could not be reached.
    #[error("mail server unavailable: {0}")]
    Unavailable(String),
}

/// A way to send mail.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// `truenas`, `smtp` or `off`, for logs and `check-config`.
    fn name(&self) -> &'static str;

    /// Sends one mail and returns once it was handed over (or refused).
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;

    /// Whether mail can be sent, without sending any (for `check-config --connect`): a
    /// sentence for the admin, or why not.
    async fn check(&self) -> Result<String, MailError>;
}

/// `mail.transport = "off"`: every send is refused, so reset requests are audited
/// `mail_failed` instead of pretending.
pub struct NoMail;

#[async_trait]
impl Mailer for NoMail {
    fn name(&self) -> &'static str {
        "off"
    }

    async fn send(&self, _mail: &Mail) -> Result<(), MailError> {
        Err(MailError::NotConfigured(String::from(
            "mail.transport is \"off\"",
        )))
    }

    async fn check(&self) -> Result<String, MailError> {
        Err(MailError::NotConfigured(String::from(
            "mail.transport is \"off\": no reset links and no change notices are sent",
        )))
    }
}

pub type SharedMailer = Arc<dyn Mailer>;
