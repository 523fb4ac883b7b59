//! Action: sign in with a username and password. The per-client limiter has admitted the
//! attempt (the `Admitted` proof); the lockout, the verifier chain, TrueNAS, the admin check
//! and the session for the next step all run here, and every outcome is audited here.

use secrecy::SecretString;

use crate::limiter::Admitted;
use crate::verify::Decision;

use super::password_aging::PasswordAging;
use super::portal::{Caller, Portal};
use super::sessions::Issued;
use super::steps::StepError;

pub enum SignInOutcome {
    /// A session for what comes next: the code step, a forced enrollment, or the portal.
    Issued {
        issued: Issued,
        password: Option<PasswordAging>,
    },
    /// Wrong username or password, an excluded account, or a locked username: one answer
    /// for all, so the page cannot tell which.
    Refused,
    Unavailable,
    /// No verification slot, or too many sign-ins wait for a TrueNAS code.
    Busy,
    /// The password verified but no session could be stored.
    SessionFailed,
}

impl Portal {
    pub async fn sign_in(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        username: &str,
        password: &SecretString,
    ) -> SignInOutcome {
        let result = self.authenticator.sign_in(username, password).await;
        result
            .audit(&self.audit, username, caller.context, caller.via.as_str())
            .await;
        match (result.outcome.decision, result.verified_user()) {
            (Decision::Verified, Some(user)) => {
                let admin = self.admins.is_admin(self.nas.as_ref(), user).await;
                let nas_otp = result.outcome.nas_otp.clone();
                match self
                    .steps
                    .after_password(&user.username, &user.full_name, admin, nas_otp)
                    .await
                {
                    Ok(issued) => SignInOutcome::Issued {
                        issued,
                        password: result.password,
                    },
                    Err(StepError::Busy) => SignInOutcome::Busy,
                    Err(e) => {
                        tracing::error!(error = %e, "could not create a session");
                        SignInOutcome::SessionFailed
                    }
                }
            }
            (Decision::Unavailable, _) => SignInOutcome::Unavailable,
            (Decision::Busy, _) => SignInOutcome::Busy,
            _ => SignInOutcome::Refused,
        }
    }
}
