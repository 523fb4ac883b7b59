//! A fake TrueNAS middleware for integration tests.
//!
//! It speaks the real wire protocols (JSON-RPC 2.0 over WebSocket on `/api/current`, the
//! deprecated REST API under `/api/v2.0`, `GET /api/versions`) over TLS with a self-signed
//! certificate, and also over plain HTTP so tests can prove that the portal never sends an
//! API key in clear. Behaviour follows the middleware source; see the module docs of
//! `auth`, `methods` and `rest` for the details and for the few simplifications.
//!
//! Simplifications worth knowing:
//! - two-factor codes: the only valid OTP is `123456`;
//! - the password history is kept as plain text inside the fake (instead of verifying three
//!   656,000-round hashes per change);
//! - the API user (`truenas_admin`) is added without a usable password unless the test passes
//!   its own `truenas_admin` user (which is then forced to be a FULL_ADMIN);
//! - `mail.send` delivers nothing: a configured fake records the message ([`FakeTrueNas::sent_mail`]).
//!
//! Limits of middlewared that the fake keeps: the unauthenticated-call rate limit
//! (`rate_limit`), 10 running / 20 in-flight calls per connection (`jsonrpc`), the failed-login
//! delay ([`FakeOptions::failure_delay`]), and a restart that forgets sessions, jobs and the
//! rate-limit table ([`FakeTrueNas::restart`]).

mod auth;
mod errors;
mod jobs;
mod jsonrpc;
mod legacy;
mod mail;
mod methods;
mod nthash;
mod options;
mod password;
mod rate_limit;
mod rest;
mod scram;
mod scram_login;
mod server;
mod ssh_keys;
mod state;
mod tls;
mod users;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

// Each test binary uses a different part of the API.
#[allow(unused_imports)]
pub use options::{CertKind, FakeOptions, MailSettings, SentMail};
pub use ssh_keys::FakeHome;
pub use users::FakeUser;

use state::Shared;

/// Which TrueNAS release the fake imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// 25.10: a correct password of a user without API access answers `AUTH_ERR`; REST exists.
    V25_10,
    /// 26.04: such a password answers `DENIED`; the REST API is removed (404).
    V26,
    /// 27: as 26, plus `/api/v27.0.0`; `auth.login_with_api_key` (`removed_in='v27'`) is
    /// private on 27's API (still served, with a server-side warning), public on older ones.
    V27,
}

impl Flavour {
    /// What `GET /api/versions` lists (oldest first; the last one is `/api/current`).
    fn api_versions(self) -> Vec<&'static str> {
        let mut versions = vec!["v25.04.0", "v25.04.1", "v25.04.2", "v25.10.0", "v25.10.1"];
        if self != Flavour::V25_10 {
            versions.push("v26.0.0");
        }
        if self == Flavour::V27 {
            versions.push("v27.0.0");
        }
        versions
    }

    /// The version `/api/current` serves (main.py `_create_apis`: the newest one).
    fn current_api_version(self) -> &'static str {
        match self {
            Flavour::V25_10 => "v25.10.1",
            Flavour::V26 => "v26.0.0",
            Flavour::V27 => "v27.0.0",
        }
    }

    /// `system.info` → `version`.
    fn system_version(self) -> &'static str {
        match self {
            Flavour::V25_10 => "25.10.1",
            Flavour::V26 => "26.04.0",
            Flavour::V27 => "27.0.0",
        }
    }

    fn has_rest(self) -> bool {
        self == Flavour::V25_10
    }
}

/// Name of the FULL_ADMIN user that owns the API key.
const API_USER: &str = "truenas_admin";

/// A running fake TrueNAS. Dropping it stops the listeners and closes every connection.
pub struct FakeTrueNas {
    shared: Arc<Shared>,
    tls_addr: SocketAddr,
    plain_addr: SocketAddr,
    cert: tls::TlsMaterial,
    listeners: Vec<JoinHandle<()>>,
    controls: Vec<mpsc::UnboundedSender<server::Command>>,
    /// One restart at a time.
    restarting: tokio::sync::Mutex<()>,
}

impl FakeTrueNas {
    /// [`FakeTrueNas::start_with`] with [`FakeOptions::new`].
    pub async fn start(flavour: Flavour, users: Vec<FakeUser>) -> FakeTrueNas {
        FakeTrueNas::start_with(FakeOptions::new(flavour), users).await
    }

    /// Hashes the users' passwords (in parallel), then listens on two ephemeral ports of
    /// 127.0.0.1: one HTTPS, one plain HTTP, serving the same application.
    pub async fn start_with(options: FakeOptions, users: Vec<FakeUser>) -> FakeTrueNas {
        let users = users::with_api_user(users, API_USER);
        let stored = users::store_all(users).await;
        let shared = Arc::new(Shared::new(&options, API_USER, stored));
        let cert = tls::generate(options.cert);

        let app = router(shared.clone());
        let tls_listener = server::bind().await;
        let plain_listener = server::bind().await;
        let tls_addr = tls_listener
            .local_addr()
            .expect("TLS listener has an address");
        let plain_addr = plain_listener
            .local_addr()
            .expect("plain listener has an address");
        let (tls_control, tls_commands) = mpsc::unbounded_channel();
        let (plain_control, plain_commands) = mpsc::unbounded_channel();
        let listeners = vec![
            server::spawn(
                tls_listener,
                app.clone(),
                Some(cert.acceptor.clone()),
                &shared,
                tls_commands,
            ),
            server::spawn(plain_listener, app, None, &shared, plain_commands),
        ];
        FakeTrueNas {
            shared,
            tls_addr,
            plain_addr,
            cert,
            listeners,
            controls: vec![tls_control, plain_control],
            restarting: tokio::sync::Mutex::new(()),
        }
    }

    /// A middlewared restart: every connection is dropped at once, both ports refuse new
    /// connections (the listening sockets are closed) for `refuse_for`, then the same ports
    /// serve again. Sessions, jobs and the rate-limit table are gone; users, the API key
    /// and settings stay (they live in the database). Returns once the ports serve again;
    /// safe to call while traffic is running.
    pub async fn restart(&self, refuse_for: Duration) {
        let _one_at_a_time = self.restarting.lock().await;
        self.command(server::Command::Close).await;
        self.shared.drop_connections();
        {
            let mut inner = self.shared.lock();
            inner.rate_limit.clear();
            inner.jobs.clear();
        }
        tokio::time::sleep(refuse_for).await;
        self.command(server::Command::Open).await;
    }

    async fn command(&self, command: fn(oneshot::Sender<()>) -> server::Command) {
        for control in &self.controls {
            let (done, finished) = oneshot::channel();
            if control.send(command(done)).is_ok() {
                let _ = finished.await;
            }
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.tls_addr)
    }

    /// `https://localhost:PORT`: the one name TrueNAS' default certificate is valid for.
    pub fn localhost_url(&self) -> String {
        format!("https://localhost:{}", self.tls_addr.port())
    }

    /// `http://127.0.0.1:PORT2` (same application, no TLS).
    pub fn plain_url(&self) -> String {
        format!("http://{}", self.plain_addr)
    }

    /// `sha256:<hex of SHA-256 of the DER certificate>`
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint.clone()
    }

    /// The self-signed certificate (DER), for clients that trust it as a root.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.cert_der.clone()
    }

    /// A rustls client configuration that trusts exactly this fake's certificate.
    pub fn client_tls(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.cert_der()))
            .expect("fake certificate is a usable root");
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// The self-signed certificate (PEM), for a portal configured with a CA file.
    pub fn cert_pem(&self) -> String {
        self.cert.cert_pem.clone()
    }

    /// `1-<64 random characters>`, owned by [`FakeTrueNas::api_user`].
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// `truenas_admin`
    pub fn api_user(&self) -> &str {
        &self.shared.api_user
    }

    /// The user's current `unixhash` (`*` when it has no usable password).
    pub fn unixhash(&self, username: &str) -> Option<String> {
        self.shared
            .lock()
            .user_by_name(username)
            .map(|u| u.unixhash.clone())
    }

    /// The user's home directory (a real one, under the fake's datasets, for a `Dataset` home).
    pub fn home(&self, username: &str) -> std::path::PathBuf {
        self.shared
            .lock()
            .user_by_name(username)
            .map(|u| u.home.clone())
            .expect("a user")
    }

    /// The user's `~/.ssh/authorized_keys` as TrueNAS wrote it; `None` when there is none.
    pub fn authorized_keys(&self, username: &str) -> Option<String> {
        let home = self.shared.lock().user_by_name(username)?.home.clone();
        std::fs::read_to_string(home.join(".ssh/authorized_keys")).ok()
    }

    /// Writes the file as an admin would in the TrueNAS UI (which validates nothing).
    pub fn set_authorized_keys(&self, username: &str, text: &str) {
        let home = self
            .shared
            .lock()
            .user_by_name(username)
            .map(|u| u.home.clone())
            .expect("a user");
        ssh_keys::update(self.shared.datasets.path(), &home, &serde_json::json!(text))
            .expect("the home is on a dataset");
    }

    /// Whether the API key was revoked (it was sent over a plain connection).
    pub fn api_key_revoked(&self) -> bool {
        self.shared.lock().key_revoked
    }

    /// The next `user.set_password` / `user.update` (JSON-RPC or REST) fails with a
    /// ValidationErrors holding these messages.
    pub fn fail_next_set_password(&self, messages: Vec<String>) {
        self.shared.lock().fail_next = Some(messages);
    }

    /// The next password change is applied, then every connection drops before its answer
    /// goes out (a NAS that stalls or a link that breaks at the wrong moment): the client
    /// cannot know whether it took.
    pub fn lose_next_set_password_answer(&self) {
        self.shared.lock().lose_next_answer = true;
    }

    /// `true`: drop every open connection (WebSockets included) and accept-then-drop new
    /// ones, like an unreachable NAS. `false`: serve again on the same ports.
    pub fn set_down(&self, down: bool) {
        self.shared.set_down(down);
    }

    /// How many calls were answered "Rate Limit Exceeded".
    pub fn rate_limited(&self) -> usize {
        self.shared.lock().rate_limited
    }

    /// How many calls the rate limiter counted (calls of methods that need no
    /// authentication, made on unauthenticated connections).
    pub fn unauthenticated_calls(&self) -> usize {
        self.shared.lock().unauthenticated_calls
    }

    /// The highest number of calls that ran at once on any one connection.
    pub fn max_running_per_connection(&self) -> usize {
        self.shared.max_running.load(Ordering::Relaxed)
    }

    /// Sets the user's password age (days since its last change).
    pub fn set_password_age(&self, username: &str, days: u32) {
        if let Some(user) = self.shared.lock().user_by_name_mut(username) {
            user.set_password_age(days);
        }
    }

    /// `system.security` `max_password_age` (`None`: aging disabled).
    pub fn set_max_password_age(&self, days: Option<u32>) {
        self.shared.lock().max_password_age = days;
    }

    /// Messages `mail.send` jobs delivered, oldest first.
    pub fn sent_mail(&self) -> Vec<SentMail> {
        self.shared.lock().sent_mail.clone()
    }

    /// Warnings middlewared would have logged (a private method called over the API).
    pub fn warnings(&self) -> Vec<String> {
        self.shared.lock().warnings.clone()
    }

    /// Calls in the order received: JSON-RPC method names (`auth.login_ex` carries its
    /// mechanism: `auth.login_ex:PASSWORD_PLAIN`), `REST GET /api/v2.0/user` for HTTP
    /// requests (path without query), `LEGACY <msg>` for the legacy `/websocket`.
    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }
}

impl Drop for FakeTrueNas {
    fn drop(&mut self) {
        // Closing every connection first makes clients still holding sockets fail fast
        // instead of hanging on a server that no longer answers.
        self.shared.set_down(true);
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/versions", get(rest::versions))
        .route("/api/current", get(jsonrpc::upgrade))
        .route("/api/{version}", get(jsonrpc::upgrade_pinned))
        .route("/websocket", get(legacy::upgrade))
        .route("/api/v2.0", axum::routing::any(rest::handle))
        .route("/api/v2.0/{*path}", axum::routing::any(rest::handle))
        .with_state(shared)
}
