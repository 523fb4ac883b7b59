//! The portal's own TOTP second factor: enrollment, verification with a replay guard, backup
//! codes, and a per-username attempt limit. No HTTP here; routes call [`Totp`].
//!
//! - Codes: RFC 6238, HMAC-SHA1, 6 digits, 30 s steps, one step of skew either way.
//! - Secrets: 160 bits from the OS CSPRNG, encrypted at rest ([`crypto`]), never logged.
//! - Replay: a code is accepted only for a step newer than the last accepted one, recorded
//!   by compare-and-set, so two concurrent requests with one code cannot both pass.
//! - Backup codes: ten single-use codes, argon2id-hashed, each marked used by compare-and-set.
//! - Attempts: at most `max_failures` wrong or replayed codes per `failure_window` per user
//!   (on top of the per-client limiter), checked before any work. Attempts for one user are
//!   serialised, so parallel requests cannot all pass the check before the first failure is
//!   counted.

mod backup;
mod codes;
mod crypto;
mod qr;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;
use tokio::sync::{OwnedMutexGuard, Semaphore};
use totp_rs::{Algorithm, Builder};
use zeroize::Zeroizing;

use crate::auth::lockout::{LockState, LockoutPolicy, UserLockout};
use codes::{Input, Match, STEP_SECS};
use crypto::{SecretCipher, Slot};

pub use codes::code_at;

const SECRET_LEN: usize = 20;
const MAX_TRACKED_USERS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TotpMode {
    /// No portal TOTP at all.
    Off,
    /// Users may enroll; enrolled users must give a code at sign-in.
    #[default]
    Optional,
    /// Every user must enroll before using the portal.
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpSettings {
    pub mode: TotpMode,
    /// Shown by authenticator apps next to the account name.
    pub issuer: String,
    pub max_failures: u32,
    pub failure_window: Duration,
    pub enrollment_ttl: Duration,
}

impl Default for TotpSettings {
    fn default() -> Self {
        Self {
            mode: TotpMode::Optional,
            issuer: String::from("passgate"),
            max_failures: 5,
            failure_window: Duration::from_secs(300),
            enrollment_ttl: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TotpStatus {
    pub username: String,
    pub enabled: bool,
    pub enabled_at: Option<i64>,
    /// An enrollment was started, is not confirmed yet and has not expired.
    pub pending: bool,
    pub backup_codes_left: u32,
    pub last_used_at: Option<i64>,
}

/// What the user needs to add the secret to an authenticator app. Shown once.
pub struct EnrollmentOffer {
    pub secret_base32: SecretString,
    pub otpauth_uri: SecretString,
    /// The QR code of `otpauth_uri`: inline `<svg>`, no style attributes, no script.
    pub qr_svg: String,
}

impl fmt::Debug for EnrollmentOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentOffer([redacted])")
    }
}

/// Ten single-use codes, formatted `abcd-efgh-jkmn`. Shown once; only hashes are kept.
pub struct BackupCodes(pub Vec<SecretString>);

impl fmt::Debug for BackupCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupCodes({} codes, redacted)", self.0.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMethod {
    Totp,
    BackupCode { remaining: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub method: VerifyMethod,
}

/// Fixed, log-safe texts: never a secret or a code.
#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("two-factor authentication is not enabled for this user")]
    NotEnrolled,
    #[error("no pending two-factor enrollment (none started, or it expired)")]
    NoPendingEnrollment,
    #[error("a current code or an unused backup code is required")]
    ProofRequired,
    #[error("invalid code")]
    InvalidCode,
    #[error("code already used")]
    Replayed,
    #[error("too many code attempts; retry in {} s", retry_after.as_secs().max(1))]
    TooManyAttempts { retry_after: Duration },
    #[error("totp store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("totp: {0}")]
    Crypto(&'static str),
}

/// The current unix time in seconds (what the routes pass as `now`).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The TOTP service. `Send + Sync`, shared behind an `Arc`.
pub struct Totp {
    pool: SqlitePool,
    cipher: SecretCipher,
    settings: TotpSettings,
    lockout: UserLockout,
    turns: UserTurns,
    /// Caps concurrent argon2 work (about 19 MiB and tens of ms each) at the core count.
    hashing: Semaphore,
}

impl fmt::Debug for Totp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Totp")
            .field("settings", &self.settings)
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

impl Totp {
    pub fn new(pool: SqlitePool, key: &[u8; 32], settings: TotpSettings) -> Self {
        let lockout = UserLockout::new(LockoutPolicy {
            failures: settings.max_failures,
            window: settings.failure_window,
            base_lockout: settings.failure_window,
            max_lockout: settings.failure_window,
            max_tracked_users: MAX_TRACKED_USERS,
        });
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            pool,
            cipher: SecretCipher::new(key),
            settings,
            lockout,
            turns: UserTurns::default(),
            hashing: Semaphore::new(cores),
        }
    }

    pub fn mode(&self) -> TotpMode {
        self.settings.mode
    }

    pub fn settings(&self) -> &TotpSettings {
        &self.settings
    }

    pub async fn status(&self, username: &str) -> Result<TotpStatus, TotpError> {
        Ok(match store::status(&self.pool, username).await? {
            Some(row) => self.to_status(row),
            None => TotpStatus {
                username: username.to_owned(),
                enabled: false,
                enabled_at: None,
                pending: false,
                backup_codes_left: 0,
                last_used_at: None,
            },
        })
    }

    /// Every user with an enrollment row (enabled or pending), ordered by username.
    pub async fn list(&self) -> Result<Vec<TotpStatus>, TotpError> {
        let rows = store::list(&self.pool).await?;
        Ok(rows.into_iter().map(|r| self.to_status(r)).collect())
    }

    /// When TOTP is already enabled, `proof` (a current code or an unused backup code) is
    /// required (Err(ProofRequired) when None, Err(InvalidCode)/Replayed/TooManyAttempts when
    /// wrong) and the active secret stays active until the new one is confirmed. Replaces any
    /// earlier *pending* enrollment.
    pub async fn begin_enrollment(
        &self,
        username: &str,
        proof: Option<&SecretString>,
        now: u64,
    ) -> Result<EnrollmentOffer, TotpError> {
        let enabled = store::load(&self.pool, username)
            .await?
            .is_some_and(|e| e.active.is_some());
        if enabled {
            let proof = proof.ok_or(TotpError::ProofRequired)?;
            self.verify(username, proof, now).await?;
        }
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        OsRng
            .try_fill_bytes(&mut secret[..])
            .map_err(|_| TotpError::Crypto("the system random number generator failed"))?;
        // Built before storing, so a name that cannot go into a URI leaves nothing behind.
        let offer = self.offer(username, &secret[..])?;
        let blob = self.cipher.seal(username, Slot::Pending, &secret[..])?;
        store::put_pending(&self.pool, username, &blob, to_i64(now)).await?;
        Ok(offer)
    }

    /// The offer of the user's current pending enrollment again (to redisplay the QR code
    /// after a mistyped confirmation code). Err(NoPendingEnrollment) if missing or expired.
    pub async fn pending_offer(
        &self,
        username: &str,
        now: u64,
    ) -> Result<EnrollmentOffer, TotpError> {
        let row = store::load(&self.pool, username).await?;
        let Some((pending, created)) = row.and_then(|r| r.pending.zip(r.pending_created_at)) else {
            return Err(TotpError::NoPendingEnrollment);
        };
        if self.expired(created, now) {
            return Err(TotpError::NoPendingEnrollment);
        }
        let secret = self.cipher.open(username, Slot::Pending, &pending)?;
        self.offer(username, &secret)
    }

    /// The pending secret becomes active only when `code` is valid for it (±1 step) and the
    /// pending enrollment is younger than `enrollment_ttl`. Old backup codes are replaced by
    /// ten new ones. `last_step` is set to the matched step, so the confirming code cannot be
    /// replayed at sign-in.
    pub async fn confirm_enrollment(
        &self,
        username: &str,
        code: &SecretString,
        now: u64,
    ) -> Result<BackupCodes, TotpError> {
        let _turn = self.checked_turn(username).await?;
        let row = store::load(&self.pool, username).await?;
        let Some((pending, created)) = row.and_then(|r| r.pending.zip(r.pending_created_at)) else {
            return Err(TotpError::NoPendingEnrollment);
        };
        if self.expired(created, now) {
            store::clear_pending(&self.pool, username, &pending, to_i64(now)).await?;
            return Err(TotpError::NoPendingEnrollment);
        }
        let matched = self.match_pending(username, &pending, code, now);
        self.record(username, &matched);
        let (secret, step) = matched?;

        let mut shown = Vec::with_capacity(backup::COUNT);
        let mut plain = Vec::with_capacity(backup::COUNT);
        for _ in 0..backup::COUNT {
            let code = backup::generate()?;
            shown.push(SecretString::from(backup::display(&code).to_string()));
            plain.push(code);
        }
        let hashes = self
            .blocking(move || {
                plain
                    .iter()
                    .map(|c| backup::hash(c))
                    .collect::<Result<Vec<String>, TotpError>>()
            })
            .await??;
        let active = self.cipher.seal(username, Slot::Active, &secret)?;
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        if !store::activate(
            &self.pool,
            username,
            &pending,
            &active,
            step,
            to_i64(now),
            &hashes,
        )
        .await?
        {
            return Err(TotpError::NoPendingEnrollment);
        }
        Ok(BackupCodes(shown))
    }

    /// A 6-digit code against the active secret (replay-protected), or a backup code (each
    /// works once).
    #[tracing::instrument(name = "totp_verify", skip_all)]
    pub async fn verify(
        &self,
        username: &str,
        code: &SecretString,
        now: u64,
    ) -> Result<Verified, TotpError> {
        let _turn = self.checked_turn(username).await?;
        let result = self.verify_unlimited(username, code, now).await;
        self.record(username, &result);
        result
    }

    /// Same proof rules as `verify`; on success deletes the enrollment and backup codes.
    #[tracing::instrument(name = "totp_disable", skip_all)]
    pub async fn disable(
        &self,
        username: &str,
        code: &SecretString,
        now: u64,
    ) -> Result<(), TotpError> {
        self.verify(username, code, now).await?;
        store::delete(&self.pool, username).await?;
        Ok(())
    }

    /// Admin reset: deletes everything for the user; Ok(true) if anything was there.
    pub async fn reset(&self, username: &str) -> Result<bool, TotpError> {
        Ok(store::delete(&self.pool, username).await? > 0)
    }

    /// Drops attempt-limit entries whose windows passed (called by a periodic pruner).
    pub fn purge_expired(&self, now: Instant) -> usize {
        self.lockout.purge_expired(now, usize::MAX)
    }

    /// The user's turn, once the attempt limit lets them try. Checked under the turn, so a
    /// burst of codes sees the failures recorded by the ones before it.
    async fn checked_turn(&self, username: &str) -> Result<Turn<'_>, TotpError> {
        let turn = self.turns.take(username).await;
        self.check_attempts(username)?;
        Ok(turn)
    }

    fn check_attempts(&self, username: &str) -> Result<(), TotpError> {
        match self.lockout.check(username, Instant::now()) {
            LockState::Open => Ok(()),
            LockState::Locked { remaining } => Err(TotpError::TooManyAttempts {
                retry_after: remaining,
            }),
        }
    }

    /// Wrong and replayed codes count against the limit; a success clears the window.
    fn record<T>(&self, username: &str, result: &Result<T, TotpError>) {
        match result {
            Ok(_) => self.lockout.record_success(username, Instant::now()),
            Err(TotpError::InvalidCode | TotpError::Replayed) => {
                self.lockout.record_failure(username, Instant::now());
            }
            Err(_) => {}
        }
    }

    async fn verify_unlimited(
        &self,
        username: &str,
        code: &SecretString,
        now: u64,
    ) -> Result<Verified, TotpError> {
        let row = store::load(&self.pool, username).await?;
        let Some((active, last_step)) = row.and_then(|r| r.active.map(|a| (a, r.last_step))) else {
            return Err(TotpError::NotEnrolled);
        };
        match codes::classify(code.expose_secret()) {
            Input::Invalid => Err(TotpError::InvalidCode),
            Input::Totp(code) => {
                let secret = self.cipher.open(username, Slot::Active, &active)?;
                // A negative value can only come from outside; it guards nothing extra.
                let last = u64::try_from(last_step).unwrap_or(0);
                match codes::match_code(&secret, &code, now, Some(last))? {
                    Match::Fresh(step) => {
                        let step = i64::try_from(step).unwrap_or(i64::MAX);
                        if store::advance_step(&self.pool, username, &active, step, to_i64(now))
                            .await?
                        {
                            Ok(Verified {
                                method: VerifyMethod::Totp,
                            })
                        } else {
                            Err(TotpError::Replayed)
                        }
                    }
                    Match::Replayed => Err(TotpError::Replayed),
                    Match::None => Err(TotpError::InvalidCode),
                }
            }
            Input::Backup(code) => self.use_backup_code(username, code, now).await,
        }
    }

    async fn use_backup_code(
        &self,
        username: &str,
        code: Zeroizing<String>,
        now: u64,
    ) -> Result<Verified, TotpError> {
        let candidates = store::unused_codes(&self.pool, username).await?;
        if candidates.is_empty() {
            return Err(TotpError::InvalidCode);
        }
        let (found, candidates) = self
            .blocking(move || {
                let found = backup::find(&code, &candidates, |(_, phc)| phc.as_str());
                (found, candidates)
            })
            .await?;
        let Some((slot, hash)) = found.and_then(|i| candidates.get(i)) else {
            return Err(TotpError::InvalidCode);
        };
        if !store::use_code(&self.pool, username, *slot, hash, to_i64(now)).await? {
            // Used by a concurrent request between the read and the update.
            return Err(TotpError::Replayed);
        }
        let remaining = store::count_unused(&self.pool, username).await?;
        Ok(Verified {
            method: VerifyMethod::BackupCode {
                remaining: u32::try_from(remaining).unwrap_or(0),
            },
        })
    }

    /// The pending secret and the step `code` matched. Only a TOTP code confirms.
    fn match_pending(
        &self,
        username: &str,
        pending: &[u8],
        code: &SecretString,
        now: u64,
    ) -> Result<(Zeroizing<Vec<u8>>, u64), TotpError> {
        let Input::Totp(code) = codes::classify(code.expose_secret()) else {
            return Err(TotpError::InvalidCode);
        };
        let secret = self.cipher.open(username, Slot::Pending, pending)?;
        match codes::match_code(&secret, &code, now, None)? {
            Match::Fresh(step) => Ok((secret, step)),
            Match::Replayed | Match::None => Err(TotpError::InvalidCode),
        }
    }

    fn offer(&self, username: &str, secret: &[u8]) -> Result<EnrollmentOffer, TotpError> {
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(STEP_SECS)
            .with_secret(secret.to_vec())
            .with_account_name(username)
            .with_issuer(Some(self.settings.issuer.as_str()))
            .build()
            .map_err(|_| {
                TotpError::Crypto("the issuer or username cannot go into an otpauth URI")
            })?;
        let uri = SecretString::from(
            totp.to_url()
                .map_err(|_| TotpError::Crypto("cannot build the otpauth URI"))?,
        );
        let qr_svg = qr::svg(uri.expose_secret())?;
        Ok(EnrollmentOffer {
            secret_base32: SecretString::from(totp.secret().to_base32()),
            otpauth_uri: uri,
            qr_svg,
        })
    }

    /// Whether a pending enrollment created at `created` is too old to confirm at `now`.
    fn expired(&self, created: i64, now: u64) -> bool {
        let age = now.saturating_sub(u64::try_from(created).unwrap_or(0));
        age >= self.settings.enrollment_ttl.as_secs()
    }

    fn to_status(&self, row: store::StatusRow) -> TotpStatus {
        let now = unix_now();
        let pending = row
            .pending_created_at
            .is_some_and(|t| !self.expired(t, now));
        TotpStatus {
            username: row.username,
            enabled: row.enabled,
            enabled_at: row.enabled_at,
            pending,
            backup_codes_left: u32::try_from(row.backup_codes_left).unwrap_or(0),
            last_used_at: row.last_used_at,
        }
    }

    /// Runs argon2 work on the blocking pool, at most one job per core at a time.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, TotpError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| TotpError::Crypto("backup code hashing is shut down"))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| TotpError::Crypto("backup code hashing failed"))
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One attempt per username at a time. An entry lives while a request for that name holds
/// or waits for it, so the map never holds more names than requests in flight.
#[derive(Default)]
struct UserTurns {
    map: Mutex<HashMap<String, TurnEntry>>,
}

struct TurnEntry {
    lock: Arc<tokio::sync::Mutex<()>>,
    holders: usize,
}

struct Turn<'a> {
    turns: &'a UserTurns,
    username: String,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl UserTurns {
    async fn take(&self, username: &str) -> Turn<'_> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = map.entry(username.to_owned()).or_insert_with(|| TurnEntry {
                lock: Arc::default(),
                holders: 0,
            });
            entry.holders += 1;
            Arc::clone(&entry.lock)
        };
        // Created before waiting, so a cancelled wait still gives its place back.
        let mut turn = Turn {
            turns: self,
            username: username.to_owned(),
            _guard: None,
        };
        turn._guard = Some(lock.lock_owned().await);
        turn
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self._guard = None;
        let mut map = self
            .turns
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get_mut(&self.username) {
            entry.holders = entry.holders.saturating_sub(1);
            if entry.holders == 0 {
                map.remove(&self.username);
            }
        }
    }
}
