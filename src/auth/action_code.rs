//! The code an action asks for besides the password when the user has passgate's two-step
//! sign-in (a reset link, a change of SSH keys): a current or backup code, replay-guarded and
//! rate-limited as at sign-in, and audited as a `totp_failed` row when wrong.

use secrecy::{ExposeSecret, SecretString};

use crate::totp::{unix_now, TotpError};

use super::portal::{Caller, Portal};
use super::steps::audit_totp_refusal;

pub enum CodeCheck {
    /// Enrolled, and no code (or a blank one) was given. Not audited here.
    Missing,
    /// Wrong, replayed or too many attempts; already audited.
    Refused(TotpError),
    /// The two-step store could not be read.
    Unavailable(String),
}

impl Portal {
    /// `Ok` when the user has no two-step sign-in, or `code` is good.
    pub(crate) async fn check_action_code(
        &self,
        caller: Caller<'_>,
        username: &str,
        code: Option<&SecretString>,
    ) -> Result<(), CodeCheck> {
        let enrolled = match self.totp.status(username).await {
            Ok(status) => status.enabled,
            Err(e) => return Err(CodeCheck::Unavailable(format!("two-step status: {e}"))),
        };
        if !enrolled {
            return Ok(());
        }
        let Some(code) = code.filter(|c| !c.expose_secret().trim().is_empty()) else {
            return Err(CodeCheck::Missing);
        };
        match self.totp.verify(username, code, unix_now()).await {
            Ok(_) => Ok(()),
            Err(TotpError::Store(e)) => Err(CodeCheck::Unavailable(format!("two-step store: {e}"))),
            Err(error) => {
                audit_totp_refusal(
                    &self.audit,
                    username,
                    caller.context,
                    caller.via.as_str(),
                    &error,
                );
                Err(CodeCheck::Refused(error))
            }
        }
    }
}
