//! Password aging through the router, in-process, against the demo's simulated TrueNAS
//! (max_password_age 30): the sign-in answer, `/api/v1/me`, the `/password` page in two
//! languages, the audit row, and an expired user who signs in and renews the password.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use http::{Request, Response};
use passgate::app::state::AppState;
use passgate::config::Config;
use passgate::truenas::sim::{SimUser, SimulatedNas};
use serde_json::{json, Value};
use support::pages::{cookie_pairs, csrf_field, get_in};
use support::portal::body_text;
use tower::ServiceExt;

const MAX_AGE: i64 = 30;

const fn sim_user(username: &'static str, password: &'static str) -> SimUser {
    SimUser {
        username,
        full_name: "",
        password,
        smb: false,
        admin: false,
        twofactor_secret: None,
        email: None,
    }
}

const USERS: [SimUser; 3] = [
    sim_user("fresh", "fresh-password-1"),
    sim_user("soon", "soon-password-1"),
    sim_user("gone", "gone-password-1"),
];

struct App {
    router: Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn start(max_age: Option<i64>) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let env: Vec<(String, String)> = [
        ("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "100000"),
        ("PASSGATE_RATE_LIMIT__USER_FAILURES", "100000"),
        ("PASSGATE_RATE_LIMIT__GLOBAL_PER_SECOND", "100000"),
        ("PASSGATE_RATE_LIMIT__GLOBAL_BURST", "100000"),
        ("PASSGATE_LOG__SYSLOG", "off"),
        ("PASSGATE_AUTH__VERIFIERS", r#"["truenas","unixhash"]"#),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        String::from("PASSGATE_SERVER__DATA_DIR"),
        dir.path().join("data").to_str().expect("utf8").to_string(),
    )])
    .collect();
    let config = Config::load_from(None, env).expect("config");
    let mut nas = SimulatedNas::new(&USERS)
        .await
        .expect("simulation")
        .with_password_age("soon", MAX_AGE - 3)
        .with_password_age("gone", MAX_AGE + 10);
    if let Some(days) = max_age {
        nas = nas.with_max_password_age(days);
    }
    let state = passgate::app::build_state(&config, Arc::new(nas))
        .await
        .expect("state");
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let router = passgate::app::router(state.clone()).layer(Extension(ConnectInfo(peer)));
    App {
        router,
        state,
        _dir: dir,
    }
}

impl App {
    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible")
    }

    async fn json(&self, request: Request<Body>) -> (u16, Value) {
        let response = self.send(request).await;
        let status = response.status().as_u16();
        let text = body_text(response).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, value)
    }

    async fn login(&self, username: &str, password: &str) -> (u16, Value) {
        let body = json!({"username": username, "password": password}).to_string();
        let request = Request::post("/api/v1/login")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        self.json(request).await
    }

    async fn me(&self, token: &str) -> Value {
        let request = Request::get("/api/v1/me")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        let (status, me) = self.json(request).await;
        assert_eq!(status, 200, "{me}");
        me
    }

    /// The `detail` of the newest successful sign-in row of `username`.
    async fn last_sign_in_detail(&self, username: &str) -> Value {
        self.last_sign_in(username).await.2
    }

    /// (verifier, reason, detail) of the newest successful sign-in row of `username`.
    async fn last_sign_in(&self, username: &str) -> (Option<String>, Option<String>, Value) {
        let (verifier, reason, detail): (Option<String>, Option<String>, String) = sqlx::query_as(
            "SELECT verifier, reason, detail FROM audit_events \
                 WHERE event = 'login_succeeded' AND username = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(username)
        .fetch_one(&self.state.audit_pool)
        .await
        .expect("a sign-in row");
        let detail = serde_json::from_str(&detail).expect("detail is JSON");
        (verifier, reason, detail)
    }

    /// Signs in through the login form; returns the Cookie header for the next requests.
    async fn page_sign_in(&self, username: &str, password: &str) -> String {
        let page = self.send(get_in("/login", "", "en")).await;
        let csrf_cookie = cookie_pairs(&page).join("; ");
        let token = csrf_field(&body_text(page).await);
        let response = self
            .send(
                Request::post("/login")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("cookie", &csrf_cookie)
                    .body(Body::from(format!(
                        "csrf={token}&username={username}&password={password}"
                    )))
                    .expect("request"),
            )
            .await;
        assert_eq!(response.status(), 303, "{username} signs in");
        let session = cookie_pairs(&response).join("; ");
        format!("{csrf_cookie}; {session}")
    }

    async fn password_page(&self, cookie: &str, language: &str) -> String {
        let response = self.send(get_in("/password", cookie, language)).await;
        assert_eq!(response.status(), 200);
        body_text(response).await
    }
}

/// The sentence above the form, if any.
fn aging_sentence(html: &str) -> Option<&str> {
    let start = html.find("id=\"password-aging\">")? + "id=\"password-aging\">".len();
    html[start..].split("</p>").next()
}

fn token(body: &Value) -> String {
    body["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn the_api_tells_the_days_left_and_change_required() {
    let app = start(Some(MAX_AGE)).await;
    let (status, body) = app.login("soon", "soon-password-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "authenticated");
    let soon = json!({"expired": false, "change_required": true, "days_left": 3});
    assert_eq!(body["password"], soon);
    assert_eq!(app.me(&token(&body)).await["password"], soon);
    assert_eq!(app.last_sign_in_detail("soon").await["password"], soon);

    let (status, body) = app.login("fresh", "fresh-password-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["password"],
        json!({"expired": false, "change_required": false, "days_left": MAX_AGE})
    );
}

#[tokio::test]
async fn an_expired_user_signs_in_and_renews_the_password() {
    let app = start(Some(MAX_AGE)).await;
    let (status, body) = app.login("gone", "gone-password-1").await;
    assert_eq!(
        status, 200,
        "an expired password still signs in here: {body}"
    );
    assert_eq!(body["status"], "authenticated");
    let expired = json!({"expired": true, "change_required": true, "days_left": -10});
    assert_eq!(body["password"], expired);
    let (verifier, reason, detail) = app.last_sign_in("gone").await;
    assert_eq!(detail["password"], expired, "{detail}");
    // TrueNAS' EXPIRED decided, confirmed by the hash, rather than the unixhash fallback.
    assert_eq!(verifier.as_deref(), Some("truenas"));
    assert_eq!(
        reason.as_deref(),
        Some("truenas: verified, password expired")
    );

    let request = Request::post("/api/v1/password")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", token(&body)))
        .body(Body::from(
            json!({"current_password": "gone-password-1", "new_password": "renewed-at-last-42"})
                .to_string(),
        ))
        .expect("request");
    let (status, changed) = app.json(request).await;
    assert_eq!(
        (status, &changed["status"]),
        (200, &json!("changed")),
        "{changed}"
    );

    let (status, body) = app.login("gone", "renewed-at-last-42").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["password"],
        json!({"expired": false, "change_required": false, "days_left": MAX_AGE})
    );
    let (status, _) = app.login("gone", "gone-password-1").await;
    assert_eq!(status, 401, "the old password is gone");
}

#[tokio::test]
async fn the_password_page_says_it_in_the_users_language() {
    let app = start(Some(MAX_AGE)).await;
    let gone = app.page_sign_in("gone", "gone-password-1").await;
    let de = app.password_page(&gone, "de").await;
    let sentence = aging_sentence(&de).expect("a sentence about the expiry");
    assert!(
        sentence.contains("Ihr Passwort ist abgelaufen"),
        "{sentence}"
    );
    assert!(de.contains("role=\"alert\" id=\"password-aging\""));
    // The sentence comes before the form.
    assert!(de.find("password-aging") < de.find("<form method=\"post\" action=\"/password\""));

    let soon = app.page_sign_in("soon", "soon-password-1").await;
    let en = app.password_page(&soon, "en").await;
    assert_eq!(
        aging_sentence(&en),
        Some("Your password expires in 3 days.")
    );
    let de = app.password_page(&soon, "de").await;
    assert_eq!(
        aging_sentence(&de),
        Some("Ihr Passwort läuft in 3 Tagen ab.")
    );
}

#[tokio::test]
async fn without_a_maximum_age_nothing_is_said() {
    let app = start(None).await;
    let (status, body) = app.login("gone", "gone-password-1").await;
    assert_eq!(status, 200, "{body}");
    let none = json!({"expired": false, "change_required": false, "days_left": null});
    assert_eq!(body["password"], none);
    assert_eq!(app.me(&token(&body)).await["password"], none);
    let cookie = app.page_sign_in("gone", "gone-password-1").await;
    assert_eq!(
        aging_sentence(&app.password_page(&cookie, "en").await),
        None
    );
}
