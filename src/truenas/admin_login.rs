//! Logging one of the portal's own connections in with the API key.
//!
//! Every call here is unauthenticated, so every one is taken from the [`UnauthBudget`] first:
//! a refused budget is a quick `RateLimited`, never a call that TrueNAS would answer after
//! sleeping 1–10 s.

use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::budget::UnauthBudget;
use super::rpc_conn::RpcConnection;
use super::scram::{api_key_secret, KeyCache, ScramClient};
use super::NasError;
use crate::config::AdminAuthChoice;

/// How a connection was logged in; `check-config --connect` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `auth.login_ex` `SCRAM` (26+): the key itself never crossed the wire.
    Scram,
    /// `auth.login_ex` `API_KEY_PLAIN` (25.04+).
    ApiKeyPlain,
    /// `auth.login_with_api_key` (no `api_user` configured; removed from the public API in 27).
    LoginWithApiKey,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Scram => "SCRAM-SHA-512",
            Mechanism::ApiKeyPlain => "API_KEY_PLAIN",
            Mechanism::LoginWithApiKey => "auth.login_with_api_key",
        }
    }

    /// Unauthenticated `auth.login_ex` calls one login costs.
    fn calls(self) -> usize {
        match self {
            Mechanism::Scram => 2,
            Mechanism::ApiKeyPlain | Mechanism::LoginWithApiKey => 1,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Mechanism::LoginWithApiKey => "auth.login_with_api_key",
            Mechanism::Scram | Mechanism::ApiKeyPlain => "auth.login_ex",
        }
    }
}

pub struct AdminLogin {
    api_key: SecretString,
    api_user: Option<String>,
    choice: AdminAuthChoice,
    /// Decided on the first login and kept: asking `auth.mechanism_choices` again would spend
    /// budget on every reconnect for an answer that does not change while TrueNAS runs.
    decided: Mutex<Option<Mechanism>>,
    /// SCRAM's PBKDF2 result (500,000 rounds on TrueNAS), so a reconnect does not pay again.
    scram_keys: Arc<KeyCache>,
}

impl AdminLogin {
    pub fn new(api_key: SecretString, api_user: Option<String>, choice: AdminAuthChoice) -> Self {
        Self {
            api_key,
            api_user,
            choice,
            decided: Mutex::new(None),
            scram_keys: Arc::new(KeyCache::default()),
        }
    }

    /// The mechanism the last login used, once one has.
    pub fn mechanism(&self) -> Option<Mechanism> {
        *self.decided.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs `conn` in. `reserve_logins` is how many logins' worth of the budget this caller
    /// must leave to others (see `pool.rs`).
    pub async fn login(
        &self,
        conn: &RpcConnection,
        budget: &UnauthBudget,
        reserve_logins: usize,
    ) -> Result<Mechanism, NasError> {
        let mechanism = self.choose(conn, budget).await?;
        budget
            .take(
                mechanism.method(),
                mechanism.calls(),
                reserve_logins * mechanism.calls(),
            )
            .map_err(|wait| {
                NasError::BudgetSpent(format!(
                    "passgate's own budget of unauthenticated TrueNAS calls is spent; next login in {}s",
                    wait.as_secs() + 1
                ))
            })?;
        match mechanism {
            Mechanism::Scram => self.login_scram(conn).await?,
            Mechanism::ApiKeyPlain => self.login_plain(conn).await?,
            Mechanism::LoginWithApiKey => self.login_legacy(conn).await?,
        }
        *self.decided.lock().unwrap_or_else(|e| e.into_inner()) = Some(mechanism);
        Ok(mechanism)
    }

    async fn choose(
        &self,
        conn: &RpcConnection,
        budget: &UnauthBudget,
    ) -> Result<Mechanism, NasError> {
        if let Some(known) = self.mechanism() {
            return Ok(known);
        }
        Ok(match (self.choice, &self.api_user) {
            (AdminAuthChoice::Plain, Some(_)) => Mechanism::ApiKeyPlain,
            (AdminAuthChoice::Plain | AdminAuthChoice::Auto, None) => Mechanism::LoginWithApiKey,
            // Config validation refuses scram without api_user; stay safe if it is bypassed.
            (AdminAuthChoice::Scram, None) => {
                return Err(NasError::AdminAuth(String::from(
                    "truenas.auth = \"scram\" needs truenas.api_user",
                )))
            }
            (AdminAuthChoice::Scram, Some(_)) => Mechanism::Scram,
            (AdminAuthChoice::Auto, Some(_)) => {
                budget
                    .take("auth.mechanism_choices", 1, 0)
                    .map_err(|wait| {
                        NasError::RateLimited(format!(
                        "passgate's own budget for auth.mechanism_choices is spent; next in {}s",
                        wait.as_secs() + 1
                    ))
                    })?;
                match conn.call("auth.mechanism_choices", json!([])).await {
                    Ok(Value::Array(choices)) if choices.iter().any(|c| c == "SCRAM") => {
                        Mechanism::Scram
                    }
                    Ok(_) | Err(NasError::MethodNotFound(_)) => Mechanism::ApiKeyPlain,
                    Err(e) => return Err(admin_login_error(e)),
                }
            }
        })
    }

    async fn login_plain(&self, conn: &RpcConnection) -> Result<(), NasError> {
        let owner = self.api_user.as_deref().unwrap_or_default();
        let answer = login_ex(
            conn,
            json!({
                "mechanism": "API_KEY_PLAIN",
                "username": owner,
                "api_key": self.api_key.expose_secret(),
                "login_options": {"user_info": false}
            }),
        )
        .await?;
        match response_type(&answer) {
            Some("SUCCESS") => Ok(()),
            Some("EXPIRED") => Err(NasError::AdminAuth(String::from(
                "the API key is expired or was revoked (TrueNAS revokes keys sent without TLS)",
            ))),
            Some(other) => Err(NasError::AdminAuth(format!(
                "auth.login_ex API_KEY_PLAIN answered {other}; check truenas.api_key and that truenas.api_user owns it"
            ))),
            None => Err(NasError::Protocol(String::from(
                "auth.login_ex answer without response_type",
            ))),
        }
    }

    async fn login_legacy(&self, conn: &RpcConnection) -> Result<(), NasError> {
        match conn
            .call("auth.login_with_api_key", json!([self.api_key.expose_secret()]))
            .await
        {
            Ok(Value::Bool(true)) => Ok(()),
            Ok(_) => Err(NasError::AdminAuth(String::from(
                "auth.login_with_api_key refused the key; check truenas.api_key",
            ))),
            Err(NasError::MethodNotFound(_)) => Err(NasError::AdminAuth(String::from(
                "this TrueNAS has no public auth.login_with_api_key (removed in 27): set truenas.api_user to the user that owns the API key",
            ))),
            Err(e) => Err(admin_login_error(e)),
        }
    }

    /// SCRAM-SHA-512 (26+): two `auth.login_ex` calls on the same connection. The server must
    /// prove it knows the key too: a wrong server signature is refused, and the caller drops
    /// the connection (which TrueNAS would already count as logged in).
    async fn login_scram(&self, conn: &RpcConnection) -> Result<(), NasError> {
        let scram_error = |e: super::scram::ScramError| NasError::AdminAuth(format!("SCRAM: {e}"));
        let owner = self
            .api_user
            .as_deref()
            .ok_or_else(|| NasError::AdminAuth(String::from("SCRAM needs truenas.api_user")))?;
        let (key_id, secret) = api_key_secret(&self.api_key).map_err(scram_error)?;
        let (client, client_first) =
            ScramClient::start_api_key(owner, key_id).map_err(scram_error)?;
        let answer = login_ex(
            conn,
            json!({
                "mechanism": "SCRAM",
                "scram_type": "CLIENT_FIRST_MESSAGE",
                "rfc_str": client_first
            }),
        )
        .await?;
        let server_first = scram_step(&answer, "SERVER_FIRST_RESPONSE")?;
        let keys = self.scram_keys.clone();
        // PBKDF2 of 500,000 rounds on a cache miss: not on the async threads.
        let (expected, client_final) =
            tokio::task::spawn_blocking(move || client.respond(&server_first, &secret, &keys))
                .await
                .map_err(|_| NasError::AdminAuth(String::from("SCRAM: the key derivation failed")))?
                .map_err(scram_error)?;
        let answer = login_ex(
            conn,
            json!({
                "mechanism": "SCRAM",
                "scram_type": "CLIENT_FINAL_MESSAGE",
                "rfc_str": client_final
            }),
        )
        .await?;
        let server_final = scram_step(&answer, "SERVER_FINAL_RESPONSE")?;
        expected.verify(&server_final).map_err(scram_error)
    }
}

/// The `rfc_str` of a SCRAM answer of the expected step; AUTH_ERR is a refused key.
fn scram_step(answer: &Value, expected: &str) -> Result<String, NasError> {
    match response_type(answer) {
        Some("SCRAM_RESPONSE")
            if answer.get("scram_type").and_then(Value::as_str) == Some(expected) =>
        {
            answer
                .get("rfc_str")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| NasError::Protocol(format!("SCRAM {expected} without rfc_str")))
        }
        Some("AUTH_ERR") => Err(NasError::AdminAuth(String::from(
            "SCRAM login refused: check truenas.api_key and that truenas.api_user owns it",
        ))),
        Some(other) => Err(NasError::AdminAuth(format!(
            "auth.login_ex SCRAM answered {other} where {expected} was expected"
        ))),
        None => Err(NasError::Protocol(String::from(
            "auth.login_ex answer without response_type",
        ))),
    }
}

/// One `auth.login_ex` step of the admin login, its failure read as a login problem.
async fn login_ex(conn: &RpcConnection, params: Value) -> Result<Value, NasError> {
    conn.call("auth.login_ex", json!([params]))
        .await
        .map_err(admin_login_error)
}

pub(crate) fn response_type(answer: &Value) -> Option<&str> {
    answer.get("response_type").and_then(Value::as_str)
}

/// A refused or failed login is a configuration problem, except when TrueNAS could not be
/// reached or is rate-limiting: those say so.
fn admin_login_error(e: NasError) -> NasError {
    match e {
        NasError::Unavailable(_) | NasError::RateLimited(_) | NasError::BudgetSpent(_) => e,
        other => NasError::AdminAuth(other.to_string()),
    }
}
