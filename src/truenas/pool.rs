//! The portal's connections to middlewared, all logged in with the API key.
//!
//! - One **admin** connection carries `user.query`, `user.set_password`, `core.ping`, …
//! - A small pool of **verification** connections carries `auth.login_ex` `PASSWORD_PLAIN`.
//!   middlewared does not rate-limit callers that are already authenticated, and on every
//!   answer but `SUCCESS` the connection keeps the API key's credential (plugins/auth.py
//!   `login_ex`: `session_manager.login` runs only on `PAM_SUCCESS`; checked at TS-25.04.2.6,
//!   TS-25.10.6, TS-26.0.0-BETA.3 and 27.0.0-BETA.1). So checking passwords there spends none
//!   of the 20-a-minute budget of unauthenticated calls.
//!
//! Each verification connection runs **one** login at a time. middlewared keeps one
//! authentication context per connection: `login_ex` stores the PAM handle in
//! `app.authentication_context.pam_hdl` and then authenticates through that attribute from a
//! worker thread, and an `OTP_REQUIRED` answer leaves `next_mech` set there, which the next
//! `login_ex` on the connection discards ("Abandoning login attempt"). Two logins in flight
//! on one connection could check one user's password on the other's handle. Admin calls never
//! share a connection with a login either: after a `SUCCESS` (the user is an admin) the
//! connection runs as that user until `auth.logout`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::admin_login::{AdminLogin, Mechanism};
use super::budget::UnauthBudget;
use super::rpc_conn::RpcConnection;
use super::NasError;

/// A refused TCP connection costs TrueNAS nothing, so retry soon: a restarted middlewared is
/// back within seconds. Capped low so sign-ins resume quickly after an outage.
const CONNECT_BACKOFF_START: Duration = Duration::from_millis(250);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// A refused login would be refused again and each try costs budget: back off for longer.
const LOGIN_BACKOFF_START: Duration = Duration::from_secs(2);
const LOGIN_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// While another verification connection is live, a new one must leave this many logins of
/// the budget free: one for the admin connection and one for a verification connection to
/// reconnect after middlewared restarts. So the pool grows only with budget to spare, and a
/// restart never finds the budget spent. With none live, a verification connection may use
/// what is left: sign-ins have nothing else to run on.
const RESERVE_WHILE_OTHERS_LIVE: usize = 2;
/// The most verification connections, whatever `rate_limit.verify_concurrency` says: each
/// costs a login to open, and middlewared keeps a PAM session per connection.
pub const MAX_VERIFY_CONNECTIONS: usize = 4;

pub struct Pool {
    ws_url: String,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    login: AdminLogin,
    budget: UnauthBudget,
    backoff: Mutex<Backoff>,
    admin: tokio::sync::Mutex<Option<Arc<RpcConnection>>>,
    idle: Mutex<Vec<Arc<RpcConnection>>>,
    /// Signalled when a lease gives its connection back, or a connection is gone.
    returned: tokio::sync::Notify,
    /// Verification connections that exist (idle or leased). Leases still waiting for one do
    /// not count: they cannot give anything back.
    live: AtomicUsize,
    verify_slots: Semaphore,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
    /// The last failure was TrueNAS' rate limit: answers during the wait say so.
    rate_limited: bool,
}

/// How a new connection is opened: the admin connection may use the whole budget.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Admin,
    Verify { reserve: usize },
}

impl Pool {
    pub fn new(
        ws_url: String,
        tls: Arc<ClientConfig>,
        timeout: Duration,
        login: AdminLogin,
        verify_connections: usize,
    ) -> Self {
        Self {
            ws_url,
            tls,
            timeout,
            login,
            budget: UnauthBudget::default(),
            backoff: Mutex::new(Backoff::default()),
            admin: tokio::sync::Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            returned: tokio::sync::Notify::new(),
            live: AtomicUsize::new(0),
            verify_slots: Semaphore::new(verify_connections.clamp(1, MAX_VERIFY_CONNECTIONS)),
        }
    }

    pub fn mechanism(&self) -> Option<Mechanism> {
        self.login.mechanism()
    }

    pub fn budget(&self) -> &UnauthBudget {
        &self.budget
    }

    /// The admin connection, opened (and logged in) if needed. While backing off after a
    /// failure, answers at once rather than hammering the NAS.
    pub async fn admin(&self) -> Result<Arc<RpcConnection>, NasError> {
        let mut slot = self.admin.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
            tracing::warn!("TrueNAS admin connection lost; reconnecting");
            *slot = None;
        }
        let conn = Arc::new(self.open(Purpose::Admin).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A verification connection for one login, waiting at most the call timeout for one to
    /// be free. Dropping the lease puts the connection back.
    pub async fn verification(&self) -> Result<VerifyLease<'_>, NasError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let permit = tokio::time::timeout_at(deadline, self.verify_slots.acquire())
            .await
            .map_err(|_| {
                NasError::Unavailable(String::from(
                    "no TrueNAS verification connection became free in time",
                ))
            })?
            .map_err(|_| NasError::Unavailable(String::from("verification pool closed")))?;
        loop {
            // Registered before looking, so a connection returned in between is not missed.
            let returned = self.returned.notified();
            if let Some(conn) = self.take_idle() {
                return Ok(self.lease(conn, permit));
            }
            let others_live = self.others_live();
            let reserve = if others_live {
                RESERVE_WHILE_OTHERS_LIVE
            } else {
                0
            };
            match self.open(Purpose::Verify { reserve }).await {
                Ok(conn) => {
                    self.live.fetch_add(1, Ordering::SeqCst);
                    return Ok(self.lease(Arc::new(conn), permit));
                }
                // No budget for another connection, but one in use will come back.
                Err(NasError::BudgetSpent(_)) if others_live => {
                    if tokio::time::timeout_at(deadline, returned).await.is_err() {
                        return Err(NasError::Unavailable(String::from(
                            "no TrueNAS verification connection became free in time",
                        )));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn take_idle(&self) -> Option<Arc<RpcConnection>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let before = idle.len();
        idle.retain(|c| !c.is_closed());
        for _ in idle.len()..before {
            self.gone();
        }
        idle.pop()
    }

    /// A verification connection left the pool for good.
    fn gone(&self) {
        let _ = self
            .live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        self.returned.notify_waiters();
    }

    /// Whether some other verification connection exists, idle or leased.
    fn others_live(&self) -> bool {
        self.live.load(Ordering::SeqCst) > 0
    }

    fn lease<'a>(
        &'a self,
        conn: Arc<RpcConnection>,
        permit: SemaphorePermit<'a>,
    ) -> VerifyLease<'a> {
        VerifyLease {
            pool: self,
            conn: Some(conn),
            _permit: permit,
        }
    }

    /// After a `SUCCESS` the connection belongs to the user who signed in: log out, and log in
    /// with the key again before it is reused. If that fails the connection is dropped.
    pub async fn restore(&self, lease: &mut VerifyLease<'_>) {
        let Some(conn) = lease.conn.take() else {
            return;
        };
        if let Err(e) = conn.call("auth.logout", serde_json::json!([])).await {
            tracing::debug!(error = %e, "auth.logout after an admin user's password check failed");
            self.gone();
            return;
        }
        match self
            .login
            .login(&conn, &self.budget, RESERVE_WHILE_OTHERS_LIVE)
            .await
        {
            Ok(_) => lease.conn = Some(conn),
            Err(e) => {
                tracing::info!(error = %e, "verification connection dropped after a user login")
            }
        }
    }

    async fn open(&self, purpose: Purpose) -> Result<RpcConnection, NasError> {
        self.check_backoff()?;
        let reserve = match purpose {
            Purpose::Admin => 0,
            Purpose::Verify { reserve } => reserve,
        };
        let attempt = async {
            let conn = RpcConnection::connect(&self.ws_url, self.tls.clone(), self.timeout).await?;
            self.login.login(&conn, &self.budget, reserve).await?;
            Ok::<_, NasError>(conn)
        };
        match attempt.await {
            Ok(conn) => {
                self.record_success();
                Ok(conn)
            }
            // Our own budget said no: nothing was asked of TrueNAS, nothing to back off from.
            Err(e @ NasError::BudgetSpent(_)) => Err(e),
            Err(e) => {
                self.record_failure(&e);
                Err(e)
            }
        }
    }

    fn check_backoff(&self) -> Result<(), NasError> {
        let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        match backoff.retry_at {
            Some(at) if Instant::now() < at => {
                let text = format!(
                    "reconnecting to TrueNAS in {} ms after: {}",
                    (at - Instant::now()).as_millis(),
                    backoff.last_error
                );
                Err(if backoff.rate_limited {
                    NasError::RateLimited(text)
                } else {
                    NasError::Unavailable(text)
                })
            }
            _ => Ok(()),
        }
    }

    fn record_success(&self) {
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        if backoff.failures > 0 {
            tracing::info!("TrueNAS connection restored");
        }
        *backoff = Backoff::default();
    }

    fn record_failure(&self, error: &NasError) {
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        backoff.failures = backoff.failures.saturating_add(1);
        let doubling = 1u32 << backoff.failures.saturating_sub(1).min(8);
        let wait = match error {
            NasError::Unavailable(_) => CONNECT_BACKOFF_START
                .saturating_mul(doubling)
                .min(CONNECT_BACKOFF_MAX),
            // TrueNAS' window is 60 s from its first call: waiting a full window is the only
            // wait that surely ends the refusal.
            NasError::RateLimited(_) => super::budget::WINDOW,
            _ => LOGIN_BACKOFF_START
                .saturating_mul(doubling)
                .min(LOGIN_BACKOFF_MAX),
        };
        backoff.retry_at = Some(Instant::now() + wait);
        backoff.last_error = error.to_string();
        backoff.rate_limited = matches!(error, NasError::RateLimited(_));
        match error {
            NasError::RateLimited(_) => tracing::error!(
                error = %error,
                retry_in_ms = wait.as_millis() as u64,
                "TrueNAS is rate-limiting the portal's logins (Rate Limit Exceeded)"
            ),
            _ => tracing::warn!(
                error = %error,
                retry_in_ms = wait.as_millis() as u64,
                "TrueNAS connection or login failed"
            ),
        }
    }
}

/// One verification connection, held for one login.
pub struct VerifyLease<'a> {
    pool: &'a Pool,
    conn: Option<Arc<RpcConnection>>,
    _permit: SemaphorePermit<'a>,
}

impl VerifyLease<'_> {
    /// `None` only after [`Pool::restore`] had to drop the connection.
    pub fn conn(&self) -> Option<&Arc<RpcConnection>> {
        self.conn.as_ref()
    }

    /// Takes the connection out of the pool for good (a login waiting for its OTP code holds
    /// it); the pool opens another when it needs one.
    pub fn detach(mut self) -> Option<Arc<RpcConnection>> {
        let conn = self.conn.take();
        if conn.is_some() {
            self.pool.gone();
        }
        conn
    }
}

impl Drop for VerifyLease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if conn.is_closed() {
                self.pool.gone();
            } else {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn);
                self.pool.returned.notify_waiters();
            }
        }
    }
}
