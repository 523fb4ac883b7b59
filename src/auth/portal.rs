//! What every action runs against, and who asks. The actions themselves are `impl Portal`
//! blocks, one file each, so a page and an API handler call the same flow.

use std::sync::Arc;

use crate::audit::{Audit, Context};
use crate::i18n::Lang;
use crate::policy::Policy;
use crate::totp::Totp;
use crate::truenas::NasClient;

use super::admins::AdminPolicy;
use super::authenticator::Authenticator;
use super::outbox::{Outbox, ResetSettings};
use super::reset_tokens::ResetTokens;
use super::sessions::Sessions;
use super::ssh_keys::SshKeySettings;
use super::steps::LoginSteps;

/// Which surface an action was asked through; it goes into every audit row as `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Web,
    Api,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Web => "web",
            Via::Api => "api",
        }
    }
}

/// The request an action serves: its audit context (client address, request id, user agent),
/// its surface, and its language (for the mails the action sends).
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub context: &'a Context,
    pub via: Via,
    pub lang: Lang,
}

impl<'a> Caller<'a> {
    pub fn new(context: &'a Context, via: Via, lang: Lang) -> Self {
        Self { context, via, lang }
    }
}

/// The services behind the actions. Built once; cheap handles only.
pub struct Portal {
    pub admins: Arc<AdminPolicy>,
    pub nas: Arc<dyn NasClient>,
    pub authenticator: Arc<Authenticator>,
    pub sessions: Arc<Sessions>,
    pub totp: Arc<Totp>,
    pub steps: Arc<LoginSteps>,
    pub policy: Arc<Policy>,
    pub audit: Audit,
    /// Reset by mail and change notices.
    pub reset: ResetSettings,
    pub reset_tokens: Arc<ResetTokens>,
    pub outbox: Outbox,
    pub ssh_keys: SshKeySettings,
}
