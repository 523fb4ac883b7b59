//! Every action of `auth::Portal`, on every outcome (an unreachable NAS and a full house of
//! verifications included), leaves exactly the audit rows it should: the action records
//! them itself, so a page and the API cannot differ. Runs the actions directly, against the
//! built-in simulated TrueNAS behind a switch that takes it down or holds a verification.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use passgate::app::state::AppState;
use passgate::audit::query::{self, Filter};
use passgate::audit::Context;
use passgate::auth::change_password::{ChangeError, PasswordChange};
use passgate::auth::sessions::{Claims, Stage};
use passgate::auth::sign_in::SignInOutcome;
use passgate::auth::totp_settings::{DisableError, EnrollError};
use passgate::auth::{Caller, Via};
use passgate::config::Config;
use passgate::limiter::{Admitted, LoginLimiter};
use passgate::totp::{code_at, unix_now};
use passgate::truenas::sim::{SimUser, SimulatedNas};
use passgate::truenas::{ApiKind, NasClient, NasError, NasUser, PasswordCheck, ServerVersion};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;

const PW: &str = "ada-correct-horse";

/// The simulated NAS, which a test can take down or make hold every password check.
struct Switch {
    nas: SimulatedNas,
    down: AtomicBool,
    hold: AtomicBool,
    holding: Notify,
    release: Notify,
}

impl Switch {
    fn unavailable<T>(&self) -> Option<Result<T, NasError>> {
        self.down
            .load(Ordering::SeqCst)
            .then(|| Err(NasError::Unavailable(String::from("switched off"))))
    }
}

#[async_trait]
impl NasClient for Switch {
    fn api_kind(&self) -> ApiKind {
        self.nas.api_kind()
    }
    fn server_version(&self) -> Option<ServerVersion> {
        self.nas.server_version()
    }
    async fn get_user(&self, name: &str) -> Result<Option<NasUser>, NasError> {
        match self.unavailable() {
            Some(e) => e,
            None => self.nas.get_user(name).await,
        }
    }
    async fn list_users(&self) -> Result<Vec<NasUser>, NasError> {
        match self.unavailable() {
            Some(e) => e,
            None => self.nas.list_users().await,
        }
    }
    async fn check_password(
        &self,
        name: &str,
        password: &SecretString,
    ) -> Result<PasswordCheck, NasError> {
        if self.hold.load(Ordering::SeqCst) {
            let released = self.release.notified();
            self.holding.notify_one();
            released.await;
        }
        match self.unavailable() {
            Some(e) => e,
            None => self.nas.check_password(name, password).await,
        }
    }
    async fn set_password(&self, user: &NasUser, new: &SecretString) -> Result<(), NasError> {
        match self.unavailable() {
            Some(e) => e,
            None => self.nas.set_password(user, new).await,
        }
    }
    async fn group_names(&self, ids: &[i64]) -> Result<Vec<String>, NasError> {
        self.nas.group_names(ids).await
    }
    async fn ping(&self) -> Result<(), NasError> {
        self.nas.ping().await
    }
    async fn password_max_age(&self) -> Result<Option<i64>, NasError> {
        self.nas.password_max_age().await
    }
    async fn send_mail(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        timeout: std::time::Duration,
    ) -> Result<(), NasError> {
        match self.unavailable() {
            Some(e) => e,
            None => self.nas.send_mail(to, subject, text, timeout).await,
        }
    }
    async fn set_ssh_keys(&self, user: &NasUser, keys: &str) -> Result<NasUser, NasError> {
        match self.unavailable() {
            Some(e) => e,
            None => self.nas.set_ssh_keys(user, keys).await,
        }
    }

    async fn stat_path(
        &self,
        path: &str,
    ) -> Result<Option<passgate::truenas::path_stat::PathStat>, NasError> {
        match self.unavailable() {
            Some(e) => e,
            None => self.nas.stat_path(path).await,
        }
    }
}

struct World {
    state: AppState,
    nas: Arc<Switch>,
    context: Context,
    limiter: LoginLimiter,
    _dir: tempfile::TempDir,
}

/// (event, outcome, count) of one audit row.
type Row = (String, String, i64);

impl World {
    /// One verification at a time and a second's wait for it, so a held check makes the next
    /// one busy.
    async fn new(totp_mode: &str) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = [
            ("PASSGATE_TRUENAS__URL", "https://nas.invalid"),
            ("PASSGATE_TRUENAS__API_KEY", "1-unused"),
            ("PASSGATE_AUTH__VERIFIERS", "[\"truenas\"]"),
            ("PASSGATE_RATE_LIMIT__VERIFY_CONCURRENCY", "1"),
            ("PASSGATE_RATE_LIMIT__VERIFY_WAIT_SECS", "1"),
            ("PASSGATE_RATE_LIMIT__USER_FAILURES", "1000"),
            ("PASSGATE_TOTP__MODE", totp_mode),
            ("PASSGATE_LOG__SYSLOG", "off"),
            // Each action's own rows only: change notices are audited later, by the mail
            // task, and are tested in tests/reset.rs and tests/cli_mail.rs.
            ("PASSGATE_MAIL__NOTIFY_CHANGES", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([(
            String::from("PASSGATE_SERVER__DATA_DIR"),
            dir.path().join("data").display().to_string(),
        )]);
        let config = Config::load_from(None, env).expect("config");
        let users = [
            SimUser {
                username: "ada",
                full_name: "Ada Lovelace",
                password: PW,
                smb: true,
                admin: false,
                twofactor_secret: None,
                email: None,
            },
            SimUser {
                username: "holder",
                full_name: "Holds The Slot",
                password: PW,
                smb: true,
                admin: false,
                twofactor_secret: None,
                email: None,
            },
        ];
        let nas = Arc::new(Switch {
            nas: SimulatedNas::new(&users).await.expect("simulated NAS"),
            down: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            holding: Notify::new(),
            release: Notify::new(),
        });
        let state = passgate::app::build_state(&config, nas.clone())
            .await
            .expect("state");
        World {
            state,
            nas,
            context: Context {
                client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                user_agent: None,
                request_id: String::from("test"),
            },
            limiter: LoginLimiter::new(1_000_000, Duration::from_secs(60), 1000),
            _dir: dir,
        }
    }

    fn caller(&self) -> Caller<'_> {
        Caller::new(&self.context, Via::Web, passgate::i18n::Lang::english())
    }

    fn admitted(&self) -> Admitted {
        self.limiter.admit(1, Instant::now()).expect("admitted")
    }

    async fn session(&self, stage: Stage) -> Claims {
        let portal = &self.state.portal;
        let issued = match stage {
            Stage::Authenticated => {
                portal
                    .sessions
                    .issue("ada", "Ada Lovelace", stage, false)
                    .await
            }
            _ => {
                let ttl = Duration::from_secs(300);
                portal
                    .sessions
                    .issue_for("ada", "Ada Lovelace", stage, false, ttl)
                    .await
            }
        };
        issued.expect("session").claims
    }

    /// Runs `action` while another sign-in holds the only verification slot.
    async fn while_busy<T>(&self, action: impl std::future::Future<Output = T>) -> T {
        self.nas.hold.store(true, Ordering::SeqCst);
        let holding = self.nas.holding.notified();
        let portal = &self.state.portal;
        let password = SecretString::from(PW);
        let admitted = self.admitted();
        let holder = portal.sign_in(self.caller(), admitted, "holder", &password);
        let (_, result) = tokio::join!(holder, async {
            holding.await;
            self.nas.hold.store(false, Ordering::SeqCst);
            let result = action.await;
            self.nas.release.notify_one();
            result
        });
        result
    }

    /// Every row `username` has, once the store has written everything down, sorted: a
    /// failure is chained when its minute closes, after successes that came later.
    async fn rows(&self, username: &str) -> Vec<Row> {
        self.state.audit.shutdown().await;
        let filter = Filter {
            user: Some(username.to_string()),
            limit: 500,
            ..Filter::default()
        };
        let mut rows: Vec<Row> = query::list(&self.state.audit_pool, &filter)
            .await
            .expect("audit rows")
            .into_iter()
            .map(|r| (r.event, r.outcome, r.count))
            .collect();
        rows.sort();
        rows
    }
}

fn row(event: &str, outcome: &str) -> Row {
    (event.to_string(), outcome.to_string(), 1)
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_string())
}

#[tokio::test]
async fn sign_in_audits_every_outcome() {
    for case in ["verified", "refused", "unknown", "unavailable", "busy"] {
        let w = World::new("optional").await;
        let portal = &w.state.portal;
        let (user, password) = match case {
            "refused" => ("ada", "wrong-password"),
            "unknown" => ("nobody", PW),
            _ => ("ada", PW),
        };
        w.nas.down.store(case == "unavailable", Ordering::SeqCst);
        let password = secret(password);
        let attempt = portal.sign_in(w.caller(), w.admitted(), user, &password);
        let outcome = if case == "busy" {
            w.while_busy(attempt).await
        } else {
            attempt.await
        };
        let (expected, rows) = match (case, outcome) {
            ("verified", SignInOutcome::Issued { .. }) => {
                (vec![row("login_succeeded", "success")], w.rows(user).await)
            }
            ("refused" | "unknown", SignInOutcome::Refused) => {
                (vec![row("login_failed", "failure")], w.rows(user).await)
            }
            ("unavailable", SignInOutcome::Unavailable) | ("busy", SignInOutcome::Busy) => {
                (vec![row("login_failed", "error")], w.rows(user).await)
            }
            (case, _) => panic!("{case}: wrong outcome"),
        };
        assert_eq!(rows, expected, "{case}");
    }
}

#[tokio::test]
async fn a_password_change_audits_every_outcome() {
    for case in ["changed", "policy", "wrong_current", "unavailable", "busy"] {
        let w = World::new("optional").await;
        let portal = &w.state.portal;
        let claims = w.session(Stage::Authenticated).await;
        let current = secret(if case == "wrong_current" {
            "not-it-at-all"
        } else {
            PW
        });
        let new = secret(if case == "policy" {
            "short"
        } else {
            "a-much-better-passphrase-77"
        });
        let change = PasswordChange {
            current: &current,
            new: &new,
            confirmation: None,
        };
        w.nas.down.store(case == "unavailable", Ordering::SeqCst);
        let attempt = portal.change_password(w.caller(), w.admitted(), &claims, change);
        let result = if case == "busy" {
            w.while_busy(attempt).await
        } else {
            attempt.await
        };
        let expected = match (case, &result) {
            // The session the change was made in is revoked with the others.
            ("changed", Ok(())) => vec![
                row("password_changed", "success"),
                row("session_revoked", "success"),
            ],
            ("policy", Err(ChangeError::Policy(_)))
            | ("wrong_current", Err(ChangeError::WrongCurrentPassword { .. })) => {
                vec![row("password_change_failed", "failure")]
            }
            ("unavailable", Err(ChangeError::Unavailable { .. }))
            | ("busy", Err(ChangeError::Busy)) => vec![row("password_change_failed", "error")],
            (case, result) => panic!("{case}: wrong outcome {result:?}"),
        };
        assert_eq!(w.rows("ada").await, expected, "{case}");
    }
}

/// Turns TOTP on for ada through the actions, and returns the secret and a full session.
async fn enrolled(w: &World) -> (Vec<u8>, Claims) {
    let portal = &w.state.portal;
    let claims = w.session(Stage::Authenticated).await;
    let offer = portal
        .start_totp(w.caller(), &claims, None)
        .await
        .expect("enrollment starts");
    let secret_bytes = totp_rs::Secret::try_from_base32(offer.secret_base32.expose_secret())
        .expect("base32")
        .as_bytes()
        .to_vec();
    let code = secret(&code_at(&secret_bytes, unix_now()));
    portal
        .confirm_totp(w.caller(), &claims, &code)
        .await
        .expect("enrollment confirmed");
    (secret_bytes, claims)
}

#[tokio::test]
async fn enrollment_audits_its_refusals_and_its_change() {
    let w = World::new("optional").await;
    let portal = &w.state.portal;
    let claims = w.session(Stage::Authenticated).await;
    // Confirming with nothing started, then a wrong code: a refusal without a guess is not
    // audited, a wrong code is.
    let nothing = portal
        .confirm_totp(w.caller(), &claims, &secret("123456"))
        .await;
    assert!(matches!(nothing, Err(EnrollError::Refused(_))));
    portal
        .start_totp(w.caller(), &claims, None)
        .await
        .expect("started");
    let wrong = portal
        .confirm_totp(w.caller(), &claims, &secret("000000"))
        .await;
    assert!(matches!(wrong, Err(EnrollError::Refused(_))));
    let (_, _) = enrolled(&w).await;
    assert_eq!(
        w.rows("ada").await,
        vec![
            row("totp_enrolled", "success"),
            row("totp_failed", "failure")
        ]
    );

    let off = World::new("off").await;
    let claims = off.session(Stage::Authenticated).await;
    let portal = &off.state.portal;
    assert!(matches!(
        portal.start_totp(off.caller(), &claims, None).await,
        Err(EnrollError::Off)
    ));
    assert!(matches!(
        portal
            .confirm_totp(off.caller(), &claims, &secret("123456"))
            .await,
        Err(EnrollError::Off)
    ));
    assert_eq!(off.rows("ada").await, Vec::<Row>::new());
}

#[tokio::test]
async fn turning_totp_off_audits_every_outcome() {
    for case in [
        "disabled",
        "wrong_password",
        "wrong_code",
        "unavailable",
        "busy",
    ] {
        let w = World::new("optional").await;
        let portal = &w.state.portal;
        let (secret_bytes, claims) = enrolled(&w).await;
        let password = secret(if case == "wrong_password" {
            "not-it-at-all"
        } else {
            PW
        });
        let code = if case == "wrong_code" {
            secret("000000")
        } else {
            // The step after the one used to enroll: a code is accepted once only.
            secret(&code_at(&secret_bytes, unix_now() + 30))
        };
        w.nas.down.store(case == "unavailable", Ordering::SeqCst);
        let attempt = portal.disable_totp(w.caller(), w.admitted(), &claims, &password, &code);
        let result = if case == "busy" {
            w.while_busy(attempt).await
        } else {
            attempt.await
        };
        let last = match (case, &result) {
            ("disabled", Ok(())) => row("totp_disabled", "success"),
            ("wrong_password", Err(DisableError::WrongPassword)) => row("login_failed", "failure"),
            ("wrong_code", Err(DisableError::Refused(_))) => row("totp_failed", "failure"),
            ("unavailable", Err(DisableError::Unavailable)) | ("busy", Err(DisableError::Busy)) => {
                row("login_failed", "error")
            }
            (case, result) => panic!("{case}: wrong outcome {result:?}"),
        };
        assert_eq!(
            w.rows("ada").await,
            sorted(vec![row("totp_enrolled", "success"), last]),
            "{case}"
        );
    }

    let required = World::new("required").await;
    let claims = required.session(Stage::Authenticated).await;
    let refused = required
        .state
        .portal
        .disable_totp(
            required.caller(),
            required.admitted(),
            &claims,
            &secret(PW),
            &secret("123456"),
        )
        .await;
    assert!(matches!(refused, Err(DisableError::Required)));
    assert_eq!(required.rows("ada").await, Vec::<Row>::new());
}

#[tokio::test]
async fn the_code_step_audits_every_outcome() {
    for case in ["accepted", "wrong"] {
        let w = World::new("optional").await;
        let portal = &w.state.portal;
        let (secret_bytes, _) = enrolled(&w).await;
        let pending = w.session(Stage::TotpPending).await;
        let code = if case == "wrong" {
            secret("000000")
        } else {
            secret(&code_at(&secret_bytes, unix_now() + 30))
        };
        let result = portal
            .submit_code(w.caller(), w.admitted(), &pending, &code)
            .await;
        let last = match (case, &result) {
            ("accepted", Ok(_)) => row("totp_succeeded", "success"),
            ("wrong", Err(_)) => row("totp_failed", "failure"),
            (case, _) => panic!("{case}: wrong outcome"),
        };
        assert_eq!(
            w.rows("ada").await,
            sorted(vec![row("totp_enrolled", "success"), last]),
            "{case}"
        );
    }
}

#[tokio::test]
async fn signing_out_audits_the_revocation() {
    let w = World::new("optional").await;
    let claims = w.session(Stage::Authenticated).await;
    w.state
        .portal
        .sign_out(w.caller(), &claims)
        .await
        .expect("revoked");
    assert_eq!(w.rows("ada").await, vec![row("logout", "success")]);
}
