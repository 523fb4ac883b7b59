//! The legacy DDP-style `/websocket` endpoint, only as far as the portal can trip over it.
//!
//! The real handler reads `message["msg"]` first; a JSON-RPC 2.0 request has no `msg`, so the
//! KeyError closes the socket with 1011 and reason `'msg'` (Python's `str(KeyError('msg'))`).
//! That is the failure the original project hit. Of DDP itself only `connect` and `ping`
//! are answered.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use super::server::ConnInfo;
use super::state::Shared;

pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    Extension(info): Extension<ConnInfo>,
) -> Response {
    ws.on_upgrade(move |socket| serve(socket, shared, info.epoch))
}

async fn serve(mut socket: WebSocket, shared: Arc<Shared>, epoch: u64) {
    let down = shared.outage_after(epoch);
    tokio::pin!(down);
    loop {
        let incoming = tokio::select! {
            () = &mut down => return,
            incoming = socket.recv() => incoming,
        };
        let text = match incoming {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        };
        let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let msg = message
            .get("msg")
            .and_then(Value::as_str)
            .map(str::to_owned);
        shared.record(format!("LEGACY {}", msg.as_deref().unwrap_or("<no msg>")));
        let reply = match msg.as_deref() {
            None => {
                let frame = CloseFrame {
                    code: 1011,
                    reason: "'msg'".into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
            Some("connect") => json!({"msg": "connected", "session": "fake-session"}),
            Some("ping") => json!({"msg": "pong", "id": message.get("id")}),
            Some(_) => continue,
        };
        if socket
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}
