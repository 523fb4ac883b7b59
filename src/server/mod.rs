//! The server edge: one accept loop for plain HTTP and HTTPS (rustls), on every listener.
//! Connection caps are applied at accept, before any TLS or HTTP work; every connection has
//! a deadline for its headers, its body and its idle time; SIGTERM stops accepting and lets
//! requests in flight finish, up to a grace period. Handlers see the peer as `ConnectInfo`.

mod body_deadline;
mod conn_limits;
mod connection;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use conn_limits::{ConnLimits, ConnPermit, Refusal};

use crate::config::Config;
use crate::web::client_ip::TrustedProxies;

/// A TLS handshake that has not finished by then is dropped, so slow clients cannot pin
/// connection slots. It runs under the connection caps.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 streams one connection may have open at once. A browser opens a handful; the
/// pages here need fewer.
const H2_MAX_CONCURRENT_STREAMS: u32 = 64;
/// HTTP/2 request header block, decoded (cookies and all fit in a fraction of it).
const H2_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Streams a client may reset before passgate accepted them (the "rapid reset" flood,
/// CVE-2023-44487) before the connection is closed with GOAWAY; h2's own default.
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams passgate had to reset because the client broke the protocol, per connection.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 64;
/// HTTP/2 keep-alive: a ping after this much silence, and the connection closes when the
/// answer takes longer than the timeout (a peer that vanished without a FIN).
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/1 read buffer, which bounds the request head (hyper: at least 8 KiB; its default is
/// about 400 KiB).
const H1_MAX_HEADER_BYTES: usize = 16 * 1024;
const H1_MAX_HEADERS: usize = 100;

/// The deadlines every connection keeps.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Request headers complete, counted from the connection's opening or its last answer.
    pub header: Duration,
    /// Longest silence inside a request body.
    pub body: Duration,
    /// A connection with nothing in flight (HTTP/2; HTTP/1 is bounded by `header` first,
    /// because hyper starts the header timer as soon as a keep-alive connection goes idle).
    pub idle: Duration,
}

/// Everything the edge is configured with, in one place (`server.*`, `proxy.trusted`).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub timeouts: Timeouts,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Peers exempt from the per-IP cap (the trusted reverse proxies).
    pub exempt: TrustedProxies,
    /// IPv6 peers are counted per network of this prefix length.
    pub ipv6_prefix: u8,
    pub shutdown_grace: Duration,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

impl EdgeSettings {
    pub fn from_config(config: &Config) -> Self {
        let server = &config.server;
        Self {
            timeouts: Timeouts {
                header: Duration::from_secs(server.header_timeout_secs),
                body: Duration::from_secs(server.body_timeout_secs),
                idle: Duration::from_secs(server.idle_timeout_secs),
            },
            max_connections: server.max_connections,
            max_connections_per_ip: server.max_connections_per_ip,
            exempt: TrustedProxies::new(config.proxy.trusted.clone()),
            ipv6_prefix: config.rate_limit.ipv6_prefix,
            shutdown_grace: Duration::from_secs(server.shutdown_grace_secs),
        }
    }

    fn http_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.timeouts.header)
            .max_buf_size(H1_MAX_HEADER_BYTES)
            .max_headers(H1_MAX_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_header_list_size(H2_MAX_HEADER_LIST_BYTES)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        builder
    }
}

/// Serves with the default edge settings; see [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<(&Path, &Path)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listener, app, tls, &EdgeSettings::default(), shutdown).await
}

/// Serves `app` on `listener` (HTTPS when `tls` names a certificate and key) until
/// `shutdown` resolves; then stops accepting, lets requests in flight finish for up to
/// `settings.shutdown_grace`, drops what is left, and returns.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    tls: Option<(&Path, &Path)>,
    settings: &EdgeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = match tls {
        Some((cert, key)) => Some(TlsAcceptor::from(tls_config(cert, key)?)),
        None => None,
    };
    let limits = ConnLimits::new(
        settings.max_connections,
        settings.max_connections_per_ip,
        settings.ipv6_prefix,
        settings.exempt.clone(),
    );
    let builder = Arc::new(settings.http_builder());
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => note_joined(joined),
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Running out of file descriptors is transient; do not spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limits.try_acquire(peer.ip()) else {
                    refuse(stream);
                    continue;
                };
                let job = ConnectionJob {
                    stream,
                    peer,
                    permit,
                    acceptor: acceptor.clone(),
                    app: app.clone(),
                    builder: Arc::clone(&builder),
                    timeouts: settings.timeouts,
                    stopped: stopped.clone(),
                };
                tasks.spawn(job.run());
            }
        }
    }
    drop(listener);
    let in_flight = tasks.len();
    tracing::info!(
        connections = in_flight,
        grace_secs = settings.shutdown_grace.as_secs(),
        "stopped accepting; letting requests in flight finish"
    );
    // Every receiver is alive in its task or in `stopped`, so the send cannot fail.
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + settings.shutdown_grace;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(joined)) => note_joined(joined),
            Ok(None) | Err(_) => break,
        }
    }
    if !tasks.is_empty() {
        tracing::warn!(
            connections = tasks.len(),
            "connections still open after server.shutdown_grace_secs: dropped"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Closed at once with a reset: no handshake, no HTTP, and no TIME_WAIT left on this side.
fn refuse(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn note_joined(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        if e.is_panic() {
            tracing::error!(error = %e, "a connection task panicked");
        }
    }
}

/// What a connection task owns. The permit is held until the task ends, handshake included.
struct ConnectionJob {
    stream: TcpStream,
    peer: SocketAddr,
    permit: ConnPermit,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    timeouts: Timeouts,
    stopped: watch::Receiver<bool>,
}

impl ConnectionJob {
    async fn run(self) {
        let Self {
            stream,
            peer,
            permit,
            acceptor,
            app,
            builder,
            timeouts,
            mut stopped,
        } = self;
        // Answers are small; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        match acceptor {
            None => {
                connection::serve(stream, peer, app, &builder, timeouts, stopped).await;
            }
            Some(acceptor) => {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                let tls = tokio::select! {
                    done = handshake => done,
                    // Nothing was asked yet: nothing to finish.
                    _ = stopped.wait_for(|stop| *stop) => return,
                };
                match tls {
                    Ok(Ok(tls)) => {
                        connection::serve(tls, peer, app, &builder, timeouts, stopped).await;
                    }
                    Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                    Err(_) => crate::metrics::connection_timed_out("tls_handshake_timeout"),
                }
            }
        }
        drop(permit);
    }
}

/// Loads and pairs the certificate and key, as `serve` will.
pub fn check_tls_files(cert: &Path, key: &Path) -> anyhow::Result<()> {
    tls_config(cert, key).map(|_| ())
}

fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("server.tls_cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("server.tls_cert {}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "server.tls_cert {} holds no certificate",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("server.tls_key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(crate::truenas::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls_cert and server.tls_key do not form a valid pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
