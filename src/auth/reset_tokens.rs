//! Reset tokens (migrations/0005_reset.sql, 0007_reset_claim_lease.sql): 32 random bytes,
//! base64url, mailed once and stored only as their HMAC. Every change that could race (using a token, cancelling it, a
//! newer one replacing it) is one statement whose affected-row count decides who won.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;
use subtle::ConstantTimeEq;

use crate::keys::Keys;

/// base64url without padding of 32 bytes.
const TOKEN_CHARS: usize = 43;

/// Milliseconds since the Unix epoch (what the table stores).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A token in clear, as it goes into the mail. Only `Issued` holds one, and only until the
/// mail is written.
pub struct Issued {
    pub token: SecretString,
    pub expires_ms: i64,
    mac: [u8; 32],
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// A token held by one confirmation: nobody else can use it until it is spent or released.
#[derive(Debug)]
pub struct Claim {
    pub username: String,
    /// When the link was made: a password changed after it (in TrueNAS itself, say) voids it.
    pub created_ms: i64,
    /// When an earlier confirmation with this link last sent a new password to TrueNAS
    /// whose answer never came: it may have been applied.
    pub sent_ms: Option<i64>,
    mac: [u8; 32],
}

pub struct ResetTokens {
    pool: SqlitePool,
    keys: Arc<Keys>,
    ttl: Duration,
    lease: Duration,
}

impl ResetTokens {
    /// `lease`: how long one confirmation may hold a link. A claim whose confirmation was
    /// dropped (client gone, process killed) frees itself after it.
    pub fn new(pool: SqlitePool, keys: Arc<Keys>, ttl: Duration, lease: Duration) -> Self {
        Self {
            pool,
            keys,
            ttl,
            lease,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The MAC of a well-formed token; `None` for anything else (no query is made for it).
    fn mac_of(&self, token: &str) -> Option<[u8; 32]> {
        if token.len() != TOKEN_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        (bytes.len() == 32).then(|| self.keys.reset_token_mac(&bytes))
    }

    /// A new token for `username`, replacing (and so voiding) any earlier one.
    pub async fn issue(&self, username: &str, now_ms: i64) -> Result<Issued, sqlx::Error> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let mac = self.keys.reset_token_mac(&bytes);
        let token = SecretString::from(URL_SAFE_NO_PAD.encode(bytes));
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_ms = now_ms.saturating_add(ttl_ms);
        sqlx::query(
            "INSERT INTO reset_tokens (username, mac, created_ms, expires_ms) \
             VALUES (?, ?, ?, ?) \
             ON CONFLICT (username) DO UPDATE SET mac = excluded.mac, \
             created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, \
             claimed_until_ms = 0, sent_ms = NULL",
        )
        .bind(username)
        .bind(&mac[..])
        .bind(now_ms)
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(Issued {
            token,
            expires_ms,
            mac,
        })
    }

    /// Removes a token whose mail could not be sent: a link nobody received must not stay
    /// valid.
    pub async fn discard(&self, username: &str, issued: &Issued) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM reset_tokens WHERE username = ? AND mac = ?")
            .bind(username)
            .bind(&issued.mac[..])
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// The user a valid, unclaimed token belongs to, changing nothing: opening a link
    /// (as mail scanners do, several times) consumes nothing.
    pub async fn peek(&self, token: &str, now_ms: i64) -> Result<Option<String>, sqlx::Error> {
        self.owner_of_valid(
            "SELECT username, mac FROM reset_tokens \
             WHERE mac = ? AND expires_ms > ? AND claimed_until_ms <= ?",
            token,
            now_ms,
        )
        .await
    }

    /// Runs `sql` on the row of a valid, unclaimed `token` (it binds the token's MAC, then
    /// `now_ms` twice, and returns username and MAC) and answers whose token it is.
    async fn owner_of_valid(
        &self,
        sql: &'static str,
        token: &str,
        now_ms: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        let Some(mac) = self.mac_of(token) else {
            return Ok(None);
        };
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(sql)
            .bind(&mac[..])
            .bind(now_ms)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|(username, stored)| same(&stored, &mac).then_some(username)))
    }

    /// Takes the token for one confirmation. `None`: unknown, expired, cancelled, used, or
    /// being used right now (one answer for all).
    pub async fn claim(&self, token: &str, now_ms: i64) -> Result<Option<Claim>, sqlx::Error> {
        let Some(mac) = self.mac_of(token) else {
            return Ok(None);
        };
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let row: Option<(String, Vec<u8>, i64, Option<i64>)> = sqlx::query_as(
            "UPDATE reset_tokens SET claimed_until_ms = ? \
             WHERE mac = ? AND expires_ms > ? AND claimed_until_ms <= ? \
             RETURNING username, mac, created_ms, sent_ms",
        )
        .bind(now_ms.saturating_add(lease_ms))
        .bind(&mac[..])
        .bind(now_ms)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(username, stored, created_ms, sent_ms)| {
            same(&stored, &mac).then_some(Claim {
                username,
                created_ms,
                sent_ms,
                mac,
            })
        }))
    }

    /// Notes, before the call, that this confirmation hands a new password to TrueNAS. It
    /// stays noted when the answer is lost, for the next try (see [`Claim::sent_ms`]).
    pub async fn mark_sent(&self, claim: &Claim, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE reset_tokens SET sent_ms = ? WHERE mac = ?")
            .bind(now_ms)
            .bind(&claim.mac[..])
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// The confirmation was refused for a reason the user can fix (policy, TrueNAS' rules,
    /// a mistyped code): the link works again. `answered`: TrueNAS refused the password
    /// sent, so no earlier send is still in doubt.
    pub async fn release(&self, claim: Claim, answered: bool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE reset_tokens SET claimed_until_ms = 0, \
             sent_ms = CASE WHEN ? THEN NULL ELSE sent_ms END WHERE mac = ?",
        )
        .bind(answered)
        .bind(&claim.mac[..])
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// The password was changed: the token is gone.
    pub async fn spend(&self, claim: Claim) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM reset_tokens WHERE mac = ?")
            .bind(&claim.mac[..])
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// "This was not me": voids a valid token; answers whose it was.
    pub async fn cancel(&self, token: &str, now_ms: i64) -> Result<Option<String>, sqlx::Error> {
        self.owner_of_valid(
            "DELETE FROM reset_tokens \
             WHERE mac = ? AND expires_ms > ? AND claimed_until_ms <= ? \
             RETURNING username, mac",
            token,
            now_ms,
        )
        .await
    }

    /// Any password change voids the user's outstanding link. Answers how many were voided.
    pub async fn void_user(&self, username: &str) -> Result<u64, sqlx::Error> {
        sqlx::query("DELETE FROM reset_tokens WHERE username = ?")
            .bind(username)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
    }

    /// Takes the user's mail slot when the last reset mail is at least `interval` old:
    /// false means a mail went out too recently. One statement, so two requests at once
    /// cannot both send.
    pub async fn take_mail_slot(
        &self,
        username: &str,
        now_ms: i64,
        interval: Duration,
    ) -> Result<bool, sqlx::Error> {
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "INSERT INTO reset_mail_sent (username, sent_ms) VALUES (?, ?) \
             ON CONFLICT (username) DO UPDATE SET sent_ms = excluded.sent_ms \
             WHERE reset_mail_sent.sent_ms <= ?",
        )
        .bind(username)
        .bind(now_ms)
        .bind(now_ms.saturating_sub(interval_ms))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the slot back after a mail that could not be sent, so the user may try again
    /// at once rather than wait for a mail that never came.
    pub async fn return_mail_slot(&self, username: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM reset_mail_sent WHERE username = ? AND sent_ms = ?")
            .bind(username)
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Drops expired tokens and mail slots older than `interval` (a periodic pruner).
    pub async fn purge(&self, now_ms: i64, interval: Duration) -> Result<u64, sqlx::Error> {
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let tokens = sqlx::query("DELETE FROM reset_tokens WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let slots = sqlx::query("DELETE FROM reset_mail_sent WHERE sent_ms <= ?")
            .bind(now_ms.saturating_sub(interval_ms))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(tokens + slots)
    }
}

/// The row was found by its MAC; comparing again in constant time costs nothing and keeps
/// the promise even if the lookup ever changes.
fn same(stored: &[u8], mac: &[u8; 32]) -> bool {
    bool::from(stored.ct_eq(&mac[..]))
}

/// For tests and the mail: the token text.
pub fn token_text(issued: &Issued) -> &str {
    issued.token.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE_SECS: u64 = 30;

    async fn tokens(ttl_secs: u64) -> (ResetTokens, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = crate::db::open(&dir.path().join("t.db")).await.expect("db");
        let keys = Arc::new(Keys::derive(&SecretString::from("k".repeat(40))));
        (
            ResetTokens::new(
                pool,
                keys,
                Duration::from_secs(ttl_secs),
                Duration::from_secs(LEASE_SECS),
            ),
            dir,
        )
    }

    /// The claim on a link that must be free at `now_ms`; `why` it must be.
    async fn claimed(t: &ResetTokens, text: &str, now_ms: i64, why: &str) -> Claim {
        t.claim(text, now_ms).await.expect("claim").expect(why)
    }

    #[tokio::test]
    async fn a_token_works_once_and_peeking_consumes_nothing() {
        let (t, _dir) = tokens(900).await;
        let issued = t.issue("alice", 1_000).await.expect("issue");
        let text = token_text(&issued).to_string();
        assert_eq!(text.len(), TOKEN_CHARS);
        for _ in 0..3 {
            assert_eq!(
                t.peek(&text, 2_000).await.expect("peek").as_deref(),
                Some("alice")
            );
        }
        let claim = claimed(&t, &text, 2_000, "valid").await;
        assert!(
            t.claim(&text, 2_000).await.expect("claim").is_none(),
            "held"
        );
        assert!(t.peek(&text, 2_000).await.expect("peek").is_none(), "held");
        t.release(claim, false).await.expect("release");
        let claim = claimed(&t, &text, 2_000, "released").await;
        t.spend(claim).await.expect("spend");
        assert!(
            t.claim(&text, 2_000).await.expect("claim").is_none(),
            "spent"
        );
    }

    #[tokio::test]
    async fn a_dropped_confirmation_frees_the_link_after_its_lease() {
        let (t, _dir) = tokens(900).await;
        let text = token_text(&t.issue("alice", 0).await.expect("issue")).to_string();
        let lease_ms = i64::try_from(LEASE_SECS * 1000).expect("small");
        // Claimed, then never released nor spent: the request was dropped.
        let claim = claimed(&t, &text, 1_000, "valid").await;
        assert_eq!(claim.sent_ms, None);
        t.mark_sent(&claim, 1_500).await.expect("mark");
        drop(claim);
        let held = 1_000 + lease_ms - 1;
        assert!(t.claim(&text, held).await.expect("claim").is_none());
        assert!(t.peek(&text, held).await.expect("peek").is_none());
        assert!(t.cancel(&text, held).await.expect("cancel").is_none());
        let claim = claimed(&t, &text, held + 1, "the lease ran out").await;
        assert_eq!(claim.sent_ms, Some(1_500), "the lost attempt is remembered");
        t.release(claim, false).await.expect("release");
        let claim = claimed(&t, &text, held + 2, "free").await;
        assert_eq!(claim.sent_ms, Some(1_500), "still in doubt");
        t.release(claim, true).await.expect("release");
        let claim = claimed(&t, &text, held + 3, "free").await;
        assert_eq!(claim.sent_ms, None, "TrueNAS answered");
        // A newer link starts afresh.
        let newer = token_text(&t.issue("alice", 2_000).await.expect("issue")).to_string();
        let claim = claimed(&t, &newer, 2_000, "valid").await;
        assert_eq!(claim.sent_ms, None);
    }

    #[tokio::test]
    async fn expiry_newer_tokens_cancel_and_password_changes_void() {
        let (t, _dir) = tokens(60).await;
        let old = t.issue("alice", 0).await.expect("issue");
        let old = token_text(&old).to_string();
        assert!(t.peek(&old, 59_999).await.expect("peek").is_some());
        assert!(
            t.peek(&old, 60_000).await.expect("peek").is_none(),
            "expired"
        );
        let first = token_text(&t.issue("bob", 0).await.expect("issue")).to_string();
        let second = token_text(&t.issue("bob", 1).await.expect("issue")).to_string();
        assert!(t.peek(&first, 2).await.expect("peek").is_none(), "replaced");
        assert_eq!(
            t.cancel(&second, 2).await.expect("cancel").as_deref(),
            Some("bob")
        );
        assert!(
            t.peek(&second, 2).await.expect("peek").is_none(),
            "cancelled"
        );
        assert!(t.cancel(&second, 2).await.expect("cancel").is_none());
        let carol = token_text(&t.issue("carol", 0).await.expect("issue")).to_string();
        assert_eq!(t.void_user("carol").await.expect("void"), 1);
        assert!(t.claim(&carol, 1).await.expect("claim").is_none(), "voided");
    }

    #[tokio::test]
    async fn forged_and_malformed_tokens_find_nothing() {
        let (t, _dir) = tokens(900).await;
        let real = token_text(&t.issue("alice", 0).await.expect("issue")).to_string();
        let mut forged = real.clone().into_bytes();
        forged[0] = if forged[0] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        for bad in [forged.as_str(), "", "short", &"A".repeat(44), &real[..42]] {
            assert!(t.peek(bad, 1).await.expect("peek").is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn only_the_mac_is_stored() {
        let (t, dir) = tokens(900).await;
        let issued = t.issue("alice", 0).await.expect("issue");
        let raw = URL_SAFE_NO_PAD.decode(token_text(&issued)).expect("base64");
        let stored: Vec<u8> = sqlx::query_scalar("SELECT mac FROM reset_tokens")
            .fetch_one(&t.pool)
            .await
            .expect("row");
        assert_ne!(stored, raw);
        t.pool.close().await;
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
            let text = token_text(&issued).as_bytes();
            assert!(!bytes.windows(raw.len()).any(|w| w == raw.as_slice()));
            assert!(!bytes.windows(text.len()).any(|w| w == text));
        }
    }

    #[tokio::test]
    async fn one_mail_per_interval() {
        let (t, _dir) = tokens(900).await;
        let i = Duration::from_secs(600);
        assert!(t.take_mail_slot("alice", 0, i).await.expect("slot"));
        assert!(!t.take_mail_slot("alice", 599_999, i).await.expect("slot"));
        assert!(t.take_mail_slot("alice", 600_000, i).await.expect("slot"));
        t.return_mail_slot("alice", 600_000).await.expect("return");
        assert!(t.take_mail_slot("alice", 600_001, i).await.expect("slot"));
    }
}
