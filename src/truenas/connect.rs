//! Builds the `NasClient` the configuration asks for. With `truenas.api = "auto"` the choice
//! is made on first use: JSON-RPC when `GET /api/versions` answers (25.04+), else REST.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustls::ClientConfig;
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::jsonrpc::{JsonRpcClient, JsonRpcSettings};
use super::path_stat::PathStat;
use super::rest::{http_client, RestClient};
use super::tls::{client_config, TrustMode};
use super::tls_diagnosis::describe;
use super::{ApiKind, NasClient, NasError, NasUser, PasswordCheck, ServerVersion};
use crate::config::{AdminAuthChoice, ApiChoice, Config};

/// How the TrueNAS certificate is checked, from `truenas.tls_fingerprint`, `ca_file` and
/// `insecure_skip_verify`.
pub fn trust_mode(config: &Config) -> Result<TrustMode<'_>, NasError> {
    Ok(
        match config
            .tls_fingerprint()
            .map_err(|e| NasError::AdminAuth(e.to_string()))?
        {
            Some(pin) => TrustMode::Pinned(pin),
            None if config.truenas.insecure_skip_verify => TrustMode::Insecure,
            None => TrustMode::Roots {
                ca_file: config.truenas.ca_file.as_deref(),
            },
        },
    )
}

fn setup(config: &Config) -> Result<Setup, NasError> {
    let endpoint = config
        .require_truenas()
        .map_err(|e| NasError::AdminAuth(e.to_string()))?;
    let mode = trust_mode(config)?;
    if matches!(mode, TrustMode::Insecure) {
        tracing::warn!(
            "truenas.insecure_skip_verify is true: the TrueNAS certificate is NOT checked. \
             Anyone on the network path can read the API key and users' passwords. \
             Set truenas.tls_fingerprint instead."
        );
    }
    let tls = client_config(mode)?;
    Ok(Setup {
        http_base: endpoint.http_base(),
        ws_base: endpoint.ws_base(),
        tls,
        api_key: config
            .truenas
            .api_key
            .clone()
            .ok_or_else(|| NasError::AdminAuth(String::from("truenas.api_key is not set")))?,
        api_user: config.truenas.api_user.clone(),
        auth: config.truenas.auth,
        timeout: Duration::from_secs(config.truenas.timeout_secs),
        verify_connections: config.rate_limit.verify_concurrency,
    })
}

pub fn build(config: &Config) -> Result<Arc<dyn NasClient>, NasError> {
    let setup = setup(config)?;
    Ok(match config.truenas.api {
        ApiChoice::Jsonrpc => Arc::new(setup.jsonrpc(None)),
        ApiChoice::Rest => Arc::new(setup.rest()?),
        ApiChoice::Auto => Arc::new(AutoClient {
            setup,
            chosen: OnceCell::new(),
        }),
    })
}

/// A JSON-RPC client whatever `truenas.api` says (for `check-config --connect`).
pub fn jsonrpc_client(
    config: &Config,
    hint: Option<ServerVersion>,
) -> Result<JsonRpcClient, NasError> {
    Ok(setup(config)?.jsonrpc(hint))
}

/// What `GET /api/versions` told.
pub enum VersionsProbe {
    /// 25.04+, with the newest API version listed.
    JsonRpc(Option<ServerVersion>),
    /// No such route: 24.10 or older, REST only.
    RestOnly,
}

pub async fn versions_probe(config: &Config) -> Result<VersionsProbe, NasError> {
    Ok(match setup(config)?.probe_versions().await? {
        Some(newest) => VersionsProbe::JsonRpc(newest),
        None => VersionsProbe::RestOnly,
    })
}

struct Setup {
    http_base: String,
    ws_base: String,
    tls: Arc<ClientConfig>,
    api_key: SecretString,
    api_user: Option<String>,
    auth: AdminAuthChoice,
    timeout: Duration,
    verify_connections: usize,
}

impl Setup {
    fn jsonrpc(&self, hint: Option<ServerVersion>) -> JsonRpcClient {
        JsonRpcClient::new(
            &self.ws_base,
            self.tls.clone(),
            JsonRpcSettings {
                api_key: self.api_key.clone(),
                api_user: self.api_user.clone(),
                auth: self.auth,
                timeout: self.timeout,
                verify_connections: self.verify_connections,
            },
            hint,
        )
    }

    fn rest(&self) -> Result<RestClient, NasError> {
        RestClient::new(
            &self.http_base,
            self.tls.clone(),
            self.api_key.clone(),
            self.timeout,
        )
    }

    /// `GET /api/versions`: a JSON list such as `["v25.04.0", …, "v25.10.1"]` on 25.04+.
    /// `Ok(None)` means the server answered but has no such route (24.10: REST only).
    async fn probe_versions(&self) -> Result<Option<Option<ServerVersion>>, NasError> {
        let http = http_client(self.tls.clone(), self.timeout)?;
        let response = http
            .get(format!("{}/api/versions", self.http_base))
            .send()
            .await
            .map_err(|e| NasError::Unavailable(format!("GET /api/versions: {}", describe(&e))))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let Ok(list) = response.json::<Value>().await else {
            return Ok(None);
        };
        let Some(entries) = list.as_array() else {
            return Ok(None);
        };
        let newest = entries
            .iter()
            .filter_map(Value::as_str)
            .filter_map(ServerVersion::parse)
            .max();
        Ok(Some(newest))
    }
}

struct AutoClient {
    setup: Setup,
    chosen: OnceCell<Arc<dyn NasClient>>,
}

impl AutoClient {
    async fn client(&self) -> Result<&Arc<dyn NasClient>, NasError> {
        self.chosen
            .get_or_try_init(|| async {
                let client: Arc<dyn NasClient> = match self.setup.probe_versions().await? {
                    Some(hint) => {
                        tracing::info!(newest_api = ?hint.map(|v| v.to_string()), "TrueNAS has the JSON-RPC API; using it");
                        Arc::new(self.setup.jsonrpc(hint))
                    }
                    None => {
                        tracing::info!("TrueNAS has no /api/versions; using the legacy REST API");
                        Arc::new(self.setup.rest()?)
                    }
                };
                Ok(client)
            })
            .await
    }
}

#[async_trait]
impl NasClient for AutoClient {
    fn api_kind(&self) -> ApiKind {
        self.chosen
            .get()
            .map(|c| c.api_kind())
            .unwrap_or(ApiKind::JsonRpc)
    }

    fn server_version(&self) -> Option<ServerVersion> {
        self.chosen.get().and_then(|c| c.server_version())
    }

    async fn get_user(&self, username: &str) -> Result<Option<NasUser>, NasError> {
        self.client().await?.get_user(username).await
    }

    async fn list_users(&self) -> Result<Vec<NasUser>, NasError> {
        self.client().await?.list_users().await
    }

    async fn check_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<PasswordCheck, NasError> {
        self.client()
            .await?
            .check_password(username, password)
            .await
    }

    async fn set_password(
        &self,
        user: &NasUser,
        new_password: &SecretString,
    ) -> Result<(), NasError> {
        self.client().await?.set_password(user, new_password).await
    }

    async fn group_names(&self, ids: &[i64]) -> Result<Vec<String>, NasError> {
        self.client().await?.group_names(ids).await
    }

    async fn ping(&self) -> Result<(), NasError> {
        self.client().await?.ping().await
    }

    async fn password_max_age(&self) -> Result<Option<i64>, NasError> {
        self.client().await?.password_max_age().await
    }

    async fn send_mail(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        timeout: std::time::Duration,
    ) -> Result<(), NasError> {
        self.client()
            .await?
            .send_mail(to, subject, text, timeout)
            .await
    }

    async fn set_ssh_keys(&self, user: &NasUser, keys: &str) -> Result<NasUser, NasError> {
        self.client().await?.set_ssh_keys(user, keys).await
    }

    async fn stat_path(&self, path: &str) -> Result<Option<PathStat>, NasError> {
        self.client().await?.stat_path(path).await
    }
}
