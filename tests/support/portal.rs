//! A passgate app wired to a fake TrueNAS, driven in-process with `tower::ServiceExt::oneshot`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use http::{Request, Response};
use http_body_util::BodyExt;
use passgate::config::Config;
use serde_json::Value;
use tower::ServiceExt;

use super::fake_truenas::FakeTrueNas;

pub struct Portal {
    pub app: Router,
    pub dir: tempfile::TempDir,
}

/// In-process requests all come from one address (127.0.0.1), so the per-client limits are generous
/// unless a test sets them; tests of the limits do.
const GENEROUS_LIMITS: &[(&str, &str)] = &[
    ("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "100000"),
    ("PASSGATE_RATE_LIMIT__USER_FAILURES", "100000"),
    ("PASSGATE_RATE_LIMIT__GLOBAL_PER_SECOND", "100000"),
    ("PASSGATE_RATE_LIMIT__GLOBAL_BURST", "100000"),
    ("PASSGATE_LOG__SYSLOG", "off"),
];

/// `api` is `auto`, `jsonrpc` or `rest`; `verifiers` a TOML list such as `["truenas","unixhash"]`;
/// `extra` adds or overrides `PASSGATE_*` variables.
pub async fn start(
    fake: &FakeTrueNas,
    api: &str,
    verifiers: &str,
    extra: &[(&str, &str)],
) -> Portal {
    let (app, dir) = build(fake, api, verifiers, extra).await;
    // The peer address the server would record from the socket; the resolver reads it as
    // `ConnectInfo`, so the audit rows and fail2ban lines carry it.
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let app = app.layer(Extension(ConnectInfo(peer)));
    Portal { app, dir }
}

/// The router as `serve` runs it (no mock peer address), and its data directory.
pub async fn build(
    fake: &FakeTrueNas,
    api: &str,
    verifiers: &str,
    extra: &[(&str, &str)],
) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env: Vec<(String, String)> = vec![
        ("PASSGATE_TRUENAS__URL".into(), fake.url()),
        (
            "PASSGATE_TRUENAS__API_KEY".into(),
            fake.api_key().to_string(),
        ),
        (
            "PASSGATE_TRUENAS__API_USER".into(),
            fake.api_user().to_string(),
        ),
        (
            "PASSGATE_TRUENAS__TLS_FINGERPRINT".into(),
            fake.fingerprint(),
        ),
        ("PASSGATE_TRUENAS__API".into(), api.to_string()),
        ("PASSGATE_TRUENAS__TIMEOUT_SECS".into(), "5".into()),
        ("PASSGATE_AUTH__VERIFIERS".into(), verifiers.to_string()),
        (
            "PASSGATE_SERVER__DATA_DIR".into(),
            dir.path().join("data").to_str().expect("utf8").to_string(),
        ),
    ];
    // An empty value in `extra` removes that variable instead of setting it.
    for (key, value) in GENEROUS_LIMITS.iter().chain(extra) {
        env.retain(|(k, _)| k != key);
        if !value.is_empty() {
            env.push((key.to_string(), value.to_string()));
        }
    }
    let config = Config::load_from(None, env).expect("config");
    let nas = passgate::truenas::connect::build(&config).expect("client");
    let state = passgate::app::build_state(&config, nas)
        .await
        .expect("state");
    (passgate::app::router(state), dir)
}

/// Serves `app` on a loopback port until the returned sender is dropped or fired.
pub async fn serve(app: Router) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = passgate::server::serve(listener, app, None, async {
            let _ = stopped.await;
        })
        .await;
    });
    (port, stop)
}

impl Portal {
    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.app.clone().oneshot(request).await.expect("infallible")
    }

    /// POSTs JSON (with an optional bearer token) and returns status and parsed body.
    pub async fn json(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.json_with(http::Method::POST, path, token, body).await
    }

    /// [`Portal::json`] with another method (`PUT`).
    pub async fn json_with(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let response = self
            .send(request.body(Body::from(body.to_string())).expect("request"))
            .await;
        let status = response.status().as_u16();
        (status, body_json(response).await)
    }

    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        let response = self.send(request).await;
        let status = response.status().as_u16();
        (status, body_json(response).await)
    }

    pub async fn login(&self, username: &str, password: &str) -> (u16, Value) {
        self.json(
            "/api/v1/login",
            None,
            serde_json::json!({"username": username, "password": password}),
        )
        .await
    }
}

pub async fn body_text(response: Response<Body>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub async fn body_json(response: Response<Body>) -> Value {
    let text = body_text(response).await;
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Checks a hash with Python's crypt (libxcrypt): an implementation nobody here wrote.
pub fn libxcrypt_verifies(hash: &str, password: &str) -> bool {
    let output = std::process::Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2])",
            password,
            hash,
        ])
        .output()
        .expect("python3 with the crypt module is needed (scripts/test installs it)");
    assert!(
        output.status.success(),
        "python3 crypt failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim() == "True"
}
