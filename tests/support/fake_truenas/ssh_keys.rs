//! `sshpubkey`, as plugins/account.py (27.0.0-BETA.1) keeps it: a file, not a database column.
//!
//! - `user_extend` → `_read_authorized_keys`: `user.query`'s `sshpubkey` is
//!   `~/.ssh/authorized_keys` read and stripped, `null` when the file is missing.
//! - `do_update`: a non-empty `sshpubkey` for a home that is not on a dataset
//!   (`filesystem.is_dataset_path`, false for the default `/var/empty`) is a validation error on
//!   `user_update.sshpubkey`, "Home directory is not writable, leave this blank\"" (the stray
//!   quote is TrueNAS').
//! - `update_sshpubkey`: a home that is not a directory makes the call a silent no-op; an empty
//!   value deletes the file; otherwise `.ssh` is made 0700 and the file written with the value
//!   stripped plus a newline, mode 0600. Nothing in between is validated: options, many lines
//!   and garbage are all written.
//!
//! The fake's "datasets" are one temporary directory: homes under it are on a dataset.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::errors::{RpcError, EINVAL, ENOENT};

/// Where a fake user's home directory is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FakeHome {
    /// On a dataset, and it exists.
    #[default]
    Dataset,
    /// `/var/empty`, TrueNAS' default for users with no home.
    NotDataset,
    /// A path on a dataset that does not exist (deleted, or a dataset not mounted).
    Missing,
    /// A directory off every dataset (on the boot pool, say): TrueNAS refuses keys there.
    /// Never created: the refusal comes before the directory is looked at.
    OutsideDataset,
}

/// TrueNAS' `DEFAULT_HOME_PATH` (api/v25_04_0/user.py).
const DEFAULT_HOME_PATH: &str = "/var/empty";

pub(super) const NOT_WRITABLE: &str = "Home directory is not writable, leave this blank\"";

/// The home path a user gets; a `Dataset` home is created.
pub(super) fn home_for(datasets: &Path, username: &str, home: FakeHome) -> PathBuf {
    match home {
        FakeHome::NotDataset => PathBuf::from(DEFAULT_HOME_PATH),
        FakeHome::OutsideDataset => PathBuf::from(format!("/root/passgate-fake-home-{username}")),
        FakeHome::Dataset | FakeHome::Missing => {
            let path = datasets.join("tank/home").join(username);
            if home == FakeHome::Dataset {
                std::fs::create_dir_all(&path).expect("create a fake home");
            }
            path
        }
    }
}

fn keys_file(home: &Path) -> PathBuf {
    home.join(".ssh/authorized_keys")
}

/// `_read_authorized_keys`.
pub(super) fn read(home: &Path) -> Value {
    match std::fs::read_to_string(keys_file(home)) {
        Ok(text) => Value::String(text.trim().to_owned()),
        Err(_) => Value::Null,
    }
}

/// `filesystem.stat` (plugins/filesystem.py): `statx` without following a final symlink,
/// `CallError(ENOENT)` for nothing there. Only the fields passgate reads, plus `realpath`.
pub(super) fn stat(params: &[Value]) -> Result<Value, RpcError> {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = params.first().and_then(Value::as_str) else {
        return Err(RpcError::validation(
            "filesystem.stat.path",
            "Input should be a valid string",
        ));
    };
    if !path.starts_with('/') {
        return Err(RpcError::call(
            EINVAL,
            format!("{path}: path must be absolute"),
        ));
    }
    let meta = std::fs::symlink_metadata(path)
        .map_err(|_| RpcError::call(ENOENT, format!("Path {path} not found")))?;
    let kind = if meta.file_type().is_symlink() {
        "SYMLINK"
    } else if meta.is_dir() {
        "DIRECTORY"
    } else if meta.is_file() {
        "FILE"
    } else {
        "OTHER"
    };
    let realpath = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    Ok(serde_json::json!({
        "realpath": realpath.to_string_lossy(),
        "type": kind,
        "size": meta.len(),
        "mode": meta.mode(),
        "uid": meta.uid(),
        "gid": meta.gid(),
        "nlink": meta.nlink(),
    }))
}

/// `do_update`'s check, then `update_sshpubkey`. The file is written with a plain
/// `open(…, 'w')`, as 25.04 and 25.10 do: through a symlink, if there is one (27 replaces it
/// with `atomic_write`; the fake keeps the riskier behaviour, which is what passgate must guard
/// against).
pub(super) fn update(datasets: &Path, home: &Path, value: &Value) -> Result<(), RpcError> {
    let pubkey = value.as_str().unwrap_or_default().trim();
    if !pubkey.is_empty() && !home.starts_with(datasets) {
        return Err(RpcError::validation("user_update.sshpubkey", NOT_WRITABLE));
    }
    if !home.is_dir() {
        return Ok(());
    }
    let file = keys_file(home);
    if pubkey.is_empty() {
        let _ = std::fs::remove_file(&file);
        return Ok(());
    }
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).expect("mkdir .ssh");
    std::fs::set_permissions(&ssh, PermissionsExt::from_mode(0o700)).expect("chmod .ssh");
    std::fs::write(&file, format!("{pubkey}\n")).expect("write authorized_keys");
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o600)).expect("chmod keys");
    Ok(())
}
