//! Signing a user in: account checks, then the verifier chain. Knows nothing about HTTP.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::policy::MAX_PASSWORD_BYTES;
use crate::truenas::{NasClient, NasUser};
use crate::verify::{account_refusal, Account, ChainOutcome, Decision, VerifierChain};

/// TrueNAS usernames are short; anything longer or with control characters cannot exist.
const MAX_USERNAME_CHARS: usize = 64;

pub struct Authenticator {
    nas: Arc<dyn NasClient>,
    chain: VerifierChain,
    allow_root: bool,
}

/// The result of one sign-in attempt. `outcome.reason` is for the audit entry only; users
/// see one message for every kind of refusal.
pub struct SignIn {
    pub user: Option<NasUser>,
    pub outcome: ChainOutcome,
}

impl SignIn {
    pub fn verified_user(&self) -> Option<&NasUser> {
        match self.outcome.decision {
            Decision::Verified => self.user.as_ref(),
            _ => None,
        }
    }
}

impl Authenticator {
    pub fn new(nas: Arc<dyn NasClient>, chain: VerifierChain, allow_root: bool) -> Self {
        Self {
            nas,
            chain,
            allow_root,
        }
    }

    pub fn verifier_names(&self) -> Vec<&'static str> {
        self.chain.names()
    }

    pub async fn sign_in(&self, username: &str, password: &SecretString) -> SignIn {
        if password.expose_secret().is_empty()
            || password.expose_secret().len() > MAX_PASSWORD_BYTES
        {
            return self
                .refuse_after_equal_work(username, password, "password empty or too long", None)
                .await;
        }
        if !plausible_username(username) {
            return self
                .refuse_after_equal_work(username, password, "malformed username", None)
                .await;
        }
        let user = match self.nas.get_user(username).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                return self
                    .refuse_after_equal_work(username, password, "unknown user", None)
                    .await
            }
            Err(e) => {
                return SignIn {
                    user: None,
                    outcome: ChainOutcome {
                        decision: Decision::Unavailable,
                        verifier: None,
                        reason: format!("user lookup: {e}"),
                    },
                }
            }
        };
        if let Some(why) = account_refusal(&user, self.allow_root) {
            return self
                .refuse_after_equal_work(username, password, why, Some(user))
                .await;
        }
        let outcome = self.chain.run(Account::Real(&user), password).await;
        SignIn {
            user: Some(user),
            outcome,
        }
    }

    /// Runs the chain for a ghost account so that refusing costs what verifying would.
    async fn refuse_after_equal_work(
        &self,
        username: &str,
        password: &SecretString,
        why: &str,
        user: Option<NasUser>,
    ) -> SignIn {
        // Only plausible names are sent to TrueNAS, and never oversized passwords.
        let ghost_name = if plausible_username(username) {
            username
        } else {
            "passgate-ghost"
        };
        let ghost_password;
        let password = if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            ghost_password = SecretString::from("passgate-ghost-password");
            &ghost_password
        } else {
            password
        };
        let _ = self.chain.run(Account::Ghost(ghost_name), password).await;
        SignIn {
            user,
            outcome: ChainOutcome {
                decision: Decision::Rejected,
                verifier: None,
                reason: why.to_string(),
            },
        }
    }
}

pub fn plausible_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_USERNAME_CHARS
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}
