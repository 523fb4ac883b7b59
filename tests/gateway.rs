//! The gateway layers in-process: per-username lockout, verification capacity, and the order
//! of the middleware stack (every refusal still carries the security headers).

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Instant;

use axum::body::Body;
use http::Request;
use serde_json::json;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::portal::{self, Portal};

async fn setup(verifiers: &str, extra: &[(&str, &str)]) -> (FakeTrueNas, Portal) {
    let fake = FakeTrueNas::start(
        Flavour::V26,
        vec![
            FakeUser::new("alice", "alice-password"),
            FakeUser::new("bob", "bob-password"),
        ],
    )
    .await;
    let portal = portal::start(&fake, "jsonrpc", verifiers, extra).await;
    (fake, portal)
}

#[tokio::test]
async fn a_locked_username_looks_exactly_like_a_wrong_password() {
    let (fake, portal) = setup(
        r#"["truenas"]"#,
        &[
            ("PASSGATE_RATE_LIMIT__USER_FAILURES", "3"),
            ("PASSGATE_RATE_LIMIT__USER_WINDOW_SECS", "60"),
        ],
    )
    .await;
    let (_, wrong) = portal.login("alice", "wrong-password").await;
    for _ in 0..2 {
        assert_eq!(portal.login("alice", "wrong-password").await.0, 401);
    }
    // Locked now: even the right password gets the wrong-password answer, and the NAS is
    // not asked at all.
    let before = fake.calls().len();
    let (status, body) = portal.login("alice", "alice-password").await;
    assert_eq!(status, 401);
    assert_eq!(body, wrong, "identical body");
    assert_eq!(
        fake.calls().len(),
        before,
        "a locked username costs no NAS call"
    );
    // A username that does not exist locks the same way, so a lockout reveals nothing.
    for _ in 0..3 {
        assert_eq!(portal.login("nobody", "x-password").await.0, 401);
    }
    let before = fake.calls().len();
    assert_eq!(portal.login("nobody", "x-password").await.1, wrong);
    assert_eq!(fake.calls().len(), before);
    // Other users are unaffected.
    assert_eq!(portal.login("bob", "bob-password").await.0, 200);
}

#[tokio::test]
async fn a_saturated_verifier_answers_a_fast_503_and_pages_stay_up() {
    // One slot, a one-second wait, and ~0.3 s of hashing per verification.
    let (_fake, portal) = setup(
        r#"["unixhash"]"#,
        &[
            ("PASSGATE_RATE_LIMIT__VERIFY_CONCURRENCY", "1"),
            ("PASSGATE_RATE_LIMIT__VERIFY_WAIT_SECS", "1"),
        ],
    )
    .await;
    let started = Instant::now();
    let flood = async {
        let logins = (0..10).map(|_| portal.login("alice", "wrong-password"));
        futures_util::future::join_all(logins).await
    };
    // `join!` polls the flood first, so its sign-ins hold and queue for the one slot before
    // the page is asked for; the flood then lasts at least the one-second wait.
    let page = async {
        let request = Request::get("/login").body(Body::empty()).expect("request");
        let response = portal.send(request).await;
        (response.status().as_u16(), started.elapsed())
    };
    let (results, (page_status, page_at)) = tokio::join!(flood, page);
    let flood_took = started.elapsed();
    assert_eq!(page_status, 200);
    assert!(
        page_at < flood_took,
        "the login page answered at {page_at:?}, before the flood ended at {flood_took:?}"
    );
    let busy: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    let refused = results.iter().filter(|(s, _)| *s == 401).count();
    assert!(
        !busy.is_empty(),
        "some attempts must be turned away: {results:?}"
    );
    assert!(refused >= 1, "some attempts must be verified: {results:?}");
    for (_, body) in &busy {
        assert_eq!(body["error"]["code"], "backend_unavailable");
        assert!(body["error"]["retry_after"].as_u64().is_some(), "{body}");
    }
}

#[tokio::test]
async fn every_refusal_passes_through_the_security_headers() {
    let (fake, portal) = setup(
        r#"["truenas"]"#,
        &[
            ("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "1"),
            ("PASSGATE_RATE_LIMIT__GLOBAL_PER_SECOND", "1"),
            ("PASSGATE_RATE_LIMIT__GLOBAL_BURST", "4"),
        ],
    )
    .await;
    let login = || {
        Request::post("/api/v1/login")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"username": "alice", "password": "wrong-password"}).to_string(),
            ))
            .expect("request")
    };
    assert_eq!(portal.send(login()).await.status(), 401);
    // The login limiter (inside the throttle) refuses the second attempt, before any NAS call...
    let calls_before = fake.calls().len();
    let limited = portal.send(login()).await;
    assert_eq!(
        fake.calls().len(),
        calls_before,
        "a refused attempt must not reach TrueNAS"
    );
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert!(limited.headers().contains_key("content-security-policy"));
    let body = portal::body_json(limited).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["retry_after"]
        .as_u64()
        .is_some_and(|s| s >= 1));
    // ...and the global throttle refuses everything once the burst is spent.
    let mut throttled = None;
    for _ in 0..10 {
        let response = portal
            .send(
                Request::get("/healthz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        if response.status() == 429 {
            throttled = Some(response);
            break;
        }
    }
    let throttled = throttled.expect("the global throttle must refuse");
    assert!(throttled.headers().contains_key("retry-after"));
    assert!(throttled.headers().contains_key("content-security-policy"));
}
