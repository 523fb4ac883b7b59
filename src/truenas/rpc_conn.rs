//! One JSON-RPC 2.0 WebSocket connection to TrueNAS, with calls multiplexed by id.
//!
//! A reader task routes each response to the caller waiting for its id; a writer task owns
//! the sending half. When the socket closes, every waiting call fails at once with
//! `Unavailable` instead of hanging until its timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use super::NasError;

type Reply = Result<Value, RpcError>;

/// middlewared runs 10 calls of a connection at once and queues 10 more
/// (`SoftHardSemaphore(10, 20)` in api/base/server/ws_handler/rpc.py); the 21st gets
/// TRUENAS_TOO_MANY_CONCURRENT_CALLS. Queue here instead, where the wait counts against the
/// caller's own timeout, and never make TrueNAS queue.
const MAX_IN_FLIGHT: usize = 10;
/// JSONRPCError.TRUENAS_TOO_MANY_CONCURRENT_CALLS.
const TOO_MANY_CONCURRENT_CALLS: i64 = -32000;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// A JSON-RPC error object, reduced to what passgate may use. `data.trace` is dropped on
/// parse so a server traceback can never travel further.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub errname: Option<String>,
    pub reason: Option<String>,
    /// `extra[*][1]`: the validation messages meant for users.
    pub extra_messages: Vec<String>,
}

impl RpcError {
    pub fn parse(error: &Value) -> Self {
        let data = error.get("data");
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let extra_messages = data
            .and_then(|d| d.get("extra"))
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e.get(1).and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: text(error.get("message")).unwrap_or_default(),
            errname: text(data.and_then(|d| d.get("errname"))),
            reason: text(data.and_then(|d| d.get("reason"))),
            extra_messages,
        }
    }

    pub fn into_nas_error(self, method: &str) -> NasError {
        match self.code {
            -32602 => {
                let mut messages = self.extra_messages;
                if messages.is_empty() {
                    messages.push(self.reason.unwrap_or(self.message));
                }
                NasError::Validation(messages)
            }
            -32601 => NasError::MethodNotFound(method.to_string()),
            TOO_MANY_CONCURRENT_CALLS => NasError::Unavailable(format!(
                "{method}: TrueNAS refused it: too many concurrent calls on one connection"
            )),
            // main.py authorize_method_call: CallError('Rate Limit Exceeded', errno.EBUSY).
            _ if self.errname.as_deref() == Some("EBUSY")
                && self
                    .reason
                    .as_deref()
                    .unwrap_or(&self.message)
                    .contains("Rate Limit Exceeded") =>
            {
                NasError::RateLimited(format!(
                    "TrueNAS answered {method} with \"Rate Limit Exceeded\""
                ))
            }
            _ => NasError::Call {
                method: method.to_string(),
                errname: self.errname.unwrap_or_else(|| self.code.to_string()),
                reason: first_line(&self.reason.unwrap_or(self.message)),
            },
        }
    }
}

/// Reasons can be multi-line; only the first line goes anywhere near a log.
fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

pub struct RpcConnection {
    outgoing: mpsc::Sender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
    timeout: Duration,
    in_flight: Semaphore,
}

impl RpcConnection {
    pub async fn connect(
        url: &str,
        tls: Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<Self, NasError> {
        // Answers are small; a cap stops a broken or hostile server from exhausting memory.
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(16 << 20))
            .max_frame_size(Some(16 << 20));
        let connector = if url.starts_with("wss://") {
            Some(Connector::Rustls(tls))
        } else {
            Some(Connector::Plain)
        };
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(ws_config), true, connector);
        let (stream, _response) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| NasError::Unavailable(format!("connecting to {url} timed out")))?
            .map_err(|e| {
                NasError::Unavailable(format!(
                    "connecting to {url}: {}",
                    super::tls_diagnosis::describe(&e)
                ))
            })?;
        let (mut sink, mut source) = stream.split();
        let (outgoing, mut to_send) = mpsc::channel::<Message>(64);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));

        tokio::spawn(async move {
            while let Some(message) = to_send.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });

        let reader_pending = pending.clone();
        let reader_closed = closed.clone();
        let pong = outgoing.clone();
        tokio::spawn(async move {
            while let Some(frame) = source.next().await {
                match frame {
                    Ok(Message::Text(text)) => route_reply(&reader_pending, text.as_str()),
                    Ok(Message::Binary(bytes)) => {
                        if let Ok(text) = std::str::from_utf8(&bytes) {
                            route_reply(&reader_pending, text);
                        }
                    }
                    Ok(Message::Ping(payload)) => {
                        let _ = pong.try_send(Message::Pong(payload));
                    }
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            reader_closed.store(true, Ordering::SeqCst);
            // Dropping the senders wakes every waiting call with a closed-channel error.
            if let Ok(mut map) = reader_pending.lock() {
                map.clear();
            }
        });

        Ok(Self {
            outgoing,
            pending,
            next_id: AtomicU64::new(1),
            closed,
            timeout,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) || self.outgoing.is_closed()
    }

    /// Calls `method` with positional `params` and waits at most the connection's timeout.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, NasError> {
        self.call_with_timeout(method, params, self.timeout).await
    }

    /// `call_inner` with its latency and failure counted for `/metrics`.
    pub async fn call_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, NasError> {
        let started = std::time::Instant::now();
        let result = self.call_inner(method, params, timeout).await;
        crate::metrics::truenas_call(method, started.elapsed(), result.is_err());
        if let Err(NasError::RateLimited(_)) = &result {
            crate::metrics::truenas_rate_limited(method);
        }
        result
    }

    async fn call_inner(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, NasError> {
        if self.is_closed() {
            return Err(NasError::Unavailable(String::from(
                "connection to TrueNAS closed",
            )));
        }
        // Waiting for a slot counts against the call's timeout too.
        let deadline = tokio::time::Instant::now() + timeout;
        let _permit = tokio::time::timeout_at(deadline, self.in_flight.acquire())
            .await
            .map_err(|_| {
                NasError::Unavailable(format!("{method} timed out waiting for a free call slot"))
            })?
            .map_err(|_| NasError::Unavailable(String::from("connection to TrueNAS closed")))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| NasError::Unavailable(String::from("connection state poisoned")))?
            .insert(id, tx);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if self
            .outgoing
            .send(Message::Text(request.to_string().into()))
            .await
            .is_err()
        {
            self.forget(id);
            return Err(NasError::Unavailable(String::from(
                "connection to TrueNAS closed",
            )));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(error.into_nas_error(method)),
            Ok(Err(_)) => Err(NasError::Unavailable(format!(
                "connection to TrueNAS closed during {method}"
            ))),
            Err(_) => {
                self.forget(id);
                Err(NasError::Unavailable(format!(
                    "{method} timed out after {}s",
                    timeout.as_secs()
                )))
            }
        }
    }

    fn forget(&self, id: u64) {
        if let Ok(mut map) = self.pending.lock() {
            map.remove(&id);
        }
    }
}

impl Drop for RpcConnection {
    fn drop(&mut self) {
        // Ends the writer task, which closes the socket politely.
        let _ = self.outgoing.try_send(Message::Close(None));
    }
}

fn route_reply(pending: &Pending, text: &str) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    // Notifications (no id) such as collection updates are not for us.
    let Some(id) = value.get("id").and_then(Value::as_u64) else {
        return;
    };
    let waiter = match pending.lock() {
        Ok(mut map) => map.remove(&id),
        Err(_) => None,
    };
    if let Some(waiter) = waiter {
        let reply = match value.get("error") {
            Some(error) if !error.is_null() => Err(RpcError::parse(error)),
            _ => Ok(value.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = waiter.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_keep_extra_messages_and_drop_trace() {
        let error = json!({
            "code": -32602, "message": "Invalid params",
            "data": {"error": 22, "errname": "EINVAL", "reason": "[EINVAL] x",
                     "trace": {"formatted": "Traceback (most recent call last): secret stuff"},
                     "extra": [["user.set_password.username", "bob: user account is locked.", 22]]}
        });
        let e = RpcError::parse(&error).into_nas_error("user.set_password");
        match e {
            NasError::Validation(m) => assert_eq!(m, vec!["bob: user account is locked."]),
            other => panic!("unexpected {other:?}"),
        }
        let shown = RpcError::parse(&error).into_nas_error("x").to_string();
        assert!(!shown.contains("Traceback"));
    }

    #[test]
    fn call_errors_and_unknown_methods() {
        let call = json!({"code": -32001, "message": "Method call error",
            "data": {"errname": "EPERM", "reason": "Not allowed\nline two", "trace": null}});
        match RpcError::parse(&call).into_nas_error("user.set_password") {
            NasError::Call {
                errname, reason, ..
            } => {
                assert_eq!(errname, "EPERM");
                assert_eq!(reason, "Not allowed");
            }
            other => panic!("unexpected {other:?}"),
        }
        let missing = json!({"code": -32601, "message": "Method not found"});
        assert!(matches!(
            RpcError::parse(&missing).into_nas_error("auth.login_with_api_key"),
            NasError::MethodNotFound(_)
        ));
    }

    #[test]
    fn rate_limit_and_concurrency_refusals_are_named() {
        // main.py authorize_method_call: CallError('Rate Limit Exceeded', errno.EBUSY).
        let limited = json!({"code": -32001, "message": "Method call error",
            "data": {"error": 16, "errname": "EBUSY", "reason": "[EBUSY] Rate Limit Exceeded"}});
        assert!(matches!(
            RpcError::parse(&limited).into_nas_error("auth.login_ex"),
            NasError::RateLimited(_)
        ));
        // Another EBUSY (a busy multistep login) is an ordinary call error.
        let busy = json!({"code": -32001, "message": "Method call error",
            "data": {"error": 16, "errname": "EBUSY", "reason": "[EBUSY] SCRAM: in progress"}});
        assert!(matches!(
            RpcError::parse(&busy).into_nas_error("auth.login_ex"),
            NasError::Call { .. }
        ));
        let crowded = json!({"code": -32000,
            "message": "Maximum number of concurrent calls (20) has exceeded"});
        assert!(matches!(
            RpcError::parse(&crowded).into_nas_error("user.query"),
            NasError::Unavailable(_)
        ));
    }
}
