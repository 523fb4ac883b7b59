//! Action: change a signed-in user's password: policy, a fresh check of the current
//! password, then TrueNAS, then every session of the user revoked. Audited on every outcome.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::audit::{Audit, Context, Event, Outcome, Record};
use crate::auth::authenticator::{Authenticator, LockoutNote};
use crate::auth::portal::{Caller, Portal};
use crate::auth::sessions::Claims;
use crate::auth::sessions::Sessions;
use crate::limiter::Admitted;
use crate::mail::letters::Change;
use crate::policy::{Policy, Violation};
use crate::truenas::{NasClient, NasError};
use crate::verify::Decision;

#[derive(Debug)]
pub enum ChangeError {
    Policy(Vec<Violation>),
    /// The current password did not verify; `reason` is for the audit entry only.
    WrongCurrentPassword {
        reason: String,
        lockout: LockoutNote,
    },
    /// TrueNAS refused the new password; the messages are TrueNAS' own, for the user.
    RejectedByTrueNas(Vec<String>),
    Unavailable {
        reason: String,
    },
    /// Every verification slot was taken; try again in a few seconds.
    Busy,
}

/// What the user typed.
pub struct PasswordChange<'a> {
    pub current: &'a SecretString,
    pub new: &'a SecretString,
    /// `None` where the client sends no confirmation (the JSON API).
    pub confirmation: Option<&'a SecretString>,
}

impl Portal {
    /// Changes the password of `session`'s user; on success all their sessions are revoked
    /// (they sign in again with the new password).
    #[tracing::instrument(name = "change_password", skip_all)]
    pub async fn change_password(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        session: &Claims,
        change: PasswordChange<'_>,
    ) -> Result<(), ChangeError> {
        let via = caller.via.as_str();
        let applied = apply(
            &self.authenticator,
            self.nas.as_ref(),
            &self.policy,
            session,
            &change,
        )
        .await;
        match applied {
            Ok(verifier) => {
                finish_change(
                    &self.sessions,
                    &self.audit,
                    &session.sub,
                    caller.context,
                    via,
                    verifier,
                )
                .await;
                // A link mailed before the change must not undo it.
                if let Err(e) = self.reset_tokens.void_user(&session.sub).await {
                    tracing::error!(error = %e, "password changed but its reset link remains");
                }
                self.notify_change(caller, &session.sub, Change::PasswordChanged);
                Ok(())
            }
            Err(error) => {
                error.audit(&self.audit, &session.sub, caller.context, via);
                Err(error)
            }
        }
    }
}

/// Returns the verifier that confirmed the current password.
async fn apply(
    auth: &Authenticator,
    nas: &dyn NasClient,
    policy: &Policy,
    session: &Claims,
    change: &PasswordChange<'_>,
) -> Result<Option<&'static str>, ChangeError> {
    let violations = policy.check(
        change.current.expose_secret(),
        change.new.expose_secret(),
        change.confirmation.map(|c| c.expose_secret()),
        // The full name is easy to guess, so the strength check counts it against the password.
        &crate::policy::user_inputs(&session.sub, &session.name),
    );
    if !violations.is_empty() {
        return Err(ChangeError::Policy(violations));
    }
    // A session alone is not enough: whoever holds it must also know the password now.
    let sign_in = auth.sign_in(&session.sub, change.current).await;
    let user = match (sign_in.outcome.decision, sign_in.user) {
        (Decision::Verified, Some(user)) => user,
        (Decision::Unavailable, _) => {
            return Err(ChangeError::Unavailable {
                reason: sign_in.outcome.reason,
            })
        }
        (Decision::Busy, _) => return Err(ChangeError::Busy),
        _ => {
            return Err(ChangeError::WrongCurrentPassword {
                reason: sign_in.outcome.reason,
                lockout: sign_in.lockout,
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

impl ChangeError {
    /// Records the refusal through the one audit entry point. `via` is `web` or `api`.
    fn audit(&self, audit: &Audit, username: &str, context: &Context, via: &str) {
        let record = |outcome: Outcome, reason: &str, detail: serde_json::Value| {
            audit.record(
                Record::new(Event::PasswordChangeFailed, outcome)
                    .user(username)
                    .context(context)
                    .reason(reason)
                    .detail(detail),
            );
        };
        match self {
            ChangeError::Policy(violations) => {
                let codes: Vec<&str> = violations.iter().map(Violation::code).collect();
                record(
                    Outcome::Failure,
                    "policy",
                    json!({"via": via, "violations": codes}),
                );
            }
            ChangeError::WrongCurrentPassword { reason, lockout } => {
                record(
                    Outcome::Failure,
                    reason,
                    json!({"via": via, "step": "current_password"}),
                );
                let (why, secs) = match lockout {
                    LockoutNote::None => return,
                    LockoutNote::LockedNow { duration } => ("too many failed sign-ins", duration),
                    LockoutNote::RefusedWhileLocked { remaining } => {
                        ("username locked out", remaining)
                    }
                };
                audit.record(
                    Record::new(Event::UserLockedOut, Outcome::Failure)
                        .user(username)
                        .context(context)
                        .reason(why)
                        .detail(json!({"via": via, "secs": secs.as_secs()})),
                );
            }
            ChangeError::RejectedByTrueNas(messages) => record(
                Outcome::Failure,
                "rejected by TrueNAS",
                json!({"via": via, "truenas": messages}),
            ),
            ChangeError::Unavailable { reason } => {
                record(Outcome::Error, reason, json!({"via": via}))
            }
            ChangeError::Busy => {
                record(Outcome::Error, "no verification slot", json!({"via": via}))
            }
        }
    }
}

/// After a successful change: every session of the user is revoked (they must sign in
/// again with the new password), and the change is audited with how many were revoked.
async fn finish_change(
    sessions: &Sessions,
    audit: &Audit,
    username: &str,
    context: &Context,
    via: &str,
    verifier: Option<&str>,
) {
    let revoked = sessions.revoke_user(username).await;
    audit
        .record_durable(
            Record::new(Event::PasswordChanged, Outcome::Success)
                .user(username)
                .context(context)
                .verifier(verifier)
                .detail(json!({"via": via, "sessions_revoked": revoked.as_ref().ok()})),
        )
        .await;
    match revoked {
        Ok(0) => {}
        Ok(count) => audit.record(
            Record::new(Event::SessionRevoked, Outcome::Success)
                .user(username)
                .context(context)
                .reason("password changed")
                .detail(json!({"via": via, "sessions": count})),
        ),
        Err(e) => tracing::error!(error = %e, "password changed but sessions could not be revoked"),
    }
}
