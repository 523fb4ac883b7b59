//! Asks TrueNAS itself: `auth.login_ex` `PASSWORD_PLAIN` on a throwaway connection, read per
//! server version (see shared truenas-api.md, "Version trap").
//!
//! `EXPIRED` is not proof of the password: a one-time password from
//! `auth.generate_onetime_password` that has run out answers it too (PAM_CRED_EXPIRED in
//! utils/account/authenticator.py `__otpw_authenticate`), while the password's own expiry
//! comes from pam_unix's account check after a right password. So `EXPIRED` counts only
//! once the user's unix hash matches, checked with the unixhash verifier's own code.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use super::unixhash::UnixHashVerifier;
use super::{Account, Verdict, Verifier};
use crate::truenas::{NasClient, PasswordLogin, ServerVersion};

/// Why an `EXPIRED` did not count; the chain goes on to the next verifier.
const EXPIRED_UNCONFIRMED: &str =
    "EXPIRED, not confirmed by the unix hash (an expired one-time password answers EXPIRED too)";

pub struct TrueNasVerifier {
    nas: Arc<dyn NasClient>,
    /// Confirms `EXPIRED` answers, on the blocking pool under its own cap.
    hash: UnixHashVerifier,
}

impl TrueNasVerifier {
    pub fn new(nas: Arc<dyn NasClient>) -> Self {
        // Confirmations are rare (expired passwords only) and every sign-in already holds
        // one of the authenticator's verification slots; two at once is plenty.
        Self::with_hash_verifier(nas, UnixHashVerifier::new(2))
    }

    pub fn with_hash_verifier(nas: Arc<dyn NasClient>, hash: UnixHashVerifier) -> Self {
        Self { nas, hash }
    }

    /// A ghost account costs the same: the unix-hash verifier burns a dummy hash for it.
    async fn confirm_expired(&self, account: Account<'_>, password: &SecretString) -> Verdict {
        match self.hash.verify(account, password).await {
            Verdict::Verified => Verdict::VerifiedExpired,
            _ => Verdict::CantTell(EXPIRED_UNCONFIRMED),
        }
    }
}

/// Reads a `login_ex` answer. Positive answers prove the password on every version;
/// `AUTH_ERR` proves it wrong only from 26.0 on, where `DENIED` exists. `EXPIRED` alone
/// proves nothing (see the module comment): the verifier confirms it separately.
pub fn read_login(answer: PasswordLogin, version: Option<ServerVersion>) -> Verdict {
    match answer {
        PasswordLogin::Success | PasswordLogin::Denied | PasswordLogin::OtpRequired => {
            Verdict::Verified
        }
        PasswordLogin::Expired => Verdict::CantTell(EXPIRED_UNCONFIRMED),
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

#[async_trait]
impl Verifier for TrueNasVerifier {
    fn name(&self) -> &'static str {
        "truenas"
    }

    async fn verify(&self, account: Account<'_>, password: &SecretString) -> Verdict {
        match self.nas.check_password(account.username(), password).await {
            Ok(check) if check.login == PasswordLogin::Expired => {
                self.confirm_expired(account, password).await
            }
            Ok(check) => match (
                read_login(check.login, self.nas.server_version()),
                check.otp,
            ) {
                (Verdict::Verified, Some(otp)) => Verdict::VerifiedAwaitingOtp(otp),
                (verdict, _) => verdict,
            },
            Err(e) => Verdict::Unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truenas::{ApiKind, NasError, NasUser, PasswordCheck};

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
        ] {
            assert_eq!(read_login(positive, v25), Verdict::Verified);
            assert_eq!(read_login(positive, v26), Verdict::Verified);
        }
        assert!(matches!(
            read_login(PasswordLogin::Expired, v26),
            Verdict::CantTell(_)
        ));
    }

    /// A NAS that answers every password check with one fixed answer.
    struct Answers(PasswordLogin);

    #[async_trait]
    impl NasClient for Answers {
        fn api_kind(&self) -> ApiKind {
            ApiKind::Simulated
        }
        fn server_version(&self) -> Option<ServerVersion> {
            Some(ServerVersion::new(26, 4))
        }
        async fn get_user(&self, _: &str) -> Result<Option<NasUser>, NasError> {
            Ok(None)
        }
        async fn list_users(&self) -> Result<Vec<NasUser>, NasError> {
            Ok(Vec::new())
        }
        async fn check_password(
            &self,
            _: &str,
            _: &SecretString,
        ) -> Result<PasswordCheck, NasError> {
            let answer = self.0;
            Ok(PasswordCheck::answer(answer))
        }
        async fn set_password(&self, _: &NasUser, _: &SecretString) -> Result<(), NasError> {
            Ok(())
        }
        async fn group_names(&self, _: &[i64]) -> Result<Vec<String>, NasError> {
            Ok(Vec::new())
        }
        async fn ping(&self) -> Result<(), NasError> {
            Ok(())
        }
        async fn password_max_age(&self) -> Result<Option<i64>, NasError> {
            Ok(Some(30))
        }
        async fn send_mail(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: std::time::Duration,
        ) -> Result<(), NasError> {
            Ok(())
        }
        async fn set_ssh_keys(&self, user: &NasUser, _: &str) -> Result<NasUser, NasError> {
            Ok(user.clone())
        }

        async fn stat_path(
            &self,
            _: &str,
        ) -> Result<Option<crate::truenas::path_stat::PathStat>, NasError> {
            Ok(None)
        }
    }

    fn user_with_password(password: &str) -> NasUser {
        // 1,000 rounds keep the test fast; the check is the unixhash verifier's own.
        let hash = pwhash::sha512_crypt::hash_with("$6$rounds=1000$abcdefghijklmnop$", password)
            .expect("valid setting");
        NasUser {
            unixhash: Some(SecretString::from(hash)),
            ..NasUser::sample("alice")
        }
    }

    fn expired_verifier() -> TrueNasVerifier {
        TrueNasVerifier::new(Arc::new(Answers(PasswordLogin::Expired)))
    }

    #[tokio::test]
    async fn expired_counts_when_the_unix_hash_matches() {
        let user = user_with_password("old but right");
        let verdict = expired_verifier()
            .verify(Account::Real(&user), &SecretString::from("old but right"))
            .await;
        assert_eq!(verdict, Verdict::VerifiedExpired);
    }

    #[tokio::test]
    async fn expired_with_another_secret_goes_on_to_the_next_verifier() {
        // An expired one-time password: TrueNAS says EXPIRED, the hash is the real password's.
        let user = user_with_password("the real password");
        let verifier = expired_verifier();
        let otp = SecretString::from("expired-one-time-pw");
        assert_eq!(
            verifier.verify(Account::Real(&user), &otp).await,
            Verdict::CantTell(EXPIRED_UNCONFIRMED)
        );
        let mut masked = user_with_password("x");
        masked.unixhash = None;
        assert_eq!(
            verifier.verify(Account::Real(&masked), &otp).await,
            Verdict::CantTell(EXPIRED_UNCONFIRMED),
            "no hash to confirm with"
        );
        assert_eq!(
            verifier.verify(Account::Ghost("nobody"), &otp).await,
            Verdict::CantTell(EXPIRED_UNCONFIRMED),
            "a ghost gets the same work and the same answer"
        );
    }

    #[tokio::test]
    async fn other_answers_need_no_hash() {
        let mut user = user_with_password("pw");
        user.unixhash = None;
        let verifier = TrueNasVerifier::new(Arc::new(Answers(PasswordLogin::Denied)));
        assert_eq!(
            verifier
                .verify(Account::Real(&user), &SecretString::from("pw"))
                .await,
            Verdict::Verified
        );
    }
}
