//! Two-step sign-in end to end, through the JSON API and the pages, against the fake
//! TrueNAS. Every code is computed by the real `oathtool` (Debian's oathtool package), never
//! by passgate's own TOTP code.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use http::header::LOCATION;
use serde_json::{json, Value};
use support::clock::oath;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::pages::{csrf_field, form, get, pair, set_cookies};
use support::portal::{self, body_text, Portal};

const PW: &str = "alice-password-1";

fn users() -> Vec<FakeUser> {
    let mut tina = FakeUser::new("tina", "tina-password-1");
    tina.twofactor = true;
    let mut otto = FakeUser::new("otto", "otto-password-1");
    otto.twofactor = true;
    otto.full_admin = true;
    vec![
        FakeUser::new("alice", PW),
        FakeUser::new("bob", "bob-password-1"),
        tina,
        otto,
    ]
}

async fn setup(extra: &[(&str, &str)]) -> (FakeTrueNas, Portal) {
    let fake = FakeTrueNas::start(Flavour::V26, users()).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, extra).await;
    (fake, portal)
}

fn token(body: &Value) -> String {
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_string()
}

async fn signed_in(portal: &Portal, user: &str, password: &str) -> String {
    let (status, body) = portal.login(user, password).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "authenticated", "{body}");
    token(&body)
}

/// Enrolls `user` through the API, confirming with the code one step *behind* now, so
/// the current and the next step are still unused afterwards. Returns the secret and the
/// backup codes.
async fn enroll(portal: &Portal, session: &str) -> (String, Vec<String>) {
    let (status, offer) = portal
        .json("/api/v1/totp/enroll", Some(session), json!({}))
        .await;
    assert_eq!(status, 200, "{offer}");
    let secret = offer["secret"].as_str().expect("secret").to_string();
    let code = oath(&secret, -1).await;
    let (status, body) = portal
        .json("/api/v1/totp/confirm", Some(session), json!({"code": code}))
        .await;
    assert_eq!(status, 200, "{body}");
    let codes: Vec<String> = body["backup_codes"]
        .as_array()
        .expect("backup codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
    (secret, codes)
}

/// Password step for an enrolled user: a pending token.
async fn pending(portal: &Portal, user: &str, password: &str) -> String {
    let (status, body) = portal.login(user, password).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "totp_required", "{body}");
    assert!(
        body["expires_in"].as_u64().expect("expires_in") <= 300,
        "{body}"
    );
    token(&body)
}

async fn send_code(portal: &Portal, pending: &str, code: &str) -> (u16, Value) {
    portal
        .json("/api/v1/login/totp", Some(pending), json!({"code": code}))
        .await
}

#[tokio::test]
async fn enrollment_then_sign_in_needs_the_code() {
    let (_fake, portal) = setup(&[("PASSGATE_TOTP__ISSUER", "Example NAS")]).await;
    let session = signed_in(&portal, "alice", PW).await;
    let (_, me) = portal.get_json("/api/v1/me", &session).await;
    assert_eq!(me["totp_enabled"], false, "{me}");

    let (status, offer) = portal
        .json("/api/v1/totp/enroll", Some(&session), json!({}))
        .await;
    assert_eq!(status, 200, "{offer}");
    let secret = offer["secret"].as_str().expect("secret");
    assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
    let uri = offer["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(
        uri.contains("alice") && uri.contains(&format!("secret={secret}")),
        "{uri}"
    );
    assert!(uri.contains("issuer=Example%20NAS"), "{uri}");
    let svg = offer["qr_svg"].as_str().expect("svg");
    assert!(svg.starts_with("<svg") && !svg.contains("<script"), "{svg}");

    // Not on until a valid code confirms it.
    let (_, me) = portal.get_json("/api/v1/me", &session).await;
    assert_eq!(me["totp_enabled"], false);
    let right = oath(secret, 0).await;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, body) = portal
        .json(
            "/api/v1/totp/confirm",
            Some(&session),
            json!({"code": wrong}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_code"))
    );
    assert_eq!(portal.login("alice", PW).await.1["status"], "authenticated");

    let (status, body) = portal
        .json(
            "/api/v1/totp/confirm",
            Some(&session),
            json!({"code": right}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let codes = body["backup_codes"].as_array().expect("codes");
    assert_eq!(codes.len(), 10);
    let (_, me) = portal.get_json("/api/v1/me", &session).await;
    assert_eq!(me["totp_enabled"], true, "{me}");

    // The password alone now gives only a pending token, good for nothing but the code step.
    let pending_token = pending(&portal, "alice", PW).await;
    assert_eq!(portal.get_json("/api/v1/me", &pending_token).await.0, 401);
    let (status, body) = portal
        .json(
            "/api/v1/password",
            Some(&pending_token),
            json!({"current_password": PW, "new_password": "a-new-password-9"}),
        )
        .await;
    assert_eq!(
        status, 401,
        "a pending token must not change a password: {body}"
    );
    assert_eq!(portal.login("alice", "a-new-password-9").await.0, 401);

    // The code that confirmed the enrollment is spent: a replay is refused.
    let (status, body) = send_code(&portal, &pending_token, &right).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_code"))
    );
    // The next step's code works, and yields a full session.
    let next = oath(secret, 1).await;
    let (status, body) = send_code(&portal, &pending_token, &next).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "authenticated");
    let full = token(&body);
    assert_eq!(portal.get_json("/api/v1/me", &full).await.0, 200);
    // The pending token is spent with it.
    assert_eq!(send_code(&portal, &pending_token, &next).await.0, 401);
    // A full session is not a pending one.
    assert_eq!(send_code(&portal, &full, &next).await.0, 401);
}

#[tokio::test]
async fn one_step_either_side_is_accepted_two_are_not_and_no_step_twice() {
    let (_fake, portal) = setup(&[]).await;
    let session = signed_in(&portal, "alice", PW).await;
    // enroll() confirms with the code of step -1: one step behind is accepted.
    let (secret, _) = enroll(&portal, &session).await;

    let token = pending(&portal, "alice", PW).await;
    for steps in [-2, 2, 3, -3] {
        let code = oath(&secret, steps).await;
        let (status, body) = send_code(&portal, &token, &code).await;
        assert_eq!(status, 401, "{steps} steps away must be refused: {body}");
    }
    let ahead = oath(&secret, 1).await;
    let (status, body) = send_code(&portal, &token, &ahead).await;
    assert_eq!(status, 200, "one step ahead is accepted: {body}");

    // Step +1 was used: the current step is now earlier than the last accepted one.
    let token = pending(&portal, "alice", PW).await;
    let now = oath(&secret, 0).await;
    let (status, _) = send_code(&portal, &token, &now).await;
    assert_eq!(
        status, 401,
        "an earlier step than the last used one is refused"
    );
    let (status, _) = send_code(&portal, &token, &ahead).await;
    assert_eq!(status, 401, "the same code twice is refused");
}

#[tokio::test]
async fn a_backup_code_works_exactly_once() {
    let (_fake, portal) = setup(&[]).await;
    let session = signed_in(&portal, "alice", PW).await;
    let (_, codes) = enroll(&portal, &session).await;
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.len() >= 10), "{codes:?}");

    let token = pending(&portal, "alice", PW).await;
    let (status, body) = send_code(&portal, &token, &codes[3]).await;
    assert_eq!(status, 200, "{body}");

    let token = pending(&portal, "alice", PW).await;
    let (status, _) = send_code(&portal, &token, &codes[3]).await;
    assert_eq!(status, 401, "a used backup code is refused");
    // Typed in capitals with spaces instead of dashes, another one still works.
    let typed = codes[4].to_uppercase().replace('-', " ");
    let (status, body) = send_code(&portal, &token, &typed).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_per_user_attempt_limit_holds_and_failures_reach_fail2ban() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f2b = dir.path().join("auth.log");
    let (_fake, portal) = setup(&[
        ("PASSGATE_TOTP__MAX_FAILURES", "3"),
        ("PASSGATE_LOG__FAIL2BAN_FILE", f2b.to_str().expect("utf8")),
    ])
    .await;
    let session = signed_in(&portal, "alice", PW).await;
    let (secret, _) = enroll(&portal, &session).await;
    let token = pending(&portal, "alice", PW).await;
    let right = oath(&secret, 0).await;
    let wrong = if right == "123123" {
        "321321"
    } else {
        "123123"
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send_code(&portal, &token, wrong).await.0);
    }
    assert_eq!(statuses[..2], [401, 401], "{statuses:?}");
    let (status, body) = send_code(&portal, &token, &right).await;
    assert_eq!(status, 429, "the limit refuses even the right code: {body}");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    assert!(body["error"]["retry_after"].as_u64().expect("retry_after") >= 1);
    // Another client address does not help: the limit is per user. (In-process requests
    // come from 127.0.0.1; a fresh pending token is the attacker's other attempt.)
    let token = pending(&portal, "alice", PW).await;
    assert_eq!(send_code(&portal, &token, &right).await.0, 429);

    // Failures are fail2ban lines with the client address; they arrive when the coalescing
    // minute closes, or at once for the file sink.
    // Wait for the three lines with a deadline generous enough for a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut lines = String::new();
    while std::time::Instant::now() < deadline {
        lines = std::fs::read_to_string(&f2b).unwrap_or_default();
        if lines.matches("totp failure").count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lines
            .matches("totp failure; rhost=127.0.0.1 user=alice")
            .count()
            >= 3,
        "{lines}"
    ); // The shipped fail2ban filter, run by the real fail2ban-regex, matches every one.
    let report = support::logs::fail2ban_regex(&f2b);
    assert_eq!(report.matched, report.lines, "{lines}");
    assert!(report.matched >= 3 && report.missed == 0, "{report:?}");
    assert!(
        report
            .hosts
            .iter()
            .all(|(ip, _)| ip.to_string() == "127.0.0.1"),
        "{report:?}"
    );
}

#[tokio::test]
async fn required_mode_forces_enrollment_before_anything_else() {
    let (fake, portal) = setup(&[("PASSGATE_TOTP__MODE", "required")]).await;
    let (status, body) = portal.login("alice", PW).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "totp_enrollment_required", "{body}");
    let enrolling = token(&body);
    let before = fake.unixhash("alice");
    let (status, _) = portal
        .json(
            "/api/v1/password",
            Some(&enrolling),
            json!({"current_password": PW, "new_password": "a-new-password-9"}),
        )
        .await;
    assert_eq!(status, 401, "no password change before enrolling");
    assert_eq!(fake.unixhash("alice"), before);
    assert_eq!(portal.get_json("/api/v1/me", &enrolling).await.0, 401);

    let (status, offer) = portal
        .json("/api/v1/totp/enroll", Some(&enrolling), json!({}))
        .await;
    assert_eq!(status, 200, "{offer}");
    let code = oath(offer["secret"].as_str().expect("secret"), 0).await;
    let (status, body) = portal
        .json(
            "/api/v1/totp/confirm",
            Some(&enrolling),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backup_codes"].as_array().expect("codes").len(), 10);
    assert_eq!(body["status"], "authenticated");
    let full = token(&body);
    let (status, me) = portal.get_json("/api/v1/me", &full).await;
    assert_eq!((status, &me["totp_enabled"]), (200, &json!(true)));
    // The enrollment session ended with the enrollment.
    assert_eq!(
        portal
            .json("/api/v1/totp/enroll", Some(&enrolling), json!({}))
            .await
            .0,
        401
    );
    // Turning it off is not offered in required mode.
    let (status, body) = portal
        .json(
            "/api/v1/totp/disable",
            Some(&full),
            json!({"password": PW, "code": "000000"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("totp_required"))
    );
    // Next sign-in asks for the code.
    pending(&portal, "alice", PW).await;
}

#[tokio::test]
async fn re_enrolling_needs_a_code_and_never_replaces_silently() {
    let (_fake, portal) = setup(&[]).await;
    let session = signed_in(&portal, "alice", PW).await;
    let (secret, codes) = enroll(&portal, &session).await;
    let (status, body) = portal
        .json("/api/v1/totp/enroll", Some(&session), json!({}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("code_required")),
        "{body}"
    );
    let (status, _) = portal
        .json(
            "/api/v1/totp/enroll",
            Some(&session),
            json!({"code": "not-a-code"}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, offer) = portal
        .json(
            "/api/v1/totp/enroll",
            Some(&session),
            json!({"code": codes[0]}),
        )
        .await;
    assert_eq!(status, 200, "{offer}");
    assert_ne!(offer["secret"], secret);
    // Until the new secret is confirmed, the old one is the one that counts.
    let token = pending(&portal, "alice", PW).await;
    let (status, body) = send_code(&portal, &token, &oath(&secret, 0).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn disabling_needs_the_password_and_a_code() {
    let (_fake, portal) = setup(&[]).await;
    let session = signed_in(&portal, "alice", PW).await;
    let (secret, _) = enroll(&portal, &session).await;
    let code = oath(&secret, 0).await;
    let (status, _) = portal
        .json(
            "/api/v1/totp/disable",
            Some(&session),
            json!({"password": "wrong-password", "code": code}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, me) = portal.get_json("/api/v1/me", &session).await;
    assert_eq!((status, &me["totp_enabled"]), (200, &json!(true)));
    let (status, body) = portal
        .json(
            "/api/v1/totp/disable",
            Some(&session),
            json!({"password": PW, "code": code}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    signed_in(&portal, "alice", PW).await;
}

#[tokio::test]
async fn truenas_side_otp_is_asked_on_the_same_connection() {
    let (fake, portal) = setup(&[]).await;
    // tina: TrueNAS 2FA, no API access (26 answers DENIED after the code).
    let (status, body) = portal.login("tina", "tina-password-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["status"], &body["factor"]),
        (&json!("totp_required"), &json!("truenas"))
    );
    let token_a = token(&body);
    assert_eq!(portal.get_json("/api/v1/me", &token_a).await.0, 401);
    // 26 ends the TrueNAS login at the first wrong code.
    let (status, body) = send_code(&portal, &token_a, "000000").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("sign_in_again"))
    );
    assert_eq!(send_code(&portal, &token_a, "123456").await.0, 401);

    let token_b = token(&portal.login("tina", "tina-password-1").await.1);
    let (status, body) = send_code(&portal, &token_b, "123456").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "authenticated");
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("auth.login_ex_continue")),
        "{calls:?}"
    );

    // otto is a TrueNAS admin: SUCCESS after the code, then the portal logs out of it.
    let token_c = token(&portal.login("otto", "otto-password-1").await.1);
    assert_eq!(send_code(&portal, &token_c, "123456").await.0, 200);
    let calls = fake.calls();
    let last_continue = calls
        .iter()
        .rposition(|c| c.starts_with("auth.login_ex_continue"))
        .expect("continue call");
    assert!(
        calls[last_continue..]
            .iter()
            .any(|c| c.starts_with("auth.logout")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn truenas_otp_on_25_10() {
    let fake = FakeTrueNas::start(Flavour::V25_10, users()).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas","unixhash"]"#, &[]).await;
    // A non-admin with TrueNAS 2FA: 25.10 answers AUTH_ERR before asking for a code, so the
    // unix hash confirms the password, and the portal refuses rather than skip the factor.
    let (status, body) = portal.login("tina", "tina-password-1").await;
    assert_eq!(status, 401, "{body}");
    // An admin with 2FA gets OTP_REQUIRED; 25.10 allows another try after a wrong code.
    let token = token(&portal.login("otto", "otto-password-1").await.1);
    let (status, body) = send_code(&portal, &token, "000000").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_code"))
    );
    let (status, body) = send_code(&portal, &token, "123456").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_database_holds_no_plaintext_secret() {
    let (_fake, portal) = setup(&[]).await;
    let session = signed_in(&portal, "alice", PW).await;
    let (secret, codes) = enroll(&portal, &session).await;
    let token = pending(&portal, "alice", PW).await;
    assert_eq!(send_code(&portal, &token, &codes[0]).await.0, 200);

    let data = portal.dir.path().join("data");
    let mut haystack = Vec::new();
    for name in ["passgate.db", "passgate.db-wal"] {
        if let Ok(bytes) = std::fs::read(data.join(name)) {
            haystack.extend(bytes);
        }
    }
    assert!(haystack.len() > 4096, "database files were read");
    let raw = base32_decode(&secret);
    assert_eq!(raw.len(), 20);
    let found = |needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    assert!(!found(secret.as_bytes()), "base32 secret in the database");
    assert!(
        !found(secret.to_lowercase().as_bytes()),
        "lower-case secret in the database"
    );
    assert!(!found(&raw), "raw secret bytes in the database");
    for code in &codes {
        assert!(
            !found(code.as_bytes()),
            "backup code {code} in the database"
        );
        assert!(
            !found(code.replace('-', "").as_bytes()),
            "backup code in the database"
        );
    }
}

#[tokio::test]
async fn the_pages_walk_through_enrollment_and_the_code_step() {
    let (_fake, portal) = setup(&[]).await;
    // Sign in through the form.
    let page = portal.send(get("/login", "")).await;
    let csrf_cookie = pair(
        &set_cookies(&page)
            .into_iter()
            .find(|c| c.starts_with("__Host-passgate_csrf="))
            .expect("csrf cookie"),
    );
    let csrf = csrf_field(&body_text(page).await);
    let sign_in = |csrf: String, jar: String| {
        let portal = &portal;
        async move {
            let response = portal
                .send(form(
                    "/login",
                    &jar,
                    &format!("csrf={csrf}&username=alice&password={PW}"),
                ))
                .await;
            assert_eq!(response.status(), 303);
            let location = response.headers()[LOCATION]
                .to_str()
                .expect("ascii")
                .to_string();
            let session = pair(
                &set_cookies(&response)
                    .into_iter()
                    .find(|c| c.starts_with("__Host-passgate_session="))
                    .expect("session cookie"),
            );
            (location, format!("{jar}; {session}"))
        }
    };
    let (location, jar) = sign_in(csrf.clone(), csrf_cookie.clone()).await;
    assert_eq!(location, "/password");

    // Settings → set up → QR code page → confirm → backup codes.
    let settings = portal.send(get("/totp", &jar)).await;
    assert_eq!(settings.status(), 200);
    let html = body_text(settings).await;
    assert!(html.contains("action=\"/totp/setup\""), "{html}");
    let response = portal
        .send(form("/totp/setup", &jar, &format!("csrf={csrf}")))
        .await;
    assert_eq!(response.status(), 200);
    let html = body_text(response).await;
    assert!(html.contains("<svg"), "inline QR code: {html}");
    let marker = "<code>";
    let start = html.find(marker).expect("secret shown as text") + marker.len();
    let secret: String = html[start..]
        .split('<')
        .next()
        .expect("secret")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    // Without the CSRF token nothing is confirmed.
    let code = oath(&secret, -1).await;
    let refused = portal
        .send(form("/totp/confirm", &jar, &format!("code={code}")))
        .await;
    assert_eq!(refused.status(), 403);
    let response = portal
        .send(form(
            "/totp/confirm",
            &jar,
            &format!("csrf={csrf}&code={code}"),
        ))
        .await;
    assert_eq!(response.status(), 200);
    let html = body_text(response).await;
    assert!(html.contains("backup codes"), "{html}");
    assert_eq!(html.matches("<li><code>").count(), 10, "{html}");

    // Sign in again: the code page comes next, and only then the password page.
    let (location, jar) = sign_in(csrf.clone(), csrf_cookie.clone()).await;
    assert_eq!(location, "/login/totp");
    assert_eq!(
        portal.send(get("/password", &jar)).await.headers()[LOCATION],
        "/login"
    );
    let page = portal.send(get("/login/totp", &jar)).await;
    assert_eq!(page.status(), 200);
    let html = body_text(page).await;
    assert!(html.contains("autocomplete=\"one-time-code\""), "{html}");
    let wrong = portal
        .send(form(
            "/login/totp",
            &jar,
            &format!("csrf={csrf}&code=000000"),
        ))
        .await;
    assert_eq!(wrong.status(), 401);
    assert!(body_text(wrong).await.contains("not correct"));
    let code = oath(&secret, 0).await;
    let response = portal
        .send(form(
            "/login/totp",
            &jar,
            &format!("csrf={csrf}&code={code}"),
        ))
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/password");
    let session = pair(
        &set_cookies(&response)
            .into_iter()
            .find(|c| c.starts_with("__Host-passgate_session="))
            .expect("full session cookie"),
    );
    let page = portal
        .send(get("/password", &format!("{csrf_cookie}; {session}")))
        .await;
    assert_eq!(page.status(), 200);
}

/// RFC 4648 base32 without padding, for checking the raw secret bytes.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c).expect("base32") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[tokio::test]
async fn the_code_step_counts_toward_the_per_client_limit() {
    let (_fake, portal) = setup(&[("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "3")]).await;
    let session = signed_in(&portal, "alice", PW).await; // attempt 1
                                                         // Setting up needs a session already; it does not use up sign-in attempts.
    let (secret, _) = enroll(&portal, &session).await;
    let token = pending(&portal, "alice", PW).await; // attempt 2
    assert_eq!(send_code(&portal, &token, "000000").await.0, 401); // attempt 3
    let (status, body) = send_code(&portal, &token, &oath(&secret, 0).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
}

/// Runs the real binary with a config that points at the portal's data directory.
fn cli(portal: &Portal, args: &[&str]) -> (bool, String, String) {
    let config = portal.dir.path().join("cli.toml");
    let data = portal.dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {:?}\n[log]\nsyslog = \"off\"\n",
            data.to_str().expect("utf8")
        ),
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_passgate"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_remove("PASSGATE_CONFIG")
        .env_remove("PASSGATE_LOG")
        .env("SUDO_USER", "root-operator")
        .output()
        .expect("run passgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn admins_see_and_reset_enrollments_from_the_cli_and_it_is_audited() {
    let (_fake, portal) = setup(&[]).await;
    let session = signed_in(&portal, "alice", PW).await;
    enroll(&portal, &session).await;
    let bob = signed_in(&portal, "bob", "bob-password-1").await;
    let (status, _) = portal
        .json("/api/v1/totp/enroll", Some(&bob), json!({}))
        .await;
    assert_eq!(status, 200, "bob starts a set-up and does not finish it");

    let (ok, table, err) = cli(&portal, &["totp", "status"]);
    assert!(ok, "{err}");
    let alice_row = table
        .lines()
        .find(|l| l.starts_with("alice"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(alice_row.split_whitespace().nth(1) == Some("on"), "{table}");
    assert!(alice_row.contains(" 10 "), "ten backup codes left: {table}");
    let bob_row = table.lines().find(|l| l.starts_with("bob")).expect("bob");
    assert_eq!(
        bob_row.split_whitespace().nth(1),
        Some("pending"),
        "{table}"
    );

    let (ok, line, err) = cli(&portal, &["totp", "status", "alice", "--json"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(line.trim()).expect("json");
    assert_eq!(
        (&status["username"], &status["enabled"]),
        (&json!("alice"), &json!(true))
    );

    let (ok, out, err) = cli(&portal, &["totp", "reset", "alice"]);
    assert!(ok, "{err}");
    assert!(out.contains("reset"), "{out}");
    let (ok, out, _) = cli(&portal, &["totp", "reset", "nobody"]);
    assert!(ok && out.contains("nothing changed"), "{out}");
    // Reset takes effect at once: the password alone signs alice in again.
    signed_in(&portal, "alice", PW).await;

    let (ok, rows, err) = cli(
        &portal,
        &["audit", "list", "--format", "json", "--user", "alice"],
    );
    assert!(ok, "{err}");
    let events: Vec<Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let reset = events
        .iter()
        .find(|e| e["event"] == "totp_reset")
        .unwrap_or_else(|| panic!("{rows}"));
    assert!(reset.to_string().contains("root-operator"), "{reset}");
    assert!(
        events.iter().any(|e| e["event"] == "totp_status_viewed"),
        "{rows}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "totp_enrolled"),
        "{rows}"
    );
    let (ok, verify, err) = cli(&portal, &["audit", "verify"]);
    assert!(ok, "the chain stays intact with two writers: {verify}{err}");
}
