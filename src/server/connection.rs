//! One connection, from the first byte to close: HTTP/1 or HTTP/2 (hyper-util's auto
//! builder), with the deadlines hyper does not keep itself, and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower::ServiceExt;

use super::body_deadline::DeadlineBody;
use super::Timeouts;

/// After passgate closes an idle connection gracefully, how long the peer may take to let
/// it go (a response still being written to a client that does not read) before it is
/// dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Whether a request is being served on the connection, and since when it has not been.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` of the last request start or end.
    last_change_ms: AtomicU64,
    served_any: AtomicBool,
    /// Wakes the watchdog when the first request ends: it was sleeping until the header
    /// deadline, which may be later than that request's end + the idle timeout.
    first_ended: Notify,
    first_end_seen: AtomicBool,
}

/// A request in flight; dropping it marks the connection idle again.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            served_any: AtomicBool::new(false),
            first_ended: Notify::new(),
            first_end_seen: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_change_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.served_any.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(Arc::clone(self))
    }

    /// When the connection is to be closed for doing nothing, and why: `None` while a
    /// request is in flight. Before its first request a connection gets the header timeout:
    /// hyper's own header timer starts only once the first bytes are in (the auto builder
    /// reads them to tell HTTP/1 from HTTP/2), and HTTP/2 has none at all.
    fn idle_deadline(&self, timeouts: &Timeouts) -> Option<(Instant, &'static str)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since =
            self.opened + Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed));
        Some(if self.served_any.load(Ordering::Relaxed) {
            (since + timeouts.idle, "idle_timeout")
        } else {
            (since + timeouts.header, "header_timeout")
        })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !self.0.first_end_seen.swap(true, Ordering::AcqRel) {
            // A stored permit if the watchdog is not waiting yet: no wake-up is lost.
            self.0.first_ended.notify_one();
        }
    }
}

/// Serves one connection until it closes, is closed for idling, or `shutdown` turns true
/// and its requests in flight are answered. The caller bounds the last case.
pub(super) async fn serve<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let busy = activity.begin();
            handle(request, peer, app.clone(), timeouts.body, busy)
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    let mut hard_stop: Option<Instant> = None;
    loop {
        let idle = (!closing)
            .then(|| activity.idle_deadline(&timeouts))
            .flatten();
        // The watchdog is woken once, when the first request ends, not per request (that
        // cost a task wake and a timer per request under a flood). After that it cannot
        // oversleep: while busy it wakes `idle` from now, and the idle deadline once the
        // request ends (its end + `idle`) is never earlier; when it wakes it recomputes the
        // deadline from the last request's end.
        let wake = match (idle, hard_stop) {
            (Some((at, _)), _) => at,
            (None, Some(at)) => at,
            (None, None) => Instant::now() + timeouts.idle,
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    note_connection_error(&*e, peer);
                }
                return;
            }
            _ = shutdown.wait_for(|stop| *stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = activity.first_ended.notified() => {}
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if hard_stop.is_some_and(|at| now >= at) {
                    tracing::debug!(peer = %peer, "dropping a connection that did not close");
                    return;
                }
                if closing {
                    continue;
                }
                // Decided on the current state: a request may have started since `wake`.
                if let Some((at, why)) = activity.idle_deadline(&timeouts) {
                    if now >= at {
                        crate::metrics::connection_timed_out(why);
                        tracing::debug!(peer = %peer, reason = why, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        hard_stop = Some(now + CLOSE_GRACE);
                    }
                }
            }
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    app: Router,
    body_gap: Duration,
    busy: Busy,
) -> Result<Response<axum::body::Body>, Infallible> {
    let http1 = request.version() < Version::HTTP_2;
    let (parts, body) = request.into_parts();
    let (body, timed_out) = DeadlineBody::new(body, body_gap);
    let mut request = Request::from_parts(parts, axum::body::Body::new(body));
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = app.oneshot(request).await;
    drop(busy);
    let response = match response {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if timed_out.get() {
        crate::metrics::connection_timed_out("body_timeout");
        tracing::debug!(peer = %peer, "request body timed out");
        return Ok(body_timeout_response(http1));
    }
    Ok(response)
}

/// Whatever the handler's extractor made of the failed body (often a 400), the client was
/// too slow, and on HTTP/1 the rest of its body would be read as the next request: say 408
/// and close.
fn body_timeout_response(http1: bool) -> Response<axum::body::Body> {
    let mut response = Response::new(axum::body::Body::from("request body timed out\n"));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // HTTP/2 has no connection header; the stream ends with the answer there.
    if http1 {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn note_connection_error(error: &(dyn std::error::Error + 'static), peer: SocketAddr) {
    let timed_out = error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout);
    if timed_out {
        crate::metrics::connection_timed_out("header_timeout");
    }
    // Clients vanish mid-request all the time; that is not the operator's problem.
    tracing::debug!(peer = %peer, error = %error, timed_out, "connection ended with an error");
}
