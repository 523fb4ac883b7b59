//! The server-rendered pages: CSRF refusal, cookie flags and security headers, asserted on
//! real responses; HSTS over a real TLS listener.

mod support;

use axum::body::Body;
use http::header::LOCATION;
use http::Response;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::pages::{csrf_field, form, get, pair, set_cookies};
use support::portal::{self, body_text, Portal};

const PW: &str = "erin-password-1";

async fn setup() -> (FakeTrueNas, Portal) {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("erin", PW)]).await;
    let portal = portal::start(&fake, "auto", r#"["truenas","unixhash"]"#, &[]).await;
    (fake, portal)
}

fn assert_security_headers(response: &Response<Body>) {
    let h = response.headers();
    let csp = h["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("script-src"),
        "no script source is allowed at all: {csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
}

#[tokio::test]
async fn sign_in_change_and_sign_out_through_the_pages() {
    let (fake, portal) = setup().await;

    let page = portal.send(get("/login", "")).await;
    assert_eq!(page.status(), 200);
    assert_security_headers(&page);
    assert!(
        page.headers().get("strict-transport-security").is_none(),
        "no HSTS on plain HTTP"
    );
    let cookies = set_cookies(&page);
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("__Host-passgate_csrf="))
        .expect("csrf cookie")
        .clone();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(csrf_cookie.contains(flag), "{csrf_cookie}");
    }
    let html = body_text(page).await;
    assert!(html.contains("autocomplete=\"username\""));
    assert!(html.contains("autocomplete=\"current-password\""));
    let token = csrf_field(&html);
    let jar = pair(&csrf_cookie);

    // No token, a wrong token, or a token without its cookie: refused, nothing verified.
    let before = fake.calls().len();
    for (cookie, body) in [
        (jar.clone(), format!("username=erin&password={PW}")),
        (
            jar.clone(),
            format!("csrf=AAAA&username=erin&password={PW}"),
        ),
        (
            String::new(),
            format!("csrf={token}&username=erin&password={PW}"),
        ),
    ] {
        let response = portal.send(form("/login", &cookie, &body)).await;
        assert_eq!(response.status(), 403, "{body}");
        assert!(set_cookies(&response)
            .iter()
            .all(|c| !c.contains("passgate_session=e")));
    }
    assert_eq!(
        fake.calls().len(),
        before,
        "a refused form must not reach TrueNAS"
    );

    let response = portal
        .send(form(
            "/login",
            &jar,
            &format!("csrf={token}&username=erin&password={PW}"),
        ))
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/password");
    let session = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("__Host-passgate_session="))
        .expect("session cookie");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=600",
    ] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Domain"), "{session}");
    let jar = format!("{jar}; {}", pair(&session));

    let page = portal.send(get("/password", &jar)).await;
    assert_eq!(page.status(), 200);
    assert_security_headers(&page);
    let html = body_text(page).await;
    assert!(html.contains("autocomplete=\"new-password\""));
    assert!(
        html.contains("At least 8 characters"),
        "policy is shown before typing"
    );

    // A change without the CSRF token is refused and the NAS hash stays the same.
    let hash_before = fake.unixhash("erin");
    let body =
        format!("current_password={PW}&new_password=erin-new-pass&confirm_password=erin-new-pass");
    let response = portal.send(form("/password", &jar, &body)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(fake.unixhash("erin"), hash_before);

    // Mismatched confirmation names the rule; the typed passwords are not echoed back.
    let body = format!("csrf={token}&current_password={PW}&new_password=erin-new-pass&confirm_password=erin-new-pasX");
    let response = portal.send(form("/password", &jar, &body)).await;
    assert_eq!(response.status(), 400);
    let html = body_text(response).await;
    assert!(html.contains("do not match"), "{html}");
    assert!(
        !html.contains("erin-new-pass"),
        "passwords are never echoed"
    );

    // A NUL byte is refused with a clear message.
    let body = format!("csrf={token}&current_password={PW}&new_password=erin%00new-pass&confirm_password=erin%00new-pass");
    let html = body_text(portal.send(form("/password", &jar, &body)).await).await;
    assert!(html.contains("NUL"), "{html}");

    let body = format!("csrf={token}&current_password={PW}&new_password=erin-new-pass&confirm_password=erin-new-pass");
    let response = portal.send(form("/password", &jar, &body)).await;
    assert_eq!(response.status(), 200);
    assert!(set_cookies(&response)
        .iter()
        .any(|c| c.starts_with("__Host-passgate_session=;") && c.contains("Max-Age=0")));
    assert!(body_text(response)
        .await
        .contains("Sign in with your new password"));
    assert_ne!(fake.unixhash("erin"), hash_before);

    // The old session cookie is dead.
    let response = portal.send(get("/password", &jar)).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/login");
}

#[tokio::test]
async fn logout_needs_csrf_and_revokes() {
    let (_fake, portal) = setup().await;
    let page = portal.send(get("/login", "")).await;
    let csrf_cookie = pair(&set_cookies(&page)[0]);
    let token = csrf_field(&body_text(page).await);
    let response = portal
        .send(form(
            "/login",
            &csrf_cookie,
            &format!("csrf={token}&username=erin&password={PW}"),
        ))
        .await;
    let session = pair(&set_cookies(&response)[0]);
    let jar = format!("{csrf_cookie}; {session}");

    assert_eq!(portal.send(form("/logout", &jar, "")).await.status(), 403);
    assert_eq!(portal.send(get("/password", &jar)).await.status(), 200);
    let response = portal
        .send(form("/logout", &jar, &format!("csrf={token}")))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(portal.send(get("/password", &jar)).await.status(), 303);
}

#[tokio::test]
async fn hostile_form_input_gets_a_page_not_a_crash() {
    let (_fake, portal) = setup().await;
    let page = portal.send(get("/login", "")).await;
    let csrf_cookie = pair(&set_cookies(&page)[0]);
    let token = csrf_field(&body_text(page).await);
    // Invalid UTF-8 in a field.
    let response = portal
        .send(form(
            "/login",
            &csrf_cookie,
            &format!("csrf={token}&username=%FF%FE&password=x"),
        ))
        .await;
    assert!(response.status().is_client_error(), "{}", response.status());
    // A username carrying markup and a newline is escaped when echoed back.
    let response = portal
        .send(form(
            "/login",
            &csrf_cookie,
            &format!("csrf={token}&username=%3Cscript%3Ex%0A&password=wrong-one"),
        ))
        .await;
    assert_eq!(response.status(), 401);
    let html = body_text(response).await;
    assert!(html.contains("Invalid username or password."));
    assert!(!html.contains("<script>"), "user text must be escaped");
    // Unknown pages and API paths.
    assert_eq!(portal.send(get("/nope", "")).await.status(), 404);
    let response = portal.send(get("/api/v1/nope", "")).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        portal::body_json(response).await["error"]["code"],
        "not_found"
    );
}

#[tokio::test]
async fn hsts_is_sent_when_serving_tls() {
    let fake = FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("erin", PW)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write");
    let portal = portal::start(
        &fake,
        "auto",
        r#"["truenas"]"#,
        &[
            (
                "PASSGATE_SERVER__TLS_CERT",
                cert_path.to_str().expect("utf8"),
            ),
            ("PASSGATE_SERVER__TLS_KEY", key_path.to_str().expect("utf8")),
        ],
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = portal.app.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        passgate::server::serve(listener, app, Some((&cert_path, &key_path)), async {
            let _ = stopped.await;
        })
        .await
    });
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("pem"),
        )
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client");
    let response = client
        .get(format!("https://localhost:{port}/login"))
        .send()
        .await
        .expect("https request");
    assert_eq!(response.status(), 200);
    let hsts = response.headers()["strict-transport-security"]
        .to_str()
        .expect("ascii");
    assert!(hsts.contains("max-age="), "{hsts}");
    let _ = stop.send(());
    let _ = server.await;
}
