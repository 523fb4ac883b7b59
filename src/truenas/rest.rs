//! `NasClient` over the legacy REST API `/api/v2.0` (TrueNAS 24.10 to 25.10; removed in 26.04).
//!
//! REST cannot check a password on the NAS (no `auth.login_ex`), so `check_password` answers
//! `NotSupported` and the chain relies on the SMB and unix-hash verifiers. `user.set_password`
//! is not exposed over REST (it requires a WebSocket), so passwords are set with
//! `PUT /user/id/ID`, the REST form of `user.update`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use rustls::ClientConfig;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::path_stat::{self, PathStat};
use super::tls_diagnosis::describe;
use super::users::find_user;
use super::version::VersionSlot;
use super::{ApiKind, NasClient, NasError, NasUser, PasswordCheck, PasswordLogin, ServerVersion};

/// Error bodies are read only this far: enough for any TrueNAS message.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct RestClient {
    base: String,
    http: reqwest::Client,
    api_key: SecretString,
    version: VersionSlot,
}

impl RestClient {
    pub fn new(
        http_base: &str,
        tls: Arc<ClientConfig>,
        api_key: SecretString,
        timeout: Duration,
    ) -> Result<Self, NasError> {
        let http = http_client(tls, timeout)?;
        Ok(Self {
            base: format!("{http_base}/api/v2.0"),
            http,
            api_key,
            version: VersionSlot::new(None),
        })
    }

    /// `request_inner`, counted for `/metrics` under the JSON-RPC method it stands for
    /// (paths carry usernames and ids, which must not become labels).
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, NasError> {
        let started = std::time::Instant::now();
        let name = rpc_name(&method, path);
        let result = self.request_inner(method, path, body).await;
        crate::metrics::truenas_call(name, started.elapsed(), result.is_err());
        result
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, NasError> {
        let label = format!("{method} {path}");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.api_key.expose_secret());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| NasError::Unavailable(format!("{label}: {}", describe(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| NasError::Unavailable(format!("{label}: {}", describe(&e))))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|_| NasError::Protocol(format!("{label}: answer is not JSON")));
        }
        let body: Value = serde_json::from_slice(&bytes[..bytes.len().min(MAX_ERROR_BODY)])
            .unwrap_or(Value::Null);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                NasError::AdminAuth(format!("{label} answered {status}; check truenas.api_key"))
            }
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                NasError::MethodNotFound(label)
            }
            StatusCode::UNPROCESSABLE_ENTITY => rest_validation(&label, &body),
            s if s.is_server_error() => NasError::Unavailable(format!("{label} answered {status}")),
            _ => NasError::Protocol(format!("{label} answered {status}")),
        })
    }

    async fn refresh_version(&self) {
        if self.server_version().is_some() {
            return;
        }
        if let Ok(info) = self.request(Method::GET, "/system/info", None).await {
            if let Some(v) = ServerVersion::from_system_info(&info) {
                if self.version.record(v) {
                    tracing::info!(version = %v, "TrueNAS version detected (REST)");
                }
            }
        }
    }
}

pub fn http_client(tls: Arc<ClientConfig>, timeout: Duration) -> Result<reqwest::Client, NasError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| NasError::Unavailable(format!("HTTP client setup: {e}")))
}

/// REST validation bodies are `{"attr": [{"message": "...", "errno": 22}]}`; call errors are
/// `{"message": "...", "errno": N}`.
fn rest_validation(label: &str, body: &Value) -> NasError {
    // restful.py renders a CallError as `{"message", "errno"}`. Only "not found" is told
    // apart (filesystem.stat's answer for a missing path); the rest stay messages for the
    // user, as before.
    if body.get("errno").and_then(Value::as_i64) == Some(2) {
        return NasError::Call {
            method: label.to_owned(),
            errname: String::from("ENOENT"),
            reason: body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
    }
    let mut messages = Vec::new();
    if let Some(map) = body.as_object() {
        for (key, value) in map {
            match value {
                Value::Array(items) => {
                    messages.extend(items.iter().filter_map(|i| {
                        i.get("message").and_then(Value::as_str).map(str::to_string)
                    }))
                }
                Value::String(s) if key == "message" => messages.push(s.clone()),
                _ => {}
            }
        }
    }
    if messages.is_empty() {
        NasError::Protocol(format!("{label} answered 422 without messages"))
    } else {
        NasError::Validation(messages)
    }
}

/// The JSON-RPC method a REST call corresponds to.
fn rpc_name(method: &Method, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        (_, "/system/info") => "system.info",
        (_, "/core/ping") => "core.ping",
        (_, "/group") => "group.query",
        (&Method::PUT, p) if p.starts_with("/user/id/") => "user.update",
        (_, "/filesystem/stat") => "filesystem.stat",
        (_, "/user") => "user.query",
        _ => "other",
    }
}

#[async_trait]
impl NasClient for RestClient {
    fn api_kind(&self) -> ApiKind {
        ApiKind::Rest
    }

    fn server_version(&self) -> Option<ServerVersion> {
        self.version.get()
    }

    async fn get_user(&self, username: &str) -> Result<Option<NasUser>, NasError> {
        self.refresh_version().await;
        let path = url::form_urlencoded::Serializer::new(String::from("/user?"))
            .append_pair("username", username)
            .finish();
        let result = self.request(Method::GET, &path, None).await?;
        find_user(&result, username, "GET /user")
    }

    async fn list_users(&self) -> Result<Vec<NasUser>, NasError> {
        self.refresh_version().await;
        let result = self.request(Method::GET, "/user?local=true", None).await?;
        super::users::local_users(&result, "GET /user")
    }

    async fn check_password(
        &self,
        _username: &str,
        _password: &SecretString,
    ) -> Result<PasswordCheck, NasError> {
        Ok(PasswordCheck::answer(PasswordLogin::NotSupported))
    }

    async fn set_password(
        &self,
        user: &NasUser,
        new_password: &SecretString,
    ) -> Result<(), NasError> {
        let body = json!({
            "username": user.username,
            "old_password": null,
            "new_password": new_password.expose_secret()
        });
        // Tried first in case a server does expose it; real ones answer 404.
        match self
            .request(Method::POST, "/user/set_password", Some(body))
            .await
        {
            Ok(_) => Ok(()),
            Err(NasError::MethodNotFound(_)) => self
                .request(
                    Method::PUT,
                    &format!("/user/id/{}", user.id),
                    Some(json!({"password": new_password.expose_secret()})),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }

    async fn set_ssh_keys(&self, user: &NasUser, keys: &str) -> Result<NasUser, NasError> {
        let updated = self
            .request(
                Method::PUT,
                &format!("/user/id/{}", user.id),
                Some(json!({"sshpubkey": keys})),
            )
            .await?;
        super::users::parse_user(&updated)
    }

    async fn stat_path(&self, path: &str) -> Result<Option<PathStat>, NasError> {
        match self
            .request(Method::POST, "/filesystem/stat", Some(json!(path)))
            .await
        {
            Ok(stat) => path_stat::parse(&stat).map(Some),
            Err(e) if path_stat::absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn group_names(&self, ids: &[i64]) -> Result<Vec<String>, NasError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.request(Method::GET, "/group", None).await?;
        super::users::group_names(&result, ids)
    }

    async fn ping(&self) -> Result<(), NasError> {
        self.request(Method::GET, "/core/ping", None)
            .await
            .map(|_| ())
    }

    /// `GET /system/security`, the REST form of `system.security.config`; 404 means a server
    /// from before that service, which has no password aging.
    async fn password_max_age(&self) -> Result<Option<i64>, NasError> {
        match self.request(Method::GET, "/system/security", None).await {
            Ok(config) => super::users::parse_max_password_age(&config),
            Err(NasError::MethodNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Not offered: the REST API is for servers before 25.04, and its job results are not
    /// worth a second client. Such a NAS sends mail with `mail.transport = "smtp"`.
    async fn send_mail(
        &self,
        _to: &str,
        _subject: &str,
        _text: &str,
        _timeout: std::time::Duration,
    ) -> Result<(), NasError> {
        Err(NasError::MethodNotFound(String::from(
            "mail.send over the REST API (use the JSON-RPC API, or mail.transport = \"smtp\")",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_paths_become_method_names_without_user_data() {
        assert_eq!(rpc_name(&Method::GET, "/user?username=alice"), "user.query");
        assert_eq!(rpc_name(&Method::PUT, "/user/id/70"), "user.update");
        assert_eq!(rpc_name(&Method::GET, "/core/ping"), "core.ping");
        assert_eq!(rpc_name(&Method::GET, "/system/info"), "system.info");
        assert_eq!(rpc_name(&Method::GET, "/group"), "group.query");
        assert_eq!(rpc_name(&Method::GET, "/pool/alice"), "other");
    }

    #[test]
    fn reads_both_rest_error_shapes() {
        let v = rest_validation(
            "PUT",
            &json!({"user_update.password": [{"message": "too short", "errno": 22}]}),
        );
        assert!(matches!(v, NasError::Validation(m) if m == vec!["too short"]));
        let c = rest_validation("PUT", &json!({"message": "locked", "errno": 22}));
        assert!(matches!(c, NasError::Validation(m) if m == vec!["locked"]));
    }
}
