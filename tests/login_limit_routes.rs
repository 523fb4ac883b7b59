//! Every route that verifies a password or a code is behind the login limiter, and the rest
//! are not. The limiter is a `route_layer` on the `limited()` routers, and the handlers of
//! those routes take its `Admitted` proof, so a verifying route outside them cannot compile
//! into a working one; this test names each route and proves the limit holds on it.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::body::Body;
use http::Request;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::portal::{self, Portal};

/// Every route that verifies a password, a code or a reset link, or starts a reset mail:
/// the sign-in, its code step, the password change, turning two-step sign-in off, each
/// step of a reset, and saving SSH keys, as pages and as API. A path with a space is
/// `METHOD path`.
const VERIFYING: &[&str] = &[
    "/login",
    "/login/totp",
    "/password",
    "/totp/disable",
    "/reset",
    "/reset/confirm",
    "/reset/cancel",
    "GET /reset/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "GET /reset/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/cancel",
    "/api/v1/login",
    "/api/v1/login/totp",
    "/api/v1/password",
    "/api/v1/totp/disable",
    "/api/v1/reset",
    "/api/v1/reset/confirm",
    "/api/v1/reset/cancel",
    "/keys",
    "PUT /api/v1/ssh-keys",
];

/// POST routes that verify nothing: sign-out, the strength meter, and setting up two-step
/// sign-in (its codes count toward the per-user TOTP limit instead; see web/login_limit.rs).
const NOT_VERIFYING: &[&str] = &[
    "GET /reset",
    "GET /keys",
    "GET /api/v1/ssh-keys",
    "/logout",
    "/password/strength",
    "/totp/setup",
    "/totp/confirm",
    "/api/v1/logout",
    "/api/v1/totp/enroll",
    "/api/v1/totp/confirm",
];

fn post(path: &str) -> Request<Body> {
    if let Some(path) = path.strip_prefix("GET ") {
        return Request::get(path).body(Body::empty()).expect("request");
    }
    if let Some(path) = path.strip_prefix("PUT ") {
        return Request::put(path)
            .header("content-type", "application/json")
            .body(Body::from(""))
            .expect("request");
    }
    let content_type = if path.starts_with("/api/") {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    Request::post(path)
        .header("content-type", content_type)
        .body(Body::from(""))
        .expect("request")
}

/// A portal whose one client (every in-process request comes from 127.0.0.1) has a single
/// attempt per window.
async fn one_attempt(fake: &FakeTrueNas) -> Portal {
    let limits = [
        ("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "1"),
        ("PASSGATE_RATE_LIMIT__LOGIN_WINDOW_SECS", "3600"),
        ("PASSGATE_RESET__ENABLED", "true"),
        ("PASSGATE_SERVER__PUBLIC_URL", "https://nas.example"),
        ("PASSGATE_SSH_KEYS__ENABLED", "true"),
    ];
    portal::start(fake, "auto", "[\"truenas\"]", &limits).await
}

#[tokio::test]
async fn every_verifying_route_is_limited_and_no_other() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("erin", "erin-pass")]).await;
    for path in VERIFYING {
        let portal = one_attempt(&fake).await;
        let first = portal.send(post(path)).await.status();
        assert_ne!(first, 429, "{path}: the first attempt is let through");
        assert_ne!(first, 500, "{path}: the handler found the limiter's proof");
        let second = portal.send(post(path)).await;
        assert_eq!(second.status(), 429, "{path} is not limited");
        assert!(second.headers().contains_key("retry-after"), "{path}");
        // The client is out of attempts on every verifying route, not just this one.
        for other in VERIFYING {
            let status = portal.send(post(other)).await.status();
            assert_eq!(status, 429, "{other} after {path}");
        }
        for free in NOT_VERIFYING {
            let status = portal.send(post(free)).await.status();
            assert_ne!(status, 429, "{free} must not be limited");
        }
    }
}
