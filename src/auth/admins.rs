//! Who may review the audit log: members of `admin.groups` or users in `admin.users`,
//! decided at sign-in through the TrueNAS API. Knows nothing about HTTP.

use crate::config::AdminConfig;
use crate::truenas::{NasClient, NasUser};

pub struct AdminPolicy {
    groups: Vec<String>,
    users: Vec<String>,
}

impl AdminPolicy {
    pub fn new(config: &AdminConfig) -> Self {
        Self {
            groups: config.groups.clone(),
            users: config.users.clone(),
        }
    }

    /// Fails closed: when the groups cannot be read, the user is not an admin.
    pub async fn is_admin(&self, nas: &dyn NasClient, user: &NasUser) -> bool {
        if self.users.contains(&user.username) {
            return true;
        }
        if self.groups.is_empty() || user.groups.is_empty() {
            return false;
        }
        match nas.group_names(&user.groups).await {
            Ok(names) => names.iter().any(|n| self.groups.contains(n)),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the user's groups; not an admin");
                false
            }
        }
    }
}
