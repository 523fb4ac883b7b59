//! Actions: a signed-in user lists and changes their own SSH public keys, which TrueNAS keeps
//! as `~/.ssh/authorized_keys` (`user.update {sshpubkey}`).
//!
//! TrueNAS validates nothing and, for a home directory that does not exist, stores nothing
//! without saying so (truenas-api.md, "SSH keys"). So every line is parsed here
//! (`authorized_keys`), what is written is re-serialised from the parsed keys, and the keys
//! TrueNAS reads back after the write must be the ones sent before success is claimed.

use secrecy::SecretString;
use serde_json::json;

use crate::audit::{Event, Outcome, Record};
use crate::authorized_keys::{self, AcceptedKey, KeyPolicy, LineRefusal};
use crate::limiter::Admitted;
use crate::mail::letters::Change;
use crate::totp::TotpError;
use crate::truenas::path_stat::PathKind;
use crate::truenas::{NasError, NasUser};
use crate::verify::Decision;

use super::action_code::CodeCheck;
use super::portal::{Caller, Portal};
use super::sessions::Claims;

/// TrueNAS' home for accounts without one; it refuses keys there ("Home directory is not
/// writable").
const NO_HOME: &str = "/var/empty";
/// The start of TrueNAS' refusal for a home outside a dataset (plugins/account.py).
const NOT_WRITABLE: &str = "Home directory is not writable";

/// `[ssh_keys]`, as the actions need it.
#[derive(Debug, Clone, Copy)]
pub struct SshKeySettings {
    pub enabled: bool,
    pub policy: KeyPolicy,
    pub allow_roles: bool,
}

/// What the page and `GET /api/v1/ssh-keys` show.
#[derive(Debug)]
pub struct KeyListing {
    pub keys: Vec<AcceptedKey>,
    /// Lines of the file passgate would refuse (options, short RSA…, written by an admin):
    /// not listed, and not kept when the user saves.
    pub other_lines: usize,
    /// `false`: the account has no home directory on the NAS, so nothing can be stored.
    pub storable: bool,
    pub code_required: bool,
    pub max_keys: usize,
}

/// How the user wants the keys changed.
pub enum KeyEdit<'a> {
    /// The whole new set, one key per line (`PUT /api/v1/ssh-keys`); empty removes every key.
    Replace(&'a str),
    /// The page: every stored key stays but those whose fingerprints are in `remove`, and the
    /// lines of `add` are added.
    Edit { add: &'a str, remove: &'a [String] },
}

/// What the user sent.
pub struct KeysChange<'a> {
    pub current: &'a SecretString,
    /// Required when the user has passgate's two-step sign-in.
    pub code: Option<&'a SecretString>,
    pub edit: KeyEdit<'a>,
}

/// A change that TrueNAS holds now.
#[derive(Debug)]
pub struct KeysChanged {
    pub keys: Vec<AcceptedKey>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug)]
pub enum KeysError {
    /// `ssh_keys.enabled = false`: the routes answer "not found".
    Off,
    /// An account with a TrueNAS role or in `admin.groups` (unless `ssh_keys.allow_roles`).
    NotForAccount,
    /// No home directory on the NAS (TrueNAS' `/var/empty`, a home outside a dataset, or one
    /// that does not exist): keys cannot be stored for this account.
    NoHome,
    /// `~/.ssh` or `~/.ssh/authorized_keys` is a symbolic link (or a file with other hard
    /// links). TrueNAS writes the keys as root and, before 27, follows such a link: the keys,
    /// and the file's ownership, would land wherever it points.
    LinkInHome,
    /// TrueNAS accepted the write but reads back other keys (a home that does not exist
    /// makes it a no-op). Told to the user as [`KeysError::NoHome`].
    NotStored,
    /// Lines refused by the rules, each with its reason.
    Refused(Vec<LineRefusal>),
    /// The current password did not verify (or the username is locked).
    WrongPassword,
    /// Two-step sign-in is on and the code is missing, wrong or replayed.
    InvalidCode(Option<TotpError>),
    /// Another refusal of TrueNAS, in its own words.
    RejectedByTrueNas(Vec<String>),
    Unavailable,
    Busy,
}

impl Portal {
    /// The user's keys as TrueNAS holds them.
    pub async fn ssh_keys(&self, session: &Claims) -> Result<KeyListing, KeysError> {
        if !self.ssh_keys.enabled {
            return Err(KeysError::Off);
        }
        let user = match self.nas.get_user(&session.sub).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(KeysError::NotForAccount),
            Err(e) => {
                tracing::error!(error = %e, "the user's keys could not be read");
                return Err(KeysError::Unavailable);
            }
        };
        if !self.keys_allowed_for(&user).await {
            return Err(KeysError::NotForAccount);
        }
        let code_required = match self.totp.status(&session.sub).await {
            Ok(status) => status.enabled,
            Err(e) => {
                tracing::error!(error = %e, "two-step status unreadable");
                return Err(KeysError::Unavailable);
            }
        };
        let (keys, other_lines) = stored_keys(&user);
        Ok(KeyListing {
            keys,
            other_lines,
            storable: has_home(&user),
            code_required,
            max_keys: self.ssh_keys.policy.max_keys,
        })
    }

    /// Replaces the user's keys after checking the current password (and code), each line,
    /// and what TrueNAS reads back. Audited on every outcome; the user gets a change notice.
    #[tracing::instrument(name = "change_ssh_keys", skip_all)]
    pub async fn change_ssh_keys(
        &self,
        caller: Caller<'_>,
        _admitted: Admitted,
        session: &Claims,
        change: KeysChange<'_>,
    ) -> Result<KeysChanged, KeysError> {
        if !self.ssh_keys.enabled {
            return Err(KeysError::Off);
        }
        let username = session.sub.as_str();
        let via = caller.via.as_str();
        let result = self.apply_keys(caller, username, &change).await;
        let failed = |outcome: Outcome, reason: &str, detail: serde_json::Value| {
            self.audit.record(
                Record::new(Event::SshKeysChangeFailed, outcome)
                    .user(username)
                    .context(caller.context)
                    .reason(reason)
                    .detail(detail),
            );
        };
        match &result {
            Ok(changed) => {
                self.audit
                    .record_durable(
                        Record::new(Event::SshKeysChanged, Outcome::Success)
                            .user(username)
                            .context(caller.context)
                            .detail(json!({
                                "via": via,
                                "added": changed.added,
                                "removed": changed.removed,
                                "keys": changed.keys.len(),
                            })),
                    )
                    .await;
                self.notify_change(caller, username, Change::SshKeysChanged);
            }
            Err(KeysError::Off | KeysError::WrongPassword | KeysError::InvalidCode(Some(_))) => {
                // Off: nothing happened. A wrong password or code has its own rows.
            }
            Err(KeysError::InvalidCode(None)) => {
                failed(Outcome::Failure, "code required", json!({"via": via}))
            }
            Err(KeysError::NotForAccount) => failed(
                Outcome::Failure,
                "account manages its keys in TrueNAS",
                json!({"via": via}),
            ),
            Err(KeysError::NoHome) => {
                failed(Outcome::Failure, "no home directory", json!({"via": via}))
            }
            Err(KeysError::LinkInHome) => {
                failed(Outcome::Failure, "link in ~/.ssh", json!({"via": via}))
            }
            Err(KeysError::NotStored) => failed(
                Outcome::Error,
                "TrueNAS did not store the keys",
                json!({"via": via}),
            ),
            Err(KeysError::Refused(lines)) => {
                let reasons: Vec<serde_json::Value> = lines
                    .iter()
                    .map(|l| json!({"line": l.line, "reason": l.reason.code()}))
                    .collect();
                failed(
                    Outcome::Failure,
                    "keys refused",
                    json!({"via": via, "lines": reasons}),
                )
            }
            Err(KeysError::RejectedByTrueNas(messages)) => failed(
                Outcome::Failure,
                "rejected by TrueNAS",
                json!({"via": via, "truenas": messages}),
            ),
            Err(KeysError::Unavailable) => {
                failed(Outcome::Error, "TrueNAS unavailable", json!({"via": via}))
            }
            Err(KeysError::Busy) => {
                failed(Outcome::Error, "no verification slot", json!({"via": via}))
            }
        }
        result
    }

    async fn apply_keys(
        &self,
        caller: Caller<'_>,
        username: &str,
        change: &KeysChange<'_>,
    ) -> Result<KeysChanged, KeysError> {
        // Whoever holds the session must also know the password now: a key outlives it.
        let sign_in = self.authenticator.sign_in(username, change.current).await;
        let decision = sign_in.outcome.decision;
        if decision != Decision::Verified {
            sign_in
                .audit(&self.audit, username, caller.context, caller.via.as_str())
                .await;
            return Err(match decision {
                Decision::Unavailable => KeysError::Unavailable,
                Decision::Busy => KeysError::Busy,
                _ => KeysError::WrongPassword,
            });
        }
        let Some(user) = sign_in.user else {
            return Err(KeysError::Unavailable);
        };
        if !self.keys_allowed_for(&user).await {
            return Err(KeysError::NotForAccount);
        }
        if !has_home(&user) {
            return Err(KeysError::NoHome);
        }
        let home = user.home.as_deref().unwrap_or_default();
        self.key_paths_are_plain(home).await?;
        self.check_action_code(caller, username, change.code)
            .await
            .map_err(|check| match check {
                CodeCheck::Missing => KeysError::InvalidCode(None),
                CodeCheck::Refused(error) => KeysError::InvalidCode(Some(error)),
                CodeCheck::Unavailable(why) => {
                    tracing::error!(error = %why, "the code could not be checked");
                    KeysError::Unavailable
                }
            })?;

        let (before, _) = stored_keys(&user);
        let policy = self.ssh_keys.policy;
        let wanted = match &change.edit {
            KeyEdit::Replace(text) => authorized_keys::parse_keys(text, policy),
            KeyEdit::Edit { add, remove } => {
                let kept: Vec<AcceptedKey> = before
                    .iter()
                    .filter(|k| !remove.contains(&k.fingerprint))
                    .cloned()
                    .collect();
                authorized_keys::parse_added(&kept, add, policy)
            }
        }
        .map_err(KeysError::Refused)?;

        let stored = match self
            .nas
            .set_ssh_keys(&user, &authorized_keys::render(&wanted))
            .await
        {
            Ok(updated) => updated,
            Err(NasError::Validation(messages)) => return Err(truenas_refusal(messages)),
            Err(NasError::Call {
                errname, reason, ..
            }) if errname != "EPERM" => return Err(truenas_refusal(vec![reason])),
            Err(e) => {
                tracing::error!(error = %e, "the keys could not be written");
                return Err(KeysError::Unavailable);
            }
        };
        // A home that does not exist makes the write a silent no-op: only reading back tells.
        let (held, _) = stored_keys(&stored);
        if fingerprints(&held) != fingerprints(&wanted) {
            tracing::warn!(
                sent = wanted.len(),
                held = held.len(),
                "TrueNAS did not store the keys it was given"
            );
            return Err(KeysError::NotStored);
        }
        Ok(KeysChanged {
            added: difference(&held, &before),
            removed: difference(&before, &held),
            keys: held,
        })
    }

    /// `~/.ssh` must be a directory (or absent) and `authorized_keys` a file with no other
    /// hard link (or absent). Checked just before the write; a user who can replace them in
    /// between can still race it, which the README says.
    async fn key_paths_are_plain(&self, home: &str) -> Result<(), KeysError> {
        let dir = format!("{}/.ssh", home.trim_end_matches('/'));
        let file = format!("{dir}/authorized_keys");
        let stat = |path: String| async move {
            self.nas.stat_path(&path).await.map_err(|e| {
                tracing::error!(error = %e, "the key file's path could not be checked");
                KeysError::Unavailable
            })
        };
        match stat(dir).await? {
            None => return Ok(()),
            Some(s) if s.kind == PathKind::Directory => {}
            Some(_) => return Err(KeysError::LinkInHome),
        }
        match stat(file).await? {
            None => Ok(()),
            Some(s) if s.kind == PathKind::File && s.nlink == 1 => Ok(()),
            Some(_) => Err(KeysError::LinkInHome),
        }
    }

    /// Roles (and passgate's admins) manage their keys in TrueNAS, unless allowed.
    async fn keys_allowed_for(&self, user: &NasUser) -> bool {
        if self.ssh_keys.allow_roles {
            return true;
        }
        user.roles.is_empty() && !self.admins.is_admin(self.nas.as_ref(), user).await
    }
}

fn stored_keys(user: &NasUser) -> (Vec<AcceptedKey>, usize) {
    authorized_keys::read_stored(user.ssh_keys.as_deref().unwrap_or_default())
}

fn has_home(user: &NasUser) -> bool {
    user.home
        .as_deref()
        .is_some_and(|home| home.starts_with('/') && home != NO_HOME)
}

fn fingerprints(keys: &[AcceptedKey]) -> Vec<&str> {
    keys.iter().map(|k| k.fingerprint.as_str()).collect()
}

/// Fingerprints in `a` but not in `b`.
fn difference(a: &[AcceptedKey], b: &[AcceptedKey]) -> Vec<String> {
    a.iter()
        .filter(|k| !b.iter().any(|o| o.fingerprint == k.fingerprint))
        .map(|k| k.fingerprint.clone())
        .collect()
}

/// "Home directory is not writable" is said in plain words by the page; anything else in
/// TrueNAS' own.
fn truenas_refusal(messages: Vec<String>) -> KeysError {
    if messages.iter().any(|m| m.contains(NOT_WRITABLE)) {
        KeysError::NoHome
    } else {
        KeysError::RejectedByTrueNas(messages)
    }
}
