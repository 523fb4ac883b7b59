//! Mail through TrueNAS' own relay (`mail.transport = "truenas"`): the admin configured it
//! once in System → General Settings → Email, and passgate uses it with the API key.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Mail, MailError, Mailer};
use crate::truenas::{NasClient, NasError};

pub struct TrueNasRelay {
    nas: Arc<dyn NasClient>,
    timeout: Duration,
}

impl TrueNasRelay {
    pub fn new(nas: Arc<dyn NasClient>, timeout: Duration) -> Self {
        Self { nas, timeout }
    }
}

/// TrueNAS' own words for a relay that is not set up (plugins/mail.py `_get_smtp_server`,
/// `local_administrators_emails`; 27: the `fromemail` validation).
fn not_configured(reason: &str) -> bool {
    [
        "outgoing mailserver",
        "has an e-mail address configured",
        "fromemail",
    ]
    .iter()
    .any(|needle| reason.contains(needle))
}

#[async_trait]
impl Mailer for TrueNasRelay {
    fn name(&self) -> &'static str {
        "truenas"
    }

    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        match self
            .nas
            .send_mail(&mail.to, &mail.subject, &mail.text, self.timeout)
            .await
        {
            Ok(()) => Ok(()),
            Err(NasError::Call { reason, .. }) if not_configured(&reason) => {
                Err(MailError::NotConfigured(format!("TrueNAS: {reason}")))
            }
            Err(NasError::Call { reason, .. }) => {
                Err(MailError::Failed(format!("TrueNAS: {reason}")))
            }
            Err(e @ NasError::MethodNotFound(_)) => Err(MailError::NotConfigured(e.to_string())),
            Err(e) if e.is_unavailable() => Err(MailError::Unavailable(e.to_string())),
            Err(e) => Err(MailError::Failed(e.to_string())),
        }
    }

    /// Reading `mail.config` is done by `check-config --connect` itself (it needs the
    /// JSON-RPC client); here only the path through the API is known to exist.
    async fn check(&self) -> Result<String, MailError> {
        Ok(String::from(
            "Mail: through TrueNAS' relay (mail.send with the API key)",
        ))
    }
}
