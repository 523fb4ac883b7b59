//! The steps between a verified password and a full session: the user's TrueNAS-side OTP
//! code, the portal's own TOTP code, or a forced enrollment (`totp.mode = required`).
//! Knows nothing about HTTP.
//!
//! Each step is a session of its own stage (see `sessions::Stage`), short-lived and accepted
//! only by the next step, so a pending token can never change a password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::json;

use crate::audit::{Audit, Context, Event, Outcome, Record};
use crate::auth::lockout::{LockState, LockoutPolicy, UserLockout};
use crate::auth::sessions::{Claims, Issued, SessionError, Sessions, Stage};
use crate::totp::{unix_now, Totp, TotpError, TotpMode, VerifyMethod};
use crate::truenas::{NasOtp, OtpAnswer};

/// The longest a pending (code-step) session may live.
pub const MAX_PENDING_TTL: Duration = Duration::from_secs(300);
/// Every held TrueNAS login is an open connection to the NAS; a flood of correct passwords
/// for two-factor users must not open unlimited connections.
const MAX_HELD_LOGINS: usize = 256;

/// Which code a pending session waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// The portal's own TOTP (or one of its backup codes).
    Portal,
    /// The code of the user's TrueNAS-side two-factor authentication.
    TrueNas,
}

impl Factor {
    pub fn of(stage: Stage) -> Option<Self> {
        match stage {
            Stage::TotpPending => Some(Factor::Portal),
            Stage::NasOtpPending => Some(Factor::TrueNas),
            Stage::Authenticated | Stage::TotpEnrollment => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Portal => "portal",
            Factor::TrueNas => "truenas",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("too many sign-ins are waiting for a TrueNAS code")]
    Busy,
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("totp store: {0}")]
    Totp(#[from] TotpError),
}

/// A code that did not finish the step.
#[derive(Debug)]
pub enum CodeError {
    /// Wrong, or already used; the pending session stays usable.
    Wrong {
        replayed: bool,
    },
    /// The pending sign-in is over (TrueNAS ended it, or it expired): sign in again.
    SignInAgain(&'static str),
    TooManyAttempts {
        retry_after: Duration,
    },
    Unavailable(String),
    Internal(String),
}

/// A code that finished the step, and the session for what comes next.
pub struct CodeAccepted {
    pub issued: Issued,
    pub method: &'static str,
    pub backup_codes_left: Option<u32>,
}

struct HeldLogin {
    otp: NasOtp,
    username: String,
    expires: Instant,
}

pub struct LoginSteps {
    sessions: Arc<Sessions>,
    totp: Arc<Totp>,
    pending_ttl: Duration,
    held: Mutex<HashMap<String, HeldLogin>>,
    /// The per-user limit for TrueNAS codes (the portal's own codes are limited inside `Totp`).
    nas_attempts: UserLockout,
}

impl LoginSteps {
    pub fn new(sessions: Arc<Sessions>, totp: Arc<Totp>, pending_ttl: Duration) -> Self {
        let settings = totp.settings();
        let nas_attempts = UserLockout::new(LockoutPolicy {
            failures: settings.max_failures,
            window: settings.failure_window,
            base_lockout: settings.failure_window,
            max_lockout: settings.failure_window,
            max_tracked_users: 100_000,
        });
        Self {
            sessions,
            totp,
            pending_ttl: pending_ttl.min(MAX_PENDING_TTL),
            held: Mutex::new(HashMap::new()),
            nas_attempts,
        }
    }

    pub fn totp(&self) -> &Totp {
        &self.totp
    }

    /// The session that follows a verified password.
    pub async fn after_password(
        &self,
        username: &str,
        full_name: &str,
        admin: bool,
        nas_otp: Option<NasOtp>,
    ) -> Result<Issued, StepError> {
        if let Some(otp) = nas_otp {
            return self.hold_nas_login(username, full_name, admin, otp).await;
        }
        self.after_nas_factor(username, full_name, admin, false)
            .await
    }

    /// What follows once TrueNAS is satisfied. `nas_factor_passed`: the user proved a
    /// TrueNAS-side code, which counts as a second factor for `totp.mode = required`.
    async fn after_nas_factor(
        &self,
        username: &str,
        full_name: &str,
        admin: bool,
        nas_factor_passed: bool,
    ) -> Result<Issued, StepError> {
        let mode = self.totp.mode();
        let stage = if mode == TotpMode::Off {
            Stage::Authenticated
        } else if self.totp.status(username).await?.enabled {
            Stage::TotpPending
        } else if mode == TotpMode::Required && !nas_factor_passed {
            Stage::TotpEnrollment
        } else {
            Stage::Authenticated
        };
        let issued = match stage {
            Stage::Authenticated => {
                self.sessions
                    .issue(username, full_name, stage, admin)
                    .await?
            }
            Stage::TotpEnrollment => {
                let ttl = self.totp.settings().enrollment_ttl;
                self.sessions
                    .issue_for(username, full_name, stage, admin, ttl)
                    .await?
            }
            _ => {
                self.sessions
                    .issue_for(username, full_name, stage, admin, self.pending_ttl)
                    .await?
            }
        };
        Ok(issued)
    }

    async fn hold_nas_login(
        &self,
        username: &str,
        full_name: &str,
        admin: bool,
        otp: NasOtp,
    ) -> Result<Issued, StepError> {
        self.purge_expired(Instant::now());
        if self.held_len() >= MAX_HELD_LOGINS {
            return Err(StepError::Busy);
        }
        let issued = self
            .sessions
            .issue_for(
                username,
                full_name,
                Stage::NasOtpPending,
                admin,
                self.pending_ttl,
            )
            .await?;
        if let Ok(mut held) = self.held.lock() {
            held.insert(
                issued.claims.jti.clone(),
                HeldLogin {
                    otp,
                    username: username.to_owned(),
                    expires: Instant::now() + self.pending_ttl,
                },
            );
        }
        Ok(issued)
    }

    fn held_len(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(usize::MAX)
    }

    fn held_login(&self, jti: &str, username: &str) -> Option<NasOtp> {
        let held = self.held.lock().ok()?;
        let login = held.get(jti)?;
        (login.username == username && login.expires > Instant::now() && login.otp.0.is_open())
            .then(|| login.otp.clone())
    }

    fn release(&self, jti: &str) {
        if let Ok(mut held) = self.held.lock() {
            // Dropping the handle closes the connection to TrueNAS.
            held.remove(jti);
        }
    }

    /// Closes held logins whose pending session has expired, and forgets attempt counts whose
    /// windows have passed.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let mut purged = self.nas_attempts.purge_expired(now, 1024);
        purged += self.totp.purge_expired(now);
        if let Ok(mut held) = self.held.lock() {
            let before = held.len();
            held.retain(|_, login| login.expires > now && login.otp.0.is_open());
            purged += before - held.len();
        }
        purged
    }

    /// Checks the code a pending session waits for; on success the pending session is
    /// revoked and the next one issued.
    #[tracing::instrument(name = "code_step", skip_all)]
    pub async fn submit_code(
        &self,
        claims: &Claims,
        code: &SecretString,
    ) -> Result<CodeAccepted, CodeError> {
        match Factor::of(claims.stage) {
            Some(Factor::TrueNas) => self.submit_nas_code(claims, code).await,
            Some(Factor::Portal) => self.submit_portal_code(claims, code).await,
            None => Err(CodeError::Internal(String::from("not a pending session"))),
        }
    }

    async fn submit_nas_code(
        &self,
        claims: &Claims,
        code: &SecretString,
    ) -> Result<CodeAccepted, CodeError> {
        let now = Instant::now();
        if let LockState::Locked { remaining } = self.nas_attempts.check(&claims.sub, now) {
            return Err(CodeError::TooManyAttempts {
                retry_after: remaining,
            });
        }
        let Some(otp) = self.held_login(&claims.jti, &claims.sub) else {
            self.end_pending(claims).await;
            return Err(CodeError::SignInAgain(
                "the TrueNAS sign-in waiting for this code is gone",
            ));
        };
        match otp.0.submit(code).await {
            Ok(OtpAnswer::Accepted) => {
                self.nas_attempts
                    .record_success(&claims.sub, Instant::now());
                self.end_pending(claims).await;
                let issued = self
                    .after_nas_factor(&claims.sub, &claims.name, claims.admin, true)
                    .await
                    .map_err(|e| CodeError::Internal(e.to_string()))?;
                Ok(CodeAccepted {
                    issued,
                    method: "truenas_otp",
                    backup_codes_left: None,
                })
            }
            Ok(OtpAnswer::WrongCodeRetry) => {
                self.count_nas_failure(claims)?;
                Err(CodeError::Wrong { replayed: false })
            }
            Ok(OtpAnswer::WrongCodeFinal) => {
                self.end_pending(claims).await;
                self.count_nas_failure(claims)?;
                Err(CodeError::SignInAgain(
                    "TrueNAS ended the sign-in after a wrong code",
                ))
            }
            Err(e) => Err(CodeError::Unavailable(e.to_string())),
        }
    }

    fn count_nas_failure(&self, claims: &Claims) -> Result<(), CodeError> {
        match self
            .nas_attempts
            .record_failure(&claims.sub, Instant::now())
        {
            Some(retry_after) => Err(CodeError::TooManyAttempts { retry_after }),
            None => Ok(()),
        }
    }

    async fn submit_portal_code(
        &self,
        claims: &Claims,
        code: &SecretString,
    ) -> Result<CodeAccepted, CodeError> {
        let verified = self
            .totp
            .verify(&claims.sub, code, unix_now())
            .await
            .map_err(code_error)?;
        let issued = self
            .promote(claims)
            .await
            .map_err(|e| CodeError::Internal(e.to_string()))?;
        let (method, backup_codes_left) = match verified.method {
            VerifyMethod::Totp => ("totp", None),
            VerifyMethod::BackupCode { remaining } => ("backup_code", Some(remaining)),
        };
        Ok(CodeAccepted {
            issued,
            method,
            backup_codes_left,
        })
    }

    /// Ends a pending or forced-enrollment session and begins a full one (after the code
    /// step, or after enrolling).
    pub async fn promote(&self, claims: &Claims) -> Result<Issued, SessionError> {
        self.end_pending(claims).await;
        self.sessions
            .issue(
                &claims.sub,
                &claims.name,
                Stage::Authenticated,
                claims.admin,
            )
            .await
    }

    async fn end_pending(&self, claims: &Claims) {
        self.release(&claims.jti);
        if let Err(e) = self.sessions.revoke(&claims.jti).await {
            tracing::error!(error = %e, "could not revoke a pending session");
        }
    }
}

/// Maps the TOTP service's refusals onto what the code step tells the user.
pub fn code_error(e: TotpError) -> CodeError {
    match e {
        TotpError::InvalidCode | TotpError::NotEnrolled => CodeError::Wrong { replayed: false },
        TotpError::Replayed => CodeError::Wrong { replayed: true },
        TotpError::TooManyAttempts { retry_after } => CodeError::TooManyAttempts { retry_after },
        TotpError::NoPendingEnrollment | TotpError::ProofRequired => {
            CodeError::SignInAgain("no enrollment in progress")
        }
        TotpError::Store(e) => CodeError::Internal(e.to_string()),
        TotpError::Crypto(why) => CodeError::Internal(why.to_owned()),
    }
}

/// Records a code attempt through the one audit entry point (a failure also becomes a
/// fail2ban line). `via` is `web` or `api`.
pub async fn audit_code(
    audit: &Audit,
    claims: &Claims,
    context: &Context,
    via: &str,
    result: &Result<CodeAccepted, CodeError>,
) {
    let factor = Factor::of(claims.stage).map(Factor::as_str);
    match result {
        Ok(accepted) => {
            let record = Record::new(Event::TotpSucceeded, Outcome::Success)
                .user(&claims.sub)
                .context(context)
                .reason(accepted.method)
                .detail(json!({
                    "via": via,
                    "factor": factor,
                    "backup_codes_left": accepted.backup_codes_left,
                }));
            audit.record_durable(record).await;
        }
        Err(error) => {
            let (outcome, reason) = match error {
                CodeError::Wrong { replayed: false } => (Outcome::Failure, "wrong code"),
                CodeError::Wrong { replayed: true } => {
                    (Outcome::Failure, "code already used (replay)")
                }
                CodeError::SignInAgain(why) => (Outcome::Failure, *why),
                CodeError::TooManyAttempts { .. } => (Outcome::Failure, "too many code attempts"),
                CodeError::Unavailable(_) => (Outcome::Error, "TrueNAS unavailable"),
                CodeError::Internal(_) => (Outcome::Error, "internal error"),
            };
            if let CodeError::Unavailable(why) | CodeError::Internal(why) = error {
                tracing::warn!(error = %why, "code step failed");
            }
            audit.record(
                Record::new(Event::TotpFailed, outcome)
                    .user(&claims.sub)
                    .context(context)
                    .reason(reason)
                    .detail(json!({"via": via, "factor": factor})),
            );
        }
    }
}

/// Records a refused code from enrollment or disabling (the code step audits its own).
pub fn audit_totp_refusal(
    audit: &Audit,
    username: &str,
    context: &Context,
    via: &str,
    error: &TotpError,
) {
    let (outcome, reason) = match error {
        TotpError::InvalidCode => (Outcome::Failure, "wrong code"),
        TotpError::Replayed => (Outcome::Failure, "code already used (replay)"),
        TotpError::TooManyAttempts { .. } => (Outcome::Failure, "too many code attempts"),
        TotpError::Store(_) | TotpError::Crypto(_) => (Outcome::Error, "internal error"),
        // Not a guess at a code: nothing for fail2ban.
        TotpError::NotEnrolled | TotpError::NoPendingEnrollment | TotpError::ProofRequired => {
            return
        }
    };
    audit.record(
        Record::new(Event::TotpFailed, outcome)
            .user(username)
            .context(context)
            .reason(reason)
            .detail(json!({"via": via, "factor": Factor::Portal.as_str()})),
    );
}

/// Records an enrollment or a user's own disabling, on disk before the answer is sent.
pub async fn audit_totp_change(
    audit: &Audit,
    event: Event,
    username: &str,
    context: &Context,
    via: &str,
) {
    audit
        .record_durable(
            Record::new(event, Outcome::Success)
                .user(username)
                .context(context)
                .detail(json!({"via": via})),
        )
        .await;
}
