//! Asks TrueNAS itself: `auth.login_ex` `PASSWORD_PLAIN` on a throwaway connection, read per
//! server version (see shared truenas-api.md, "Version trap").

use std::sync::Arc;

use futures_util::future::BoxFuture;
use secrecy::SecretString;

use super::{Account, Verdict, Verifier};
use crate::truenas::{NasClient, PasswordLogin, ServerVersion};

pub struct TrueNasVerifier {
    nas: Arc<dyn NasClient>,
}

impl TrueNasVerifier {
    pub fn new(nas: Arc<dyn NasClient>) -> Self {
        Self { nas }
    }
}

/// Reads a `login_ex` answer. Positive answers prove the password on every version;
/// `AUTH_ERR` proves it wrong only from 26.0 on, where `DENIED` exists.
pub fn read_login(answer: PasswordLogin, version: Option<ServerVersion>) -> Verdict {
    match answer {
        PasswordLogin::Success
        | PasswordLogin::Denied
        | PasswordLogin::OtpRequired
        | PasswordLogin::Expired => Verdict::Verified,
        PasswordLogin::AuthErr => match version {
            Some(v) if v.auth_err_is_definite() => {
                Verdict::Rejected("AUTH_ERR (26+: wrong password)")
            }
            Some(_) => Verdict::CantTell(
                "AUTH_ERR before 26.0 (also sent for correct passwords without API access)",
            ),
            None => Verdict::CantTell("AUTH_ERR from a server of unknown version"),
        },
        PasswordLogin::Redirect => Verdict::CantTell("REDIRECT (HA standby)"),
        PasswordLogin::NotSupported => Verdict::CantTell("the API in use cannot check passwords"),
    }
}

impl Verifier for TrueNasVerifier {
    fn name(&self) -> &'static str {
        "truenas"
    }

    fn verify<'a>(
        &'a self,
        account: Account<'a>,
        password: &'a SecretString,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            match self.nas.check_password(account.username(), password).await {
                Ok(check) => match (
                    read_login(check.login, self.nas.server_version()),
                    check.otp,
                ) {
                    (Verdict::Verified, Some(otp)) => Verdict::VerifiedAwaitingOtp(otp),
                    (verdict, _) => verdict,
                },
                Err(e) => Verdict::Unavailable(e.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_err_depends_on_version() {
        let v25 = Some(ServerVersion::new(25, 10));
        let v26 = Some(ServerVersion::new(26, 4));
        assert!(matches!(
            read_login(PasswordLogin::AuthErr, v25),
            Verdict::CantTell(_)
        ));
        assert!(matches!(
            read_login(PasswordLogin::AuthErr, None),
            Verdict::CantTell(_)
        ));
        assert!(matches!(
            read_login(PasswordLogin::AuthErr, v26),
            Verdict::Rejected(_)
        ));
        for positive in [
            PasswordLogin::Success,
            PasswordLogin::Denied,
            PasswordLogin::OtpRequired,
            PasswordLogin::Expired,
        ] {
            assert_eq!(read_login(positive, v25), Verdict::Verified);
            assert_eq!(read_login(positive, v26), Verdict::Verified);
        }
    }
}
