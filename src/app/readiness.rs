//! Is this instance ready to serve sign-ins? The TrueNAS admin session answers, and the
//! audit database takes writes. Knows nothing about HTTP.
//!
//! `/readyz` may be reachable from outside and called in a loop, so an answer is reused for
//! [`CACHE_FOR`] and concurrent callers share one check ([`Readiness`]): whatever the call
//! rate, TrueNAS sees at most one `core.ping` in flight and one every two seconds, and the
//! database one write-lock probe.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use sqlx::SqlitePool;

use crate::truenas::NasClient;

/// A readiness probe must answer before the orchestrator's own timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than the pool's busy timeout (5 s, `db.rs`), so that a held lock ends as sqlite's
/// own "database is locked" rather than a cancelled statement.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(7);
/// How long an answer is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(2);

type Answer = Result<(), NotReady>;

#[derive(Default)]
struct Slot {
    last: Option<(Instant, Answer)>,
    running: Option<Shared<BoxFuture<'static, Answer>>>,
}

/// The cached, single-flight readiness check.
pub struct Readiness {
    nas: Arc<dyn NasClient>,
    audit_pool: SqlitePool,
    slot: Mutex<Slot>,
}

impl Readiness {
    pub fn new(nas: Arc<dyn NasClient>, audit_pool: SqlitePool) -> Arc<Self> {
        Arc::new(Self {
            nas,
            audit_pool,
            slot: Mutex::new(Slot::default()),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // A poisoned lock only means a panic elsewhere while swapping an answer; the slot
        // holds nothing that could be half-written.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last answer if it is younger than [`CACHE_FOR`], else the running check's, else
    /// a new check's. The check runs in a task of its own and stores its answer itself, so
    /// a caller that gives up (a client that disconnects) never cancels it, and the next
    /// caller cannot start a second one while it runs.
    pub async fn check(self: &Arc<Self>) -> Answer {
        let running = {
            let mut slot = self.slot();
            if let Some((at, answer)) = &slot.last {
                if at.elapsed() < CACHE_FOR {
                    return answer.clone();
                }
            }
            match &slot.running {
                Some(running) => running.clone(),
                None => {
                    let this = Arc::clone(self);
                    let task = tokio::spawn(async move {
                        let answer = check(this.nas.as_ref(), &this.audit_pool).await;
                        // Logged here, once per check, not once per (cached) answer.
                        if let Err(not_ready) = &answer {
                            tracing::warn!(
                                component = not_ready.component(),
                                detail = not_ready.detail(),
                                "not ready"
                            );
                        }
                        let mut slot = this.slot();
                        slot.last = Some((Instant::now(), answer.clone()));
                        slot.running = None;
                        answer
                    });
                    let running = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(NotReady::TrueNas(format!(
                                "the readiness check failed: {e}"
                            )))
                        })
                    }
                    .boxed()
                    .shared();
                    slot.running = Some(running.clone());
                    running
                }
            }
        };
        running.await
    }
}

/// Why the instance is not ready. The detail goes to the log only: `/readyz` may be reachable
/// from outside, and an error text can name internal addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    TrueNas(String),
    /// TrueNAS refused the portal's login with "Rate Limit Exceeded": said apart, because
    /// waiting a minute is the fix.
    TrueNasRateLimited(String),
    /// passgate's own budget of TrueNAS logins is spent for this minute.
    LoginBudgetSpent(String),
    AuditDatabase(String),
}

impl NotReady {
    pub fn component(&self) -> &'static str {
        match self {
            NotReady::TrueNas(_) => "truenas",
            NotReady::TrueNasRateLimited(_) | NotReady::LoginBudgetSpent(_) => "truenas",
            NotReady::AuditDatabase(_) => "audit_database",
        }
    }

    /// Fixed text for the probe's answer.
    pub fn public_reason(&self) -> &'static str {
        match self {
            NotReady::TrueNas(_) => "the TrueNAS admin session does not answer",
            NotReady::TrueNasRateLimited(_) => {
                "TrueNAS is rate-limiting the portal's logins (Rate Limit Exceeded)"
            }
            NotReady::LoginBudgetSpent(_) => {
                "the portal's own budget of TrueNAS logins is spent for this minute"
            }
            NotReady::AuditDatabase(_) => "the audit database does not take writes",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            NotReady::TrueNas(d)
            | NotReady::TrueNasRateLimited(d)
            | NotReady::LoginBudgetSpent(d)
            | NotReady::AuditDatabase(d) => d,
        }
    }
}

async fn check(nas: &dyn NasClient, audit_pool: &SqlitePool) -> Answer {
    match tokio::time::timeout(CHECK_TIMEOUT, nas.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e @ crate::truenas::NasError::RateLimited(_))) => {
            return Err(NotReady::TrueNasRateLimited(e.to_string()))
        }
        Ok(Err(e @ crate::truenas::NasError::BudgetSpent(_))) => {
            return Err(NotReady::LoginBudgetSpent(e.to_string()))
        }
        Ok(Err(e)) => return Err(NotReady::TrueNas(e.to_string())),
        Err(_) => return Err(NotReady::TrueNas(String::from("core.ping timed out"))),
    }
    match tokio::time::timeout(DATABASE_TIMEOUT, database_writable(audit_pool)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(NotReady::AuditDatabase(e.to_string())),
        Err(_) => Err(NotReady::AuditDatabase(String::from(
            "no write lock within 7 s",
        ))),
    }
}

/// Takes the write lock and gives it back: proves the file and its directory are writable
/// and no other writer holds the lock forever, without writing a row. A transaction sqlx
/// knows about, so that one cut short is rolled back before its connection is reused (a
/// bare `BEGIN` cut short by the timeout would go back to the pool holding the lock).
async fn database_writable(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = pool.acquire().await?;
    let tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    tx.rollback().await
}
