//! Action: the code step after the password (the portal's TOTP, a backup code, or the
//! TrueNAS-side code), audited on every outcome.

use secrecy::SecretString;

use crate::limiter::Admitted;

use super::portal::{Caller, Portal};
use super::sessions::Claims;
use super::steps::{audit_code, CodeAccepted, CodeError};

impl Portal {
    pub async fn submit_code(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        pending: &Claims,
        code: &SecretString,
    ) -> Result<CodeAccepted, CodeError> {
        let result = self.steps.submit_code(pending, code).await;
        audit_code(
            &self.audit,
            pending,
            caller.context,
            caller.via.as_str(),
            &result,
        )
        .await;
        result
    }
}
