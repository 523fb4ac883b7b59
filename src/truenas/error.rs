use thiserror::Error;

/// Errors from any TrueNAS client. `Display` output is safe for logs: it never carries a
/// server traceback, a password or the API key.
#[derive(Debug, Error)]
pub enum NasError {
    /// TrueNAS refused the input; the messages are `extra[*][1]` (or the REST equivalent) and
    /// are meant for the user.
    #[error("TrueNAS rejected the request: {}", .0.join("; "))]
    Validation(Vec<String>),
    /// A call error (`-32001`) such as EPERM; `reason` is TrueNAS' one-line reason.
    #[error("TrueNAS call {method} failed: {errname}: {reason}")]
    Call {
        method: String,
        errname: String,
        reason: String,
    },
    /// The method does not exist on this server (`-32601` or HTTP 404).
    #[error("TrueNAS has no method {0}")]
    MethodNotFound(String),
    /// The admin API key was refused (wrong, expired or revoked key, wrong `api_user`).
    #[error("TrueNAS refused the portal's API key: {0}")]
    AdminAuth(String),
    /// Could not reach TrueNAS, TLS failed, the connection dropped or a call timed out.
    #[error("TrueNAS unavailable: {0}")]
    Unavailable(String),
    /// TrueNAS refused an unauthenticated call with "Rate Limit Exceeded" (EBUSY). Never a
    /// verdict on a password.
    #[error("TrueNAS rate limit: {0}")]
    RateLimited(String),
    /// passgate's own budget of unauthenticated calls (`budget.rs`) is spent for now: the call
    /// was not made.
    #[error("{0}")]
    BudgetSpent(String),
    /// TrueNAS answered something this client cannot parse.
    #[error("unexpected answer from TrueNAS: {0}")]
    Protocol(String),
}

impl NasError {
    /// True when the portal could not get an answer at all (as opposed to a refusal).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            NasError::Unavailable(_)
                | NasError::AdminAuth(_)
                | NasError::RateLimited(_)
                | NasError::BudgetSpent(_)
        )
    }
}
