//! Action: sign out (the session is revoked, then audited).

use serde_json::json;

use crate::audit::{Event, Outcome, Record};

use super::portal::{Caller, Portal};
use super::sessions::{Claims, SessionError};

impl Portal {
    /// A revocation that fails is audited as an error and returned: the web page still
    /// clears the cookie, the API says it failed.
    pub async fn sign_out(&self, caller: Caller<'_>, session: &Claims) -> Result<(), SessionError> {
        let revoked = self.sessions.revoke(&session.jti).await;
        let record = match &revoked {
            Ok(()) => Record::new(Event::Logout, Outcome::Success),
            Err(e) => {
                tracing::error!(error = %e, "could not revoke a session at logout");
                Record::new(Event::Logout, Outcome::Error).reason("session could not be revoked")
            }
        };
        self.audit.record(
            record
                .user(&session.sub)
                .context(caller.context)
                .detail(json!({"via": caller.via.as_str()})),
        );
        revoked
    }
}
