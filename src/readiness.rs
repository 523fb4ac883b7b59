//! Is this instance ready to serve sign-ins? The TrueNAS admin session answers, and the
//! audit database takes writes. Knows nothing about HTTP.

use std::time::Duration;

use sqlx::SqlitePool;

use crate::truenas::NasClient;

/// A readiness probe must answer before the orchestrator's own timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

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

pub async fn check(nas: &dyn NasClient, audit_pool: &SqlitePool) -> Result<(), NotReady> {
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
    match tokio::time::timeout(CHECK_TIMEOUT, database_writable(audit_pool)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(NotReady::AuditDatabase(e.to_string())),
        Err(_) => Err(NotReady::AuditDatabase(String::from(
            "no write lock within 5 s",
        ))),
    }
}

/// Takes the write lock and gives it back: proves the file and its directory are writable
/// and no other writer holds the lock forever, without writing a row.
async fn database_writable(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    sqlx::query("ROLLBACK").execute(&mut *conn).await?;
    Ok(())
}
