//! A simulated TrueNAS for `passgate demo`: in-memory users with real 656,000-round SHA-512
//! crypt hashes, answering like a 26.04 server. It is only another `NasClient`; nothing above
//! this module knows it exists.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use super::{
    ApiKind, NasClient, NasError, NasOtp, NasUser, OtpAnswer, OtpContinuation, PasswordCheck,
    PasswordLogin, ServerVersion,
};

/// TrueNAS' own rounds for new hashes (utils/crypto.py).
const ROUNDS: u32 = 656_000;
/// Like a TrueNAS security setting "password history: 3".
const HISTORY: usize = 3;
/// Checked for unknown users so that they cost as much as known ones.
const DUMMY_HASH: &str = "$6$rounds=656000$passgatedummysal$OPAmWnEMDBd9osMek15k1mMniXSOcYcfZpyZFCB8Qqmz2pZxEb7UF3ElG5Dt04E1yeaXDJerA6oyu66Q3mYiH1";

pub struct SimUser {
    pub username: &'static str,
    pub full_name: &'static str,
    pub password: &'static str,
    pub smb: bool,
    /// Member of `builtin_administrators` (sees the admin audit page).
    pub admin: bool,
    /// Base32 secret of TrueNAS-side two-factor authentication, when the user has it.
    pub twofactor_secret: Option<&'static str>,
}

/// The simulated NAS's one group that matters: TrueNAS' administrators.
const ADMIN_GROUP: (i64, &str) = (40, "builtin_administrators");

struct Entry {
    user: NasUser,
    twofactor_secret: Option<Vec<u8>>,
    hash: String,
    /// Newest last; the current password is included.
    history: Vec<String>,
}

pub struct SimulatedNas {
    users: Mutex<HashMap<String, Entry>>,
}

fn hash(password: &str) -> Result<String, NasError> {
    let salt: String = {
        use rand::Rng;
        const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut rng = rand::rng();
        (0..16)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    pwhash::sha512_crypt::hash_with(format!("$6$rounds={ROUNDS}${salt}").as_str(), password)
        .map_err(|e| NasError::Protocol(format!("simulated hash: {e}")))
}

fn matches(password: &str, hash: &str) -> bool {
    pwhash::sha512_crypt::verify(password, hash)
}

impl SimulatedNas {
    /// Hashes every user's password (about 0.3 s each), on the blocking pool.
    pub async fn new(users: &[SimUser]) -> Result<Self, NasError> {
        let mut map = HashMap::new();
        for (index, u) in users.iter().enumerate() {
            let password = u.password.to_string();
            let hashed = tokio::task::spawn_blocking(move || hash(&password))
                .await
                .map_err(|e| NasError::Protocol(e.to_string()))??;
            let id = 70 + index as i64;
            map.insert(
                u.username.to_string(),
                Entry {
                    user: NasUser {
                        id,
                        uid: 3000 + id,
                        username: u.username.to_string(),
                        full_name: u.full_name.to_string(),
                        local: true,
                        locked: false,
                        password_disabled: false,
                        smb: u.smb,
                        builtin: false,
                        twofactor: u.twofactor_secret.is_some(),
                        groups: if u.admin {
                            vec![ADMIN_GROUP.0]
                        } else {
                            Vec::new()
                        },
                        unixhash: None,
                    },
                    twofactor_secret: u
                        .twofactor_secret
                        .map(|s| totp_rs::Secret::try_from_base32(s).map(|s| s.as_bytes().to_vec()))
                        .transpose()
                        .map_err(|_| NasError::Protocol(String::from("demo 2FA secret")))?,
                    history: vec![hashed.clone()],
                    hash: hashed,
                },
            );
        }
        Ok(Self {
            users: Mutex::new(map),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Entry>>, NasError> {
        self.users
            .lock()
            .map_err(|_| NasError::Unavailable(String::from("simulation state poisoned")))
    }

    fn current_hash(&self, username: &str) -> Result<Option<String>, NasError> {
        Ok(self.lock()?.get(username).map(|e| e.hash.clone()))
    }
}

/// A login waiting for the TrueNAS-side code, as 26 handles it: one try.
struct SimOtp {
    secret: Vec<u8>,
    open: std::sync::atomic::AtomicBool,
}

impl OtpContinuation for SimOtp {
    fn submit<'a>(&'a self, code: &'a SecretString) -> BoxFuture<'a, Result<OtpAnswer, NasError>> {
        Box::pin(async move {
            use std::sync::atomic::Ordering;
            if !self.open.swap(false, Ordering::SeqCst) {
                return Err(NasError::Protocol(String::from(
                    "no two-factor login in progress",
                )));
            }
            let now = crate::totp::unix_now();
            let typed = code.expose_secret().trim();
            let right = [now.saturating_sub(30), now, now + 30]
                .iter()
                .any(|t| crate::totp::code_at(&self.secret, *t) == typed);
            Ok(if right {
                OtpAnswer::Accepted
            } else {
                OtpAnswer::WrongCodeFinal
            })
        })
    }

    fn is_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl NasClient for SimulatedNas {
    fn api_kind(&self) -> ApiKind {
        ApiKind::Simulated
    }

    fn server_version(&self) -> Option<ServerVersion> {
        Some(ServerVersion::new(26, 4))
    }

    fn get_user<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<NasUser>, NasError>> {
        Box::pin(async move {
            Ok(self.lock()?.get(username).map(|e| {
                let mut user = e.user.clone();
                user.unixhash = Some(SecretString::from(e.hash.clone()));
                user
            }))
        })
    }

    fn check_password<'a>(
        &'a self,
        username: &'a str,
        password: &'a SecretString,
    ) -> BoxFuture<'a, Result<PasswordCheck, NasError>> {
        Box::pin(async move {
            let stored = self.current_hash(username)?;
            let password = password.expose_secret().to_string();
            // Like PAM, an unknown user costs a full hash too, so timing reveals nothing.
            let ok = tokio::task::spawn_blocking(move || match stored {
                Some(h) => matches(&password, &h),
                None => {
                    let _ = matches(&password, DUMMY_HASH);
                    false
                }
            })
            .await
            .map_err(|e| NasError::Unavailable(e.to_string()))?;
            if !ok {
                return Ok(PasswordCheck::answer(PasswordLogin::AuthErr));
            }
            // Like 26+: two-factor users are asked for their code first.
            let secret = self
                .lock()?
                .get(username)
                .and_then(|e| e.twofactor_secret.clone());
            if let Some(secret) = secret {
                return Ok(PasswordCheck {
                    login: PasswordLogin::OtpRequired,
                    otp: Some(NasOtp(std::sync::Arc::new(SimOtp {
                        secret,
                        open: std::sync::atomic::AtomicBool::new(true),
                    }))),
                });
            }
            // 26+: a correct password of a user without API access answers DENIED.
            Ok(PasswordCheck::answer(PasswordLogin::Denied))
        })
    }

    fn set_password<'a>(
        &'a self,
        user: &'a NasUser,
        new_password: &'a SecretString,
    ) -> BoxFuture<'a, Result<(), NasError>> {
        Box::pin(async move {
            let history = self
                .lock()?
                .get(&user.username)
                .map(|e| e.history.clone())
                .ok_or_else(|| {
                    NasError::Validation(vec![format!("{}: user does not exist.", user.username)])
                })?;
            let new = new_password.expose_secret().to_string();
            let (reused, hashed) = tokio::task::spawn_blocking(move || {
                let reused = history.iter().any(|h| matches(&new, h));
                (reused, hash(&new))
            })
            .await
            .map_err(|e| NasError::Unavailable(e.to_string()))?;
            if reused {
                return Err(NasError::Validation(vec![format!(
                    "The security configuration of the TrueNAS server requires a password that \
                     does not match any of the last {HISTORY} passwords for this account."
                )]));
            }
            let hashed = hashed?;
            let mut users = self.lock()?;
            let entry = users.get_mut(&user.username).ok_or_else(|| {
                NasError::Validation(vec![format!("{}: user does not exist.", user.username)])
            })?;
            entry.hash = hashed.clone();
            entry.history.push(hashed);
            if entry.history.len() > HISTORY {
                entry.history.remove(0);
            }
            Ok(())
        })
    }

    fn group_names<'a>(&'a self, ids: &'a [i64]) -> BoxFuture<'a, Result<Vec<String>, NasError>> {
        Box::pin(async move {
            Ok(if ids.contains(&ADMIN_GROUP.0) {
                vec![ADMIN_GROUP.1.to_string()]
            } else {
                Vec::new()
            })
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), NasError>> {
        Box::pin(async { Ok(()) })
    }
}
