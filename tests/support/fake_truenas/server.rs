//! TCP listeners, TLS, and the "down" switch.
//!
//! A custom accept loop (instead of `axum::serve`) lets the fake terminate TLS itself, tell
//! handlers which transport a request came over, and drop connections while "down".

use std::future::Future;
use std::sync::Arc;

use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::state::Shared;

/// How a request reached the fake. TrueNAS revokes an API key used over `Plain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    Tls,
    Plain,
}

/// Added to every request of a TCP connection (as an axum `Extension`).
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnInfo {
    pub transport: Transport,
    /// Outage count when the connection was accepted; see `Shared::outage_after`.
    pub epoch: u64,
}

pub(super) async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Serves `app` on `listener` until the returned task is aborted.
pub(super) fn spawn(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    shared: &Arc<Shared>,
) -> JoinHandle<()> {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Plain
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _peer)) => stream,
                // E.g. EMFILE: back off briefly instead of spinning.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            // Accept-then-drop while down: the client sees its connection closed at once.
            let Some(epoch) = shared.epoch_if_up() else {
                drop(stream);
                continue;
            };
            let info = ConnInfo { transport, epoch };
            let app = app.clone().layer(Extension(info));
            tokio::spawn(connection(stream, app, tls.clone(), shared.clone(), epoch));
        }
    })
}

async fn connection(
    stream: TcpStream,
    app: Router,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    epoch: u64,
) {
    let _ = stream.set_nodelay(true);
    let outage = shared.outage_after(epoch);
    match tls {
        None => serve(stream, app, outage).await,
        Some(acceptor) => {
            tokio::pin!(outage);
            let handshake = tokio::select! {
                done = acceptor.accept(stream) => done,
                () = &mut outage => return,
            };
            // A failed handshake (e.g. a client that rejects the certificate) just ends here.
            if let Ok(stream) = handshake {
                serve(stream, app, outage).await;
            }
        }
    }
}

/// HTTP/1.1 or HTTP/2, with upgrades so that WebSocket handlers get the connection.
async fn serve<S>(stream: S, app: Router, outage: impl Future<Output = ()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app));
    // An outage drops the connection future, which closes the socket (keep-alive
    // connections in a client's pool included). Upgraded WebSockets watch for it themselves.
    tokio::select! {
        _ = conn => {}
        () = outage => {}
    }
}
