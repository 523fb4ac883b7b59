//! Error objects shaped like api/base/server/ws_handler/rpc.py sends them.
//!
//! Every TrueNAS-style error carries a `trace` with [`TRACE_MARKER`] so tests can prove the
//! portal never shows or logs server tracebacks.

use serde_json::{json, Value};

pub(super) const TRACE_MARKER: &str = "FAKE-TRACEBACK-MARKER";

pub(super) const EPERM: i64 = 1;
pub(super) const ENOENT: i64 = 2;
/// main.py: a call the credential has no role for is `CallError("Not authorized", EACCES)`.
pub(super) const EACCES: i64 = 13;
pub(super) const EFAULT: i64 = 14;
pub(super) const EBUSY: i64 = 16;
pub(super) const EINVAL: i64 = 22;
/// TrueNAS' own errno (truenas_api_client ErrnoMixin).
pub(super) const ENOTAUTHENTICATED: i64 = 207;

/// One `(attribute, message, errno)` entry of a ValidationErrors.
pub(super) type Invalid = (Option<String>, String, i64);

#[derive(Debug)]
pub(super) enum RpcError {
    /// ValidationError(s): `-32602 "Invalid params"`, entries in `data.extra`.
    Validation(Vec<Invalid>),
    /// CallError: `-32001 "Method call error"`, reason `[ERRNAME] message`.
    Call {
        errno: i64,
        message: String,
    },
    /// Any other exception: `-32001`, reason is `str(exc)` or `repr(exc)` as-is.
    Other {
        class: &'static str,
        reason: String,
    },
    MethodNotFound,
    /// rpc.py `SoftHardSemaphoreLimit`: truenas_api_client's
    /// `JSONRPCError.TRUENAS_TOO_MANY_CONCURRENT_CALLS` (-32000), no `data`.
    TooManyConcurrentCalls(usize),
    InvalidRequest(String),
    InvalidJson(String),
}

impl RpcError {
    pub fn validation(attribute: &str, message: impl Into<String>) -> RpcError {
        RpcError::Validation(vec![(Some(attribute.to_owned()), message.into(), EINVAL)])
    }

    pub fn call(errno: i64, message: impl Into<String>) -> RpcError {
        RpcError::Call {
            errno,
            message: message.into(),
        }
    }

    pub fn not_authenticated() -> RpcError {
        RpcError::call(ENOTAUTHENTICATED, "Not authenticated")
    }

    /// The JSON-RPC `error` member.
    pub fn to_json(&self) -> Value {
        match self {
            RpcError::Validation(items) => {
                let reason: String = items
                    .iter()
                    .map(|(attr, msg, errno)| {
                        format!("[{}] {}: {msg}\n", errname(*errno), attr_repr(attr))
                    })
                    .collect();
                let extra: Vec<Value> = items
                    .iter()
                    .map(|(attr, msg, errno)| json!([attr, msg, errno]))
                    .collect();
                let data = truenas_data(EINVAL, &reason, "ValidationErrors", json!(extra));
                json!({"code": -32602, "message": "Invalid params", "data": data})
            }
            RpcError::Call { errno, message } => {
                let reason = format!("[{}] {message}", errname(*errno));
                json!({"code": -32001, "message": "Method call error",
                       "data": truenas_data(*errno, &reason, "CallError", Value::Null)})
            }
            RpcError::Other { class, reason } => {
                json!({"code": -32001, "message": "Method call error",
                       "data": truenas_data(EINVAL, reason, class, Value::Null)})
            }
            RpcError::MethodNotFound => json!({"code": -32601, "message": "Method does not exist"}),
            RpcError::TooManyConcurrentCalls(limit) => json!({"code": -32000,
                "message": format!("Maximum number of concurrent calls ({limit}) has exceeded")}),
            RpcError::InvalidRequest(why) => json!({"code": -32600, "message": why}),
            RpcError::InvalidJson(why) => json!({"code": -32700, "message": why}),
        }
    }
}

/// Python prints a missing attribute as `None`.
fn attr_repr(attr: &Option<String>) -> &str {
    attr.as_deref().unwrap_or("None")
}

pub(super) fn errname(errno: i64) -> &'static str {
    match errno {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        13 => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EINVAL => "EINVAL",
        ENOTAUTHENTICATED => "ENOTAUTHENTICATED",
        _ => "EUNKNOWN",
    }
}

/// `format_truenas_error`: errno, errname, reason, trace, extra.
fn truenas_data(errno: i64, reason: &str, class: &str, extra: Value) -> Value {
    let formatted = format!(
        "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/middlewared/\
         api/base/server/ws_handler/rpc.py\", line 310, in process_method_call\n    \
         result = await method.call(app, params)\n{class}: {reason}\n# {TRACE_MARKER}\n"
    );
    json!({
        "error": errno,
        "errname": errname(errno),
        "reason": reason,
        "trace": {"class": class, "frames": [], "formatted": formatted,
                  "repr": format!("{class}({reason:?}) {TRACE_MARKER}")},
        "extra": extra,
    })
}
