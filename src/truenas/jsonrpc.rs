//! `NasClient` over JSON-RPC 2.0 on `wss://HOST/api/current` (TrueNAS 25.04 and later).
//!
//! One long-lived admin connection, logged in with the API key, carries every admin call.
//! It is re-established with exponential backoff when it drops, and logged in again.
//! Password checks use their own short-lived unauthenticated connection, because logging in
//! on the admin connection would replace its credentials.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rustls::ClientConfig;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::rpc_conn::RpcConnection;
use super::users::parse_user;
use super::{
    ApiKind, NasClient, NasError, NasOtp, NasUser, OtpAnswer, OtpContinuation, PasswordCheck,
    PasswordLogin, ServerVersion,
};

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub struct JsonRpcClient {
    ws_url: String,
    tls: Arc<ClientConfig>,
    api_key: SecretString,
    api_user: Option<String>,
    timeout: Duration,
    admin: Mutex<AdminState>,
    version: RwLock<Option<ServerVersion>>,
}

#[derive(Default)]
struct AdminState {
    connection: Option<Arc<RpcConnection>>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl JsonRpcClient {
    pub fn new(
        ws_base: &str,
        tls: Arc<ClientConfig>,
        api_key: SecretString,
        api_user: Option<String>,
        timeout: Duration,
        version_hint: Option<ServerVersion>,
    ) -> Self {
        Self {
            ws_url: format!("{ws_base}/api/current"),
            tls,
            api_key,
            api_user,
            timeout,
            admin: Mutex::new(AdminState::default()),
            version: RwLock::new(version_hint),
        }
    }

    /// The admin connection, (re)connecting and logging in if needed. While in backoff after
    /// a failure, answers `Unavailable` at once rather than hammering the NAS.
    async fn admin(&self) -> Result<Arc<RpcConnection>, NasError> {
        let mut state = self.admin.lock().await;
        if let Some(conn) = &state.connection {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
            tracing::warn!("TrueNAS admin connection lost; reconnecting");
            state.connection = None;
        }
        if let Some(at) = state.retry_at {
            let now = Instant::now();
            if now < at {
                return Err(NasError::Unavailable(format!(
                    "reconnecting to TrueNAS in {}s",
                    (at - now).as_secs() + 1
                )));
            }
        }
        match self.connect_admin().await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                if state.failures > 0 {
                    tracing::info!("TrueNAS admin connection restored");
                }
                state.connection = Some(conn.clone());
                state.failures = 0;
                state.retry_at = None;
                Ok(conn)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let wait = BACKOFF_START
                    .saturating_mul(1 << state.failures.min(10))
                    .min(BACKOFF_MAX);
                state.retry_at = Some(Instant::now() + wait);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "TrueNAS admin login failed");
                Err(e)
            }
        }
    }

    async fn connect_admin(&self) -> Result<RpcConnection, NasError> {
        let conn = RpcConnection::connect(&self.ws_url, self.tls.clone(), self.timeout).await?;
        self.login_admin(&conn).await?;
        match conn.call("system.info", json!([])).await {
            Ok(info) => {
                if let Some(v) = info
                    .get("version")
                    .and_then(Value::as_str)
                    .and_then(ServerVersion::parse)
                {
                    self.set_version(v);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the TrueNAS version with system.info")
            }
        }
        Ok(conn)
    }

    async fn login_admin(&self, conn: &RpcConnection) -> Result<(), NasError> {
        let key = self.api_key.expose_secret();
        match &self.api_user {
            Some(owner) => {
                let answer = conn
                    .call(
                        "auth.login_ex",
                        json!([{
                            "mechanism": "API_KEY_PLAIN",
                            "username": owner,
                            "api_key": key,
                            "login_options": {"user_info": false}
                        }]),
                    )
                    .await
                    .map_err(admin_login_error)?;
                match response_type(&answer) {
                    Some("SUCCESS") => Ok(()),
                    Some("EXPIRED") => Err(NasError::AdminAuth(String::from(
                        "the API key is expired or was revoked (TrueNAS revokes keys sent without TLS)",
                    ))),
                    Some(other) => Err(NasError::AdminAuth(format!(
                        "auth.login_ex API_KEY_PLAIN answered {other}; check truenas.api_key and that truenas.api_user owns it"
                    ))),
                    None => Err(NasError::Protocol(String::from("auth.login_ex answer without response_type"))),
                }
            }
            None => match conn.call("auth.login_with_api_key", json!([key])).await {
                Ok(Value::Bool(true)) => Ok(()),
                Ok(_) => Err(NasError::AdminAuth(String::from(
                    "auth.login_with_api_key refused the key; check truenas.api_key",
                ))),
                Err(NasError::MethodNotFound(_)) => Err(NasError::AdminAuth(String::from(
                    "this TrueNAS has no auth.login_with_api_key (removed in 27): set truenas.api_user to the user that owns the API key",
                ))),
                Err(e) => Err(admin_login_error(e)),
            },
        }
    }

    fn set_version(&self, v: ServerVersion) {
        if let Ok(mut slot) = self.version.write() {
            if *slot != Some(v) {
                tracing::info!(version = %v, "TrueNAS version detected");
            }
            *slot = Some(v);
        }
    }

    async fn admin_call(&self, method: &str, params: Value) -> Result<Value, NasError> {
        let conn = self.admin().await?;
        conn.call(method, params).await
    }
}

fn admin_login_error(e: NasError) -> NasError {
    match e {
        NasError::Unavailable(_) => e,
        other => NasError::AdminAuth(other.to_string()),
    }
}

async fn logout_quietly(conn: &RpcConnection) {
    if let Err(e) = conn.call("auth.logout", json!([])).await {
        tracing::debug!(error = %e, "auth.logout after a user login failed");
    }
}

/// The connection of a login that answered `OTP_REQUIRED`; TrueNAS remembers the user there.
struct RpcOtp {
    conn: RpcConnection,
    /// One code at a time: TrueNAS keeps one login state per connection.
    turn: Mutex<()>,
}

impl OtpContinuation for RpcOtp {
    fn submit<'a>(&'a self, code: &'a SecretString) -> BoxFuture<'a, Result<OtpAnswer, NasError>> {
        Box::pin(async move {
            let _turn = self.turn.lock().await;
            let data = json!([{"mechanism": "OTP_TOKEN", "otp_token": code.expose_secret()}]);
            let answer = match self.conn.call("auth.login_ex_continue", data.clone()).await {
                // login_ex takes the same continuation where login_ex_continue is missing.
                Err(NasError::MethodNotFound(_)) => self.conn.call("auth.login_ex", data).await?,
                other => other?,
            };
            match read_password_login(&answer)? {
                PasswordLogin::Success => {
                    logout_quietly(&self.conn).await;
                    Ok(OtpAnswer::Accepted)
                }
                PasswordLogin::Denied | PasswordLogin::Expired => Ok(OtpAnswer::Accepted),
                PasswordLogin::OtpRequired => Ok(OtpAnswer::WrongCodeRetry),
                PasswordLogin::AuthErr => Ok(OtpAnswer::WrongCodeFinal),
                other => Err(NasError::Protocol(format!(
                    "unexpected answer {other:?} to an OTP code"
                ))),
            }
        })
    }

    fn is_open(&self) -> bool {
        !self.conn.is_closed()
    }
}

pub(crate) fn response_type(answer: &Value) -> Option<&str> {
    answer.get("response_type").and_then(Value::as_str)
}

pub(crate) fn read_password_login(answer: &Value) -> Result<PasswordLogin, NasError> {
    Ok(match response_type(answer) {
        Some("SUCCESS") => PasswordLogin::Success,
        Some("DENIED") => PasswordLogin::Denied,
        Some("OTP_REQUIRED") => PasswordLogin::OtpRequired,
        Some("AUTH_ERR") => PasswordLogin::AuthErr,
        Some("EXPIRED") => PasswordLogin::Expired,
        Some("REDIRECT") => PasswordLogin::Redirect,
        Some(other) => {
            return Err(NasError::Protocol(format!(
                "unknown login_ex response_type {other:?}"
            )))
        }
        None => {
            return Err(NasError::Protocol(String::from(
                "login_ex answer without response_type",
            )))
        }
    })
}

impl NasClient for JsonRpcClient {
    fn api_kind(&self) -> ApiKind {
        ApiKind::JsonRpc
    }

    fn server_version(&self) -> Option<ServerVersion> {
        self.version.read().ok().and_then(|v| *v)
    }

    fn get_user<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<NasUser>, NasError>> {
        Box::pin(async move {
            // Without {"get": true}: an empty list is "no such user", not an error to parse.
            let result = self
                .admin_call("user.query", json!([[["username", "=", username]]]))
                .await?;
            let entries = result.as_array().ok_or_else(|| {
                NasError::Protocol(String::from("user.query did not return a list"))
            })?;
            entries
                .iter()
                .find(|u| u.get("username").and_then(Value::as_str) == Some(username))
                .map(parse_user)
                .transpose()
        })
    }

    fn check_password<'a>(
        &'a self,
        username: &'a str,
        password: &'a SecretString,
    ) -> BoxFuture<'a, Result<PasswordCheck, NasError>> {
        Box::pin(async move {
            let conn = RpcConnection::connect(&self.ws_url, self.tls.clone(), self.timeout).await?;
            let answer = conn
                .call(
                    "auth.login_ex",
                    json!([{
                        "mechanism": "PASSWORD_PLAIN",
                        "username": username,
                        "password": password.expose_secret(),
                        "login_options": {"user_info": false}
                    }]),
                )
                .await?;
            let login = read_password_login(&answer)?;
            match login {
                // The user is an admin: do not leave a privileged session open on the NAS.
                PasswordLogin::Success => logout_quietly(&conn).await,
                PasswordLogin::OtpRequired => {
                    let otp = RpcOtp {
                        conn,
                        turn: Mutex::new(()),
                    };
                    return Ok(PasswordCheck {
                        login,
                        otp: Some(NasOtp(Arc::new(otp))),
                    });
                }
                _ => {}
            }
            Ok(PasswordCheck::answer(login))
        })
    }

    fn set_password<'a>(
        &'a self,
        user: &'a NasUser,
        new_password: &'a SecretString,
    ) -> BoxFuture<'a, Result<(), NasError>> {
        Box::pin(async move {
            let params = json!([{
                "username": user.username,
                "old_password": null,
                "new_password": new_password.expose_secret()
            }]);
            match self.admin_call("user.set_password", params).await {
                Ok(_) => Ok(()),
                // Only systems older than 24.04 lack set_password.
                Err(NasError::MethodNotFound(_)) => self
                    .admin_call(
                        "user.update",
                        json!([user.id, {"password": new_password.expose_secret()}]),
                    )
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        })
    }

    fn group_names<'a>(&'a self, ids: &'a [i64]) -> BoxFuture<'a, Result<Vec<String>, NasError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let result = self
                .admin_call("group.query", json!([[["id", "in", ids]]]))
                .await?;
            super::users::group_names(&result, ids)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), NasError>> {
        Box::pin(async move { self.admin_call("core.ping", json!([])).await.map(|_| ()) })
    }

    /// `system.security.config` (plugins/security, role SYSTEM_SECURITY_READ): a server
    /// without the method has no password aging.
    fn password_max_age(&self) -> BoxFuture<'_, Result<Option<i64>, NasError>> {
        Box::pin(async move {
            match self.admin_call("system.security.config", json!([])).await {
                Ok(config) => super::users::parse_max_password_age(&config),
                Err(NasError::MethodNotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }
}
