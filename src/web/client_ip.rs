//! The client address, resolved once per request and stored as an extension for every later
//! layer. For now it is the TCP peer; the trusted-proxy resolver will replace the body of
//! `resolve` without changing its callers.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub async fn resolve(mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| normalise(addr.ip()))
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    request.extensions_mut().insert(ClientIp(peer));
    next.run(request).await
}

/// `::ffff:1.2.3.4` is the IPv4 client 1.2.3.4 on a dual-stack socket.
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}
