//! End-to-end flows through the JSON API against the fake TrueNAS: both JSON-RPC flavours
//! (25.10 and 26+) and the legacy REST client.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::portal::{self, libxcrypt_verifies, Portal};

const ALICE_PW: &str = "alice-old-password";
const ALICE_NEW: &str = "alice-new-password-1";

fn users() -> Vec<FakeUser> {
    let mut locked = FakeUser::new("carol", "carol-password");
    locked.locked = true;
    let mut disabled = FakeUser::new("dave", "dave-password");
    disabled.password_disabled = true;
    let mut plain = FakeUser::new("bob", "bob-password");
    plain.smb = false;
    vec![FakeUser::new("alice", ALICE_PW), plain, locked, disabled]
}

async fn setup(flavour: Flavour, api: &str) -> (FakeTrueNas, Portal) {
    let fake = FakeTrueNas::start(flavour, users()).await;
    let portal = portal::start(&fake, api, r#"["truenas","unixhash"]"#, &[]).await;
    (fake, portal)
}

/// Correct password → signed in → change → the NAS hash verifies the new password and not
/// the old → the old token is dead → the new password signs in.
async fn change_flow(fake: &FakeTrueNas, portal: &Portal) {
    let (status, body) = portal.login("alice", ALICE_PW).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "authenticated");
    assert_eq!(body["expires_in"], 600);
    let token = body["token"].as_str().expect("token").to_string();

    let (status, me) = portal.get_json("/api/v1/me", &token).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "alice");

    let (status, body) = portal
        .json(
            "/api/v1/password",
            Some(&token),
            json!({"current_password": ALICE_PW, "new_password": ALICE_NEW}),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("changed")),
        "{body}"
    );

    let hash = fake.unixhash("alice").expect("alice exists");
    assert!(hash.starts_with("$6$rounds=656000$"), "{hash}");
    assert!(
        libxcrypt_verifies(&hash, ALICE_NEW),
        "new password must verify"
    );
    assert!(
        !libxcrypt_verifies(&hash, ALICE_PW),
        "old password must not verify"
    );

    let (status, body) = portal.get_json("/api/v1/me", &token).await;
    assert_eq!(status, 401, "sessions are revoked after a change: {body}");
    assert_eq!(body["error"]["code"], "unauthenticated");

    assert_eq!(portal.login("alice", ALICE_PW).await.0, 401);
    assert_eq!(portal.login("alice", ALICE_NEW).await.0, 200);
}

/// Wrong password, unknown user, locked and password-disabled accounts all get the same 401.
async fn refusals_look_alike(portal: &Portal, correct_for_alice: &str) {
    let cases = [
        ("alice", "wrong-password"),
        ("nobody-here", "whatever-pass"),
        ("carol", "carol-password"),
        ("dave", "dave-password"),
        ("root", "root-password"),
        ("alice\nforged", correct_for_alice),
    ];
    let mut bodies = Vec::new();
    for (user, pw) in cases {
        let (status, body) = portal.login(user, pw).await;
        assert_eq!(status, 401, "{user}: {body}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "bodies differ: {bodies:?}"
    );
    assert_eq!(bodies[0]["error"]["code"], "invalid_credentials");
}

async fn truenas_validation_reaches_user(fake: &FakeTrueNas, portal: &Portal) {
    let (_, body) = portal.login("bob", "bob-password").await;
    let token = body["token"].as_str().expect("token").to_string();
    let message = "The specified password does not meet minimum complexity requirements. The following character types are absent: SPECIAL";
    fake.fail_next_set_password(vec![message.to_string()]);
    let (status, body) = portal
        .json(
            "/api/v1/password",
            Some(&token),
            json!({"current_password": "bob-password", "new_password": "bob-new-password"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "rejected_by_truenas");
    assert_eq!(body["error"]["details"], json!([message]));
    assert!(!body.to_string().contains("FAKE-TRACEBACK-MARKER"));

    let (status, body) = portal
        .json(
            "/api/v1/password",
            Some(&token),
            json!({"current_password": "not-bobs-password", "new_password": "bob-new-password"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_credentials")),
        "{body}"
    );

    let (status, body) = portal
        .json(
            "/api/v1/password",
            Some(&token),
            json!({"current_password": "bob-password", "new_password": "short"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("policy_violation")),
        "{body}"
    );
    assert!(body["error"]["details"][0]
        .as_str()
        .expect("detail")
        .contains("at least 8"));
}

async fn down_is_503(fake: &FakeTrueNas, portal: &Portal) {
    fake.set_down(true);
    let (status, body) = portal.login("alice", "any-password").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "backend_unavailable");
    fake.set_down(false);
}

#[tokio::test]
async fn jsonrpc_25_10_auth_err_is_not_proof_of_a_wrong_password() {
    let (fake, portal) = setup(Flavour::V25_10, "auto").await;
    change_flow(&fake, &portal).await;
    // On 25.10 login_ex answered AUTH_ERR for alice's correct password; the unixhash
    // verifier had to decide.
    assert!(fake
        .calls()
        .iter()
        .any(|c| c.starts_with("auth.login_ex:PASSWORD_PLAIN")));
    refusals_look_alike(&portal, ALICE_NEW).await;
    truenas_validation_reaches_user(&fake, &portal).await;
    down_is_503(&fake, &portal).await;
}

#[tokio::test]
async fn jsonrpc_26_denied_proves_the_password() {
    let (fake, portal) = setup(Flavour::V26, "auto").await;
    change_flow(&fake, &portal).await;
    refusals_look_alike(&portal, ALICE_NEW).await;
    truenas_validation_reaches_user(&fake, &portal).await;
    down_is_503(&fake, &portal).await;
}

#[tokio::test]
async fn jsonrpc_26_with_only_the_truenas_verifier() {
    // No hash fallback: DENIED alone must sign alice in, AUTH_ERR alone must refuse.
    let fake = FakeTrueNas::start(Flavour::V26, users()).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    assert_eq!(portal.login("alice", ALICE_PW).await.0, 200);
    assert_eq!(portal.login("alice", "wrong-password").await.0, 401);
}

#[tokio::test]
async fn rest_client_flow() {
    let (fake, portal) = setup(Flavour::V25_10, "rest").await;
    change_flow(&fake, &portal).await;
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.contains("REST") && c.contains("/user/id/")),
        "REST has no set_password route; the change goes through PUT /user/id/ID: {:?}",
        fake.calls()
    );
    refusals_look_alike(&portal, ALICE_NEW).await;
    truenas_validation_reaches_user(&fake, &portal).await;
    down_is_503(&fake, &portal).await;
}

#[tokio::test]
async fn auto_picks_rest_only_without_api_versions() {
    let (fake, portal) = setup(Flavour::V26, "auto").await;
    assert_eq!(portal.login("bob", "bob-password").await.0, 200);
    assert!(
        fake.calls().iter().all(|c| !c.contains("/api/v2.0")),
        "{:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_4xx_never_500() {
    let (_fake, portal) = setup(Flavour::V26, "auto").await;
    use axum::body::Body;
    use http::Request;
    let bad = Request::post("/api/v1/login")
        .header("content-type", "application/json")
        .body(Body::from("{\"username\": "))
        .expect("request");
    let response = portal.send(bad).await;
    assert_eq!(response.status(), 400);
    let body = portal::body_json(response).await;
    assert_eq!(body["error"]["code"], "bad_request");

    let big = Request::post("/api/v1/login")
        .header("content-type", "application/json")
        .body(Body::from(format!(
            "{{\"username\":\"{}\",\"password\":\"x\"}}",
            "a".repeat(20_000)
        )))
        .expect("request");
    assert_eq!(portal.send(big).await.status(), 413);

    let wrong_type = Request::post("/api/v1/login")
        .header("content-type", "application/json")
        .body(Body::from("{\"username\": 5, \"password\": []}"))
        .expect("request");
    assert_eq!(portal.send(wrong_type).await.status(), 400);

    let (status, body) = portal.json("/api/v1/password", None, json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthenticated"))
    );
    let (status, _) = portal
        .json("/api/v1/logout", Some("not.a.token"), json!({}))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn logout_kills_the_token() {
    let (_fake, portal) = setup(Flavour::V26, "auto").await;
    let (_, body) = portal.login("bob", "bob-password").await;
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(portal.get_json("/api/v1/me", &token).await.0, 200);
    let (status, _) = portal.json("/api/v1/logout", Some(&token), json!({})).await;
    assert_eq!(status, 204);
    assert_eq!(portal.get_json("/api/v1/me", &token).await.0, 401);
}
