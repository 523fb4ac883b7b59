//! Users as the fake stores and shows them.

use std::time::{Duration, SystemTime};

use pwhash::{sha512_crypt, HashSetup};
use rand::distr::{Distribution, Uniform};
use serde_json::{json, Value};

use super::nthash::nt_hash;

/// TrueNAS (utils/crypto.py) hashes with 656,000 rounds, not the libc default of 5,000.
const ROUNDS: u32 = 656_000;
/// utils/security.py `PASSWORD_PROMPT_AGE`.
const PASSWORD_PROMPT_AGE: u64 = 6;
const DAY: Duration = Duration::from_secs(86_400);

fn days_ago(days: u32) -> SystemTime {
    SystemTime::now()
        .checked_sub(DAY * days)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// How many passwords (current one included) the history rule remembers.
pub(super) const HISTORY_LEN: usize = 3;

/// A user to create in the fake.
#[derive(Clone, Debug)]
pub struct FakeUser {
    pub username: String,
    pub full_name: String,
    /// `None`: no usable password (unixhash `*`).
    pub password: Option<String>,
    pub local: bool,
    pub locked: bool,
    pub password_disabled: bool,
    pub smb: bool,
    pub builtin: bool,
    pub full_admin: bool,
    pub twofactor: bool,
    /// Names from [`GROUPS`]; others are ignored.
    pub groups: Vec<String>,
    /// `email` in `user.query`; local FULL_ADMINs' addresses are `mail.send`'s default `to`.
    pub email: Option<String>,
    /// Days since the password was last changed, at start.
    pub password_age_days: u32,
    /// Where the home directory is: it decides what `sshpubkey` does.
    pub home: super::FakeHome,
}

/// The fake's groups: (database id, gid, name), like `group.query` entries.
pub const GROUPS: &[(i64, i64, &str)] = &[
    (40, 544, "builtin_administrators"),
    (41, 545, "builtin_users"),
    (42, 3000, "nas-admins"),
];

pub(super) fn groups_json() -> Vec<Value> {
    GROUPS
        .iter()
        .map(|(id, gid, name)| json!({"id": id, "gid": gid, "group": name, "builtin": name.starts_with("builtin_")}))
        .collect()
}

impl FakeUser {
    /// A local SMB user with a password; every other flag off.
    pub fn new(username: &str, password: &str) -> Self {
        FakeUser {
            username: username.to_owned(),
            full_name: format!("{username} (fake)"),
            password: Some(password.to_owned()),
            local: true,
            locked: false,
            password_disabled: false,
            smb: true,
            builtin: false,
            full_admin: false,
            twofactor: false,
            groups: Vec::new(),
            email: None,
            password_age_days: 0,
            home: super::FakeHome::Dataset,
        }
    }
}

/// A user plus what the fake derived from its password.
pub(super) struct StoredUser {
    pub id: u64,
    pub uid: u64,
    pub profile: FakeUser,
    pub unixhash: String,
    pub smbhash: String,
    /// Recent plain-text passwords, newest last, at most [`HISTORY_LEN`].
    pub history: Vec<String>,
    /// `bsdusr_last_password_change`.
    pub last_password_change: SystemTime,
    /// Set by `Shared::new`, which owns the fake's datasets.
    pub home: std::path::PathBuf,
}

impl StoredUser {
    pub fn set_password(&mut self, password: &str, unixhash: String) {
        self.unixhash = unixhash;
        self.smbhash = nt_hash(password);
        self.history.push(password.to_owned());
        let excess = self.history.len().saturating_sub(HISTORY_LEN);
        self.history.drain(..excess);
        self.last_password_change = SystemTime::now();
    }

    pub fn set_password_age(&mut self, days: u32) {
        self.last_password_change = days_ago(days);
    }

    /// `password_age` of plugins/account.py `user_extend`: whole days since the change.
    pub fn password_age(&self) -> u64 {
        SystemTime::now()
            .duration_since(self.last_password_change)
            .map(|age| age.as_secs() / DAY.as_secs())
            .unwrap_or(0)
    }

    /// `password_change_required`: from `max - PASSWORD_PROMPT_AGE` (6) days on. An age of
    /// 0 never requires it (the source tests `if user['password_age'] and max_age`).
    pub fn password_change_required(&self, max_password_age: Option<u32>) -> bool {
        let age = self.password_age();
        match max_password_age {
            Some(max) if age > 0 => age >= u64::from(max).saturating_sub(PASSWORD_PROMPT_AGE),
            _ => false,
        }
    }

    /// The `user.query` entry. Hashes are pydantic `Secret`s: clear only for FULL_ADMIN.
    pub fn to_json(&self, reveal_secrets: bool, max_password_age: Option<u32>) -> Value {
        let secret = |value: &str| {
            if reveal_secrets {
                value.to_owned()
            } else {
                "********".to_owned()
            }
        };
        let p = &self.profile;
        json!({
            "id": self.id,
            "uid": self.uid,
            "username": p.username,
            "full_name": p.full_name,
            "email": p.email,
            "local": p.local,
            "locked": p.locked,
            "password_disabled": p.password_disabled,
            "smb": p.smb,
            "builtin": p.builtin,
            "twofactor_auth_configured": p.twofactor,
            "password_change_required": self.password_change_required(max_password_age),
            "password_age": self.password_age(),
            "last_password_change": super::jobs::date(self.last_password_change),
            "roles": if p.full_admin { json!(["FULL_ADMIN"]) } else { json!([]) },
            "groups": GROUPS
                .iter()
                .filter(|(_, _, name)| p.groups.iter().any(|g| g == name))
                .map(|(id, _, _)| *id)
                .collect::<Vec<i64>>(),
            "home": self.home.display().to_string(),
            "sshpubkey": super::ssh_keys::read(&self.home),
            "unixhash": secret(&self.unixhash),
            "smbhash": secret(&self.smbhash),
        })
    }
}

/// Makes sure the API key's owner exists and is a FULL_ADMIN.
pub(super) fn with_api_user(mut users: Vec<FakeUser>, api_user: &str) -> Vec<FakeUser> {
    match users.iter_mut().find(|u| u.username == api_user) {
        Some(existing) => existing.full_admin = true,
        None => {
            // No password: hashing one would cost start-up time that most tests don't need.
            let mut admin = FakeUser::new(api_user, "");
            admin.password = None;
            admin.full_name = "TrueNAS Admin".to_owned();
            admin.smb = false;
            admin.full_admin = true;
            users.push(admin);
        }
    }
    users
}

/// Hashes every password in parallel (each hash takes ~0.3 s of CPU).
pub(super) async fn store_all(users: Vec<FakeUser>) -> Vec<StoredUser> {
    let hashing: Vec<_> = users
        .iter()
        .map(|u| {
            u.password
                .clone()
                .map(|pw| tokio::task::spawn_blocking(move || hash_password(&pw)))
        })
        .collect();
    let mut stored = Vec::with_capacity(users.len());
    for (index, (profile, hash)) in users.into_iter().zip(hashing).enumerate() {
        let unixhash = match hash {
            Some(task) => task.await.expect("hashing task finished"),
            None => "*".to_owned(),
        };
        let smbhash = profile.password.as_deref().map(nt_hash).unwrap_or_default();
        let history = profile.password.iter().cloned().collect();
        let last_password_change = days_ago(profile.password_age_days);
        let index = u64::try_from(index).expect("few users");
        stored.push(StoredUser {
            id: 70 + index,
            uid: 3000 + index,
            profile,
            unixhash,
            smbhash,
            history,
            last_password_change,
            home: std::path::PathBuf::new(),
        });
    }
    stored
}

/// `$6$rounds=656000$<16-char salt>$...`, like TrueNAS' utils/crypto.py. Blocking.
pub(super) fn hash_password(password: &str) -> String {
    const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let pick = Uniform::new(0, SALT_CHARS.len()).expect("non-empty salt alphabet");
    let mut rng = rand::rng();
    let salt: String = (0..16)
        .map(|_| char::from(SALT_CHARS[pick.sample(&mut rng)]))
        .collect();
    sha512_crypt::hash_with(
        HashSetup {
            salt: Some(&salt),
            rounds: Some(ROUNDS),
        },
        password,
    )
    .expect("valid sha512-crypt parameters")
}

/// Checks a password against a stored hash. Blocking; `*`/`x` never match.
pub(super) fn verify_password(password: &str, unixhash: &str) -> bool {
    unixhash.starts_with('$') && sha512_crypt::verify(password, unixhash)
}
