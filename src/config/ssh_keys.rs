//! The `[ssh_keys]` section: users replacing their own SSH public keys in TrueNAS.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// More than this many keys per user is refused by the parser's byte cap long before; the
/// bound keeps a typo (`max_keys = 10000`) from meaning "no limit".
const MAX_KEYS_LIMIT: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshKeysConfig {
    /// Offer the `/keys` page and `/api/v1/ssh-keys`.
    pub enabled: bool,
    /// Keys per user, at most.
    pub max_keys: usize,
    /// Accept OpenSSH certificates (`…-cert-v01@openssh.com`) as well as plain keys.
    pub allow_certificates: bool,
    /// Accounts with any TrueNAS role, or in `admin.groups`, manage their keys in TrueNAS
    /// unless this is true: a stolen password must not add a key to an administrator.
    pub allow_roles: bool,
}

impl Default for SshKeysConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_keys: 10,
            allow_certificates: false,
            allow_roles: false,
        }
    }
}

impl SshKeysConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_keys == 0 || self.max_keys > MAX_KEYS_LIMIT {
            return Err(invalid(format!(
                "ssh_keys.max_keys must be between 1 and {MAX_KEYS_LIMIT}"
            )));
        }
        Ok(())
    }
}
