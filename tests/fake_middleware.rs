//! The fake TrueNAS checked against middlewared's own limits and behaviours, with raw
//! JSON-RPC clients (tokio-tungstenite), never through passgate. Distinct client addresses
//! come from binding the client socket to 127.0.0.2, 127.0.0.3, …

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::fake_truenas::{
    CertKind, FakeHome, FakeOptions, FakeTrueNas, FakeUser, Flavour, MailSettings,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async_tls_with_config, Connector, MaybeTlsStream, WebSocketStream};

/// Generous: the machine is shared and noisy.
const DEADLINE: Duration = Duration::from_secs(30);

fn no_rate_limit_sleep(flavour: Flavour) -> FakeOptions {
    FakeOptions {
        rate_limit_sleep: (Duration::ZERO, Duration::ZERO),
        ..FakeOptions::new(flavour)
    }
}

fn client_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("URL ends with a port")
}

/// A JSON-RPC 2.0 client whose TCP socket is bound to a chosen loopback address.
struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Client {
    /// Over TLS, by the name `localhost` (the default certificate names nothing else).
    async fn tls(fake: &FakeTrueNas, from: Ipv4Addr, path: &str) -> std::io::Result<Client> {
        let port = port_of(&fake.url());
        let stream = tcp(from, port).await?;
        let url = format!("wss://localhost:{port}{path}");
        let connector = Connector::Rustls(Arc::new(fake.client_tls()));
        let (ws, _) = client_async_tls_with_config(url, stream, None, Some(connector))
            .await
            .map_err(std::io::Error::other)?;
        Ok(Client { ws, next_id: 1 })
    }

    /// Plain `ws://` (never used with the API key: that would revoke it).
    async fn plain(fake: &FakeTrueNas, from: Ipv4Addr) -> std::io::Result<Client> {
        let port = port_of(&fake.plain_url());
        let stream = tcp(from, port).await?;
        let url = format!("ws://127.0.0.1:{port}/api/current");
        let (ws, _) = client_async_tls_with_config(url, stream, None, None)
            .await
            .map_err(std::io::Error::other)?;
        Ok(Client { ws, next_id: 1 })
    }

    async fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .expect("send to the fake");
        id
    }

    /// The next JSON answer, or `None` when the connection ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("the fake answers in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(text.as_str()).expect("JSON"))
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params).await;
        loop {
            let answer = self.next().await.expect("connection open");
            if answer["id"] == json!(id) {
                return answer;
            }
        }
    }

    async fn result(&mut self, method: &str, params: Value) -> Value {
        let answer = self.call(method, params).await;
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    async fn login_key(&mut self, fake: &FakeTrueNas) {
        let data = json!({"mechanism": "API_KEY_PLAIN", "username": fake.api_user(),
                          "api_key": fake.api_key(), "login_options": {"user_info": false}});
        let result = self.result("auth.login_ex", json!([data])).await;
        assert_eq!(result["response_type"], "SUCCESS");
    }

    async fn login_password(&mut self, username: &str, password: &str) -> Value {
        let data = json!({"mechanism": "PASSWORD_PLAIN", "username": username,
                          "password": password, "login_options": {"user_info": false}});
        self.result("auth.login_ex", json!([data])).await["response_type"].clone()
    }
}

async fn tcp(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
}

fn is_rate_limited(answer: &Value) -> bool {
    answer["error"]["code"] == -32001
        && answer["error"]["data"]["errname"] == "EBUSY"
        && answer["error"]["data"]["reason"] == "[EBUSY] Rate Limit Exceeded"
}

// ---------------------------------------------------------------- rate limit

#[tokio::test]
async fn rate_limit_per_method_and_address_with_the_real_sleep() {
    // Real figures: 20 calls a minute, then uniform(1, 10) s of sleep before the refusal.
    let fake = FakeTrueNas::start(Flavour::V26, vec![]).await;
    let mut first = Client::plain(&fake, client_ip(2)).await.expect("connect");
    for i in 0..20 {
        let answer = first.call("core.ping", json!([])).await;
        assert_eq!(answer["result"], "pong", "call {i}: {answer}");
    }
    let started = Instant::now();
    let refused = first.call("core.ping", json!([])).await;
    let slept = started.elapsed();
    assert!(is_rate_limited(&refused), "{refused}");
    assert!(
        slept >= Duration::from_secs(1) && slept < Duration::from_secs(10) + DEADLINE,
        "slept {slept:?}"
    );
    assert_eq!(fake.rate_limited(), 1);

    // Another method from the same address, and the same method from another address,
    // have budgets of their own.
    let other_method = first.call("auth.mechanism_choices", json!([])).await;
    assert!(other_method["result"].is_array(), "{other_method}");
    let mut second = Client::plain(&fake, client_ip(3)).await.expect("connect");
    assert_eq!(second.call("core.ping", json!([])).await["result"], "pong");
    // A second connection from the first address shares its budget.
    let mut again = Client::plain(&fake, client_ip(2)).await.expect("connect");
    assert!(is_rate_limited(&again.call("core.ping", json!([])).await));
    assert_eq!(fake.rate_limited(), 2);
    assert_eq!(fake.unauthenticated_calls(), 24);

    // An authenticated connection is exempt, even from the exhausted address.
    let mut admin = Client::tls(&fake, client_ip(2), "/api/current")
        .await
        .expect("connect");
    admin.login_key(&fake).await;
    for _ in 0..25 {
        assert_eq!(admin.call("core.ping", json!([])).await["result"], "pong");
    }
    // Only the login itself was counted (auth.login_ex before authentication).
    assert_eq!(fake.unauthenticated_calls(), 25);
    assert_eq!(fake.rate_limited(), 2);
}

#[tokio::test]
async fn rate_limit_window_restarts_after_the_period() {
    let options = FakeOptions {
        rate_limit_window: Duration::from_millis(800),
        ..no_rate_limit_sleep(Flavour::V26)
    };
    let fake = FakeTrueNas::start_with(options, vec![]).await;
    let mut client = Client::plain(&fake, client_ip(4)).await.expect("connect");
    let started = Instant::now();
    let mut accepted = 0;
    loop {
        let answer = client.call("core.ping", json!([])).await;
        if is_rate_limited(&answer) {
            break;
        }
        accepted += 1;
    }
    // All 20 may not fit in one window on a slow machine; at least the refusal came.
    assert!(accepted >= 20 || started.elapsed() >= Duration::from_millis(800));
    // Wait for the window to pass (the condition), then a fresh budget of exactly 20.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answer = client.call("core.ping", json!([])).await;
        if answer["result"] == "pong" {
            break;
        }
        assert!(Instant::now() < deadline, "the window never restarted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window_start = Instant::now();
    let mut accepted = 1;
    while !is_rate_limited(&client.call("core.ping", json!([])).await) {
        accepted += 1;
    }
    if window_start.elapsed() < Duration::from_millis(800) {
        assert_eq!(accepted, 20);
    }
}

#[tokio::test]
async fn a_full_table_refuses_the_hundredth_entry_only() {
    let fake = FakeTrueNas::start_with(no_rate_limit_sleep(Flavour::V26), vec![]).await;
    let methods = [
        ("core.ping", json!([])),
        ("auth.mechanism_choices", json!([])),
        ("auth.login_ex", json!([{}])),
        ("auth.login_ex_continue", json!([{}])),
        ("auth.login_with_api_key", json!([])),
    ];
    let mut entries = 0;
    for n in 2..22 {
        let mut client = Client::plain(&fake, client_ip(n)).await.expect("connect");
        for (method, params) in &methods {
            entries += 1;
            let answer = client.call(method, params.clone()).await;
            // `len(RL_CACHE) == max_cache_entries` after adding: the 100th is refused.
            assert_eq!(
                is_rate_limited(&answer),
                entries == 100,
                "entry {entries}: {answer}"
            );
        }
    }
    // The 101st entry makes the length 101, and `==` no longer holds.
    let mut late = Client::plain(&fake, client_ip(22)).await.expect("connect");
    assert_eq!(late.call("core.ping", json!([])).await["result"], "pong");
    assert_eq!(fake.rate_limited(), 1);
}

// ---------------------------------------------------------------- concurrency + delay

#[tokio::test]
async fn ten_calls_run_twenty_fly_and_failures_take_the_real_delay() {
    // The real failure delay: uniform(1, 2) s per failed login.
    let options = FakeOptions {
        failure_delay: Duration::from_secs(1),
        ..FakeOptions::new(Flavour::V26)
    };
    let fake = FakeTrueNas::start_with(options, vec![]).await;
    let mut client = Client::tls(&fake, client_ip(5), "/api/current")
        .await
        .expect("connect");
    // Authenticated: these logins are not rate-limited, and an AUTH_ERR keeps the session.
    client.login_key(&fake).await;
    let data = json!({"mechanism": "PASSWORD_PLAIN", "username": "nobody",
                      "password": "wrong", "login_options": {"user_info": false}});
    let started = Instant::now();
    for _ in 0..25 {
        client.send("auth.login_ex", json!([data.clone()])).await;
    }
    let mut refused = 0;
    let mut failed = Vec::new();
    while refused + failed.len() < 25 {
        let answer = client.next().await.expect("connection open");
        if answer["error"]["code"] == -32000 {
            assert_eq!(
                answer["error"]["message"],
                "Maximum number of concurrent calls (20) has exceeded"
            );
            assert!(answer["error"].get("data").is_none(), "{answer}");
            // Refused at once, not after a delay.
            assert!(started.elapsed() < Duration::from_secs(1), "{answer}");
            refused += 1;
        } else {
            assert_eq!(answer["result"]["response_type"], "AUTH_ERR", "{answer}");
            failed.push(started.elapsed());
        }
    }
    assert_eq!(refused, 5);
    assert_eq!(fake.max_running_per_connection(), 10);
    // Each failure waited at least 1 s; the second ten waited for the first ten's slots.
    assert!(
        failed.iter().all(|t| *t >= Duration::from_secs(1)),
        "{failed:?}"
    );
    assert!(failed[19] >= Duration::from_secs(2), "{failed:?}");
    // The connection still works and is still authenticated.
    assert_eq!(
        client.result("system.info", json!([])).await["version"],
        "26.04.0"
    );
}

// ---------------------------------------------------------------- restart

#[tokio::test]
async fn restart_drops_everything_and_refuses_connections_for_a_while() {
    let fake = Arc::new(FakeTrueNas::start_with(no_rate_limit_sleep(Flavour::V26), vec![]).await);
    let mut admin = Client::tls(&fake, client_ip(6), "/api/current")
        .await
        .expect("connect");
    admin.login_key(&fake).await;
    let mut exhausted = Client::plain(&fake, client_ip(7)).await.expect("connect");
    while !is_rate_limited(&exhausted.call("core.ping", json!([])).await) {}

    // Traffic keeps going through the restart.
    let traffic = {
        let fake = fake.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                match Client::plain(&fake, client_ip(8)).await {
                    Ok(mut c) => {
                        let id = c.send("auth.mechanism_choices", json!([])).await;
                        match c.next().await {
                            Some(answer) if answer["id"] == json!(id) => ok += 1,
                            _ => failed += 1,
                        }
                    }
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };

    let refuse_for = Duration::from_secs(2);
    let restart = {
        let fake = fake.clone();
        tokio::spawn(async move { fake.restart(refuse_for).await })
    };
    // Every open connection ends at once.
    assert!(admin.next().await.is_none(), "admin connection survived");
    assert!(exhausted.next().await.is_none(), "connection survived");
    // New TCP connections are refused by the kernel (no listener), not accepted.
    let deadline = Instant::now() + DEADLINE;
    loop {
        match tcp(client_ip(9), port_of(&fake.url())).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => assert!(Instant::now() < deadline, "connections still accepted"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused_at = Instant::now();
    restart.await.expect("restart finished");
    assert!(refused_at.elapsed() < refuse_for + Duration::from_millis(100) + DEADLINE);

    // The same ports serve again; the session and the rate-limit table are gone.
    let mut admin = Client::tls(&fake, client_ip(6), "/api/current")
        .await
        .expect("reconnect");
    let answer = admin.call("system.info", json!([])).await;
    assert_eq!(
        answer["error"]["data"]["errname"], "ENOTAUTHENTICATED",
        "{answer}"
    );
    let mut fresh = Client::plain(&fake, client_ip(7)).await.expect("connect");
    assert_eq!(fresh.call("core.ping", json!([])).await["result"], "pong");

    let (ok, failed) = traffic.await.expect("traffic task");
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
}

// ---------------------------------------------------------------- certificate

#[tokio::test]
async fn the_default_certificate_is_truenas_own_kind() {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::{FromDer, X509Certificate};

    let fake = FakeTrueNas::start(Flavour::V26, vec![]).await;
    let der = fake.cert_der();
    let (_, cert) = X509Certificate::from_der(&der).expect("DER certificate");
    assert_eq!(cert.subject(), cert.issuer(), "self-signed");
    cert.verify_signature(None).expect("signed by its own key");
    let subject = cert.subject();
    let cn: Vec<_> = subject
        .iter_common_name()
        .map(|a| a.as_str().expect("utf8"))
        .collect();
    assert_eq!(cn, ["localhost"]);
    let o: Vec<_> = subject
        .iter_organization()
        .map(|a| a.as_str().expect("utf8"))
        .collect();
    assert_eq!(o, ["iXsystems Inc. dba TrueNAS"]);
    // RSA 2048.
    let key = cert.public_key().parsed().expect("public key");
    match key {
        x509_parser::public_key::PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 2048),
        other => panic!("not RSA: {other:?}"),
    }
    // SAN DNS:localhost only; EKU serverAuth; no BasicConstraints.
    let mut san = None;
    let mut eku = None;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(names) => {
                san = Some(names.general_names.clone())
            }
            ParsedExtension::ExtendedKeyUsage(usage) => eku = Some(usage.clone()),
            ParsedExtension::BasicConstraints(_) => panic!("BasicConstraints present"),
            _ => {}
        }
    }
    assert_eq!(san.expect("a SAN"), vec![GeneralName::DNSName("localhost")]);
    let eku = eku.expect("an EKU");
    assert!(eku.server_auth && !eku.client_auth && eku.other.is_empty());
    assert_eq!(cert.extensions().len(), 2, "only SAN and EKU");
    // About 397 days.
    let validity = cert.validity();
    let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
    assert_eq!(days, 397);

    // Trusting it as a root does not make 127.0.0.1 verify; `localhost` does.
    let url = fake.url().replacen("https://", "wss://", 1) + "/api/current";
    let connector = Connector::Rustls(Arc::new(fake.client_tls()));
    let by_ip =
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)).await;
    assert!(by_ip.is_err(), "name check passed for 127.0.0.1");
    Client::tls(&fake, client_ip(1), "/api/current")
        .await
        .expect("localhost verifies");

    // The LoopbackIp variant adds the address, and only that.
    let loopback = FakeTrueNas::start_with(
        FakeOptions {
            cert: CertKind::LoopbackIp,
            ..FakeOptions::new(Flavour::V26)
        },
        vec![],
    )
    .await;
    let der = loopback.cert_der();
    let (_, cert) = X509Certificate::from_der(&der).expect("DER certificate");
    let names = cert
        .subject_alternative_name()
        .expect("valid SAN")
        .expect("a SAN")
        .value
        .general_names
        .clone();
    assert_eq!(
        names,
        vec![
            GeneralName::DNSName("localhost"),
            GeneralName::IPAddress(&[127, 0, 0, 1])
        ]
    );
}

// ---------------------------------------------------------------- password aging

#[tokio::test]
async fn password_aging_on_26() {
    let bob = FakeUser {
        password_age_days: 10,
        ..FakeUser::new("bob", "bob-password")
    };
    let options = FakeOptions {
        max_password_age: Some(30),
        ..FakeOptions::new(Flavour::V26)
    };
    let fake = FakeTrueNas::start_with(options, vec![bob]).await;
    let mut admin = Client::tls(&fake, client_ip(10), "/api/current")
        .await
        .expect("connect");
    admin.login_key(&fake).await;
    let security = admin.result("system.security.config", json!([])).await;
    assert_eq!(security["max_password_age"], 30);
    assert!(security["min_password_age"].is_null());

    let query = json!([[["username", "=", "bob"]], {"get": true}]);
    let user = admin.result("user.query", query.clone()).await;
    assert_eq!(user["password_age"], 10);
    assert_eq!(user["password_change_required"], false);
    let changed_ms = user["last_password_change"]["$date"]
        .as_u64()
        .expect("a {\"$date\": ms} datetime");
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits");
    let age_days = (now_ms - changed_ms) / 86_400_000;
    assert_eq!(age_days, 10);

    // From max − 6 days a change is required; logging in still works (DENIED: no API access).
    fake.set_password_age("bob", 24);
    let user = admin.result("user.query", query.clone()).await;
    assert_eq!(user["password_change_required"], true);
    let mut login = Client::tls(&fake, client_ip(11), "/api/current")
        .await
        .expect("connect");
    assert_eq!(login.login_password("bob", "bob-password").await, "DENIED");
    // At the maximum itself still allowed; past it EXPIRED, but only for the right password.
    fake.set_password_age("bob", 30);
    assert_eq!(login.login_password("bob", "bob-password").await, "DENIED");
    fake.set_password_age("bob", 31);
    assert_eq!(login.login_password("bob", "bob-password").await, "EXPIRED");
    assert_eq!(login.login_password("bob", "wrong").await, "AUTH_ERR");
    // Aging off: no expiry.
    fake.set_max_password_age(None);
    assert_eq!(login.login_password("bob", "bob-password").await, "DENIED");
    fake.set_max_password_age(Some(30));

    // A new password resets the age.
    admin
        .result(
            "user.set_password",
            json!([{"username": "bob", "old_password": null, "new_password": "bob-new-password"}]),
        )
        .await;
    let user = admin.result("user.query", query).await;
    assert_eq!(user["password_age"], 0);
    assert_eq!(user["password_change_required"], false);
    assert_eq!(
        login.login_password("bob", "bob-new-password").await,
        "DENIED"
    );
}

#[tokio::test]
async fn on_25_10_an_expired_password_answers_expired_before_the_access_check() {
    let bob = FakeUser {
        password_age_days: 40,
        ..FakeUser::new("bob", "bob-password")
    };
    let options = FakeOptions {
        max_password_age: Some(30),
        ..FakeOptions::new(Flavour::V25_10)
    };
    let fake = FakeTrueNas::start_with(options, vec![bob]).await;
    let mut login = Client::tls(&fake, client_ip(12), "/api/current")
        .await
        .expect("connect");
    // Without aging, a non-admin's right password is AUTH_ERR on 25.10 (the version trap).
    assert_eq!(login.login_password("bob", "bob-password").await, "EXPIRED");
    fake.set_password_age("bob", 0);
    assert_eq!(
        login.login_password("bob", "bob-password").await,
        "AUTH_ERR"
    );
}

// ---------------------------------------------------------------- 27, mechanisms

#[tokio::test]
async fn flavour_27() {
    let fake = FakeTrueNas::start(Flavour::V27, vec![]).await;
    let versions: Value = reqwest::get(format!("{}/api/versions", fake.plain_url()))
        .await
        .expect("GET /api/versions")
        .json()
        .await
        .expect("JSON");
    let versions = versions.as_array().expect("a list");
    assert_eq!(versions.last().expect("non-empty"), "v27.0.0");
    assert!(versions.contains(&json!("v26.0.0")));
    let rest = reqwest::get(format!("{}/api/v2.0/core/ping", fake.plain_url()))
        .await
        .expect("GET");
    assert_eq!(rest.status(), 404);

    // Private on 27's API, yet still served (rpc.py only logs a warning) …
    for path in ["/api/current", "/api/v27.0.0"] {
        let mut client = Client::tls(&fake, client_ip(13), path)
            .await
            .expect("connect");
        let ok = client
            .result("auth.login_with_api_key", json!([fake.api_key()]))
            .await;
        assert_eq!(ok, true, "{path}");
        assert_eq!(
            client.result("system.info", json!([])).await["version"],
            "27.0.0"
        );
    }
    assert_eq!(fake.warnings().len(), 2, "{:?}", fake.warnings());
    assert!(fake.warnings()[0].contains("auth.login_with_api_key"));
    // … and public on an older pinned API.
    let mut old = Client::tls(&fake, client_ip(13), "/api/v26.0.0")
        .await
        .expect("connect");
    assert_eq!(
        old.result("auth.login_with_api_key", json!([fake.api_key()]))
            .await,
        true
    );
    assert_eq!(fake.warnings().len(), 2);

    // 26 has no such warning on its current API.
    let v26 = FakeTrueNas::start(Flavour::V26, vec![]).await;
    let mut client = Client::tls(&v26, client_ip(13), "/api/current")
        .await
        .expect("connect");
    assert_eq!(
        client
            .result("auth.login_with_api_key", json!([v26.api_key()]))
            .await,
        true
    );
    assert!(v26.warnings().is_empty());
}

#[tokio::test]
async fn mechanism_choices_per_flavour_and_scram_refuses_garbage() {
    for (flavour, expected) in [
        (
            Flavour::V25_10,
            json!(["API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN"]),
        ),
        (
            Flavour::V26,
            json!(["API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN", "SCRAM"]),
        ),
        (
            Flavour::V27,
            json!(["API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN", "SCRAM"]),
        ),
    ] {
        let fake = FakeTrueNas::start(flavour, vec![]).await;
        let mut client = Client::plain(&fake, client_ip(14)).await.expect("connect");
        assert_eq!(
            client.result("auth.mechanism_choices", json!([])).await,
            expected
        );
        let scram = json!([{"mechanism": "SCRAM", "scram_type": "CLIENT_FIRST_MESSAGE",
                            "rfc_str": "n,,n=x,r=abc"}]);
        let answer = client.call("auth.login_ex", scram).await;
        if flavour == Flavour::V25_10 {
            assert_eq!(answer["error"]["code"], -32602, "{answer}");
        } else {
            // A malformed client-first (the nonce is not 32 bytes) is AUTH_ERR, as every
            // failed SCRAM step is (plugins/auth.py login_ex).
            assert_eq!(answer["result"]["response_type"], "AUTH_ERR", "{answer}");
        }
    }
}

// ---------------------------------------------------------------- mail

/// Polls `core.get_jobs` until the job leaves RUNNING; returns (states seen, final job).
async fn wait_job(client: &mut Client, id: &Value) -> (Vec<String>, Value) {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let jobs = client
            .result("core.get_jobs", json!([[["id", "=", id]]]))
            .await;
        let job = jobs[0].clone();
        let state = job["state"].as_str().expect("a state").to_owned();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state != "RUNNING" {
            return (seen, job);
        }
        assert!(Instant::now() < deadline, "job never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn mail_send_without_a_mail_server_fails_as_each_version_does() {
    for (flavour, error) in [
        (
            Flavour::V25_10,
            "[EFAULT] You must provide an outgoing mailserver and mail server port when sending mail",
        ),
        (
            Flavour::V26,
            "[EFAULT] You must provide an outgoing mailserver and mail server port when sending mail",
        ),
        (Flavour::V27, "[EINVAL] fromemail: This field is required"),
    ] {
        let fake = FakeTrueNas::start(flavour, vec![]).await;
        let mut client = Client::tls(&fake, client_ip(15), "/api/current")
            .await
            .expect("connect");
        client.login_key(&fake).await;
        let config = client.result("mail.config", json!([])).await;
        assert_eq!(config["outgoingserver"], "");
        assert_eq!(config["port"], 25);
        assert_eq!(config["security"], "PLAIN");
        let message = json!({"subject": "Reset", "text": "hello", "to": ["a@example.com"]});
        let id = client.result("mail.send", json!([message])).await;
        assert!(id.is_u64(), "{id}");
        let (seen, job) = wait_job(&mut client, &id).await;
        assert_eq!(seen, ["RUNNING", "FAILED"], "{flavour:?}");
        assert_eq!(job["error"], error, "{flavour:?}");
        assert_eq!(job["method"], "mail.send");
        assert!(fake.sent_mail().is_empty());
    }
}

#[tokio::test]
async fn mail_send_delivers_with_truenas_subject_and_result() {
    for (flavour, result) in [
        (Flavour::V25_10, json!(true)),
        (Flavour::V26, Value::Null),
        (Flavour::V27, Value::Null),
    ] {
        let mut admin = FakeUser::new("root2", "");
        admin.password = None;
        admin.full_admin = true;
        admin.email = Some("admin@example.com".to_owned());
        let options = FakeOptions {
            mail: Some(MailSettings::relay(
                "smtp.example.com",
                25,
                "nas@example.com",
            )),
            ..FakeOptions::new(flavour)
        };
        let fake = FakeTrueNas::start_with(options, vec![admin]).await;
        let mut client = Client::tls(&fake, client_ip(16), "/api/current")
            .await
            .expect("connect");
        client.login_key(&fake).await;
        assert_eq!(
            client.result("mail.config", json!([])).await["outgoingserver"],
            "smtp.example.com"
        );

        // Pydantic validation happens before any job: subject is required, no extras.
        let answer = client
            .call("mail.send", json!([{"text": "no subject"}]))
            .await;
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
        assert_eq!(
            answer["error"]["data"]["extra"][0][0],
            "mail.send.message.subject"
        );
        let interval = json!({"subject": "s", "text": "t", "interval": 60});
        let answer = client.call("mail.send", json!([interval])).await;
        assert_eq!(
            answer["error"].is_object(),
            flavour == Flavour::V27,
            "{answer}"
        );

        // No `to`: the local administrators' addresses.
        let message = json!({"subject": "Password reset", "text": "a <b>\nline", "queue": false});
        let id = client.result("mail.send", json!([message])).await;
        let (_, job) = wait_job(&mut client, &id).await;
        assert_eq!(job["state"], "SUCCESS", "{job}");
        assert_eq!(job["result"], result, "{flavour:?}");
        let sent = fake.sent_mail();
        let mail = sent.last().expect("a message");
        assert_eq!(mail.to, ["admin@example.com"]);
        assert_eq!(mail.subject, "TrueNAS fake-nas.local: Password reset");
        assert_eq!(mail.text, "a <b>\nline");
        let html = mail.html.as_deref().expect("an HTML part");
        assert!(html.contains("a &lt;b&gt;"), "{html}");

        // `html: null`: no HTML part.
        let message = json!({"subject": "s", "text": "t", "html": null, "to": ["x@example.com"]});
        let id = client.result("mail.send", json!([message])).await;
        assert_eq!(wait_job(&mut client, &id).await.1["state"], "SUCCESS");
        assert_eq!(fake.sent_mail().last().expect("sent").html, None);
    }
}

#[tokio::test]
async fn mail_send_without_recipients_or_admin_addresses_fails() {
    let options = FakeOptions {
        mail: Some(MailSettings::relay(
            "smtp.example.com",
            25,
            "nas@example.com",
        )),
        ..FakeOptions::new(Flavour::V26)
    };
    let fake = FakeTrueNas::start_with(options, vec![]).await;
    let mut client = Client::tls(&fake, client_ip(17), "/api/current")
        .await
        .expect("connect");
    client.login_key(&fake).await;
    let id = client
        .result("mail.send", json!([{"subject": "s", "text": "t"}]))
        .await;
    let (_, job) = wait_job(&mut client, &id).await;
    assert_eq!(job["state"], "FAILED");
    assert_eq!(
        job["error"],
        "[EFAULT] None of the local administrators has an e-mail address configured"
    );
    let id = client.result("mail.send", json!([{"subject": "s"}])).await;
    let (_, job) = wait_job(&mut client, &id).await;
    assert_eq!(
        job["error"],
        "[EINVAL] mail_message.text: Text is required when HTML is not set\n"
    );
}

/// `sshpubkey` as plugins/account.py keeps it: written verbatim (options and garbage too) to
/// `~/.ssh/authorized_keys`, read back stripped, deleted by an empty value; a home not on a
/// dataset is "not writable"; a missing home makes the call a silent no-op.
#[tokio::test]
async fn sshpubkey_is_the_authorized_keys_file_and_validates_nothing() {
    let users = vec![
        FakeUser::new("dana", "dana-password"),
        FakeUser {
            home: FakeHome::NotDataset,
            ..FakeUser::new("nohome", "nohome-password")
        },
        FakeUser {
            home: FakeHome::Missing,
            ..FakeUser::new("gone", "gone-password")
        },
    ];
    let fake = FakeTrueNas::start_with(no_rate_limit_sleep(Flavour::V27), users).await;
    let mut admin = Client::tls(&fake, client_ip(20), "/api/current")
        .await
        .expect("connect");
    admin.login_key(&fake).await;
    let user = |name: &str| json!([[["username", "=", name]], {"get": true}]);
    let dana = admin.result("user.query", user("dana")).await;
    assert!(dana["sshpubkey"].is_null(), "no file yet: {dana}");
    let id = dana["id"].clone();

    let garbage = "  command=\"rm -rf /\" ssh-ed25519 AAAA x\nnot a key at all\n\n";
    let updated = admin
        .result("user.update", json!([id, {"sshpubkey": garbage}]))
        .await;
    assert_eq!(updated["sshpubkey"], garbage.trim());
    assert_eq!(
        fake.authorized_keys("dana").as_deref(),
        Some(format!("{}\n", garbage.trim()).as_str()),
        "stripped, plus a newline"
    );
    admin
        .result("user.update", json!([id, {"sshpubkey": ""}]))
        .await;
    assert_eq!(
        fake.authorized_keys("dana"),
        None,
        "an empty value deletes the file"
    );

    let nohome = admin.result("user.query", user("nohome")).await;
    assert_eq!(nohome["home"], "/var/empty");
    let refused = admin
        .call(
            "user.update",
            json!([nohome["id"], {"sshpubkey": "ssh-ed25519 AAAA"}]),
        )
        .await;
    assert_eq!(
        refused["error"]["data"]["extra"][0][1],
        "Home directory is not writable, leave this blank\"",
        "{refused}"
    );
    assert_eq!(
        refused["error"]["data"]["extra"][0][0],
        "user_update.sshpubkey"
    );

    let gone = admin.result("user.query", user("gone")).await;
    let silent = admin
        .result(
            "user.update",
            json!([gone["id"], {"sshpubkey": "ssh-ed25519 AAAA"}]),
        )
        .await;
    assert!(
        silent["sshpubkey"].is_null(),
        "nothing was written: {silent}"
    );
}
