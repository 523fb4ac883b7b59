//! Signing a user in: lockout, a verification slot, account checks, then the verifier
//! chain. Knows nothing about HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::audit::{Audit, Context, Event, Outcome, Record};
use crate::auth::lockout::{LockState, UserLockout};
use crate::auth::password_aging::{ExpiredMarks, MaxAgeCache, PasswordAging};
use crate::policy::MAX_PASSWORD_BYTES;
use crate::truenas::{NasClient, NasUser};
use crate::verify::{account_refusal, Account, ChainOutcome, Decision, VerifierChain};

/// TrueNAS usernames are short; anything longer or with control characters cannot exist.
const MAX_USERNAME_CHARS: usize = 64;

/// How many expensive verifications may run at once, and how long a sign-in waits for one.
pub struct Capacity {
    pub concurrent: usize,
    pub wait: Duration,
}

pub struct Authenticator {
    nas: Arc<dyn NasClient>,
    chain: VerifierChain,
    allow_root: bool,
    lockout: UserLockout,
    slots: Semaphore,
    slot_wait: Duration,
    /// `system.security` `max_password_age`, read every few minutes, not per sign-in.
    max_age: MaxAgeCache,
    expired_marks: ExpiredMarks,
}

/// What the per-username lockout did during this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutNote {
    None,
    /// The username was already locked: nothing was verified.
    RefusedWhileLocked {
        remaining: Duration,
    },
    /// This failure locked the username.
    LockedNow {
        duration: Duration,
    },
}

/// The result of one sign-in attempt. `outcome.reason` is for the audit entry only; users
/// see one message for every kind of refusal, a lockout included.
pub struct SignIn {
    pub user: Option<NasUser>,
    pub outcome: ChainOutcome,
    pub lockout: LockoutNote,
    /// The password's age, for a verified sign-in only. An expired password does not stop
    /// the sign-in: changing it here is the user's only way to renew it.
    pub password: Option<PasswordAging>,
}

impl SignIn {
    pub fn verified_user(&self) -> Option<&NasUser> {
        match self.outcome.decision {
            Decision::Verified => self.user.as_ref(),
            _ => None,
        }
    }

    fn decided(decision: Decision, reason: impl Into<String>, user: Option<NasUser>) -> Self {
        Self {
            user,
            outcome: ChainOutcome {
                decision,
                verifier: None,
                reason: reason.into(),
                nas_otp: None,
                password_expired: false,
            },
            lockout: LockoutNote::None,
            password: None,
        }
    }

    /// Records the attempt through the one audit entry point; a successful sign-in is on
    /// disk before this returns. `via` is `web` or `api`.
    pub async fn audit(&self, audit: &Audit, typed_username: &str, context: &Context, via: &str) {
        let outcome = &self.outcome;
        let (event, result) = match outcome.decision {
            Decision::Verified => (Event::LoginSucceeded, Outcome::Success),
            Decision::Rejected => (Event::LoginFailed, Outcome::Failure),
            Decision::Unavailable | Decision::Busy => (Event::LoginFailed, Outcome::Error),
        };
        match self.lockout {
            LockoutNote::RefusedWhileLocked { remaining } => {
                audit.record(locked_out(
                    typed_username,
                    context,
                    "username locked out",
                    json!({"via": via, "remaining_secs": remaining.as_secs()}),
                ));
                return;
            }
            LockoutNote::LockedNow { .. } | LockoutNote::None => {}
        }
        let mut detail = json!({"via": via});
        if let Some(aging) = self.password {
            detail["password"] = json!(aging);
        }
        let record = Record::new(event, result)
            .user(typed_username)
            .context(context)
            .verifier(outcome.verifier)
            .reason(&outcome.reason)
            .detail(detail);
        if result == Outcome::Success {
            audit.record_durable(record).await;
        } else {
            audit.record(record);
        }
        if let LockoutNote::LockedNow { duration } = self.lockout {
            audit.record(locked_out(
                typed_username,
                context,
                "too many failed sign-ins",
                json!({"via": via, "lockout_secs": duration.as_secs()}),
            ));
        }
    }
}

/// The lockout row, both when a name is locked and when a locked name is refused.
fn locked_out<'a>(
    typed_username: &'a str,
    context: &'a Context,
    reason: &'a str,
    detail: serde_json::Value,
) -> Record<'a> {
    Record::new(Event::UserLockedOut, Outcome::Failure)
        .user(typed_username)
        .context(context)
        .reason(reason)
        .detail(detail)
}

impl Authenticator {
    pub fn new(
        nas: Arc<dyn NasClient>,
        chain: VerifierChain,
        allow_root: bool,
        lockout: UserLockout,
        capacity: Capacity,
    ) -> Self {
        Self {
            nas,
            chain,
            allow_root,
            lockout,
            slots: Semaphore::new(capacity.concurrent.max(1)),
            slot_wait: capacity.wait,
            max_age: MaxAgeCache::new(),
            expired_marks: ExpiredMarks::new(),
        }
    }

    /// The password aging of a signed-in user, read fresh from TrueNAS (the maximum age is
    /// cached). `None` when the user cannot be read: pages then simply say nothing about it.
    pub async fn password_aging(&self, username: &str) -> Option<PasswordAging> {
        match self.nas.get_user(username).await {
            Ok(Some(user)) => Some(self.aging_of(&user).await),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the user for password aging");
                None
            }
        }
    }

    async fn aging_of(&self, user: &NasUser) -> PasswordAging {
        let nas = self.nas.as_ref();
        crate::auth::password_aging::current(nas, &self.max_age, &self.expired_marks, user).await
    }

    pub fn verifier_names(&self) -> Vec<&'static str> {
        self.chain.names()
    }

    pub fn tracked_users(&self) -> usize {
        self.lockout.tracked_users()
    }

    /// Drops lockout entries whose windows have passed, at most `max_per_shard` per shard.
    pub fn purge_expired(&self, now: Instant, max_per_shard: usize) -> usize {
        self.lockout.purge_expired(now, max_per_shard)
    }

    #[tracing::instrument(name = "sign_in", skip_all)]
    pub async fn sign_in(&self, username: &str, password: &SecretString) -> SignIn {
        // A locked username costs nothing: no slot, no NAS call, no hash.
        if let LockState::Locked { remaining } = self.lockout.check(username, Instant::now()) {
            let mut refused = SignIn::decided(Decision::Rejected, "username locked out", None);
            refused.lockout = LockoutNote::RefusedWhileLocked { remaining };
            return refused;
        }
        let Ok(Ok(_slot)) = tokio::time::timeout(self.slot_wait, self.slots.acquire()).await else {
            return SignIn::decided(
                Decision::Busy,
                "no verification slot became free in time",
                None,
            );
        };
        let mut result = self.verify(username, password).await;
        match result.outcome.decision {
            Decision::Rejected => {
                if let Some(duration) = self.lockout.record_failure(username, Instant::now()) {
                    result.lockout = LockoutNote::LockedNow { duration };
                }
            }
            Decision::Verified => self.lockout.record_success(username, Instant::now()),
            // A NAS outage is not the user's failure.
            Decision::Unavailable | Decision::Busy => {}
        }
        result
    }

    async fn verify(&self, username: &str, password: &SecretString) -> SignIn {
        let length = password.expose_secret().len();
        if length == 0 || length > MAX_PASSWORD_BYTES {
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
                return SignIn::decided(Decision::Unavailable, format!("user lookup: {e}"), None)
            }
        };
        if let Some(why) = account_refusal(&user, self.allow_root) {
            return self
                .refuse_after_equal_work(username, password, why, Some(user))
                .await;
        }
        let outcome = self.chain.run(Account::Real(&user), password).await;
        if user.twofactor && outcome.decision == Decision::Verified && outcome.nas_otp.is_none() {
            // The user chose a second factor on TrueNAS, but the password was confirmed by a
            // verifier that cannot ask for it (TrueNAS before 26 answers AUTH_ERR, not
            // OTP_REQUIRED, to users without API access). Letting the password alone through
            // would bypass that factor.
            return SignIn::decided(
                Decision::Rejected,
                format!(
                    "{}, but TrueNAS two-factor is configured and TrueNAS did not ask for the code",
                    outcome.reason
                ),
                Some(user),
            );
        }
        let password = if outcome.decision == Decision::Verified {
            self.expired_marks
                .record(&user.username, outcome.password_expired);
            Some(self.aging_of(&user).await)
        } else {
            None
        };
        SignIn {
            user: Some(user),
            outcome,
            lockout: LockoutNote::None,
            password,
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
        SignIn::decided(Decision::Rejected, why, user)
    }
}

pub fn plausible_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_USERNAME_CHARS
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}
