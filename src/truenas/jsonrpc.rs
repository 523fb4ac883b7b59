//! `NasClient` over JSON-RPC 2.0 on `wss://HOST/api/current` (TrueNAS 25.04 and later).
//!
//! Every connection is logged in with the API key (see `pool.rs` for why password checks run
//! on such connections too, and one at a time on each). Connections are re-established with a
//! short backoff when they drop, and logged in again within passgate's own budget of
//! unauthenticated calls.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustls::ClientConfig;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::admin_login::{response_type, AdminLogin, Mechanism};
use super::path_stat::{self, PathStat};
use super::pool::Pool;
use super::rpc_conn::RpcConnection;
use super::users::find_user;
use super::version::VersionSlot;
use super::{
    ApiKind, NasClient, NasError, NasOtp, NasUser, OtpAnswer, OtpContinuation, PasswordCheck,
    PasswordLogin, ServerVersion,
};
use crate::config::AdminAuthChoice;

/// How the client logs in and how many verification connections it may keep.
pub struct JsonRpcSettings {
    pub api_key: SecretString,
    pub api_user: Option<String>,
    pub auth: AdminAuthChoice,
    pub timeout: Duration,
    pub verify_connections: usize,
}

pub struct JsonRpcClient {
    pool: Pool,
    version: VersionSlot,
}

impl JsonRpcClient {
    pub fn new(
        ws_base: &str,
        tls: Arc<ClientConfig>,
        settings: JsonRpcSettings,
        version_hint: Option<ServerVersion>,
    ) -> Self {
        let login = AdminLogin::new(settings.api_key, settings.api_user, settings.auth);
        Self {
            pool: Pool::new(
                format!("{ws_base}/api/current"),
                tls,
                settings.timeout,
                login,
                settings.verify_connections,
            ),
            version: VersionSlot::new(version_hint),
        }
    }

    /// How the connections log in, once one has.
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.pool.mechanism()
    }

    /// Unauthenticated `auth.login_ex` calls spent in the last minute (check-config).
    pub fn logins_spent(&self) -> usize {
        self.pool.budget().spent("auth.login_ex")
    }

    /// The admin connection; the first time, also reads the version with `system.info`.
    async fn admin(&self) -> Result<Arc<RpcConnection>, NasError> {
        let conn = self.pool.admin().await?;
        if self.server_version().is_none() {
            self.read_version(&conn).await;
        }
        Ok(conn)
    }

    async fn read_version(&self, conn: &RpcConnection) {
        match conn.call("system.info", json!([])).await {
            Ok(info) => {
                if let Some(v) = ServerVersion::from_system_info(&info) {
                    self.set_version(v);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the TrueNAS version with system.info")
            }
        }
    }

    fn set_version(&self, v: ServerVersion) {
        if self.version.record(v) {
            tracing::info!(version = %v, "TrueNAS version detected");
        }
    }

    /// Connects and logs in if needed, then answers the server version (check-config).
    pub async fn ping_and_version(&self) -> Result<Option<ServerVersion>, NasError> {
        self.admin_call("core.ping", json!([])).await?;
        Ok(self.server_version())
    }

    /// Any call on the admin connection; `check-config --connect` reads `mail.config` and
    /// the key owner's entry with it.
    pub async fn admin_call(&self, method: &str, params: Value) -> Result<Value, NasError> {
        let conn = self.admin().await?;
        conn.call(method, params).await
    }

    /// `auth.login_ex` `PASSWORD_PLAIN` on a verification connection.
    async fn password_login(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<PasswordCheck, NasError> {
        if self.server_version().is_none() {
            // The version decides how AUTH_ERR is read; learn it before the first answer.
            self.admin().await?;
        }
        let mut lease = self.pool.verification().await?;
        let Some(conn) = lease.conn().cloned() else {
            return Err(NasError::Unavailable(String::from(
                "verification connection lost",
            )));
        };
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
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                // A timed-out login may still run on the server: never reuse that connection.
                drop(lease.detach());
                return Err(e);
            }
        };
        let login = read_password_login(&answer)?;
        match login {
            // The user is an admin and the connection now runs as them.
            PasswordLogin::Success => self.pool.restore(&mut lease).await,
            PasswordLogin::OtpRequired => {
                // TrueNAS keeps the half-finished login in this connection's context.
                drop(lease.detach());
                return Ok(PasswordCheck {
                    login,
                    otp: Some(NasOtp(Arc::new(RpcOtp {
                        conn,
                        turn: Mutex::new(()),
                    }))),
                });
            }
            _ => {}
        }
        Ok(PasswordCheck::answer(login))
    }
}

async fn logout_quietly(conn: &RpcConnection) {
    if let Err(e) = conn.call("auth.logout", json!([])).await {
        tracing::debug!(error = %e, "auth.logout after a user login failed");
    }
}

/// The connection of a login that answered `OTP_REQUIRED`; TrueNAS remembers the user there.
struct RpcOtp {
    conn: Arc<RpcConnection>,
    /// One code at a time: TrueNAS keeps one login state per connection.
    turn: Mutex<()>,
}

#[async_trait]
impl OtpContinuation for RpcOtp {
    async fn submit(&self, code: &SecretString) -> Result<OtpAnswer, NasError> {
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
    }

    fn is_open(&self) -> bool {
        !self.conn.is_closed()
    }
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

#[async_trait]
impl NasClient for JsonRpcClient {
    fn api_kind(&self) -> ApiKind {
        ApiKind::JsonRpc
    }

    fn server_version(&self) -> Option<ServerVersion> {
        self.version.get()
    }

    async fn get_user(&self, username: &str) -> Result<Option<NasUser>, NasError> {
        // Without {"get": true}: an empty list is "no such user", not an error to parse.
        let result = self
            .admin_call("user.query", json!([[["username", "=", username]]]))
            .await?;
        find_user(&result, username, "user.query")
    }

    async fn list_users(&self) -> Result<Vec<NasUser>, NasError> {
        let result = self
            .admin_call("user.query", json!([[["local", "=", true]]]))
            .await?;
        super::users::local_users(&result, "user.query")
    }

    async fn check_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<PasswordCheck, NasError> {
        self.password_login(username, password).await
    }

    async fn set_password(
        &self,
        user: &NasUser,
        new_password: &SecretString,
    ) -> Result<(), NasError> {
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
    }

    async fn set_ssh_keys(&self, user: &NasUser, keys: &str) -> Result<NasUser, NasError> {
        let updated = self
            .admin_call("user.update", json!([user.id, {"sshpubkey": keys}]))
            .await?;
        super::users::parse_user(&updated)
    }

    async fn stat_path(&self, path: &str) -> Result<Option<PathStat>, NasError> {
        match self.admin_call("filesystem.stat", json!([path])).await {
            Ok(stat) => path_stat::parse(&stat).map(Some),
            Err(e) if path_stat::absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn group_names(&self, ids: &[i64]) -> Result<Vec<String>, NasError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let result = self
            .admin_call("group.query", json!([[["id", "in", ids]]]))
            .await?;
        super::users::group_names(&result, ids)
    }

    async fn ping(&self) -> Result<(), NasError> {
        self.admin_call("core.ping", json!([])).await.map(|_| ())
    }

    /// `system.security.config` (plugins/security, role SYSTEM_SECURITY_READ): a server
    /// without the method has no password aging.
    async fn password_max_age(&self) -> Result<Option<i64>, NasError> {
        match self.admin_call("system.security.config", json!([])).await {
            Ok(config) => super::users::parse_max_password_age(&config),
            Err(NasError::MethodNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn send_mail(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        timeout: std::time::Duration,
    ) -> Result<(), NasError> {
        let call = |method: &'static str, params: Value| self.admin_call(method, params);
        super::mail_job::send_and_wait(call, to, subject, text, timeout).await
    }
}
