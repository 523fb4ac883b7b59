//! Actions on a user's own two-step sign-in: start and confirm an enrollment, turn it off.
//! Each audits its own refusals and changes.

use secrecy::SecretString;

use crate::audit::Event;
use crate::limiter::Admitted;
use crate::mail::letters::Change;
use crate::totp::{unix_now, BackupCodes, EnrollmentOffer, TotpError, TotpMode};
use crate::verify::Decision;

use super::portal::{Caller, Portal};
use super::sessions::{Claims, Issued};
use super::steps::{audit_totp_change, audit_totp_refusal};

#[derive(Debug)]
pub enum EnrollError {
    /// `totp.mode = off`: nothing to set up.
    Off,
    Refused(TotpError),
}

/// A confirmed enrollment: the backup codes, shown once, and for a forced enrollment the
/// full session that replaces it.
pub struct Enrolled {
    pub codes: BackupCodes,
    pub promotion: Promotion,
}

pub enum Promotion {
    /// The session was already a full one.
    NotNeeded,
    Issued(Issued),
    /// TOTP is on, but no full session could be stored: the user signs in again.
    Failed,
}

#[derive(Debug)]
pub enum DisableError {
    /// `totp.mode = required`: only an admin can reset it.
    Required,
    /// The password did not verify (or the username is locked).
    WrongPassword,
    Unavailable,
    Busy,
    /// The code was refused.
    Refused(TotpError),
}

impl Portal {
    /// Begins an enrollment. `proof` (a current or backup code) is needed to replace an
    /// enrollment that is already on.
    pub async fn start_totp(
        &self,
        caller: Caller<'_>,
        session: &Claims,
        proof: Option<&SecretString>,
    ) -> Result<EnrollmentOffer, EnrollError> {
        if self.totp.mode() == TotpMode::Off {
            return Err(EnrollError::Off);
        }
        self.totp
            .begin_enrollment(&session.sub, proof, unix_now())
            .await
            .map_err(|error| self.totp_refused(caller, session, error))
    }

    pub async fn confirm_totp(
        &self,
        caller: Caller<'_>,
        session: &Claims,
        code: &SecretString,
    ) -> Result<Enrolled, EnrollError> {
        if self.totp.mode() == TotpMode::Off {
            return Err(EnrollError::Off);
        }
        let codes = self
            .totp
            .confirm_enrollment(&session.sub, code, unix_now())
            .await
            .map_err(|error| self.totp_refused(caller, session, error))?;
        audit_totp_change(
            &self.audit,
            Event::TotpEnrolled,
            &session.sub,
            caller.context,
            caller.via.as_str(),
        )
        .await;
        self.notify_change(caller, &session.sub, Change::TotpEnabled);
        let promotion = if session.stage == super::sessions::Stage::TotpEnrollment {
            match self.steps.promote(session).await {
                Ok(issued) => Promotion::Issued(issued),
                Err(e) => {
                    tracing::error!(error = %e, "could not create a session after enrollment");
                    Promotion::Failed
                }
            }
        } else {
            Promotion::NotNeeded
        };
        Ok(Enrolled { codes, promotion })
    }

    /// Turns TOTP off with the current password and a current (or backup) code.
    pub async fn disable_totp(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        session: &Claims,
        password: &SecretString,
        code: &SecretString,
    ) -> Result<(), DisableError> {
        if self.totp.mode() == TotpMode::Required {
            return Err(DisableError::Required);
        }
        let via = caller.via.as_str();
        let sign_in = self.authenticator.sign_in(&session.sub, password).await;
        let decision = sign_in.outcome.decision;
        if decision != Decision::Verified {
            // Every refusal is audited, an outage or a full house included.
            sign_in
                .audit(&self.audit, &session.sub, caller.context, via)
                .await;
            return Err(match decision {
                Decision::Unavailable => DisableError::Unavailable,
                Decision::Busy => DisableError::Busy,
                _ => DisableError::WrongPassword,
            });
        }
        if let Err(error) = self.totp.disable(&session.sub, code, unix_now()).await {
            audit_totp_refusal(&self.audit, &session.sub, caller.context, via, &error);
            return Err(DisableError::Refused(error));
        }
        audit_totp_change(
            &self.audit,
            Event::TotpDisabled,
            &session.sub,
            caller.context,
            via,
        )
        .await;
        self.notify_change(caller, &session.sub, Change::TotpDisabled);
        Ok(())
    }

    fn totp_refused(&self, caller: Caller<'_>, session: &Claims, error: TotpError) -> EnrollError {
        audit_totp_refusal(
            &self.audit,
            &session.sub,
            caller.context,
            caller.via.as_str(),
            &error,
        );
        EnrollError::Refused(error)
    }
}
