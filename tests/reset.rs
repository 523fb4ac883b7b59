//! Reset of a forgotten password by a mailed link, against the fake TrueNAS: its `mail.send`
//! job delivers into the fake's outbox (tests/support/fake_truenas/mail.rs), and the link is
//! taken from the mail exactly as a user would.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::Request;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use support::clock::oath;
use support::fake_truenas::{FakeOptions, FakeTrueNas, FakeUser, Flavour, MailSettings};
use support::pages::{csrf_field, form, get, pair, set_cookies};
use support::portal::{self, body_text, Portal};

const PUBLIC: &str = "https://nas.example";
const NEW_PASSWORD: &str = "Correct-Horse-Battery-2026!";

fn user(name: &str, email: Option<&str>) -> FakeUser {
    let mut user = FakeUser::new(name, &format!("{name}-old-pass-1"));
    user.email = email.map(str::to_owned);
    user
}

fn users() -> Vec<FakeUser> {
    let mut root_like = user("ada", Some("ada@example.org"));
    root_like.full_admin = true;
    let mut second = user("tess", Some("tess@example.org"));
    second.twofactor = true;
    vec![
        user("alice", Some("alice@example.org")),
        user("bob", Some("bob@example.org")),
        user("nomail", None),
        root_like,
        second,
    ]
}

async fn fake(mail: bool) -> FakeTrueNas {
    let mut options = FakeOptions::new(Flavour::V26);
    if mail {
        options.mail = Some(MailSettings::relay("127.0.0.1", 25, "nas@example.org"));
    }
    FakeTrueNas::start_with(options, users()).await
}

async fn start(fake: &FakeTrueNas, extra: &[(&str, &str)]) -> Portal {
    let mut env = vec![
        ("PASSGATE_RESET__ENABLED", "true"),
        ("PASSGATE_SERVER__PUBLIC_URL", PUBLIC),
    ];
    env.extend_from_slice(extra);
    portal::start(fake, "jsonrpc", r#"["truenas"]"#, &env).await
}

async fn request(portal: &Portal, username: &str) -> (u16, Value) {
    portal
        .json("/api/v1/reset", None, json!({"username": username}))
        .await
}

/// Waits (by condition) until the fake has delivered `count` mails.
async fn mails(fake: &FakeTrueNas, count: usize) -> Vec<support::fake_truenas::SentMail> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sent = fake.sent_mail();
        if sent.len() >= count {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "only {} mails arrived",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The token of the link in a mail (`<public_url>/reset/<token>`).
fn link_token(text: &str) -> String {
    let start = text
        .find(&format!("{PUBLIC}/reset/"))
        .unwrap_or_else(|| panic!("no link in {text}"))
        + PUBLIC.len()
        + "/reset/".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43, "{text}");
    token
}

/// Asks for a link for `username` (the first mail of the test) and returns its token once
/// passgate has seen TrueNAS finish the mail job: until then an outage would make it discard
/// the link (a mail it cannot confirm must not leave a valid link behind).
async fn mailed_link(portal: &Portal, fake: &FakeTrueNas, username: &str) -> String {
    let (status, body) = request(portal, username).await;
    assert_eq!(status, 202, "{body}");
    let token = link_token(&mails(fake, 1).await[0].text);
    let rows = audit(portal, "reset_requested", 1).await;
    assert!(
        rows.contains(&(
            "reset_requested".into(),
            "success".into(),
            format!("{username}:sent")
        )),
        "{rows:?}"
    );
    token
}

/// event, outcome, reason, username, count
type StoredRow = (String, String, Option<String>, Option<String>, i64);

/// (event, outcome, "user:reason") rows of the audit store, chained and still open, in
/// time order, once rows of `event` count `want` occurrences (failures are coalesced: one
/// row, a count).
async fn audit(portal: &Portal, event: &str, want: i64) -> Vec<(String, String, String)> {
    let options = SqliteConnectOptions::new().filename(portal.dir.path().join("data/passgate.db"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = SqliteConnection::connect_with(&options).await.expect("db");
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT event, outcome, reason, username, count FROM audit_all ORDER BY ts_ms, id",
        )
        .fetch_all(&mut conn)
        .await
        .expect("rows");
        let seen: i64 = rows.iter().filter(|r| r.0 == event).map(|r| r.4).sum();
        let rows: Vec<(String, String, String)> = rows
            .into_iter()
            .map(|(e, o, r, u, _)| {
                (
                    e,
                    o,
                    format!("{}:{}", u.unwrap_or_default(), r.unwrap_or_default()),
                )
            })
            .collect();
        if seen >= want {
            return rows;
        }
        assert!(Instant::now() < deadline, "no {want} {event} in {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn confirm(portal: &Portal, token: &str, code: Option<&str>) -> (u16, Value) {
    let mut body = json!({"token": token, "new_password": NEW_PASSWORD});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    portal.json("/api/v1/reset/confirm", None, body).await
}

#[tokio::test]
async fn a_mailed_link_sets_the_password_once_and_ends_every_session() {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    let (status, body) = portal.login("alice", "alice-old-pass-1").await;
    assert_eq!(status, 200, "{body}");
    let session = body["token"].as_str().expect("token").to_string();

    let (status, body) = request(&portal, "alice").await;
    assert_eq!((status, body), (202, json!({"status": "requested"})));
    let mail = mails(&fake, 1).await.remove(0);
    assert_eq!(mail.to, vec!["alice@example.org".to_string()]);
    assert!(
        mail.subject.ends_with("Reset your NAS password"),
        "{}",
        mail.subject
    );
    let token = link_token(&mail.text);
    assert!(mail
        .text
        .contains(&format!("{PUBLIC}/reset/{token}/cancel")));
    assert!(mail.text.contains("UTC"), "{}", mail.text);

    // A mail scanner opens the link, twice: that consumes nothing.
    for _ in 0..2 {
        let page = portal.send(get(&format!("/reset/{token}"), "")).await;
        assert_eq!(page.status(), 200);
        let html = body_text(page).await;
        assert!(html.contains("name=\"new_password\""), "{html}");
        // The current password is not known here: the form promises nothing about it.
        assert!(!html.contains("current password"), "{html}");
        assert!(
            !html.contains("name=\"code\""),
            "no code field without two-step sign-in"
        );
    }

    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!((status, body), (200, json!({"status": "changed"})));
    let (status, _) = portal.login("alice", NEW_PASSWORD).await;
    assert_eq!(status, 200, "TrueNAS holds the new password");
    let (status, _) = portal.get_json("/api/v1/me", &session).await;
    assert_eq!(status, 401, "the session from before the reset is revoked");

    // Used: the same answer as for a token that never existed.
    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token", "{body}");
    let page = portal.send(get(&format!("/reset/{token}"), "")).await;
    assert_eq!(page.status(), 401);

    audit(&portal, "reset_token_rejected", 2).await;
    let rows = audit(&portal, "change_notice_mailed", 1).await;
    assert!(rows.contains(&(
        "reset_requested".into(),
        "success".into(),
        "alice:sent".into()
    )));
    assert!(rows
        .iter()
        .any(|r| r.0 == "password_reset" && r.1 == "success"));
    assert!(rows.iter().any(|r| r.0 == "reset_token_rejected"));
    // The notice: what changed and from where, and no link that acts.
    let notice = mails(&fake, 2).await.remove(1);
    assert!(notice.subject.ends_with("Your NAS account was changed"));
    assert!(notice.text.contains("127.0.0.1"), "{}", notice.text);
    assert!(!notice.text.contains("http"), "{}", notice.text);
}

#[tokio::test]
async fn every_name_gets_the_same_answer_and_the_audit_knows_why() {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    for name in ["alice", "nobody-here", "ada", "nomail", "alice", "tess"] {
        let (status, body) = request(&portal, name).await;
        assert_eq!(
            (status, body),
            (202, json!({"status": "requested"})),
            "{name}"
        );
    }
    // The mails go out after the answers; TrueNAS goes down once they have.
    audit(&portal, "reset_requested", 6).await;
    fake.set_down(true);
    let (status, body) = request(&portal, "bob").await;
    assert_eq!(
        (status, body),
        (202, json!({"status": "requested"})),
        "TrueNAS down"
    );

    let rows = audit(&portal, "reset_requested", 7).await;
    // A row is written when its request's outcome is known: for a mail, after TrueNAS took it,
    // so rows of sent mails may come after later requests' rows. Compared as a set.
    let mut reasons: Vec<&str> = rows
        .iter()
        .filter(|r| r.0 == "reset_requested")
        .map(|r| r.2.as_str())
        .collect();
    reasons.sort_unstable();
    let mut expected = [
        "alice:sent",
        "nobody-here:unknown_user",
        "ada:excluded",
        "nomail:no_email",
        "alice:throttled",
        "tess:sent",
        "bob:mail_failed",
    ];
    expected.sort_unstable();
    assert_eq!(reasons, expected);
    fake.set_down(false);
    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 2, "{sent:?}");
    // TrueNAS' own second factor: told to ask the administrator, and no link at all.
    assert_eq!(sent[1].to, vec!["tess@example.org".to_string()]);
    assert!(sent[1].text.contains("two-factor"), "{}", sent[1].text);
    assert!(!sent[1].text.contains("/reset/"), "{}", sent[1].text);
}

#[tokio::test]
async fn known_and_unknown_names_take_the_same_time() {
    let fake = fake(true).await;
    let portal = start(&fake, &[("PASSGATE_RESET__MAIL_INTERVAL_SECS", "1")]).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for round in 0..9 {
        for (name, times) in [("alice", &mut known), ("nobody-here", &mut unknown)] {
            let started = Instant::now();
            let (status, _) = request(&portal, name).await;
            times.push(started.elapsed());
            assert_eq!(status, 202, "round {round}");
        }
    }
    known.sort();
    unknown.sort();
    let (a, b) = (known[4], unknown[4]);
    let gap = a.max(b) - a.min(b);
    assert!(
        gap < Duration::from_millis(150),
        "medians {a:?} and {b:?} differ by {gap:?}"
    );
}

#[tokio::test]
async fn forged_and_cancelled_links_are_refused_alike_and_logged_for_fail2ban() {
    let fake = fake(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("auth.log");
    let portal = start(
        &fake,
        &[("PASSGATE_LOG__FAIL2BAN_FILE", log.to_str().expect("utf8"))],
    )
    .await;
    let token = mailed_link(&portal, &fake, "bob").await;

    // A forged token (one character changed) finds nothing.
    let mut forged: Vec<char> = token.chars().collect();
    forged[10] = if forged[10] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let (status, body) = confirm(&portal, &forged, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token");

    // "This was not me": the cancel page has a button; opening it cancels nothing.
    let page = portal
        .send(get(&format!("/reset/{token}/cancel"), ""))
        .await;
    assert_eq!(page.status(), 200);
    let cookie = pair(&set_cookies(&page)[0]);
    let html = body_text(page).await;
    let csrf = csrf_field(&html);
    let page = portal.send(get(&format!("/reset/{token}"), "")).await;
    assert_eq!(
        page.status(),
        200,
        "still valid after opening the cancel page"
    );
    let cancelled = portal
        .send(form(
            "/reset/cancel",
            &cookie,
            &format!("csrf={csrf}&token={token}"),
        ))
        .await;
    assert_eq!(cancelled.status(), 200);
    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["code"], "invalid_token",
        "same answer as forged"
    );

    let rows = audit(&portal, "reset_token_rejected", 2).await;
    assert!(rows
        .iter()
        .any(|r| r.0 == "reset_cancelled" && r.2 == "bob:"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches("reset token invalid").count() >= 2 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = lines
        .lines()
        .find(|l| l.contains("reset token invalid"))
        .unwrap_or_else(|| panic!("no fail2ban line in {lines:?}"));
    assert!(
        line.contains(" passgate[")
            && line.ends_with(": reset token invalid; rhost=127.0.0.1 user=- reason=invalid_token"),
        "{line}"
    );
    assert!(
        !lines.contains(&token),
        "the token is not in the fail2ban file"
    );
}

#[tokio::test]
async fn a_policy_refusal_keeps_the_link_and_a_newer_link_voids_it() {
    let fake = fake(true).await;
    let portal = start(&fake, &[("PASSGATE_RESET__MAIL_INTERVAL_SECS", "1")]).await;
    request(&portal, "bob").await;
    let first = link_token(&mails(&fake, 1).await[0].text);
    let (status, body) = portal
        .json(
            "/api/v1/reset/confirm",
            None,
            json!({"token": first, "new_password": "short"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "policy_violation");
    let page = portal.send(get(&format!("/reset/{first}"), "")).await;
    assert_eq!(
        page.status(),
        200,
        "the link stays valid after a policy refusal"
    );

    // A second request, once the mail interval (1 s from the first mail's slot, which was
    // taken before the mail was seen) is over, replaces the first link. Exactly one: a third
    // would replace the second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = request(&portal, "bob").await;
    assert_eq!(status, 202);
    let second = link_token(&mails(&fake, 2).await[1].text);
    assert_ne!(first, second);
    let (status, _) = confirm(&portal, &first, None).await;
    assert_eq!(status, 401, "the older link is void");
    let (status, body) = confirm(&portal, &second, None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_password_change_voids_an_outstanding_link() {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    let token = mailed_link(&portal, &fake, "bob").await;
    let (_, body) = portal.login("bob", "bob-old-pass-1").await;
    let session = body["token"].as_str().expect("token").to_string();
    let (status, body) = portal
        .json(
            "/api/v1/password",
            Some(&session),
            json!({"current_password": "bob-old-pass-1", "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = confirm(&portal, &token, None).await;
    assert_eq!(status, 401, "the change voided the link");
    // The change is mailed to the user: what, when and from where.
    let notice = mails(&fake, 2).await.remove(1);
    assert_eq!(notice.to, ["bob@example.org"]);
    assert!(
        notice
            .text
            .contains("The password of your NAS account was changed."),
        "{}",
        notice.text
    );
    assert!(
        notice.text.contains("From the address: 127.0.0.1."),
        "{}",
        notice.text
    );
}

#[tokio::test]
async fn with_two_step_sign_in_the_link_needs_a_code() {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    let (_, body) = portal.login("bob", "bob-old-pass-1").await;
    let session = body["token"].as_str().expect("token").to_string();
    let (status, offer) = portal
        .json("/api/v1/totp/enroll", Some(&session), json!({}))
        .await;
    assert_eq!(status, 200, "{offer}");
    let secret = offer["secret"].as_str().expect("secret").to_string();
    let used = oath(&secret, -1).await;
    let (status, enrolled) = portal
        .json(
            "/api/v1/totp/confirm",
            Some(&session),
            json!({"code": used}),
        )
        .await;
    assert_eq!(status, 200, "{enrolled}");
    let backup = enrolled["backup_codes"][0]
        .as_str()
        .expect("code")
        .to_string();

    request(&portal, "bob").await;
    // The enrollment notice comes first, then the link.
    let token = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = fake.sent_mail().iter().find(|m| m.text.contains("/reset/")) {
                break link_token(&m.text);
            }
            assert!(Instant::now() < deadline, "no reset mail");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let page = body_text(portal.send(get(&format!("/reset/{token}"), "")).await).await;
    assert!(page.contains("name=\"code\""), "the form asks for the code");

    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_code");
    let (status, body) = confirm(&portal, &token, Some("000000")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_code");
    // The code that confirmed the enrollment was used once already: replay-guarded.
    let (status, body) = confirm(&portal, &token, Some(&used)).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = confirm(&portal, &token, Some(&backup)).await;
    assert_eq!(status, 200, "{body}");
    let rows = audit(&portal, "password_reset", 1).await;
    assert!(rows.iter().any(|r| r.0 == "totp_failed"), "{rows:?}");
}

#[tokio::test]
async fn a_relay_that_is_not_set_up_is_audited_and_leaves_no_link() {
    let fake = fake(false).await;
    let portal = start(&fake, &[]).await;
    let (status, _) = request(&portal, "alice").await;
    assert_eq!(status, 202);
    let rows = audit(&portal, "reset_requested", 1).await;
    assert!(
        rows.contains(&(
            "reset_requested".into(),
            "error".into(),
            "alice:mail_failed".into()
        )),
        "{rows:?}"
    );
    let options = SqliteConnectOptions::new().filename(portal.dir.path().join("data/passgate.db"));
    let mut conn = SqliteConnection::connect_with(&options).await.expect("db");
    let (tokens, detail): (i64, String) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM reset_tokens), \
         (SELECT detail FROM audit_events WHERE event = 'reset_requested')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(tokens, 0, "an unsent link is removed");
    assert!(
        detail.contains("outgoing mailserver"),
        "TrueNAS' reason: {detail}"
    );
}

#[tokio::test]
async fn nothing_of_a_token_is_kept_in_the_data_directory() {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    let token = mailed_link(&portal, &fake, "alice").await;
    let (status, _) = confirm(&portal, &token, Some("ignored")).await;
    assert_eq!(status, 200);
    audit(&portal, "password_reset", 1).await;
    let raw = URL_SAFE_NO_PAD.decode(&token).expect("base64url");
    for entry in walk(portal.dir.path()) {
        let bytes = std::fs::read(&entry).expect("read");
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{} holds the token",
            entry.display()
        );
        assert!(
            !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
            "{} holds the token's bytes",
            entry.display()
        );
    }
}

#[tokio::test]
async fn the_pages_work_without_javascript_in_german() {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    let login = body_text(portal.send(get("/login", "")).await).await;
    assert!(
        login.contains("href=\"/reset\""),
        "the sign-in page links to the reset"
    );
    let page = portal
        .send(support::pages::get_in("/reset", "", "de"))
        .await;
    let cookie = pair(&set_cookies(&page)[0]);
    let html = body_text(page).await;
    assert!(html.contains("Passwort vergessen?"), "{html}");
    let csrf = csrf_field(&html);
    let sent = portal
        .send(support::pages::form_in(
            "/reset",
            &cookie,
            &format!("csrf={csrf}&username=alice"),
            "de",
        ))
        .await;
    assert_eq!(sent.status(), 200);
    let sent = body_text(sent).await;
    assert!(sent.contains("Sehen Sie in Ihre E-Mails"), "{sent}");
    // A notice, not an error: screen readers announce it politely.
    assert!(
        sent.contains(r#"<p class="notice" role="status">"#) && !sent.contains("role=\"alert\""),
        "{sent}"
    );
    let bogus = portal
        .send(support::pages::get_in("/reset/not-a-token", &cookie, "de"))
        .await;
    assert_eq!(bogus.status(), 401);
    let bogus = body_text(bogus).await;
    assert!(
        bogus.contains(r#"<p class="error" role="alert">"#),
        "{bogus}"
    );
    let mail = mails(&fake, 1).await.remove(0);
    assert!(mail.subject.contains("zurücksetzen"), "{}", mail.subject);
    let token = link_token(&mail.text);

    let page = portal
        .send(support::pages::get_in(
            &format!("/reset/{token}"),
            &cookie,
            "de",
        ))
        .await;
    let html = body_text(page).await;
    let csrf = csrf_field(&html);
    let mismatch = portal
        .send(support::pages::form_in(
            "/reset/confirm",
            &cookie,
            &format!(
                "csrf={csrf}&token={token}&new_password={NEW_PASSWORD}&confirm_password=other"
            ),
            "de",
        ))
        .await;
    assert_eq!(mismatch.status(), 400);
    let done = portal
        .send(support::pages::form_in(
            "/reset/confirm",
            &cookie,
            &format!(
                "csrf={csrf}&token={token}&new_password={NEW_PASSWORD}&confirm_password={NEW_PASSWORD}"
            ),
            "de",
        ))
        .await;
    assert_eq!(done.status(), 200);
    assert!(body_text(done).await.contains("Passwort geändert"));
    // Without the CSRF pair the form is refused before anything runs.
    let forged = portal
        .send(
            Request::post("/reset/cancel")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={token}")))
                .expect("request"),
        )
        .await;
    assert_eq!(forged.status(), 403);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A password changed in TrueNAS itself after the link was sent voids the link: it belonged
/// to a password that no longer exists.
#[tokio::test]
async fn a_password_changed_in_truenas_after_the_mail_voids_the_link() {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    let token = mailed_link(&portal, &fake, "bob").await;
    // TrueNAS keeps whole seconds: wait until the clock is in a second after the link's.
    let mailed = support::clock::now_ms();
    while support::clock::now_ms() / 1000 <= mailed / 1000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.set_password_age("bob", 0);
    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token");
    let rows = audit(&portal, "password_reset_failed", 1).await;
    assert!(
        rows.contains(&(
            "password_reset_failed".into(),
            "failure".into(),
            "bob:password changed since the link was sent".into()
        )),
        "{rows:?}"
    );
}

/// The real server at debug level: the token is in no log line, in no file of the data
/// directory and in no fail2ban line, from the request to the used link.
#[tokio::test]
async fn nothing_of_a_token_reaches_the_logs() {
    use support::server_process::{ServeOptions, ServerProcess};
    let fake = fake(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let f2b = dir.path().join("auth.log");
    let options = ServeOptions {
        log: Some(String::from("debug")),
        ..ServeOptions::default()
    }
    .server_key(&format!("public_url = {PUBLIC:?}"))
    .env("PASSGATE_RESET__ENABLED", "true")
    .env("PASSGATE_LOG__FAIL2BAN_FILE", f2b.to_str().expect("utf8"));
    let server = ServerProcess::start(&fake, options).await;
    let client = reqwest::Client::new();
    let base = server.base_url();
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body).send();
    let answer = post("/api/v1/reset", json!({"username": "alice"}))
        .await
        .expect("request");
    assert_eq!(answer.status(), 202);
    let token = link_token(&mails(&fake, 1).await[0].text);
    for _ in 0..2 {
        let page = client
            .get(format!("{base}/reset/{token}"))
            .send()
            .await
            .expect("open");
        assert_eq!(page.status(), 200);
    }
    let answer = post(
        "/api/v1/reset/confirm",
        json!({"token": token, "new_password": NEW_PASSWORD}),
    )
    .await
    .expect("confirm");
    assert_eq!(answer.status(), 200);
    let again = client
        .get(format!("{base}/reset/{token}"))
        .send()
        .await
        .expect("open");
    assert_eq!(again.status(), 401, "used");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&f2b)
        .unwrap_or_default()
        .contains("reset token invalid")
    {
        assert!(Instant::now() < deadline, "no fail2ban line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.stderr();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "debug logging is on: {log}"
    );
    assert!(!log.contains(&token), "the token is in the log");
    assert!(!std::fs::read_to_string(&f2b).expect("f2b").contains(&token));
    let raw = URL_SAFE_NO_PAD.decode(&token).expect("base64url");
    for entry in walk(&server.data_dir()) {
        let bytes = std::fs::read(&entry).expect("read");
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes())
                && !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
            "{} holds the token",
            entry.display()
        );
    }
}

/// The limiter's refusal of a link records the route, never the token in the path.
#[tokio::test]
async fn a_refused_link_is_audited_without_its_token() {
    let fake = fake(true).await;
    let portal = start(&fake, &[("PASSGATE_RATE_LIMIT__LOGIN_ATTEMPTS", "1")]).await;
    let token = "A".repeat(43);
    let first = portal.send(get(&format!("/reset/{token}"), "")).await;
    assert_eq!(first.status(), 401);
    let second = portal.send(get(&format!("/reset/{token}"), "")).await;
    assert_eq!(second.status(), 429);
    audit(&portal, "rate_limited", 1).await;
    let options = SqliteConnectOptions::new().filename(portal.dir.path().join("data/passgate.db"));
    let mut conn = SqliteConnection::connect_with(&options).await.expect("db");
    let detail: String =
        sqlx::query_scalar("SELECT detail FROM audit_all WHERE event = 'rate_limited'")
            .fetch_one(&mut conn)
            .await
            .expect("row");
    assert!(detail.contains("\"/reset/{token}\""), "{detail}");
    let all: Vec<String> = sqlx::query_scalar("SELECT detail FROM audit_all")
        .fetch_all(&mut conn)
        .await
        .expect("rows");
    assert!(all.iter().all(|d| !d.contains(&token)), "{all:?}");
}

/// TrueNAS refusing the password (422, its words) or being down (503) keeps the link: the
/// user tries again with the same mail.
/// Confirms until the answer is not the outage (the client may need a reconnect).
async fn confirm_after_outage(portal: &Portal, token: &str, new_password: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = json!({"token": token, "new_password": new_password});
        let (status, body) = portal.json("/api/v1/reset/confirm", None, body).await;
        if status != 503 {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "TrueNAS did not come back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// bob's link, used once: TrueNAS applied the password and its answer never arrived, so the
/// user was told to try again.
async fn answer_lost() -> (FakeTrueNas, Portal, String) {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    let token = mailed_link(&portal, &fake, "bob").await;
    fake.lose_next_set_password_answer();
    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!(status, 503, "{body}");
    (fake, portal, token)
}

#[tokio::test]
async fn a_change_whose_answer_was_lost_completes_with_the_same_link() {
    // Trying again must not call the link void.
    let (fake, portal, token) = answer_lost().await;
    let (status, body) = confirm_after_outage(&portal, &token, NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(portal.login("bob", NEW_PASSWORD).await.0, 200);
    assert_eq!(portal.login("bob", "bob-old-pass-1").await.0, 401);
    let calls = fake.calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "user.set_password").count(),
        1,
        "the second try set nothing: {calls:?}"
    );
    let rows = audit(&portal, "password_reset", 1).await;
    assert!(
        rows.contains(&("password_reset".into(), "success".into(), "bob:".into())),
        "{rows:?}"
    );
    // Spent, as after any reset.
    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn after_a_lost_answer_another_password_does_not_confirm_it() {
    let (_fake, portal, token) = answer_lost().await;

    // Whoever tries the link next with another password learns nothing and sets nothing:
    // the password did change, so the link is void.
    let (status, body) = confirm_after_outage(&portal, &token, "Another-Horse-Battery-2027?").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(
        portal.login("bob", "Another-Horse-Battery-2027?").await.0,
        401
    );
    assert_eq!(portal.login("bob", NEW_PASSWORD).await.0, 200);
    let (status, _) = confirm(&portal, &token, None).await;
    assert_eq!(status, 401, "void for good");
}

#[tokio::test]
async fn truenas_refusals_and_outages_keep_the_link() {
    let fake = fake(true).await;
    let portal = start(&fake, &[]).await;
    let token = mailed_link(&portal, &fake, "bob").await;

    fake.fail_next_set_password(vec![String::from(
        "Password was used recently; choose a different one",
    )]);
    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "rejected_by_truenas");
    assert!(
        body["error"]["details"]
            .to_string()
            .contains("used recently"),
        "{body}"
    );

    fake.set_down(true);
    let (status, body) = confirm(&portal, &token, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "backend_unavailable");
    fake.set_down(false);

    // The same link still works once TrueNAS is back (the client may need a reconnect).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = confirm(&portal, &token, None).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only the outage may still show: {body}");
        assert!(Instant::now() < deadline, "TrueNAS did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = audit(&portal, "password_reset", 1).await;
    assert!(
        rows.iter()
            .any(|r| r.0 == "password_reset_failed" && r.1 == "error"),
        "{rows:?}"
    );
    assert!(
        rows.contains(&(
            "password_reset_failed".into(),
            "failure".into(),
            "bob:rejected by TrueNAS".into()
        )),
        "{rows:?}"
    );
}
