//! JSON-RPC method dispatch and the non-auth methods.

use serde_json::{json, Value};

use super::auth;
use super::errors::{RpcError, EINVAL};
use super::jsonrpc::{lock, ConnHandle, Session};
use super::password::{self, Api, Target};
use super::state::Shared;

pub(super) async fn call(
    shared: &Shared,
    conn: &ConnHandle,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcError> {
    // Methods that work without authentication.
    match method {
        "core.ping" => return Ok(json!("pong")),
        "auth.login_ex" => return auth::login_ex(shared, conn, params).await,
        "auth.login_ex_continue" => return auth::login_ex_continue(shared, conn, params).await,
        // 26 marks it deprecated but still serves it (removed only in 27).
        "auth.login_with_api_key" => return auth::login_with_api_key(shared, conn, params).await,
        "auth.logout" | "system.info" | "user.query" | "group.query" | "user.set_password"
        | "user.update" => {}
        _ => return Err(RpcError::MethodNotFound),
    }

    let Some(session) = lock(conn).session.clone() else {
        return Err(RpcError::not_authenticated());
    };
    let full_admin = match &session {
        Session::ApiKey => true,
        Session::User { full_admin, .. } => *full_admin,
    };
    match method {
        "auth.logout" => {
            let mut conn = lock(conn);
            conn.session = None;
            conn.pending_otp = None;
            Ok(json!(true))
        }
        "system.info" => Ok(system_info(shared)),
        "user.query" => user_query(shared, full_admin, params),
        "group.query" => group_query(params),
        "user.set_password" => set_password(shared, full_admin, params).await,
        "user.update" => user_update(shared, full_admin, params).await,
        _ => Err(RpcError::MethodNotFound),
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

    let users: Vec<Value> = shared
        .lock()
        .users
        .iter()
        .map(|u| u.to_json(full_admin))
        .collect();
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

/// `[ID, {"password": NEW}]` → the updated user. Only the password is supported.
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

pub(super) fn required_str(data: &Value, field: &str, prefix: &str) -> Result<String, RpcError> {
    data.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| RpcError::validation(&format!("{prefix}.{field}"), "Field required"))
}
