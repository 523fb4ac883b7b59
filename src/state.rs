//! Everything a request handler may use, built once at start.

use std::sync::Arc;

use crate::audit::Audit;
use crate::authenticate::Authenticator;
use crate::keys::Keys;
use crate::policy::Policy;
use crate::sessions::Sessions;
use crate::truenas::NasClient;
use crate::web::cookies::CookieNames;

#[derive(Clone)]
pub struct AppState {
    pub nas: Arc<dyn NasClient>,
    pub auth: Arc<Authenticator>,
    pub sessions: Arc<Sessions>,
    pub keys: Arc<Keys>,
    pub policy: Arc<Policy>,
    pub audit: Audit,
    pub cookies: CookieNames,
    /// HSTS is sent only when passgate itself terminates TLS.
    pub serves_tls: bool,
}
