//! Changing a password: `user.set_password`, `user.update` and REST `PUT /user/id/ID`.
//!
//! Check order follows plugins/account.py `set_password`: caller privilege, user exists,
//! local, then the password rules (history), `password_disabled`, `locked`. Failures queued
//! by `fail_next_set_password` come before everything else.

use super::errors::{RpcError, EINVAL, ENOENT, EPERM};
use super::state::Shared;
use super::users::{hash_password, StoredUser};

pub(super) const HISTORY_MESSAGE: &str =
    "The security configuration of the TrueNAS server requires a password \
     that does not match any of the last 3 passwords for this account.";

/// Which API asked; it decides the attribute names in validation errors.
#[derive(Clone, Copy)]
pub(super) enum Api {
    SetPassword,
    Update,
}

impl Api {
    fn username_attr(self) -> &'static str {
        match self {
            Api::SetPassword => "user.set_password.username",
            Api::Update => "user_update.username",
        }
    }

    fn password_attr(self) -> &'static str {
        match self {
            Api::SetPassword => "user.set_password.new_password",
            Api::Update => "user_update.password",
        }
    }
}

pub(super) enum Target {
    Name(String),
    Id(u64),
}

/// Validates and stores a new password; returns the user as a FULL_ADMIN sees it.
pub(super) async fn change(
    shared: &Shared,
    api: Api,
    caller_full_admin: bool,
    target: Target,
    new_password: &str,
) -> Result<serde_json::Value, RpcError> {
    let username = validate(shared, api, caller_full_admin, &target, new_password)?;

    // ~0.3 s of CPU: never on the async threads, never under the state lock.
    let password = new_password.to_owned();
    let unixhash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .expect("hashing task finished");

    let (answer, lose_answer) = {
        let mut inner = shared.lock();
        let max_password_age = inner.max_password_age;
        let user = inner.user_by_name_mut(&username).ok_or_else(|| {
            RpcError::validation(
                api.username_attr(),
                format!("{username}: user does not exist."),
            )
        })?;
        user.set_password(new_password, unixhash);
        let answer = user.to_json(true, max_password_age);
        (answer, std::mem::take(&mut inner.lose_next_answer))
    };
    if lose_answer {
        shared.drop_connections();
        // Never answers: the connection carrying the call is gone.
        std::future::pending::<()>().await;
    }
    Ok(answer)
}

/// Returns the target's username when every check passes.
fn validate(
    shared: &Shared,
    api: Api,
    caller_full_admin: bool,
    target: &Target,
    new_password: &str,
) -> Result<String, RpcError> {
    let mut inner = shared.lock();
    if let Some(messages) = inner.fail_next.take() {
        let attr = api.password_attr();
        return Err(RpcError::Validation(
            messages
                .into_iter()
                .map(|m| (Some(attr.to_owned()), m, EINVAL))
                .collect(),
        ));
    }

    let user: Option<&StoredUser> = match target {
        Target::Name(name) => inner.user_by_name(name),
        Target::Id(id) => inner.users.iter().find(|u| u.id == *id),
    };
    let shown_name = match (user, target) {
        (Some(user), _) => user.profile.username.clone(),
        (None, Target::Name(name)) => name.clone(),
        (None, Target::Id(id)) => id.to_string(),
    };
    if !caller_full_admin {
        return Err(RpcError::call(
            EPERM,
            format!("{shown_name}: currently authenticated credential may not reset password for this user."),
        ));
    }
    let Some(user) = user else {
        return Err(match target {
            Target::Name(_) => RpcError::validation(
                api.username_attr(),
                format!("{shown_name}: user does not exist."),
            ),
            // get_instance raises InstanceNotFound: a ValidationError without attribute.
            Target::Id(id) => {
                RpcError::Validation(vec![(None, format!("User {id} does not exist"), ENOENT)])
            }
        });
    };
    let name = user.profile.username.clone();
    if !user.profile.local {
        return Err(RpcError::validation(
            api.username_attr(),
            format!("{name}: user is not local to the TrueNAS server."),
        ));
    }

    let mut errors = Vec::new();
    if user.history.iter().any(|old| old == new_password) {
        errors.push((
            Some(api.password_attr().to_owned()),
            HISTORY_MESSAGE.to_owned(),
            EINVAL,
        ));
    }
    if user.profile.password_disabled {
        errors.push((
            Some(api.username_attr().to_owned()),
            format!("{name}: password authentication disabled for user"),
            EINVAL,
        ));
    }
    if user.profile.locked {
        errors.push((
            Some(api.username_attr().to_owned()),
            format!("{name}: user account is locked."),
            EINVAL,
        ));
    }
    if errors.is_empty() {
        Ok(name)
    } else {
        Err(RpcError::Validation(errors))
    }
}
