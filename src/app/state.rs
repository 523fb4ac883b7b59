//! Everything a request handler may use, built once at start.

use std::sync::Arc;

use crate::app::readiness::Readiness;
use crate::audit::Audit;
use crate::auth::Portal;
use crate::keys::Keys;
use crate::limiter::LoginLimiter;
use crate::web::client_ip::TrustedProxies;
use crate::web::cookies::CookieNames;
use crate::web::throttle::ThrottleConfig;

/// Cheap to clone: every layer and extractor takes a copy per request, so the state is one
/// `Arc` (a profile under a login flood showed cloning and dropping fifteen separate `Arc`s
/// per request costing about a tenth of the CPU).
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

pub struct AppInner {
    /// The actions (sign in, change the password, …) that pages and API handlers call.
    pub portal: Portal,
    /// The audit database, for the admin page and API.
    pub audit_pool: sqlx::SqlitePool,
    /// The portal's own database (sessions, two-step secrets, reset links, reminders).
    pub db: sqlx::SqlitePool,
    pub keys: Arc<Keys>,
    pub audit: Audit,
    pub cookies: CookieNames,
    /// HSTS is sent only when passgate itself terminates TLS.
    pub serves_tls: bool,
    pub limiter: Arc<LoginLimiter>,
    /// IPv6 clients are grouped by this prefix for every per-client limit.
    pub ipv6_prefix: u8,
    pub trusted_proxies: TrustedProxies,
    /// TCP peers that may read `/metrics` on the main listener.
    pub metrics_allow: Vec<ipnet::IpNet>,
    pub throttle: Arc<ThrottleConfig>,
    /// `/readyz`'s cached, single-flight check.
    pub readiness: Arc<Readiness>,
}
