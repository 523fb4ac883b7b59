//! `GET /api/versions` and the deprecated REST API under `/api/v2.0`.
//!
//! REST exists on 25.10 only; 26 removed it ("NAS-136965 Remove the REST API") and answers
//! 404. It needs `Authorization: Bearer KEY`. Unlike a WebSocket login, REST over plain HTTP
//! does not revoke the key (that is how TrueNAS behaves). `set_password` has no REST route
//! (it needs a WebSocket); `PUT /user/id/ID` changes a password the `user.update` way.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::errors::{RpcError, ENOENT};
use super::methods::system_info;
use super::password::{self, Api, Target};
use super::state::Shared;

pub(super) async fn versions(State(shared): State<Arc<Shared>>) -> Json<Vec<&'static str>> {
    shared.record("REST GET /api/versions".to_owned());
    Json(shared.flavour.api_versions())
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(format!("REST {method} {}", uri.path()));
    if !shared.flavour.has_rest() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|key| shared.key_valid(key)) {
        return (StatusCode::UNAUTHORIZED, "401: Unauthorized").into_response();
    }

    let path = uri
        .path()
        .trim_start_matches("/api/v2.0")
        .trim_end_matches('/');
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["core", "ping"]) => Json(json!("pong")).into_response(),
        (Method::GET, ["system", "info"]) => Json(system_info(&shared)).into_response(),
        (Method::GET, ["user"]) => Json(list_users(&shared, &query)).into_response(),
        (Method::GET, ["group"]) => Json(Value::Array(super::users::groups_json())).into_response(),
        (Method::GET, ["user", "id", id]) => get_user(&shared, id),
        (Method::PUT, ["user", "id", id]) => put_user(&shared, id, &body).await,
        (Method::POST, ["filesystem", "stat"]) => filesystem_stat(&body),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Query parameters are equality filters on user fields (`?username=bob`).
fn list_users(shared: &Shared, query: &HashMap<String, String>) -> Value {
    let inner = shared.lock();
    let users: Vec<Value> = inner
        .users
        .iter()
        .map(|u| u.to_json(true, inner.max_password_age))
        .filter(|user| {
            query
                .iter()
                .all(|(field, wanted)| field_matches(user.get(field), wanted))
        })
        .collect();
    Value::Array(users)
}

fn field_matches(actual: Option<&Value>, wanted: &str) -> bool {
    match actual {
        Some(Value::String(s)) => s == wanted,
        // Numbers and booleans arrive as text (`?id=70`, `?local=true`).
        Some(other) => serde_json::from_str::<Value>(wanted).is_ok_and(|wanted| &wanted == other),
        None => false,
    }
}

fn get_user(shared: &Shared, id: &str) -> Response {
    let user = id.parse::<u64>().ok().and_then(|id| {
        let inner = shared.lock();
        inner
            .users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.to_json(true, inner.max_password_age))
    });
    match user {
        Some(user) => Json(user).into_response(),
        None => not_found(),
    }
}

async fn put_user(shared: &Shared, id: &str, body: &[u8]) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return not_found();
    };
    let parsed = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    if let Some(keys) = parsed.get("sshpubkey") {
        return match super::methods::update_sshpubkey(shared, true, id, keys) {
            Ok(user) => Json(user).into_response(),
            Err(RpcError::Validation(items))
                if items
                    .iter()
                    .any(|(attr, _, errno)| attr.is_none() && *errno == ENOENT) =>
            {
                not_found()
            }
            Err(RpcError::Validation(items)) => validation_response(items),
            Err(other) => panic!("user.update sshpubkey over REST: {other:?}"),
        };
    }
    let Some(new_password) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.get("password").and_then(Value::as_str).map(str::to_owned))
    else {
        return validation_response(vec![(
            Some("user_update.password".into()),
            "Field required".into(),
            22,
        )]);
    };
    // The bearer key belongs to a FULL_ADMIN.
    match password::change(shared, Api::Update, true, Target::Id(id), &new_password).await {
        Ok(user) => Json(user).into_response(),
        Err(RpcError::Validation(items))
            if items
                .iter()
                .any(|(attr, _, errno)| attr.is_none() && *errno == ENOENT) =>
        {
            not_found()
        }
        Err(RpcError::Validation(items)) => validation_response(items),
        Err(other) => (StatusCode::INTERNAL_SERVER_ERROR, Json(other.to_json())).into_response(),
    }
}

/// restful.py: the path is the JSON body; a CallError is 422 `{"message", "errno"}`.
fn filesystem_stat(body: &[u8]) -> Response {
    let path: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match super::ssh_keys::stat(&[path]) {
        Ok(stat) => Json(stat).into_response(),
        Err(RpcError::Call { errno, message }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": message, "errno": errno})),
        )
            .into_response(),
        Err(RpcError::Validation(items)) => validation_response(items),
        Err(other) => panic!("filesystem.stat over REST: {other:?}"),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": ""}))).into_response()
}

/// 422 with `{"attribute": [{"message", "errno"}]}` as the REST layer renders ValidationErrors.
fn validation_response(items: Vec<(Option<String>, String, i64)>) -> Response {
    let mut body = serde_json::Map::new();
    for (attr, message, errno) in items {
        let key = attr.unwrap_or_default();
        let entry = body.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(json!({"message": message, "errno": errno}));
        }
    }
    (StatusCode::UNPROCESSABLE_ENTITY, Json(Value::Object(body))).into_response()
}
