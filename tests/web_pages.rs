//! The server-rendered pages: CSRF refusal, cookie flags and security headers, asserted on
//! real responses; HSTS over a real TLS listener; the language chosen by Accept-Language;
//! the strength check (form and live endpoint); the accessibility attributes of refusals.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::body::Body;
use http::header::LOCATION;
use http::{Request, Response};
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::pages::{csrf_field, form, form_in, get, get_in, pair, set_cookies};
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
    let script_src: Vec<&str> = csp
        .split(';')
        .map(str::trim)
        .filter(|d| d.starts_with("script-src"))
        .collect();
    assert_eq!(
        script_src,
        ["script-src 'self'"],
        "only the portal's own script file: {csp}"
    );
    for loose in ["unsafe-inline", "unsafe-eval", "http:", "https:", "*"] {
        assert!(!csp.contains(loose), "{loose} in {csp}");
    }
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
    let (jar, token) = signed_in(&portal).await;

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

/// Signs erin in through the pages; returns the cookie jar and the form token.
async fn signed_in(portal: &Portal) -> (String, String) {
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
    assert_eq!(response.status(), 303);
    let session = pair(&set_cookies(&response)[0]);
    (format!("{csrf_cookie}; {session}"), token)
}

/// The `<input …>` tag with this id.
fn input_tag<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("<input id=\"{id}\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("#{id} in {html}"));
    let end = html[start..].find('>').expect("tag end");
    &html[start..start + end]
}

#[tokio::test]
async fn the_language_follows_accept_language() {
    let (_fake, portal) = setup().await;

    let response = portal
        .send(get_in("/login", "", "de-DE,de;q=0.9,en;q=0.8"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["vary"], "Accept-Language");
    let html = body_text(response).await;
    assert!(html.contains("<html lang=\"de\">"), "{html}");
    assert!(
        html.contains("Benutzername") && html.contains("Anmelden"),
        "{html}"
    );
    assert!(!html.contains("Username"), "{html}");

    // A language without a catalogue falls back to English; so does none at all.
    for language in ["fr", "fr-CH, it;q=0.8", "de;q=0, fr"] {
        let html = body_text(portal.send(get_in("/login", "", language)).await).await;
        assert!(html.contains("<html lang=\"en\">"), "{language}: {html}");
        assert!(html.contains("Username"), "{language}: {html}");
    }
    let html = body_text(portal.send(get("/login", "")).await).await;
    assert!(html.contains("<html lang=\"en\">"), "{html}");

    // The pages no handler knows, too.
    let response = portal.send(get_in("/nope", "", "de")).await;
    assert_eq!(response.status(), 404);
    assert!(body_text(response)
        .await
        .contains("Unter dieser Adresse gibt es keine Seite."));

    // The password page in German: its rules and its refusals.
    let (jar, token) = signed_in(&portal).await;
    let html = body_text(portal.send(get_in("/password", &jar, "de")).await).await;
    assert!(html.contains("Mindestens 8 Zeichen"), "{html}");
    let body = format!(
        "csrf={token}&current_password={PW}&new_password=password1234&confirm_password=password1234"
    );
    let html = body_text(portal.send(form_in("/password", &jar, &body, "de")).await).await;
    assert!(html.contains("Schwer zu erraten"), "{html}");
    assert!(html.contains("Ihr Passwort wurde nicht geändert"), "{html}");
}

#[tokio::test]
async fn a_guessable_password_is_refused_with_the_rule_named() {
    let (fake, portal) = setup().await;
    let (jar, token) = signed_in(&portal).await;
    let hash_before = fake.unixhash("erin");
    let calls_before = fake.calls().len();

    // Long enough, but on every list of common passwords.
    let body = format!(
        "csrf={token}&current_password={PW}&new_password=password1234&confirm_password=password1234"
    );
    let response = portal.send(form("/password", &jar, &body)).await;
    assert_eq!(response.status(), 400);
    let html = body_text(response).await;
    assert!(
        html.contains("Hard to guess: the new password is too easy to guess"),
        "{html}"
    );
    assert!(html.contains("at least 2 is needed"), "{html}");
    // zxcvbn's advice, in the catalogue's words.
    assert!(
        html.contains("Add another word or two") || html.contains("common password"),
        "{html}"
    );
    assert_eq!(fake.unixhash("erin"), hash_before, "nothing was changed");
    assert_eq!(
        fake.calls().len(),
        calls_before,
        "a refused policy never reaches TrueNAS"
    );

    // The username counts as an easy word: "erin" plus digits is weak.
    let body = format!(
        "csrf={token}&current_password={PW}&new_password=erin12345678&confirm_password=erin12345678"
    );
    let html = body_text(portal.send(form("/password", &jar, &body)).await).await;
    assert!(html.contains("Hard to guess"), "{html}");

    // A strong one goes through.
    let body = format!(
        "csrf={token}&current_password={PW}&new_password=maple-kettle-orbit&confirm_password=maple-kettle-orbit"
    );
    let response = portal.send(form("/password", &jar, &body)).await;
    assert_eq!(response.status(), 200);
    assert_ne!(fake.unixhash("erin"), hash_before);
}

#[tokio::test]
async fn a_refusal_keeps_no_password_and_focuses_the_first_invalid_field() {
    let (_fake, portal) = setup().await;
    let (jar, token) = signed_in(&portal).await;

    // Too weak and not confirmed: both new-password fields are invalid, the first one
    // (in page order) gets the focus, and each points at its own message.
    let body = format!(
        "csrf={token}&current_password={PW}&new_password=password1234&confirm_password=password9999"
    );
    let response = portal.send(form("/password", &jar, &body)).await;
    assert_eq!(response.status(), 400);
    let html = body_text(response).await;
    for secret in [PW, "password1234", "password9999"] {
        assert!(!html.contains(secret), "{secret} echoed: {html}");
    }
    for id in ["current_password", "new_password", "confirm_password"] {
        assert!(!input_tag(&html, id).contains("value="), "{id} has a value");
    }
    assert!(html.contains("role=\"alert\""), "{html}");
    let current = input_tag(&html, "current_password");
    assert!(
        !current.contains("aria-invalid") && !current.contains("autofocus"),
        "{current}"
    );
    let new = input_tag(&html, "new_password");
    assert!(new.contains("aria-invalid=\"true\""), "{new}");
    assert!(new.contains("autofocus"), "{new}");
    assert!(new.contains("aria-describedby=\"policy error-1\""), "{new}");
    assert!(html.contains("id=\"error-1\""), "{html}");
    let confirm = input_tag(&html, "confirm_password");
    assert!(confirm.contains("aria-invalid=\"true\""), "{confirm}");
    assert!(!confirm.contains("autofocus"), "only the first: {confirm}");
    assert!(
        confirm.contains("aria-describedby=\"error-2\""),
        "{confirm}"
    );
    assert_eq!(html.matches("autofocus").count(), 1, "{html}");

    // A wrong current password blames (and focuses) that field only.
    let body = format!(
        "csrf={token}&current_password=not-erins&new_password=maple-kettle-orbit&confirm_password=maple-kettle-orbit"
    );
    let response = portal.send(form("/password", &jar, &body)).await;
    assert_eq!(response.status(), 401);
    let html = body_text(response).await;
    assert!(!html.contains("not-erins") && !html.contains("maple-kettle-orbit"));
    let current = input_tag(&html, "current_password");
    assert!(
        current.contains("aria-invalid=\"true\"") && current.contains("autofocus"),
        "{current}"
    );
    assert!(
        !input_tag(&html, "new_password").contains("aria-invalid"),
        "{html}"
    );

    // The sign-in page keeps the username, never the password, and names empty fields.
    let page = portal.send(get("/login", "")).await;
    let csrf_cookie = pair(&set_cookies(&page)[0]);
    let token = csrf_field(&body_text(page).await);
    let response = portal
        .send(form(
            "/login",
            &csrf_cookie,
            &format!("csrf={token}&username=&password=typed-secret"),
        ))
        .await;
    assert_eq!(response.status(), 400);
    let html = body_text(response).await;
    assert!(!html.contains("typed-secret"), "{html}");
    let username = input_tag(&html, "username");
    assert!(
        username.contains("aria-invalid=\"true\"") && username.contains("autofocus"),
        "{username}"
    );
    assert!(
        !input_tag(&html, "password").contains("aria-invalid"),
        "{html}"
    );
    let response = portal
        .send(form(
            "/login",
            &csrf_cookie,
            &format!("csrf={token}&username=erin&password=wrong-password"),
        ))
        .await;
    assert_eq!(response.status(), 401);
    let html = body_text(response).await;
    assert!(
        input_tag(&html, "username").contains("value=\"erin\""),
        "{html}"
    );
    assert!(!html.contains("wrong-password"), "{html}");
}

#[tokio::test]
async fn the_live_strength_check_needs_session_and_csrf() {
    let (_fake, portal) = setup().await;
    let (jar, token) = signed_in(&portal).await;
    let ask = |cookie: &str, csrf: Option<&str>, password: &str, language: &str| {
        let mut request = Request::post("/password/strength")
            .header("content-type", "application/json")
            .header("cookie", cookie)
            .header("accept-language", language);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request
            .body(Body::from(
                serde_json::json!({ "password": password }).to_string(),
            ))
            .expect("request")
    };

    let csrf_only = jar.split("; ").next().expect("csrf cookie").to_string();
    let anonymous = portal
        .send(ask(&csrf_only, Some(&token), "password1234", "en"))
        .await;
    assert_eq!(anonymous.status(), 401);
    let forged = portal.send(ask(&jar, None, "password1234", "en")).await;
    assert_eq!(forged.status(), 403);
    let forged = portal
        .send(ask(&jar, Some("AAAA"), "password1234", "en"))
        .await;
    assert_eq!(forged.status(), 403);

    let response = portal
        .send(ask(&jar, Some(&token), "password1234", "en"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let answer = portal::body_json(response).await;
    assert!(answer["score"].as_u64().expect("score") < 2, "{answer}");
    assert_eq!(answer["min_score"], 2, "{answer}");
    assert_eq!(answer["acceptable"], false, "{answer}");
    assert!(
        !answer["feedback"].as_array().expect("feedback").is_empty(),
        "{answer}"
    );
    assert!(
        !answer.to_string().contains("password1234"),
        "never echoed: {answer}"
    );

    let answer = portal::body_json(portal.send(ask(&jar, Some(&token), "kurz", "de")).await).await;
    assert_eq!(answer["acceptable"], false, "{answer}");
    assert!(
        answer["summary"]
            .as_str()
            .expect("summary")
            .contains("Stärke"),
        "{answer}"
    );
    assert!(
        answer["problems"][0]
            .as_str()
            .expect("problem")
            .contains("Mindestlänge"),
        "{answer}"
    );

    let answer = portal::body_json(
        portal
            .send(ask(&jar, Some(&token), "maple-kettle-orbit", "en"))
            .await,
    )
    .await;
    assert_eq!(answer["acceptable"], true, "{answer}");
}

#[tokio::test]
async fn the_script_is_served_from_the_binary() {
    let (_fake, portal) = setup().await;
    let response = portal.send(get("/static/app.js", "")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let js = body_text(response).await;
    assert!(js.contains("/password/strength") || js.contains("data-strength"));
    for banned in ["eval(", "new Function", "innerHTML", "http://", "https://"] {
        assert!(!js.contains(banned), "{banned} in app.js");
    }
    // Pages load it as a file, never inline.
    let html = body_text(portal.send(get("/login", "")).await).await;
    assert!(html.contains("<script src=\"/static/app.js\" defer></script>"));
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("style=\""), "no inline styles: {html}");
}
