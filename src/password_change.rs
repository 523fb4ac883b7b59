//! Changing a signed-in user's password: policy, a fresh check of the current password, then
//! TrueNAS. Knows nothing about HTTP.

use secrecy::{ExposeSecret, SecretString};

use crate::authenticate::Authenticator;
use crate::policy::{Policy, Violation};
use crate::truenas::{NasClient, NasError};
use crate::verify::Decision;

#[derive(Debug)]
pub enum ChangeError {
    Policy(Vec<Violation>),
    /// The current password did not verify; `reason` is for the audit entry only.
    WrongCurrentPassword {
        reason: String,
    },
    /// TrueNAS refused the new password; the messages are TrueNAS' own, for the user.
    RejectedByTrueNas(Vec<String>),
    Unavailable {
        reason: String,
    },
}

pub struct PasswordChange<'a> {
    pub username: &'a str,
    pub current: &'a SecretString,
    pub new: &'a SecretString,
    /// `None` where the client sends no confirmation (the JSON API).
    pub confirmation: Option<&'a SecretString>,
}

/// Returns the verifier that confirmed the current password.
pub async fn change_password(
    auth: &Authenticator,
    nas: &dyn NasClient,
    policy: &Policy,
    change: PasswordChange<'_>,
) -> Result<Option<&'static str>, ChangeError> {
    let violations = policy.check(
        change.current.expose_secret(),
        change.new.expose_secret(),
        change.confirmation.map(|c| c.expose_secret()),
    );
    if !violations.is_empty() {
        return Err(ChangeError::Policy(violations));
    }
    // A session alone is not enough: whoever holds it must also know the password now.
    let sign_in = auth.sign_in(change.username, change.current).await;
    let user = match (sign_in.outcome.decision, sign_in.user) {
        (Decision::Verified, Some(user)) => user,
        (Decision::Unavailable, _) => {
            return Err(ChangeError::Unavailable {
                reason: sign_in.outcome.reason,
            })
        }
        _ => {
            return Err(ChangeError::WrongCurrentPassword {
                reason: sign_in.outcome.reason,
            })
        }
    };
    match nas.set_password(&user, change.new).await {
        Ok(()) => Ok(sign_in.outcome.verifier),
        Err(NasError::Validation(messages)) => Err(ChangeError::RejectedByTrueNas(messages)),
        Err(NasError::Call {
            errname, reason, ..
        }) if errname != "EPERM" => Err(ChangeError::RejectedByTrueNas(vec![reason])),
        Err(e) => Err(ChangeError::Unavailable {
            reason: e.to_string(),
        }),
    }
}
