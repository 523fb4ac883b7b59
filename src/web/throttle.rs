//! The global throttle: a token bucket per client on every route (tower_governor), keyed by
//! the resolved client address, never the raw peer (behind a proxy every request would share
//! the proxy's bucket).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use governor::middleware::NoOpMiddleware;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use super::client_ip::ClientIp;
use crate::limiter::{key_for_ip, LimitKey};

#[derive(Clone, Copy, Debug)]
pub struct ClientKey {
    pub ipv6_prefix: u8,
}

impl KeyExtractor for ClientKey {
    // The same compact key as the login limiter: IPv6 clients share a bucket per prefix.
    type Key = LimitKey;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        request
            .extensions()
            .get::<ClientIp>()
            .map(|ClientIp(ip)| key_for_ip(*ip, self.ipv6_prefix))
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

pub type ThrottleConfig = GovernorConfig<ClientKey, NoOpMiddleware>;

pub fn config(per_second: u32, burst: u32, ipv6_prefix: u8) -> Option<Arc<ThrottleConfig>> {
    let period = Duration::from_nanos(1_000_000_000 / u64::from(per_second.max(1)));
    GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst)
        .key_extractor(ClientKey { ipv6_prefix })
        .finish()
        .map(Arc::new)
}

pub fn layer(config: Arc<ThrottleConfig>) -> GovernorLayer<ClientKey, NoOpMiddleware, Body> {
    GovernorLayer::new(config).error_handler(refusal)
}

/// Without pruning, governor keeps one entry per client ever seen; a flood from many
/// addresses would grow it without bound.
pub fn spawn_pruner(config: Arc<ThrottleConfig>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let limiter = config.limiter();
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
}

fn refusal(error: GovernorError) -> Response<Body> {
    let (status, wait) = match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            (StatusCode::TOO_MANY_REQUESTS, wait_time.max(1))
        }
        GovernorError::UnableToExtractKey => (StatusCode::INTERNAL_SERVER_ERROR, 1),
        GovernorError::Other { code, .. } => (code, 1),
    };
    let body =
        format!("Too many requests from your address. Please wait {wait} seconds and try again.\n");
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        headers.insert(RETRY_AFTER, v);
    }
    response
}
