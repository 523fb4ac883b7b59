//! A simulated TrueNAS for `passgate demo`: in-memory users with real 656,000-round SHA-512
//! crypt hashes, answering like a 26.04 server. It is only another `NasClient`; nothing above
//! this module knows it exists.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::{
    ApiKind, NasClient, NasError, NasOtp, NasUser, OtpAnswer, OtpContinuation, PasswordCheck,
    PasswordLogin, ServerVersion, UserAging,
};

/// TrueNAS' own rounds for new hashes (utils/crypto.py).
const ROUNDS: u32 = 656_000;
/// Like a TrueNAS security setting "password history: 3".
const HISTORY: usize = 3;
/// Checked for unknown users so that they cost as much as known ones.
const DUMMY_HASH: &str = "$6$rounds=656000$passgatedummysal$OPAmWnEMDBd9osMek15k1mMniXSOcYcfZpyZFCB8Qqmz2pZxEb7UF3ElG5Dt04E1yeaXDJerA6oyu66Q3mYiH1";
/// TrueNAS' PASSWORD_PROMPT_AGE (utils/security.py): `password_change_required` turns on
/// this many days before the maximum age.
const PROMPT_DAYS: i64 = 6;
const DAY_SECS: i64 = 86_400;

pub struct SimUser {
    pub username: &'static str,
    pub full_name: &'static str,
    pub password: &'static str,
    pub smb: bool,
    /// Member of `builtin_administrators` (sees the admin audit page).
    pub admin: bool,
    /// Base32 secret of TrueNAS-side two-factor authentication, when the user has it.
    pub twofactor_secret: Option<&'static str>,
    /// `email` in `user.query`; reset links and notices go there.
    pub email: Option<&'static str>,
}

/// The simulated NAS's one group that matters: TrueNAS' administrators.
const ADMIN_GROUP: (i64, &str) = (40, "builtin_administrators");

struct Entry {
    user: NasUser,
    twofactor_secret: Option<Vec<u8>>,
    hash: String,
    /// Newest last; the current password is included.
    history: Vec<String>,
    /// When the password was last set, in seconds since the epoch.
    last_change_secs: i64,
}

pub struct SimulatedNas {
    users: Mutex<HashMap<String, Entry>>,
    /// Like `system.security` `max_password_age`; `None`: aging off.
    max_password_age: Option<i64>,
}

fn now_secs() -> i64 {
    i64::try_from(crate::totp::unix_now()).unwrap_or(i64::MAX)
}

/// The aging fields as TrueNAS reports them (plugins/account.py `user_extend`).
fn user_aging(last_change_secs: i64, max_age: Option<i64>, now: i64) -> UserAging {
    let age = (now - last_change_secs).div_euclid(DAY_SECS);
    let age_days = (age >= 0).then_some(age);
    let change_required = match (age_days, max_age) {
        (Some(age), Some(max)) => age > 0 && age >= max - PROMPT_DAYS,
        _ => false,
    };
    UserAging {
        last_change_secs: Some(last_change_secs),
        age_days,
        change_required: Some(change_required),
    }
}

/// pam_unix's rule for the shadow file TrueNAS writes (utils/security.py
/// `shadow_parse_aging`, inactivity 0): expired once the whole days between the two UTC
/// dates exceed the maximum.
fn past_max_age(last_change_secs: i64, max_age: Option<i64>, now: i64) -> bool {
    max_age
        .is_some_and(|max| now.div_euclid(DAY_SECS) - last_change_secs.div_euclid(DAY_SECS) > max)
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
                        aging: UserAging::default(),
                        email: u.email.map(str::to_owned),
                        // Membership of builtin_administrators is what gives FULL_ADMIN.
                        roles: if u.admin {
                            vec![String::from("FULL_ADMIN")]
                        } else {
                            Vec::new()
                        },
                        home: Some(format!("/mnt/tank/home/{}", u.username)),
                        ssh_keys: None,
                    },
                    twofactor_secret: u
                        .twofactor_secret
                        .map(|s| totp_rs::Secret::try_from_base32(s).map(|s| s.as_bytes().to_vec()))
                        .transpose()
                        .map_err(|_| NasError::Protocol(String::from("demo 2FA secret")))?,
                    history: vec![hashed.clone()],
                    hash: hashed,
                    last_change_secs: now_secs(),
                },
            );
        }
        Ok(Self {
            users: Mutex::new(map),
            max_password_age: None,
        })
    }

    /// Turns on password aging, like an Enterprise `system.security` `max_password_age`.
    pub fn with_max_password_age(mut self, days: i64) -> Self {
        self.max_password_age = Some(days);
        self
    }

    /// Backdates a user's last password change by `days` (a demo user whose password is
    /// about to expire, or has). Unknown usernames are ignored.
    pub fn with_password_age(mut self, username: &str, days: i64) -> Self {
        if let Ok(users) = self.users.get_mut() {
            if let Some(entry) = users.get_mut(username) {
                entry.last_change_secs = now_secs() - days * DAY_SECS;
            }
        }
        self
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Entry>>, NasError> {
        self.users
            .lock()
            .map_err(|_| NasError::Unavailable(String::from("simulation state poisoned")))
    }

    fn current_hash(&self, username: &str) -> Result<Option<String>, NasError> {
        Ok(self.lock()?.get(username).map(|e| e.hash.clone()))
    }

    fn expired(&self, username: &str) -> Result<bool, NasError> {
        let now = now_secs();
        Ok(self
            .lock()?
            .get(username)
            .is_some_and(|e| past_max_age(e.last_change_secs, self.max_password_age, now)))
    }
}

/// A login waiting for the TrueNAS-side code, as 26 handles it: one try.
struct SimOtp {
    secret: Vec<u8>,
    open: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl OtpContinuation for SimOtp {
    async fn submit(&self, code: &SecretString) -> Result<OtpAnswer, NasError> {
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
    }

    fn is_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl NasClient for SimulatedNas {
    fn api_kind(&self) -> ApiKind {
        ApiKind::Simulated
    }

    fn server_version(&self) -> Option<ServerVersion> {
        Some(ServerVersion::new(26, 4))
    }

    async fn get_user(&self, username: &str) -> Result<Option<NasUser>, NasError> {
        Ok(self.lock()?.get(username).map(|e| {
            let mut user = e.user.clone();
            user.unixhash = Some(SecretString::from(e.hash.clone()));
            user.aging = user_aging(e.last_change_secs, self.max_password_age, now_secs());
            user
        }))
    }

    async fn list_users(&self) -> Result<Vec<NasUser>, NasError> {
        let names: Vec<String> = self.lock()?.keys().cloned().collect();
        let mut users = Vec::new();
        for name in names {
            if let Some(user) = self.get_user(&name).await? {
                users.push(user);
            }
        }
        Ok(users)
    }

    async fn check_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<PasswordCheck, NasError> {
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
        // Past the maximum age PAM's account check fails after the password was right,
        // before TrueNAS looks at API access (utils/account/authenticator.py).
        if self.expired(username)? {
            return Ok(PasswordCheck::answer(PasswordLogin::Expired));
        }
        // 26+: a correct password of a user without API access answers DENIED.
        Ok(PasswordCheck::answer(PasswordLogin::Denied))
    }

    async fn set_password(
        &self,
        user: &NasUser,
        new_password: &SecretString,
    ) -> Result<(), NasError> {
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
        // An admin-key change resets the age (plugins/account.py `set_password`).
        entry.last_change_secs = now_secs();
        if entry.history.len() > HISTORY {
            entry.history.remove(0);
        }
        Ok(())
    }

    async fn group_names(&self, ids: &[i64]) -> Result<Vec<String>, NasError> {
        Ok(if ids.contains(&ADMIN_GROUP.0) {
            vec![ADMIN_GROUP.1.to_string()]
        } else {
            Vec::new()
        })
    }

    async fn ping(&self) -> Result<(), NasError> {
        Ok(())
    }

    async fn password_max_age(&self) -> Result<Option<i64>, NasError> {
        Ok(self.max_password_age)
    }

    /// The demo's relay delivers to the terminal that runs `passgate demo`: it is the only
    /// mailbox the demo has, and the link in it is the next step of the flow.
    async fn send_mail(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        _timeout: std::time::Duration,
    ) -> Result<(), NasError> {
        let known = self
            .lock()?
            .values()
            .any(|e| e.user.email.as_deref() == Some(to));
        if !known {
            return Err(NasError::Call {
                method: String::from("mail.send"),
                errname: String::from("EFAULT"),
                reason: String::from("the demo relay delivers only to demo users"),
            });
        }
        println!(
            "\n----- demo mailbox: to {to} -----\nSubject: TrueNAS demo-nas: {subject}\n\n{text}\n----- end of mail -----\n"
        );
        Ok(())
    }

    /// Kept in memory, stripped as TrueNAS strips the file; every demo home is on a dataset.
    async fn set_ssh_keys(&self, user: &NasUser, keys: &str) -> Result<NasUser, NasError> {
        let mut users = self.lock()?;
        let entry = users.get_mut(&user.username).ok_or_else(|| {
            NasError::Validation(vec![format!("User {} does not exist", user.id)])
        })?;
        let keys = keys.trim();
        entry.user.ssh_keys = (!keys.is_empty()).then(|| keys.to_owned());
        Ok(entry.user.clone())
    }

    /// The simulated homes hold nothing but the keys, which are kept in memory: every home is
    /// a directory and nothing else exists.
    async fn stat_path(&self, path: &str) -> Result<Option<super::path_stat::PathStat>, NasError> {
        use super::path_stat::{PathKind, PathStat};
        let users = self.lock()?;
        let is_home = users
            .values()
            .any(|entry| entry.user.home.as_deref() == Some(path));
        Ok(is_home.then_some(PathStat {
            kind: PathKind::Directory,
            nlink: 2,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = DAY_SECS;

    #[test]
    fn expiry_follows_pam_day_numbers() {
        // Changed at 23:00 on day 100; the max is 30 days.
        let changed = 100 * DAY + 23 * 3600;
        assert!(!past_max_age(changed, Some(30), 130 * DAY + 3600));
        // Day 131 at 01:00: 31 UTC dates later, though only 30 days and 2 hours have passed.
        assert!(past_max_age(changed, Some(30), 131 * DAY + 3600));
        assert!(!past_max_age(changed, None, 999 * DAY));
    }

    #[test]
    fn change_required_from_six_days_before_the_maximum() {
        let now = 1000 * DAY;
        let at = |age: i64| user_aging(now - age * DAY, Some(30), now);
        assert_eq!(at(23).change_required, Some(false));
        assert_eq!(at(24).change_required, Some(true));
        assert_eq!(at(24).age_days, Some(24));
        assert_eq!(
            user_aging(now, Some(30), now).change_required,
            Some(false),
            "a fresh password"
        );
        assert_eq!(
            user_aging(now - 40 * DAY, None, now).change_required,
            Some(false)
        );
        assert_eq!(
            user_aging(now + DAY, Some(30), now).age_days,
            None,
            "future"
        );
    }
}
