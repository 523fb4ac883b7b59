//! Self-tests of the fake TrueNAS (tests/support/fake_truenas), driven by raw clients so
//! that the fake is checked independently of the portal's own TrueNAS client.
//!
//! Every 656,000-round hash or verification costs ~0.3 s; tests keep users with passwords
//! few, and users that only need flags have no password.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{
    connect_async_tls_with_config, Connector, MaybeTlsStream, WebSocketStream,
};

const HISTORY_MESSAGE: &str =
    "The security configuration of the TrueNAS server requires a password \
     that does not match any of the last 3 passwords for this account.";
const MARKER: &str = "FAKE-TRACEBACK-MARKER";

fn http(fake: &FakeTrueNas) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(fake.client_tls())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// A bare JSON-RPC 2.0 client: one call at a time.
struct Rpc {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Rpc {
    async fn tls(fake: &FakeTrueNas) -> Rpc {
        Rpc::try_tls(fake, "/api/current")
            .await
            .expect("wss connection to the fake")
    }

    async fn try_tls(
        fake: &FakeTrueNas,
        path: &str,
    ) -> Result<Rpc, tokio_tungstenite::tungstenite::Error> {
        let url = format!(
            "{}{path}",
            fake.localhost_url().replacen("https://", "wss://", 1)
        );
        let connector = Connector::Rustls(Arc::new(fake.client_tls()));
        let (ws, _) = connect_async_tls_with_config(url, None, false, Some(connector)).await?;
        Ok(Rpc { ws, next_id: 1 })
    }

    async fn plain(fake: &FakeTrueNas) -> Rpc {
        let url = format!(
            "{}/api/current",
            fake.plain_url().replacen("http://", "ws://", 1)
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connection to the fake");
        Rpc { ws, next_id: 1 }
    }

    async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send to the fake");
    }

    async fn next_json(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("fake answers within 10 s")
                .expect("connection still open")
                .expect("valid WebSocket message");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).expect("fake sends JSON");
            }
        }
    }

    /// The whole response object (`result` or `error`).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        )
        .await;
        loop {
            let response = self.next_json().await;
            if response["id"] == json!(id) {
                assert_eq!(response["jsonrpc"], "2.0");
                return response;
            }
        }
    }

    async fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    async fn login_key(&mut self, user: &str, key: &str) -> Value {
        let data = json!({"mechanism": "API_KEY_PLAIN", "username": user, "api_key": key,
                          "login_options": {"user_info": false}});
        self.result("auth.login_ex", json!([data])).await
    }

    async fn login_password(&mut self, user: &str, password: &str) -> Value {
        let data = json!({"mechanism": "PASSWORD_PLAIN", "username": user, "password": password,
                          "login_options": {"user_info": false}});
        self.result("auth.login_ex", json!([data])).await
    }

    async fn otp(&mut self, code: &str) -> Value {
        self.call(
            "auth.login_ex",
            json!([{"mechanism": "OTP_TOKEN", "otp_token": code}]),
        )
        .await
    }
}

fn admin(name: &str, password: &str) -> FakeUser {
    FakeUser {
        full_admin: true,
        ..FakeUser::new(name, password)
    }
}

/// A user whose flags matter but whose password doesn't (no hashing cost).
fn without_password(name: &str) -> FakeUser {
    FakeUser {
        password: None,
        ..FakeUser::new(name, "")
    }
}

#[tokio::test]
async fn versions_list_per_flavour() {
    let old = FakeTrueNas::start(Flavour::V25_10, vec![]).await;
    let new = FakeTrueNas::start(Flavour::V26, vec![]).await;
    let v25 = json!(["v25.04.0", "v25.04.1", "v25.04.2", "v25.10.0", "v25.10.1"]);
    let v26 = json!(["v25.04.0", "v25.04.1", "v25.04.2", "v25.10.0", "v25.10.1", "v26.0.0"]);
    for (fake, expected) in [(&old, v25), (&new, v26)] {
        for base in [fake.localhost_url(), fake.plain_url()] {
            let response = http(fake)
                .get(format!("{base}/api/versions"))
                .send()
                .await
                .expect("GET /api/versions");
            assert_eq!(response.status(), 200);
            assert_eq!(response.json::<Value>().await.expect("JSON body"), expected);
        }
        assert!(fake.fingerprint().starts_with("sha256:") && fake.fingerprint().len() == 7 + 64);
        assert!(fake.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
    assert_eq!(
        old.calls(),
        ["REST GET /api/versions", "REST GET /api/versions"]
    );
}

#[tokio::test]
async fn rest_on_25_10_only() {
    let old = FakeTrueNas::start(Flavour::V25_10, vec![]).await;
    let client = http(&old);
    let user_url = format!(
        "{}/api/v2.0/user?username=truenas_admin",
        old.localhost_url()
    );
    let users: Value = client
        .get(&user_url)
        .bearer_auth(old.api_key())
        .send()
        .await
        .expect("GET user")
        .json()
        .await
        .expect("JSON list");
    assert_eq!(users.as_array().map(Vec::len), Some(1));
    assert_eq!(users[0]["roles"], json!(["FULL_ADMIN"]));
    assert_eq!(
        users[0]["unixhash"], "*",
        "FULL_ADMIN key sees hashes in clear"
    );

    let status = |r: reqwest::Result<reqwest::Response>| r.expect("request").status().as_u16();
    assert_eq!(status(client.get(&user_url).send().await), 401);
    assert_eq!(
        status(client.get(&user_url).bearer_auth("1-wrong").send().await),
        401
    );
    let set_password = format!("{}/api/v2.0/user/set_password", old.localhost_url());
    let body = json!({"username": "x", "new_password": "y"});
    assert_eq!(
        status(
            client
                .post(&set_password)
                .bearer_auth(old.api_key())
                .json(&body)
                .send()
                .await
        ),
        404
    );
    let info: Value = client
        .get(format!("{}/api/v2.0/system/info", old.localhost_url()))
        .bearer_auth(old.api_key())
        .send()
        .await
        .expect("GET system/info")
        .json()
        .await
        .expect("JSON object");
    assert_eq!(info["version"], "25.10.1");

    // REST over plain HTTP works and, unlike a WebSocket login, does not revoke the key.
    let plain_ping = format!("{}/api/v2.0/core/ping", old.plain_url());
    assert_eq!(
        status(
            client
                .get(&plain_ping)
                .bearer_auth(old.api_key())
                .send()
                .await
        ),
        200
    );
    assert!(!old.api_key_revoked());
    assert_eq!(old.calls()[0], "REST GET /api/v2.0/user");

    let new = FakeTrueNas::start(Flavour::V26, vec![]).await;
    let client = http(&new);
    for path in ["user?username=truenas_admin", "core/ping", "system/info"] {
        let url = format!("{}/api/v2.0/{path}", new.localhost_url());
        assert_eq!(
            status(client.get(url).bearer_auth(new.api_key()).send().await),
            404,
            "{path}"
        );
    }
}

#[tokio::test]
async fn api_key_login_over_tls() {
    let fake = FakeTrueNas::start(Flavour::V25_10, vec![]).await;
    let mut rpc = Rpc::tls(&fake).await;
    assert_eq!(
        rpc.login_key("root", fake.api_key()).await,
        json!({"response_type": "AUTH_ERR"})
    );
    assert_eq!(
        rpc.login_key(fake.api_user(), "1-wrong").await,
        json!({"response_type": "AUTH_ERR"})
    );
    assert_eq!(
        rpc.login_key(fake.api_user(), fake.api_key()).await,
        json!({"response_type": "SUCCESS", "user_info": null, "authenticator": "LEVEL_1"})
    );

    let me = rpc
        .result(
            "user.query",
            json!([[["username", "=", "truenas_admin"]], {"get": true}]),
        )
        .await;
    assert_eq!(me["roles"], json!(["FULL_ADMIN"]));
    assert_eq!(
        rpc.result("system.info", json!([])).await["version"],
        "25.10.1"
    );
    assert_eq!(
        rpc.result("user.query", json!([[]]))
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let missing = rpc
        .call(
            "user.query",
            json!([[["username", "=", "ghost"]], {"get": true}]),
        )
        .await;
    assert_eq!(missing["error"]["code"], -32001);
    assert_eq!(missing["error"]["data"]["errname"], "EINVAL");
    assert_eq!(missing["error"]["data"]["reason"], "MatchNotFound()");
    assert_eq!(
        rpc.result("user.query", json!([[["username", "=", "ghost"]]]))
            .await,
        json!([])
    );

    assert_eq!(rpc.result("auth.logout", json!([])).await, json!(true));
    let after = rpc.call("user.query", json!([[]])).await;
    assert_eq!(after["error"]["data"]["errname"], "ENOTAUTHENTICATED");
    assert_eq!(
        rpc.result("auth.login_with_api_key", json!([fake.api_key()]))
            .await,
        json!(true)
    );
    assert_eq!(rpc.result("core.ping", json!([])).await, "pong");
    assert!(!fake.api_key_revoked());

    // A pinned version path works; a version this flavour lacks does not exist.
    let mut pinned = Rpc::try_tls(&fake, "/api/v25.10.1")
        .await
        .expect("pinned endpoint");
    assert_eq!(pinned.result("core.ping", json!([])).await, "pong");
    assert!(Rpc::try_tls(&fake, "/api/v26.0.0").await.is_err());

    let calls = fake.calls();
    assert_eq!(&calls[..3], ["auth.login_ex:API_KEY_PLAIN"; 3]);
    assert!(
        calls.contains(&"auth.logout".to_owned())
            && calls.contains(&"auth.login_with_api_key".to_owned())
    );
}

#[tokio::test]
async fn api_key_over_plain_ws_is_revoked() {
    let fake = FakeTrueNas::start(Flavour::V25_10, vec![]).await;
    let mut plain = Rpc::plain(&fake).await;
    assert_eq!(
        plain.login_key(fake.api_user(), fake.api_key()).await,
        json!({"response_type": "EXPIRED"})
    );
    assert!(fake.api_key_revoked());

    let mut tls = Rpc::tls(&fake).await;
    assert_eq!(
        tls.login_key(fake.api_user(), fake.api_key()).await,
        json!({"response_type": "AUTH_ERR"})
    );
    assert_eq!(
        tls.result("auth.login_with_api_key", json!([fake.api_key()]))
            .await,
        json!(false)
    );
    let rest = http(&fake)
        .get(format!("{}/api/v2.0/core/ping", fake.localhost_url()))
        .bearer_auth(fake.api_key())
        .send()
        .await
        .expect("GET core/ping");
    assert_eq!(
        rest.status(),
        401,
        "a revoked key is refused by REST as well"
    );
}

/// Shared checks of PASSWORD_PLAIN; `flavour` decides what a correct non-admin password gets.
async fn password_logins(flavour: Flavour) {
    let mut otto = admin("otto", "otto-pw");
    otto.twofactor = true;
    let mut tina = FakeUser::new("tina", "tina-pw");
    tina.twofactor = true;
    let fake = FakeTrueNas::start(
        flavour,
        vec![
            FakeUser::new("alice", "alice-pw"),
            admin("boss", "boss-pw"),
            otto,
            tina,
        ],
    )
    .await;
    let mut rpc = Rpc::tls(&fake).await;

    let correct_non_admin = match flavour {
        Flavour::V25_10 => "AUTH_ERR",
        Flavour::V26 | Flavour::V27 => "DENIED",
    };
    assert_eq!(
        rpc.login_password("alice", "alice-pw").await["response_type"],
        correct_non_admin
    );
    assert_eq!(
        rpc.login_password("alice", "wrong").await["response_type"],
        "AUTH_ERR"
    );
    assert_eq!(
        rpc.login_password("nobody", "alice-pw").await["response_type"],
        "AUTH_ERR"
    );

    let no_otp = rpc.otp("123456").await;
    assert_eq!(no_otp["error"]["code"], -32001);
    assert_eq!(no_otp["error"]["data"]["errname"], "EINVAL");

    // Two-factor: 25.10 gives a wrong code more chances; 26 ends the login at once.
    let pending = json!({"response_type": "OTP_REQUIRED", "username": "otto"});
    assert_eq!(rpc.login_password("otto", "otto-pw").await, pending);
    match flavour {
        Flavour::V25_10 => {
            assert_eq!(rpc.otp("000000").await["result"], pending);
            assert_eq!(
                rpc.otp("123456").await["result"]["response_type"],
                "SUCCESS"
            );
            assert_eq!(rpc.result("auth.logout", json!([])).await, json!(true));
        }
        Flavour::V26 | Flavour::V27 => {
            assert_eq!(
                rpc.otp("000000").await["result"]["response_type"],
                "AUTH_ERR"
            );
            let over = rpc.otp("123456").await;
            assert_eq!(over["error"]["data"]["errname"], "EINVAL", "{over}");
            assert_eq!(rpc.login_password("otto", "otto-pw").await, pending);
            assert_eq!(
                rpc.otp("123456").await["result"]["response_type"],
                "SUCCESS"
            );
            assert_eq!(rpc.result("auth.logout", json!([])).await, json!(true));
        }
    }
    // A non-admin with 2FA. 26: the password is proven by OTP_REQUIRED and API access is
    // refused after the code. 25.10: the API-access check comes first, so AUTH_ERR.
    match flavour {
        Flavour::V25_10 => assert_eq!(
            rpc.login_password("tina", "tina-pw").await["response_type"],
            "AUTH_ERR"
        ),
        Flavour::V26 | Flavour::V27 => {
            assert_eq!(
                rpc.login_password("tina", "tina-pw").await["response_type"],
                "OTP_REQUIRED"
            );
            assert_eq!(rpc.otp("123456").await["result"]["response_type"], "DENIED");
        }
    }

    let success = rpc.login_password("boss", "boss-pw").await;
    assert_eq!(
        success,
        json!({"response_type": "SUCCESS", "user_info": null, "authenticator": "LEVEL_1"})
    );
    let alice = rpc
        .result(
            "user.query",
            json!([[["username", "=", "alice"]], {"get": true}]),
        )
        .await;
    assert!(alice["unixhash"]
        .as_str()
        .is_some_and(|h| h.starts_with("$6$rounds=656000$")));
    assert!(
        fake.calls()
            .iter()
            .filter(|c| *c == "auth.login_ex:PASSWORD_PLAIN")
            .count()
            >= 6
    );
}

#[tokio::test]
async fn password_plain_on_25_10() {
    password_logins(Flavour::V25_10).await;
}

#[tokio::test]
async fn password_plain_on_26() {
    password_logins(Flavour::V26).await;
}

#[tokio::test]
async fn unauthenticated_calls() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![]).await;
    let mut rpc = Rpc::tls(&fake).await;
    assert_eq!(rpc.result("core.ping", json!([])).await, "pong");

    let query = rpc
        .call(
            "user.query",
            json!([[["username", "=", "truenas_admin"]], {"get": true}]),
        )
        .await;
    let error = &query["error"];
    assert_eq!(error["code"], -32001);
    assert_eq!(error["message"], "Method call error");
    assert_eq!(error["data"]["error"], 207);
    assert_eq!(error["data"]["errname"], "ENOTAUTHENTICATED");
    assert_eq!(
        error["data"]["reason"],
        "[ENOTAUTHENTICATED] Not authenticated"
    );
    assert!(error["data"]["trace"]["formatted"]
        .as_str()
        .is_some_and(|t| t.contains(MARKER)));

    let unknown = rpc.call("no.such_method", json!([])).await;
    assert_eq!(
        unknown["error"],
        json!({"code": -32601, "message": "Method does not exist"})
    );

    rpc.send_text("{not json".to_owned()).await;
    let parse_error = rpc.next_json().await;
    assert_eq!(parse_error["error"]["code"], -32700);
    assert_eq!(parse_error["id"], Value::Null);
}

#[tokio::test]
async fn set_password_replaces_hash_and_enforces_rules() {
    let mut locked = without_password("lena");
    locked.locked = true;
    let mut remote = without_password("dora");
    remote.local = false;
    let fake = FakeTrueNas::start(
        Flavour::V25_10,
        vec![FakeUser::new("alice", "old-pw"), locked, remote],
    )
    .await;
    let mut rpc = Rpc::tls(&fake).await;
    rpc.login_key(fake.api_user(), fake.api_key()).await;
    let set = |user: &str, new: &str| json!([{"username": user, "old_password": null, "new_password": new}]);

    let before = fake.unixhash("alice").expect("alice exists");
    assert_eq!(
        rpc.result("user.set_password", set("alice", "password"))
            .await,
        Value::Null
    );
    let after = fake.unixhash("alice").expect("alice exists");
    assert_ne!(before, after);
    let salt = after
        .strip_prefix("$6$rounds=656000$")
        .and_then(|rest| rest.split('$').next());
    assert_eq!(salt.map(str::len), Some(16), "TrueNAS-style hash: {after}");
    let (new_ok, old_ok) = tokio::task::spawn_blocking(move || {
        (
            pwhash::sha512_crypt::verify("password", &after),
            pwhash::sha512_crypt::verify("old-pw", &after),
        )
    })
    .await
    .expect("verification");
    assert!(new_ok && !old_ok);
    let alice = rpc
        .result(
            "user.query",
            json!([[["username", "=", "alice"]], {"get": true}]),
        )
        .await;
    assert_eq!(
        alice["smbhash"], "8846F7EAEE8FB117AD06BDD830B7586C",
        "NT hash of 'password'"
    );

    // History: the previous password is refused, with TrueNAS' wording.
    let reused = rpc.call("user.set_password", set("alice", "old-pw")).await;
    assert_eq!(reused["error"]["code"], -32602);
    assert_eq!(reused["error"]["message"], "Invalid params");
    assert_eq!(
        reused["error"]["data"]["extra"],
        json!([["user.set_password.new_password", HISTORY_MESSAGE, 22]])
    );
    assert!(reused["error"]["data"]["trace"]["formatted"]
        .as_str()
        .is_some_and(|t| t.contains(MARKER)));

    let extra = |response: Value| response["error"]["data"]["extra"].clone();
    let ghost = rpc.call("user.set_password", set("ghost", "x-pw")).await;
    assert_eq!(
        extra(ghost),
        json!([[
            "user.set_password.username",
            "ghost: user does not exist.",
            22
        ]])
    );
    let dora = rpc.call("user.set_password", set("dora", "x-pw")).await;
    assert_eq!(
        extra(dora)[0][1],
        "dora: user is not local to the TrueNAS server."
    );
    let lena = rpc.call("user.set_password", set("lena", "x-pw")).await;
    assert_eq!(
        extra(lena),
        json!([[
            "user.set_password.username",
            "lena: user account is locked.",
            22
        ]])
    );

    fake.fail_next_set_password(vec!["Password is too short".to_owned()]);
    let injected = rpc
        .call("user.set_password", set("alice", "fresh-pw"))
        .await;
    assert_eq!(
        extra(injected),
        json!([[
            "user.set_password.new_password",
            "Password is too short",
            22
        ]])
    );

    // user.update and REST PUT apply the same rules under the `user_update` prefix.
    let id = alice["id"].clone();
    let update = rpc
        .call("user.update", json!([id, {"password": "old-pw"}]))
        .await;
    assert_eq!(
        extra(update),
        json!([["user_update.password", HISTORY_MESSAGE, 22]])
    );
    let client = http(&fake);
    let put = |id: &Value| {
        client
            .put(format!("{}/api/v2.0/user/id/{id}", fake.localhost_url()))
            .bearer_auth(fake.api_key())
    };
    let rejected = put(&id)
        .json(&json!({"password": "old-pw"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(rejected.status(), 422);
    let body: Value = rejected.json().await.expect("JSON body");
    assert_eq!(
        body,
        json!({"user_update.password": [{"message": HISTORY_MESSAGE, "errno": 22}]})
    );
    let unknown = put(&json!(999))
        .json(&json!({"password": "x-pw"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.expect("JSON body"),
        json!({"message": ""})
    );
    let accepted = put(&id)
        .json(&json!({"password": "rest-pw"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(accepted.status(), 200);
    assert_eq!(
        accepted.json::<Value>().await.expect("JSON body")["username"],
        "alice"
    );
    assert!(fake
        .calls()
        .contains(&"REST PUT /api/v2.0/user/id/70".to_owned()));
}

#[tokio::test]
async fn legacy_websocket_closes_with_1011_msg() {
    let fake = FakeTrueNas::start(Flavour::V25_10, vec![]).await;
    let mut rpc = Rpc::try_tls(&fake, "/websocket")
        .await
        .expect("legacy endpoint exists");
    rpc.send_text(
        json!({"jsonrpc": "2.0", "id": 1, "method": "core.ping", "params": []}).to_string(),
    )
    .await;
    let message = tokio::time::timeout(Duration::from_secs(5), rpc.ws.next())
        .await
        .expect("fake answers")
        .expect("a message before the end of the stream")
        .expect("valid frame");
    let Message::Close(Some(frame)) = message else {
        panic!("expected a close frame, got {message:?}");
    };
    assert_eq!(u16::from(frame.code), 1011);
    assert_eq!(frame.reason.as_str(), "'msg'");
}

#[tokio::test]
async fn set_down_drops_connections_and_recovers() {
    let fake = FakeTrueNas::start(Flavour::V25_10, vec![]).await;
    let mut rpc = Rpc::tls(&fake).await;
    rpc.login_key(fake.api_user(), fake.api_key()).await;
    let client = http(&fake);
    let versions = format!("{}/api/versions", fake.localhost_url());
    client
        .get(&versions)
        .send()
        .await
        .expect("pooled connection while up");

    fake.set_down(true);
    let end = tokio::time::timeout(Duration::from_secs(5), rpc.ws.next())
        .await
        .expect("socket dropped at once");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "no more answers: {end:?}"
    );
    assert!(Rpc::try_tls(&fake, "/api/current").await.is_err());
    assert!(
        client.get(&versions).send().await.is_err(),
        "pooled and new HTTP connections fail"
    );
    let plain = format!("{}/api/versions", fake.plain_url());
    assert!(client.get(&plain).send().await.is_err());

    fake.set_down(false);
    let mut again = Rpc::tls(&fake).await;
    assert_eq!(
        again.login_key(fake.api_user(), fake.api_key()).await["response_type"],
        "SUCCESS"
    );
    assert_eq!(
        client
            .get(&versions)
            .send()
            .await
            .expect("served again")
            .status(),
        200
    );

    // Even a down/up toggle with no await in between kills the connections opened before.
    fake.set_down(true);
    fake.set_down(false);
    let end = tokio::time::timeout(Duration::from_secs(5), again.ws.next())
        .await
        .expect("socket dropped at once");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
}
