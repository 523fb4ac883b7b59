//! JSON-RPC method dispatch and the non-auth methods.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::auth;
use super::errors::{RpcError, EBUSY, EINVAL};
use super::jsonrpc::{lock, ConnHandle, Session};
use super::mail;
use super::password::{self, Api, Target};
use super::state::{uniform, Shared};
use super::Flavour;

/// Methods callable without authentication (`authentication_required=False`), all subject
/// to the rate limit (`rate_limit=True` is the decorator's default).
const NO_AUTH: &[&str] = &[
    "core.ping",
    "auth.login_ex",
    "auth.login_ex_continue",
    "auth.login_with_api_key",
    "auth.mechanism_choices",
];
const AUTHENTICATED: &[&str] = &[
    "auth.logout",
    "system.info",
    "system.security.config",
    "user.query",
    "group.query",
    "user.set_password",
    "user.update",
    "filesystem.stat",
    "mail.config",
    "mail.send",
    "core.get_jobs",
];

/// rpc.py answers METHOD_NOT_FOUND before a call takes a concurrency slot.
pub(super) fn exists(method: &str) -> bool {
    NO_AUTH.contains(&method) || AUTHENTICATED.contains(&method)
}

pub(super) async fn call(
    shared: &Arc<Shared>,
    conn: &ConnHandle,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcError> {
    if NO_AUTH.contains(&method) {
        authorize_unauthenticated(shared, conn, method).await?;
    }
    match method {
        "core.ping" => return Ok(json!("pong")),
        "auth.login_ex" => return auth::login_ex(shared, conn, params).await,
        "auth.login_ex_continue" => return auth::login_ex_continue(shared, conn, params).await,
        // Deprecated in 26, `removed_in='v27'`: private (but served) from 27's API on.
        "auth.login_with_api_key" => return auth::login_with_api_key(shared, conn, params).await,
        "auth.mechanism_choices" => return Ok(mechanism_choices(shared.flavour)),
        _ if AUTHENTICATED.contains(&method) => {}
        _ => return Err(RpcError::MethodNotFound),
    }

    let Some(session) = lock(conn).session.clone() else {
        return Err(RpcError::not_authenticated());
    };
    let (owner, credential, full_admin) = match &session {
        Session::ApiKey => (shared.api_user.clone(), "API_KEY", true),
        Session::User {
            username,
            full_admin,
        } => (username.clone(), "LOGIN_PASSWORD", *full_admin),
    };
    match method {
        "auth.logout" => {
            let mut conn = lock(conn);
            conn.session = None;
            conn.pending_otp = None;
            Ok(json!(true))
        }
        "system.info" => Ok(system_info(shared)),
        "system.security.config" => Ok(security_config(shared)),
        "user.query" => user_query(shared, full_admin, params),
        "group.query" => group_query(params),
        "user.set_password" => set_password(shared, full_admin, params).await,
        "user.update" => user_update(shared, full_admin, params).await,
        // Role FILESYSTEM_ATTRS_READ, which a FULL_ADMIN has.
        "filesystem.stat" if !full_admin => {
            Err(RpcError::call(super::errors::EACCES, "Not authorized"))
        }
        "filesystem.stat" => super::ssh_keys::stat(params),
        "mail.config" => Ok(mail::config(shared)),
        "mail.send" => mail::send(shared, &owner, credential, params),
        "core.get_jobs" => get_jobs(shared, &owner, full_admin, params),
        _ => Err(RpcError::MethodNotFound),
    }
}

/// main.py `authorize_method_call` for a `_no_auth_required` method: authenticated
/// connections are exempt; others go through the rate-limit table (see `rate_limit`).
async fn authorize_unauthenticated(
    shared: &Shared,
    conn: &ConnHandle,
    method: &str,
) -> Result<(), RpcError> {
    let (authenticated, peer) = {
        let conn = lock(conn);
        (conn.session.is_some(), conn.peer)
    };
    if authenticated {
        return Ok(());
    }
    let refused = {
        let mut inner = shared.lock();
        inner.unauthenticated_calls += 1;
        inner.rate_limit.refuse(method, peer)
    };
    if !refused {
        return Ok(());
    }
    // `sleep(round(uniform(sleep_start, sleep_end), 2))`
    let (low, high) = shared.rate_limit_sleep;
    let pause = uniform(low, high);
    let pause = Duration::from_millis(u64::try_from(pause.as_millis() / 10 * 10).unwrap_or(0));
    tokio::time::sleep(pause).await;
    shared.lock().rate_limited += 1;
    Err(RpcError::call(EBUSY, "Rate Limit Exceeded"))
}

/// plugins/auth.py `mechanism_choices`: the mechanisms of the current AAL (utils/auth.py
/// `AA_LEVEL1`; SCRAM from 26 on). OTP_TOKEN is a continuation, never listed.
fn mechanism_choices(flavour: Flavour) -> Value {
    let mut choices = vec!["API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN"];
    if flavour != Flavour::V25_10 {
        choices.push("SCRAM");
    }
    json!(choices)
}

/// `system.security.config` (api/v25_10_1/system_security.py `SystemSecurityEntry`).
fn security_config(shared: &Shared) -> Value {
    json!({
        "id": 1,
        "enable_fips": false,
        "enable_gpos_stig": false,
        "min_password_age": null,
        "max_password_age": shared.lock().max_password_age,
        "password_complexity_ruleset": null,
        "min_password_length": null,
        "password_history_length": null,
    })
}

/// `core.get_jobs [filters, options]` (service/core_service.py): a FULL_ADMIN sees every
/// job, others their own.
fn get_jobs(
    shared: &Shared,
    owner: &str,
    full_admin: bool,
    params: &[Value],
) -> Result<Value, RpcError> {
    let filters = filters_of(params, "core.get_jobs.filters")?;
    let jobs: Vec<Value> = shared
        .lock()
        .jobs
        .iter()
        .filter(|job| full_admin || job.owner == owner)
        .map(|job| job.to_json())
        .collect();
    let mut matching = Vec::new();
    for job in jobs {
        if matches_all(&job, &filters)? {
            matching.push(job);
        }
    }
    Ok(Value::Array(matching))
}

fn filters_of(params: &[Value], attribute: &str) -> Result<Vec<Value>, RpcError> {
    match params.first() {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(filters)) => Ok(filters.clone()),
        Some(_) => Err(RpcError::validation(
            attribute,
            "Input should be a valid list",
        )),
    }
}

pub(super) fn system_info(shared: &Shared) -> Value {
    json!({
        "version": shared.flavour.system_version(),
        "hostname": "fake-nas",
        "uptime_seconds": 12345.6,
        "system_product": "FAKE",
        "timezone": "UTC",
    })
}

/// `[filters, options]`; filters are `[field, op, value]` with `=`, `!=`, `in`, `nin`;
/// options `{"get": true}` return one entry or fail like `MatchNotFound`.
fn user_query(shared: &Shared, full_admin: bool, params: &[Value]) -> Result<Value, RpcError> {
    let filters = match params.first() {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(filters)) => filters.clone(),
        Some(_) => {
            return Err(RpcError::validation(
                "user.query.filters",
                "Input should be a valid list",
            ))
        }
    };
    let get = params
        .get(1)
        .and_then(|o| o.get("get"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let users: Vec<Value> = {
        let inner = shared.lock();
        inner
            .users
            .iter()
            .map(|u| u.to_json(full_admin, inner.max_password_age))
            .collect()
    };
    let mut matching = Vec::new();
    for user in users {
        if matches_all(&user, &filters)? {
            matching.push(user);
        }
    }
    if !get {
        return Ok(Value::Array(matching));
    }
    matching.into_iter().next().ok_or_else(|| RpcError::Other {
        class: "MatchNotFound",
        reason: "MatchNotFound()".to_owned(),
    })
}

/// `[filters]` over the fixed group table.
fn group_query(params: &[Value]) -> Result<Value, RpcError> {
    let filters = match params.first() {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(filters)) => filters.clone(),
        Some(_) => {
            return Err(RpcError::validation(
                "group.query.filters",
                "Input should be a valid list",
            ))
        }
    };
    let mut matching = Vec::new();
    for group in super::users::groups_json() {
        if matches_all(&group, &filters)? {
            matching.push(group);
        }
    }
    Ok(Value::Array(matching))
}

fn matches_all(user: &Value, filters: &[Value]) -> Result<bool, RpcError> {
    for filter in filters {
        let (Some(field), Some(op), Some(value)) = (
            filter.get(0).and_then(Value::as_str),
            filter.get(1).and_then(Value::as_str),
            filter.get(2),
        ) else {
            return Err(RpcError::validation(
                "user.query.filters",
                format!("{filter}: invalid filter"),
            ));
        };
        let actual = user.get(field).unwrap_or(&Value::Null);
        let in_list = || value.as_array().is_some_and(|list| list.contains(actual));
        let ok = match op {
            "=" => actual == value,
            "!=" => actual != value,
            "in" => in_list(),
            "nin" => !in_list(),
            _ => {
                return Err(RpcError::call(
                    EINVAL,
                    format!("{op}: unsupported operator in the fake"),
                ))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `[{"username", "old_password", "new_password"}]` → `null`. With FULL_ADMIN the old
/// password is not checked (as on TrueNAS).
async fn set_password(
    shared: &Shared,
    full_admin: bool,
    params: &[Value],
) -> Result<Value, RpcError> {
    let data = params.first().cloned().unwrap_or(Value::Null);
    let username = required_str(&data, "username", "user.set_password")?;
    let new_password = required_str(&data, "new_password", "user.set_password")?;
    password::change(
        shared,
        Api::SetPassword,
        full_admin,
        Target::Name(username),
        &new_password,
    )
    .await?;
    Ok(Value::Null)
}

/// `[ID, {"password": NEW}]` or `[ID, {"sshpubkey": KEYS}]` → the updated user (FULL_ADMIN).
async fn user_update(
    shared: &Shared,
    full_admin: bool,
    params: &[Value],
) -> Result<Value, RpcError> {
    let Some(id) = params.first().and_then(Value::as_u64) else {
        return Err(RpcError::validation(
            "user_update.id",
            "Input should be a valid integer",
        ));
    };
    let data = params.get(1).cloned().unwrap_or(Value::Null);
    if let Some(keys) = data.get("sshpubkey") {
        return update_sshpubkey(shared, full_admin, id, keys);
    }
    let new_password = required_str(&data, "password", "user_update")?;
    password::change(
        shared,
        Api::Update,
        full_admin,
        Target::Id(id),
        &new_password,
    )
    .await
}

pub(super) fn update_sshpubkey(
    shared: &Shared,
    full_admin: bool,
    id: u64,
    keys: &Value,
) -> Result<Value, RpcError> {
    if !full_admin {
        return Err(RpcError::call(super::errors::EACCES, "Not authorized"));
    }
    let inner = shared.lock();
    let Some(user) = inner.users.iter().find(|u| u.id == id) else {
        return Err(RpcError::Validation(vec![(
            None,
            format!("User {id} does not exist"),
            super::errors::ENOENT,
        )]));
    };
    super::ssh_keys::update(shared.datasets.path(), &user.home, keys)?;
    Ok(user.to_json(true, inner.max_password_age))
}

pub(super) fn required_str(data: &Value, field: &str, prefix: &str) -> Result<String, RpcError> {
    data.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| RpcError::validation(&format!("{prefix}.{field}"), "Field required"))
}
