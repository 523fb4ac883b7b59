//! TCP listeners, TLS, the "down" switch and restarts.
//!
//! A custom accept loop (instead of `axum::serve`) lets the fake terminate TLS itself, tell
//! handlers which transport and peer a request came over, drop connections while "down",
//! and close its listening socket for a restart (new connections are refused by the kernel,
//! not accepted and dropped) before binding the same port again.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
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
    pub peer: SocketAddr,
    /// Outage count when the connection was accepted; see `Shared::outage_after`.
    pub epoch: u64,
}

/// What a restart asks of a listener; the sender gets an answer once it is done.
pub(super) enum Command {
    /// Close the listening socket.
    Close(oneshot::Sender<()>),
    /// Bind the same address again and serve.
    Open(oneshot::Sender<()>),
}

pub(super) async fn bind() -> TcpListener {
    listen("127.0.0.1:0".parse().expect("valid address"))
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// SO_REUSEADDR, so that a restart can bind its port again while old connections of that
/// port are still in TIME_WAIT.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The port is ours, but another process may briefly have taken it: retry for a while.
async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match listen(addr) {
            Ok(listener) => return listener,
            Err(error) if Instant::now() > deadline => {
                panic!("could not bind {addr} again after a restart: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Serves `app` on `listener` until the returned task is aborted or `commands` closes.
pub(super) fn spawn(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    shared: &Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> JoinHandle<()> {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Plain
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let addr = listener.local_addr().expect("listener has an address");
        let mut listener = listener;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Open(done)) => {
                        let _ = done.send(());
                        continue;
                    }
                    Some(Command::Close(done)) => {
                        drop(listener);
                        let _ = done.send(());
                        // Closed until told to open again.
                        loop {
                            match commands.recv().await {
                                None => return,
                                Some(Command::Close(done)) => {
                                    let _ = done.send(());
                                }
                                Some(Command::Open(done)) => {
                                    listener = rebind(addr).await;
                                    let _ = done.send(());
                                    break;
                                }
                            }
                        }
                        continue;
                    }
                },
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                // E.g. EMFILE: back off briefly instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // Accept-then-drop while down: the client sees its connection closed at once.
            let Some(epoch) = shared.epoch_if_up() else {
                drop(stream);
                continue;
            };
            let info = ConnInfo {
                transport,
                peer,
                epoch,
            };
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
