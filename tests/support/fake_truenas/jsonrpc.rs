//! JSON-RPC 2.0 over WebSocket (`/api/current`, `/api/vXX.YY.Z`), as in
//! api/base/server/ws_handler/rpc.py: no handshake message, `params` is an array, and calls
//! run concurrently (answers may come out of order; the server spawns a task per call).
//!
//! Per connection, `SoftHardSemaphore(10, 20)` (rpc.py `RpcWebSocketApp`, utils/lock.py):
//! a call first counts itself in flight, refused past 20 with
//! TRUENAS_TOO_MANY_CONCURRENT_CALLS, then waits for one of 10 running slots.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use super::errors::RpcError;
use super::methods;
use super::server::{ConnInfo, Transport};
use super::state::Shared;

/// Who is logged in on one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Session {
    ApiKey,
    User { username: String, full_admin: bool },
}

/// A PASSWORD_PLAIN login waiting for its OTP_TOKEN.
#[derive(Clone, Debug)]
pub(super) struct PendingOtp {
    pub username: String,
    pub full_admin: bool,
    pub failures: u32,
}

/// Per-connection state (middleware's `App` + auth context).
pub(super) struct Conn {
    pub transport: Transport,
    /// `origin.rem_addr`: what the rate limiter keys on.
    pub peer: IpAddr,
    pub session: Option<Session>,
    pub pending_otp: Option<PendingOtp>,
    /// A SCRAM exchange between its first and final message.
    pub scram: Option<super::scram::ServerExchange>,
}

/// utils/lock.py `SoftHardSemaphore(softlimit=10, hardlimit=20)`.
const SOFT_LIMIT: usize = 10;
const HARD_LIMIT: usize = 20;

struct Concurrency {
    /// `counter`: calls running or waiting for a slot.
    in_flight: AtomicUsize,
    running: AtomicUsize,
    slots: Semaphore,
}

pub(super) type ConnHandle = Arc<Mutex<Conn>>;

pub(super) fn lock(conn: &ConnHandle) -> std::sync::MutexGuard<'_, Conn> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    Extension(info): Extension<ConnInfo>,
) -> Response {
    ws.on_upgrade(move |socket| serve(socket, shared, info, None))
}

/// `/api/v25.10.1` etc.: only the versions this flavour lists exist.
pub(super) async fn upgrade_pinned(
    Path(version): Path<String>,
    ws: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    Extension(info): Extension<ConnInfo>,
) -> Response {
    if !shared.flavour.api_versions().contains(&version.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    ws.on_upgrade(move |socket| serve(socket, shared, info, Some(version)))
}

/// main.py `_create_api`: a method with `removed_in` is private on every API version from
/// that one on (`/api/current` included). `process_message` in rpc.py still runs a private
/// method called over the WebSocket; it only logs a warning ("FIXME: Eventually, prohibit
/// this").
fn is_private(shared: &Shared, version: Option<&str>, method: &str) -> bool {
    let removed_in = match method {
        // plugins/auth.py: `auth.login_with_api_key` has `removed_in='v27'`.
        "auth.login_with_api_key" => "v27",
        _ => return false,
    };
    let version = version.unwrap_or(shared.flavour.current_api_version());
    // Python compares the strings: "v27.0.0" >= "v27", "v26.0.0" < "v27".
    version >= removed_in
}

async fn serve(socket: WebSocket, shared: Arc<Shared>, info: ConnInfo, version: Option<String>) {
    let conn: ConnHandle = Arc::new(Mutex::new(Conn {
        transport: info.transport,
        peer: info.peer.ip(),
        session: None,
        pending_otp: None,
        scram: None,
    }));
    let concurrency = Arc::new(Concurrency {
        in_flight: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        slots: Semaphore::new(SOFT_LIMIT),
    });
    let (mut sink, mut stream) = socket.split();
    let (replies, mut outbox) = mpsc::unbounded_channel::<Value>();
    let down = shared.outage_after(info.epoch);
    tokio::pin!(down);
    loop {
        tokio::select! {
            // The outage first: a NAS that is down takes no more calls, even ones already in
            // this socket's buffer (select! would otherwise pick a ready arm at random).
            biased;
            // Dropping the socket without a close frame looks like a vanished NAS.
            () = &mut down => return,
            reply = outbox.recv() => {
                let Some(reply) = reply else { return };
                if sink.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    // Parse and record in arrival order; run the call itself concurrently.
                    match parse(&text) {
                        Ok(request) => {
                            shared.record(request.call_name());
                            if !methods::exists(&request.method) {
                                let _ = replies.send(json!({"jsonrpc": "2.0", "id": request.id,
                                    "error": RpcError::MethodNotFound.to_json()}));
                                continue;
                            }
                            if is_private(&shared, version.as_deref(), &request.method) {
                                shared.lock().warnings.push(format!(
                                    "Private method {:?} called on a connection without private_methods enabled",
                                    request.method
                                ));
                            }
                            tokio::spawn(run(request, shared.clone(), conn.clone(), concurrency.clone(), replies.clone()));
                        }
                        Err(error) => {
                            let _ = replies.send(json!({"jsonrpc": "2.0", "id": null, "error": error.to_json()}));
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    // rpc.py closes with UNSUPPORTED_DATA on anything but text.
                    let frame = CloseFrame { code: 1003, reason: "Invalid websocket message type".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
        }
    }
}

pub(super) struct Request {
    pub id: Value,
    pub method: String,
    pub params: Vec<Value>,
}

impl Request {
    /// `auth.login_ex` is recorded with its mechanism: tests assert on which login was tried.
    fn call_name(&self) -> String {
        let mechanism = self
            .params
            .first()
            .and_then(|p| p.get("mechanism"))
            .and_then(Value::as_str);
        match (self.method.as_str(), mechanism) {
            ("auth.login_ex" | "auth.login_ex_continue", Some(mechanism)) => {
                format!("{}:{mechanism}", self.method)
            }
            _ => self.method.clone(),
        }
    }
}

/// REQUEST_SCHEMA of rpc.py: jsonrpc "2.0", method string, optional params array and id.
fn parse(text: &str) -> Result<Request, RpcError> {
    let message: Value =
        serde_json::from_str(text).map_err(|e| RpcError::InvalidJson(e.to_string()))?;
    let Some(object) = message.as_object() else {
        return Err(RpcError::InvalidRequest(format!(
            "{message} is not of type 'object'"
        )));
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::InvalidRequest(
            "'jsonrpc' is a required property equal to '2.0'".into(),
        ));
    }
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        return Err(RpcError::InvalidRequest(
            "'method' is a required property of type 'string'".into(),
        ));
    };
    let params = match object.get("params") {
        None => Vec::new(),
        Some(Value::Array(params)) => params.clone(),
        Some(other) => {
            return Err(RpcError::InvalidRequest(format!(
                "{other} is not of type 'array'"
            )))
        }
    };
    if let Some(extra) = object
        .keys()
        .find(|k| !["jsonrpc", "method", "params", "id"].contains(&k.as_str()))
    {
        return Err(RpcError::InvalidRequest(format!(
            "Additional properties are not allowed ('{extra}' was unexpected)"
        )));
    }
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    Ok(Request {
        id,
        method: method.to_owned(),
        params,
    })
}

async fn run(
    request: Request,
    shared: Arc<Shared>,
    conn: ConnHandle,
    concurrency: Arc<Concurrency>,
    replies: mpsc::UnboundedSender<Value>,
) {
    let outcome = limited(&request, &shared, &conn, &concurrency).await;
    let reply = match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": request.id, "result": result}),
        Err(error) => json!({"jsonrpc": "2.0", "id": request.id, "error": error.to_json()}),
    };
    // The connection may be gone by now; nobody is left to answer then.
    let _ = replies.send(reply);
}

/// `async with app.softhardsemaphore: await method.call(...)`.
async fn limited(
    request: &Request,
    shared: &Arc<Shared>,
    conn: &ConnHandle,
    concurrency: &Concurrency,
) -> Result<Value, RpcError> {
    let counted = concurrency
        .in_flight
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < HARD_LIMIT).then_some(n + 1)
        });
    if counted.is_err() {
        return Err(RpcError::TooManyConcurrentCalls(HARD_LIMIT));
    }
    let _in_flight = Release(&concurrency.in_flight);
    // The semaphore lives as long as the connection and is never closed.
    let Ok(_slot) = concurrency.slots.acquire().await else {
        return Err(RpcError::TooManyConcurrentCalls(HARD_LIMIT));
    };
    let running = concurrency.running.fetch_add(1, Ordering::SeqCst) + 1;
    let _running = Release(&concurrency.running);
    shared.note_running(running);
    methods::call(shared, conn, &request.method, &request.params).await
}

/// Decrements a counter when dropped, so an early return cannot leak a slot.
struct Release<'a>(&'a AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
