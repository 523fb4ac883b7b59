//! Session tokens: HS256 JWTs, recorded in sqlite so they can be revoked before they expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use thiserror::Error;

use crate::keys::Keys;

const ISSUER: &str = "passgate";
const AUDIENCE: &str = "passgate";

/// What a token lets its holder do. Each handler names the stages it accepts: the pending
/// stages only reach the code step (or enrollment), `Authenticated` only the password pages
/// and API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Authenticated,
    /// The password was right; the portal's own TOTP code is next.
    TotpPending,
    /// The password was right; TrueNAS waits for the user's TrueNAS-side OTP code.
    NasOtpPending,
    /// `totp.mode = required` and the user has no TOTP yet: only enrollment is open.
    TotpEnrollment,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Authenticated => "authenticated",
            Stage::TotpPending => "totp_pending",
            Stage::NasOtpPending => "nas_otp_pending",
            Stage::TotpEnrollment => "totp_enrollment",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub stage: Stage,
    /// The user's full name, for display only.
    #[serde(default)]
    pub name: String,
    /// May review the audit log (decided at sign-in from `admin.groups` / `admin.users`).
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Error)]
pub enum SessionError {
    /// Missing, malformed, forged, expired, wrong algorithm, wrong stage or revoked: callers
    /// treat all of these alike.
    #[error("session invalid: {0}")]
    Invalid(&'static str),
    #[error("session store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("session token: {0}")]
    Token(String),
}

pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    pool: SqlitePool,
}

pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Sessions {
    pub fn new(keys: &Arc<Keys>, ttl: Duration, pool: SqlitePool) -> Self {
        // Only HS256: a token claiming `none` or any other algorithm fails validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(keys.jwt_key()),
            decoding: DecodingKey::from_secret(keys.jwt_key()),
            validation,
            ttl,
            pool,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub async fn issue(
        &self,
        username: &str,
        full_name: &str,
        stage: Stage,
        admin: bool,
    ) -> Result<Issued, SessionError> {
        self.issue_for(username, full_name, stage, admin, self.ttl)
            .await
    }

    /// Like `issue`, with its own lifetime (short for the pending stages).
    pub async fn issue_for(
        &self,
        username: &str,
        full_name: &str,
        stage: Stage,
        admin: bool,
        ttl: Duration,
    ) -> Result<Issued, SessionError> {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let iat = now();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: username.into(),
            iat,
            exp: iat + ttl.as_secs(),
            jti: hex::encode(id),
            stage,
            name: full_name.into(),
            admin,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| SessionError::Token(e.to_string()))?;
        // Expired rows are useless; clearing them here keeps the table small without a timer.
        sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(iat as i64 - 60)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (jti, username, stage, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&claims.jti)
        .bind(&claims.sub)
        .bind(stage.as_str())
        .bind(claims.iat as i64)
        .bind(claims.exp as i64)
        .execute(&self.pool)
        .await?;
        Ok(Issued { token, claims })
    }

    /// Accepts a token only with a valid signature, issuer, audience and expiry, the expected
    /// stage, and a session row that has not been revoked.
    pub async fn check(&self, token: &str, stage: Stage) -> Result<Claims, SessionError> {
        self.check_any(token, &[stage]).await
    }

    /// Like `check`, accepting any of `stages`.
    pub async fn check_any(&self, token: &str, stages: &[Stage]) -> Result<Claims, SessionError> {
        if token.is_empty() || token.len() > 4096 {
            return Err(SessionError::Invalid("malformed"));
        }
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| SessionError::Invalid("signature, algorithm or claims"))?;
        let claims = data.claims;
        if !stages.contains(&claims.stage) {
            return Err(SessionError::Invalid("wrong stage"));
        }
        let row: Option<(Option<i64>, String)> =
            sqlx::query_as("SELECT revoked_at, username FROM sessions WHERE jti = ?")
                .bind(&claims.jti)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some((None, username)) if username == claims.sub => Ok(claims),
            Some((Some(_), _)) => Err(SessionError::Invalid("revoked")),
            _ => Err(SessionError::Invalid("unknown session")),
        }
    }

    pub async fn revoke(&self, jti: &str) -> Result<(), SessionError> {
        sqlx::query("UPDATE sessions SET revoked_at = ? WHERE jti = ? AND revoked_at IS NULL")
            .bind(now() as i64)
            .bind(jti)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes every live session of a user; returns how many there were.
    pub async fn revoke_user(&self, username: &str) -> Result<u64, SessionError> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL",
        )
        .bind(now() as i64)
        .bind(username)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use secrecy::SecretString;

    async fn sessions() -> (Sessions, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = crate::db::open(&dir.path().join("t.db")).await.expect("db");
        let keys = Arc::new(Keys::derive(&SecretString::from("k".repeat(40))));
        (Sessions::new(&keys, Duration::from_secs(600), pool), dir)
    }

    /// A fresh full session for alice.
    async fn signed_in(s: &Sessions) -> Issued {
        s.issue("alice", "Alice", Stage::Authenticated, false)
            .await
            .expect("issue")
    }

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// `token` with one claim rewritten and the original header and signature kept.
    fn with_claim(token: &str, claim: &str, value: &str) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).expect("b64")).expect("json");
        claims[claim] = value.into();
        format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(claims.to_string()),
            parts[2]
        )
    }

    /// `claims` signed with `algorithm` under a key derived from `secret`.
    fn signed_with(algorithm: Algorithm, claims: &Claims, secret: &str) -> String {
        let keys = Keys::derive(&SecretString::from(secret.to_owned()));
        encode(
            &Header::new(algorithm),
            claims,
            &EncodingKey::from_secret(keys.jwt_key()),
        )
        .expect("encode")
    }

    #[tokio::test]
    async fn issue_check_revoke() {
        let (s, _d) = sessions().await;
        let a = signed_in(&s).await;
        let b = signed_in(&s).await;
        assert_eq!(
            s.check(&a.token, Stage::Authenticated)
                .await
                .expect("valid")
                .sub,
            "alice"
        );
        s.revoke(&a.claims.jti).await.expect("revoke");
        assert!(s.check(&a.token, Stage::Authenticated).await.is_err());
        assert!(s.check(&b.token, Stage::Authenticated).await.is_ok());
        assert_eq!(s.revoke_user("alice").await.expect("revoke all"), 1);
        assert!(s.check(&b.token, Stage::Authenticated).await.is_err());
    }

    #[tokio::test]
    async fn a_token_is_accepted_only_in_its_stage() {
        let (s, _d) = sessions().await;
        let pending = s
            .issue_for(
                "alice",
                "Alice",
                Stage::TotpPending,
                false,
                Duration::from_secs(300),
            )
            .await
            .expect("issue");
        assert!(pending.claims.exp - pending.claims.iat <= 300);
        assert!(s.check(&pending.token, Stage::Authenticated).await.is_err());
        assert!(s.check(&pending.token, Stage::NasOtpPending).await.is_err());
        assert!(s
            .check_any(
                &pending.token,
                &[Stage::Authenticated, Stage::TotpEnrollment]
            )
            .await
            .is_err());
        assert!(s.check(&pending.token, Stage::TotpPending).await.is_ok());
        // The stage is inside the signature: rewriting it breaks the token.
        let promoted = with_claim(&pending.token, "stage", "authenticated");
        assert!(s.check(&promoted, Stage::Authenticated).await.is_err());
    }

    #[tokio::test]
    async fn forged_and_none_algorithm_tokens_are_refused() {
        let (s, _d) = sessions().await;
        let issued = signed_in(&s).await;
        let parts: Vec<&str> = issued.token.split('.').collect();
        // alg "none" with the same claims and no signature.
        let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let none = format!("{none_header}.{}.", parts[1]);
        assert!(s.check(&none, Stage::Authenticated).await.is_err());
        // Claims changed to another user, original signature kept.
        let forged = with_claim(&issued.token, "sub", "root");
        assert!(s.check(&forged, Stage::Authenticated).await.is_err());
        // Signed with another key.
        let token = signed_with(Algorithm::HS256, &issued.claims, &"z".repeat(40));
        assert!(s.check(&token, Stage::Authenticated).await.is_err());
        // HS512 with the right key is still refused: the algorithm is pinned.
        let hs512 = signed_with(Algorithm::HS512, &issued.claims, &"k".repeat(40));
        assert!(s.check(&hs512, Stage::Authenticated).await.is_err());
        assert!(s.check("garbage", Stage::Authenticated).await.is_err());
    }
}
