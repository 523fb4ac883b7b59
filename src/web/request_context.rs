//! Gives every request an id and gathers what the audit needs about its origin, once, after
//! the client address is resolved. The id is sent back as `X-Request-Id`, stored in every
//! audit row the request produces, and carried by every log line made while the request is
//! handled (the `request` span, with the id and the method).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::USER_AGENT;
use http::HeaderValue;
use rand::RngCore;
use tracing::Instrument;

use super::client_ip::{ClientIp, PeerIp};
use crate::audit::Context;

/// User agents are hostile free text; a short prefix is all an admin needs.
const MAX_USER_AGENT_CHARS: usize = 200;

pub async fn attach(mut request: Request, next: Next) -> Response {
    let client_ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    let peer_ip = request.extensions().get::<PeerIp>().map(|p| p.0);
    let user_agent = request.headers().get(USER_AGENT).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(MAX_USER_AGENT_CHARS)
            .collect()
    });
    // Generated, never taken from the client, so it cannot be used to confuse the log.
    let mut id = [0u8; 12];
    rand::rng().fill_bytes(&mut id);
    let request_id = hex::encode(id);
    if let (Some(client_ip), Some(peer_ip)) = (client_ip, peer_ip) {
        request.extensions_mut().insert(Context {
            client_ip,
            peer_ip,
            user_agent,
            request_id: request_id.clone(),
        });
    }
    // At ERROR level so that it is enabled whenever any line is (`PASSGATE_LOG=warn` would
    // otherwise drop an info span, and the warnings made in it would lose their id). The
    // path is left out: it is typed by the client, and the id finds it in the audit row.
    let span = tracing::error_span!("request", id = %request_id, method = %request.method());
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
