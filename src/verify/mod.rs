//! The verifier chain: the one place that decides whether a password is right.
//!
//! Each verifier answers Verified / Rejected / CantTell / Unavailable. The chain asks them in
//! the configured order and stops at the first definite answer (Verified or Rejected).

pub mod smb;
pub mod truenas;
pub mod unixhash;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::truenas::{NasOtp, NasUser};

/// The account a verifier is asked about.
#[derive(Clone, Copy)]
pub enum Account<'a> {
    Real(&'a NasUser),
    /// An account that does not exist or may not sign in. Verifiers do the same work for it
    /// as for a real one (a dummy hash, a real TrueNAS round trip), so that response time does
    /// not reveal which usernames exist; the chain then rejects it whatever they answer.
    Ghost(&'a str),
}

impl<'a> Account<'a> {
    pub fn username(&self) -> &'a str {
        match self {
            Account::Real(user) => &user.username,
            Account::Ghost(name) => name,
        }
    }
}

/// One verifier's answer. Reasons are short, fixed, log-safe strings for the audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// The password is right, and TrueNAS says it is past its maximum age (`EXPIRED`, then
    /// confirmed with the user's unix hash, since an expired one-time password answers
    /// `EXPIRED` too).
    VerifiedExpired,
    /// The password is right and TrueNAS wants the user's TrueNAS-side OTP code next, on the
    /// login held open here.
    VerifiedAwaitingOtp(NasOtp),
    Rejected(&'static str),
    CantTell(&'static str),
    Unavailable(String),
}

#[async_trait]
pub trait Verifier: Send + Sync {
    /// The config name (`truenas`, `smb`, `unixhash`), also used in audit entries.
    fn name(&self) -> &'static str;

    async fn verify(&self, account: Account<'_>, password: &SecretString) -> Verdict;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Verified,
    Rejected,
    /// No verifier could give a definite answer because a backend was down: the user is told
    /// to try later, never that the password was wrong.
    Unavailable,
    /// No verification slot became free in time (set by the authenticator, never the chain).
    Busy,
}

/// The chain's answer, with what the audit entry needs to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOutcome {
    pub decision: Decision,
    /// The verifier that decided, if one did.
    pub verifier: Option<&'static str>,
    /// A log-safe reason, e.g. `truenas: AUTH_ERR on 26+` or `account locked`.
    pub reason: String,
    /// Set when TrueNAS asked for the user's TrueNAS-side OTP code: the sign-in is not over.
    pub nas_otp: Option<NasOtp>,
    /// TrueNAS reported the (verified) password as expired. The user may still sign in here:
    /// the portal's admin-key change is the only way left to renew it.
    pub password_expired: bool,
}

impl ChainOutcome {
    /// An outcome with no OTP step pending and no expired password; the two verdicts that
    /// carry those set them on top of this.
    fn decided(decision: Decision, verifier: Option<&'static str>, reason: String) -> Self {
        Self {
            decision,
            verifier,
            reason,
            nas_otp: None,
            password_expired: false,
        }
    }
}

/// Why an existing TrueNAS account may not use the portal at all.
pub fn account_refusal(user: &NasUser, allow_root: bool) -> Option<&'static str> {
    if !user.local {
        Some("account is not local (directory services)")
    } else if user.locked {
        Some("account is locked")
    } else if user.password_disabled {
        Some("password login is disabled for the account")
    } else if user.builtin && !(allow_root && user.username == "root") {
        Some("builtin system account")
    } else {
        None
    }
}

pub struct VerifierChain {
    verifiers: Vec<Box<dyn Verifier>>,
}

impl VerifierChain {
    pub fn new(verifiers: Vec<Box<dyn Verifier>>) -> Self {
        Self { verifiers }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.verifiers.iter().map(|v| v.name()).collect()
    }

    /// Runs the chain. For a ghost account the decision is always Rejected, after the same
    /// work a real account would cost.
    #[tracing::instrument(name = "verify", skip_all)]
    pub async fn run(&self, account: Account<'_>, password: &SecretString) -> ChainOutcome {
        let mut notes: Vec<String> = Vec::new();
        let mut any_unavailable = false;
        for verifier in &self.verifiers {
            let name = verifier.name();
            let started = std::time::Instant::now();
            let verdict = verifier.verify(account, password).await;
            crate::metrics::verifier_latency(name, started.elapsed());
            match verdict {
                Verdict::Verified
                | Verdict::VerifiedExpired
                | Verdict::VerifiedAwaitingOtp(_)
                | Verdict::Rejected(_)
                    if matches!(account, Account::Ghost(_)) =>
                {
                    return ChainOutcome::decided(
                        Decision::Rejected,
                        None,
                        String::from("account unknown or not allowed"),
                    );
                }
                Verdict::Verified => {
                    return ChainOutcome::decided(
                        Decision::Verified,
                        Some(name),
                        format!("{name}: verified"),
                    );
                }
                Verdict::VerifiedExpired => {
                    return ChainOutcome {
                        password_expired: true,
                        ..ChainOutcome::decided(
                            Decision::Verified,
                            Some(name),
                            format!("{name}: verified, password expired"),
                        )
                    };
                }
                Verdict::VerifiedAwaitingOtp(otp) => {
                    return ChainOutcome {
                        nas_otp: Some(otp),
                        ..ChainOutcome::decided(
                            Decision::Verified,
                            Some(name),
                            format!("{name}: verified, TrueNAS asks for the OTP code"),
                        )
                    };
                }
                Verdict::Rejected(why) => {
                    return ChainOutcome::decided(
                        Decision::Rejected,
                        Some(name),
                        format!("{name}: {why}"),
                    );
                }
                Verdict::CantTell(why) => notes.push(format!("{name}: {why}")),
                Verdict::Unavailable(why) => {
                    any_unavailable = true;
                    notes.push(format!("{name}: unavailable: {why}"));
                }
            }
        }
        let decision = match account {
            Account::Ghost(_) => Decision::Rejected,
            // A backend that was down might have said yes: do not call it a wrong password.
            Account::Real(_) if any_unavailable => Decision::Unavailable,
            // Nobody could confirm the password: fail closed.
            Account::Real(_) => Decision::Rejected,
        };
        let reason = match account {
            Account::Ghost(_) => String::from("account unknown or not allowed"),
            Account::Real(_) if notes.is_empty() => String::from("no verifier configured"),
            Account::Real(_) => notes.join("; "),
        };
        ChainOutcome::decided(decision, None, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Fixed(&'static str, Verdict, Arc<AtomicUsize>);

    #[async_trait]
    impl Verifier for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn verify(&self, _: Account<'_>, _: &SecretString) -> Verdict {
            self.2.fetch_add(1, Ordering::SeqCst);
            self.1.clone()
        }
    }

    fn user() -> NasUser {
        NasUser {
            smb: true,
            ..NasUser::sample("alice")
        }
    }

    fn chain(verdicts: Vec<Verdict>) -> (VerifierChain, Vec<Arc<AtomicUsize>>) {
        let names = ["truenas", "smb", "unixhash"];
        let mut counters = Vec::new();
        let verifiers = verdicts
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let c = Arc::new(AtomicUsize::new(0));
                counters.push(c.clone());
                Box::new(Fixed(names[i], v, c)) as Box<dyn Verifier>
            })
            .collect();
        (VerifierChain::new(verifiers), counters)
    }

    fn pw() -> SecretString {
        SecretString::from("pw")
    }

    #[tokio::test]
    async fn stops_at_first_definite_answer() {
        let (c, n) = chain(vec![
            Verdict::CantTell("AUTH_ERR before 26"),
            Verdict::Rejected("wrong password"),
            Verdict::Verified,
        ]);
        let u = user();
        let out = c.run(Account::Real(&u), &pw()).await;
        assert_eq!(out.decision, Decision::Rejected);
        assert_eq!(out.verifier, Some("smb"));
        assert_eq!(n[2].load(Ordering::SeqCst), 0, "unixhash must not run");
    }

    #[tokio::test]
    async fn verified_after_cant_tell() {
        let (c, _) = chain(vec![Verdict::CantTell("x"), Verdict::Verified]);
        let u = user();
        let out = c.run(Account::Real(&u), &pw()).await;
        assert_eq!(out.decision, Decision::Verified);
        assert_eq!(out.verifier, Some("smb"));
    }

    #[tokio::test]
    async fn an_expired_password_is_verified_and_marked() {
        let (c, _) = chain(vec![Verdict::VerifiedExpired, Verdict::Verified]);
        let u = user();
        let out = c.run(Account::Real(&u), &pw()).await;
        assert_eq!(out.decision, Decision::Verified);
        assert!(out.password_expired);
        let (c, _) = chain(vec![Verdict::Verified]);
        assert!(!c.run(Account::Real(&u), &pw()).await.password_expired);
        let (c, _) = chain(vec![Verdict::VerifiedExpired]);
        let ghost = c.run(Account::Ghost("nobody"), &pw()).await;
        assert_eq!(ghost.decision, Decision::Rejected);
        assert!(!ghost.password_expired);
    }

    #[tokio::test]
    async fn all_unavailable_is_unavailable_not_wrong_password() {
        let (c, _) = chain(vec![
            Verdict::Unavailable("down".into()),
            Verdict::Unavailable("down".into()),
            Verdict::Unavailable("down".into()),
        ]);
        let u = user();
        assert_eq!(
            c.run(Account::Real(&u), &pw()).await.decision,
            Decision::Unavailable
        );
    }

    #[tokio::test]
    async fn nobody_could_tell_fails_closed() {
        let (c, _) = chain(vec![Verdict::CantTell("a"), Verdict::CantTell("b")]);
        let u = user();
        assert_eq!(
            c.run(Account::Real(&u), &pw()).await.decision,
            Decision::Rejected
        );
    }

    #[tokio::test]
    async fn ghost_is_rejected_even_when_a_verifier_says_yes() {
        let (c, n) = chain(vec![Verdict::Verified]);
        let out = c.run(Account::Ghost("nobody"), &pw()).await;
        assert_eq!(out.decision, Decision::Rejected);
        assert_eq!(
            n[0].load(Ordering::SeqCst),
            1,
            "ghost still costs a verification"
        );
    }

    #[test]
    fn refuses_locked_disabled_remote_and_builtin_accounts() {
        let ok = user();
        assert_eq!(account_refusal(&ok, false), None);
        let mut u = user();
        u.locked = true;
        assert!(account_refusal(&u, false).is_some());
        let mut u = user();
        u.password_disabled = true;
        assert!(account_refusal(&u, false).is_some());
        let mut u = user();
        u.local = false;
        assert!(account_refusal(&u, false).is_some());
        let mut root = user();
        root.username = "root".into();
        root.builtin = true;
        assert!(account_refusal(&root, false).is_some());
        assert_eq!(account_refusal(&root, true), None);
        let mut otp = user();
        otp.twofactor = true;
        assert_eq!(
            account_refusal(&otp, false),
            None,
            "the sign-in asks for the TrueNAS code instead"
        );
        let mut daemon = user();
        daemon.username = "daemon".into();
        daemon.builtin = true;
        assert!(account_refusal(&daemon, true).is_some());
    }
}
