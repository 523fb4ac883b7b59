//! Actions: reset a forgotten password with a mailed link. Asking (the same answer for every
//! name; the work is done later by `outbox`), opening the link (consumes nothing), setting
//! the new password, and cancelling ("this was not me"). Audited on every outcome.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::audit::{Event, Outcome, Record};
use crate::auth::action_code::CodeCheck;
use crate::auth::portal::{Caller, Portal};
use crate::auth::reset_tokens::{now_ms, Claim};
use crate::limiter::Admitted;
use crate::mail::letters::Change;
use crate::policy::Violation;
use crate::totp::TotpError;
use crate::truenas::{NasError, NasUser};
use crate::verify::{account_refusal, Decision};

/// Reset by mail is off (`reset.enabled = false`): the routes answer "not found".
#[derive(Debug)]
pub struct ResetOff;

/// An unknown, used, expired or cancelled link: one answer for all four.
#[derive(Debug)]
pub struct InvalidToken;

/// What the link's form needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenLink {
    /// The user has passgate's two-step sign-in: a code (or backup code) is required.
    pub code_required: bool,
}

#[derive(Debug)]
pub enum ConfirmError {
    Off,
    InvalidToken,
    /// The link stays valid.
    Policy(Vec<Violation>),
    /// Two-step sign-in is on and no code was given, or a wrong or replayed one. The link
    /// stays valid.
    InvalidCode(Option<TotpError>),
    RejectedByTrueNas(Vec<String>),
    Unavailable,
}

/// What the user typed on the link's form.
pub struct ResetConfirm<'a> {
    pub token: &'a str,
    pub new: &'a SecretString,
    /// `None` where the client sends no confirmation (the JSON API).
    pub confirmation: Option<&'a SecretString>,
    pub code: Option<&'a SecretString>,
}

impl Portal {
    fn reset_enabled(&self) -> bool {
        self.reset.enabled
    }

    /// Queues the request and returns at once: what happens to the name (unknown, excluded,
    /// no address, throttled, TrueNAS down, mailed) is audited later and never shown.
    pub fn request_reset(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        username: &str,
    ) -> Result<(), ResetOff> {
        if !self.reset_enabled() {
            return Err(ResetOff);
        }
        self.outbox
            .request_reset(username.trim(), caller.lang, caller.context);
        Ok(())
    }

    /// Checks a link without using it: mail scanners open links, and that must not burn
    /// them. Wrong links are audited (and become fail2ban lines) like wrong passwords.
    pub async fn open_reset(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        token: &str,
    ) -> Result<OpenLink, ConfirmError> {
        if !self.reset_enabled() {
            return Err(ConfirmError::Off);
        }
        let found = self.reset_tokens.peek(token, now_ms()).await;
        let username = self.valid_link(caller, "open", found, "reset token lookup failed")?;
        let code_required = match self.totp.status(&username).await {
            Ok(status) => status.enabled,
            Err(e) => {
                tracing::error!(error = %e, "two-step status unreadable");
                return Err(ConfirmError::Unavailable);
            }
        };
        Ok(OpenLink { code_required })
    }

    /// Sets the new password with a link: the link is held while this runs, spent on
    /// success, and valid again after a refusal the user can fix.
    #[tracing::instrument(name = "confirm_reset", skip_all)]
    pub async fn confirm_reset(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        input: ResetConfirm<'_>,
    ) -> Result<(), ConfirmError> {
        if !self.reset_enabled() {
            return Err(ConfirmError::Off);
        }
        let found = self.reset_tokens.claim(input.token, now_ms()).await;
        let claim = self.valid_link(caller, "confirm", found, "reset token claim failed")?;
        let username = claim.username.clone();
        let result = self.apply_reset(caller, &claim, &input).await;
        let failed = |outcome: Outcome, reason: &str, detail: serde_json::Value| {
            self.audit.record(
                Record::new(Event::PasswordResetFailed, outcome)
                    .user(&username)
                    .context(caller.context)
                    .reason(reason)
                    .detail(detail),
            );
        };
        let via = caller.via.as_str();
        match &result {
            Ok(_) => {}
            // The account can no longer be reset by mail: the link is gone for good.
            Err(Applied::Gone(why)) => failed(Outcome::Failure, why, json!({"via": via})),
            Err(Applied::Refused(ConfirmError::Policy(violations))) => {
                let codes: Vec<&str> = violations.iter().map(Violation::code).collect();
                failed(
                    Outcome::Failure,
                    "policy",
                    json!({"via": via, "violations": codes}),
                );
            }
            Err(Applied::Refused(ConfirmError::RejectedByTrueNas(messages))) => failed(
                Outcome::Failure,
                "rejected by TrueNAS",
                json!({"via": via, "truenas": messages}),
            ),
            Err(Applied::Refused(ConfirmError::InvalidCode(None))) => {
                failed(Outcome::Failure, "code required", json!({"via": via}))
            }
            // Wrong codes were audited as totp_failed by the code check.
            Err(Applied::Refused(_)) => {}
            Err(Applied::Unavailable(reason)) => {
                failed(Outcome::Error, reason, json!({"via": via}))
            }
        }
        match result {
            Ok(done) => {
                if let Err(e) = self.reset_tokens.spend(claim).await {
                    tracing::error!(error = %e, "a used reset link could not be removed");
                }
                self.finish_reset(caller, &username, done).await;
                Ok(())
            }
            Err(Applied::Gone(_)) => {
                if let Err(e) = self.reset_tokens.spend(claim).await {
                    tracing::error!(error = %e, "a void reset link could not be removed");
                }
                Err(ConfirmError::InvalidToken)
            }
            Err(Applied::Refused(error)) => {
                // TrueNAS' own refusal is a definite answer: nothing of this try was applied.
                let answered = matches!(error, ConfirmError::RejectedByTrueNas(_));
                self.release(claim, answered).await;
                Err(error)
            }
            Err(Applied::Unavailable(_)) => {
                self.release(claim, false).await;
                Err(ConfirmError::Unavailable)
            }
        }
    }

    /// "This was not me": voids the link.
    pub async fn cancel_reset(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        token: &str,
    ) -> Result<(), ConfirmError> {
        if !self.reset_enabled() {
            return Err(ConfirmError::Off);
        }
        let found = self.reset_tokens.cancel(token, now_ms()).await;
        let username = self.valid_link(caller, "cancel", found, "reset token cancel failed")?;
        self.audit
            .record_durable(
                Record::new(Event::ResetCancelled, Outcome::Success)
                    .user(&username)
                    .context(caller.context)
                    .detail(json!({"via": caller.via.as_str()})),
            )
            .await;
        Ok(())
    }

    async fn release(&self, claim: Claim, answered: bool) {
        if let Err(e) = self.reset_tokens.release(claim, answered).await {
            tracing::error!(error = %e, "a reset link could not be released");
        }
    }

    /// What a link lookup at `step` found, if the link is valid now. Any other link gets the
    /// one answer and an audit row; a store failure names no user, so it is only logged
    /// (as `failed`).
    fn valid_link<T>(
        &self,
        caller: Caller<'_>,
        step: &str,
        found: Result<Option<T>, sqlx::Error>,
        failed: &str,
    ) -> Result<T, ConfirmError> {
        match found {
            Ok(Some(found)) => Ok(found),
            Ok(None) => {
                self.audit.record(
                    Record::new(Event::ResetTokenRejected, Outcome::Failure)
                        .context(caller.context)
                        .reason("invalid_token")
                        .detail(json!({"via": caller.via.as_str(), "step": step})),
                );
                Err(ConfirmError::InvalidToken)
            }
            Err(e) => {
                tracing::error!(error = %e, "{failed}");
                Err(ConfirmError::Unavailable)
            }
        }
    }

    async fn apply_reset(
        &self,
        caller: Caller<'_>,
        claim: &Claim,
        input: &ResetConfirm<'_>,
    ) -> Result<Done, Applied> {
        let username = claim.username.as_str();
        let user = match self.nas.get_user(username).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(Applied::Gone("account no longer exists")),
            Err(e) => return Err(Applied::Unavailable(unavailable(&e))),
        };
        // Checked again: roles, locks and TrueNAS' second factor may have changed since the
        // mail was sent.
        if let Some(why) = self.reset_exclusion(&user) {
            return Err(Applied::Gone(why));
        }
        // Changed since the link was made, outside the portal (TrueNAS' own UI, an admin):
        // the link belongs to a password that no longer exists. TrueNAS keeps whole seconds,
        // so a change made at `sent_ms` may read up to a second earlier.
        let changed_ms = user.aging.last_change_secs.map(|s| s.saturating_mul(1000));
        let changed_since_link = changed_ms.is_some_and(|changed| changed > claim.created_ms);
        // A change made after `sent_ms` reads as `sent_ms`'s second or later. Independent of
        // `changed_since_link`: a lost change within the link's own second is not "since" it
        // in whole seconds, yet must not be overwritten unseen.
        let maybe_lost_answer = claim
            .sent_ms
            .zip(changed_ms)
            .is_some_and(|(sent, changed)| changed >= sent - sent.rem_euclid(1000));
        if changed_since_link && !maybe_lost_answer {
            return Err(Applied::Gone(CHANGED_SINCE_LINK));
        }
        let violations = self.policy.check(
            "",
            input.new.expose_secret(),
            input.confirmation.map(|c| c.expose_secret()),
            &crate::policy::user_inputs(&user.username, &user.full_name),
        );
        if !violations.is_empty() {
            return Err(Applied::Refused(ConfirmError::Policy(violations)));
        }
        self.check_action_code(caller, username, input.code)
            .await
            .map_err(|check| match check {
                CodeCheck::Missing => Applied::Refused(ConfirmError::InvalidCode(None)),
                CodeCheck::Refused(error) => {
                    Applied::Refused(ConfirmError::InvalidCode(Some(error)))
                }
                CodeCheck::Unavailable(why) => Applied::Unavailable(why),
            })?;
        if maybe_lost_answer {
            return self.confirm_lost_answer(username, input.new).await;
        }
        if let Err(e) = self.reset_tokens.mark_sent(claim, now_ms()).await {
            return Err(Applied::Unavailable(format!("reset link store: {e}")));
        }
        match self.nas.set_password(&user, input.new).await {
            Ok(()) => Ok(Done::Set),
            Err(NasError::Validation(messages)) => {
                Err(Applied::Refused(ConfirmError::RejectedByTrueNas(messages)))
            }
            Err(NasError::Call {
                errname, reason, ..
            }) if errname != "EPERM" => {
                Err(Applied::Refused(ConfirmError::RejectedByTrueNas(vec![
                    reason,
                ])))
            }
            Err(e) => Err(Applied::Unavailable(unavailable(&e))),
        }
    }

    /// An earlier try with this link sent a new password and lost TrueNAS' answer, and the
    /// password has changed since: that try went through if the password given now (the
    /// same one, typed again) is the account's password. Anything else voids the link, as
    /// any other change would.
    async fn confirm_lost_answer(
        &self,
        username: &str,
        new: &SecretString,
    ) -> Result<Done, Applied> {
        let check = self.authenticator.sign_in(username, new).await;
        match check.outcome.decision {
            Decision::Verified => {
                tracing::warn!("a reset whose answer was lost had been applied by TrueNAS");
                Ok(Done::AlreadySet)
            }
            Decision::Unavailable => Err(Applied::Unavailable(check.outcome.reason)),
            Decision::Busy => Err(Applied::Unavailable("verification busy".into())),
            Decision::Rejected => Err(Applied::Gone(CHANGED_SINCE_LINK)),
        }
    }

    /// The same rules as for sending the mail, minus the admin-group lookup (roles cover
    /// TrueNAS' administrators).
    fn reset_exclusion(&self, user: &NasUser) -> Option<&'static str> {
        if let Some(why) = account_refusal(user, self.reset.allow_root) {
            return Some(why);
        }
        if user.twofactor {
            return Some("account uses TrueNAS two-factor authentication");
        }
        if !self.reset.allow_roles && !user.roles.is_empty() {
            return Some("account holds a TrueNAS role");
        }
        None
    }

    /// After a reset: every session revoked, the change audited, the user told by mail.
    async fn finish_reset(&self, caller: Caller<'_>, username: &str, done: Done) {
        let revoked = self.sessions.revoke_user(username).await;
        self.audit
            .record_durable(
                Record::new(Event::PasswordReset, Outcome::Success)
                    .user(username)
                    .context(caller.context)
                    .detail(json!({
                        "via": caller.via.as_str(),
                        "sessions_revoked": revoked.as_ref().ok(),
                        "answer_was_lost": done == Done::AlreadySet,
                    })),
            )
            .await;
        if let Err(e) = revoked {
            tracing::error!(error = %e, "password reset but sessions could not be revoked");
        }
        self.notify_change(caller, username, Change::PasswordReset);
    }

    /// Mails the user about a change of their account, when `mail.notify_changes` is on.
    pub(crate) fn notify_change(&self, caller: Caller<'_>, username: &str, change: Change) {
        if self.reset.notify_changes {
            self.outbox
                .notify(username, change, caller.lang, caller.context);
        }
    }
}

const CHANGED_SINCE_LINK: &str = "password changed since the link was sent";

/// How a reset went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Set,
    /// An earlier try's change, whose answer was lost, is in place.
    AlreadySet,
}

/// How applying a reset went wrong, deciding what happens to the link.
enum Applied {
    /// The account may no longer be reset by mail: the link is spent.
    Gone(&'static str),
    /// The user can fix it: the link is released.
    Refused(ConfirmError),
    Unavailable(String),
}

fn unavailable(e: &NasError) -> String {
    format!("TrueNAS unavailable: {e}")
}
