//! TEMPORARY placeholder until h-smtp merges (not committed).
use super::{Mail, MailError, Mailer};
use crate::config::MailConfig;
pub struct SmtpMailer;
impl SmtpMailer {
    pub fn new(_c: &MailConfig) -> Result<Self, MailError> {
        Err(MailError::NotConfigured(String::from("pending")))
    }
}
#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    fn name(&self) -> &'static str {
        "smtp"
    }
    async fn send(&self, _m: &Mail) -> Result<(), MailError> {
        Err(MailError::NotConfigured(String::new()))
    }
    async fn check(&self) -> Result<String, MailError> {
        Err(MailError::NotConfigured(String::new()))
    }
}
