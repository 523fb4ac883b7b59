//! Self-service SSH keys end to end: the portal in-process against the fake TrueNAS, which
//! keeps `sshpubkey` as a real `authorized_keys` file under each home, as middlewared does
//! (tests/support/fake_truenas/ssh_keys.rs). Keys are made by `ssh-keygen`, codes by
//! `oathtool`.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::ConnectOptions;
use support::clock::oath;
use support::fake_truenas::{FakeHome, FakeOptions, FakeTrueNas, FakeUser, Flavour, MailSettings};
use support::keygen::fingerprint;
use support::pages::{csrf_field, form_in, get_in, pair, set_cookies};
use support::portal::{self, body_text, Portal};

const PW: &str = "dana-password-1";

fn users() -> Vec<FakeUser> {
    let with_home = |name: &str, home: FakeHome| FakeUser {
        home,
        email: Some(format!("{name}@example.org")),
        ..FakeUser::new(name, PW)
    };
    vec![
        with_home("dana", FakeHome::Dataset),
        with_home("nohome", FakeHome::NotDataset),
        with_home("gone", FakeHome::Missing),
        with_home("outside", FakeHome::OutsideDataset),
        FakeUser {
            full_admin: true,
            ..with_home("root2", FakeHome::Dataset)
        },
    ]
}

async fn fake() -> FakeTrueNas {
    let mut options = FakeOptions::new(Flavour::V26);
    options.mail = Some(MailSettings::relay("127.0.0.1", 25, "nas@example.org"));
    FakeTrueNas::start_with(options, users()).await
}

async fn start(fake: &FakeTrueNas, extra: &[(&str, &str)]) -> Portal {
    let mut env = vec![("PASSGATE_SSH_KEYS__ENABLED", "true")];
    env.extend_from_slice(extra);
    portal::start(fake, "jsonrpc", r#"["truenas"]"#, &env).await
}

/// The public line of a new key.
fn keygen(dir: &Path, name: &str, args: &[&str]) -> String {
    support::keygen::keygen(dir, name, args).0
}

async fn session(portal: &Portal, user: &str) -> String {
    let (status, body) = portal.login(user, PW).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

/// Replaces the keys with `keys`, confirmed with the right password.
async fn replace(portal: &Portal, token: &str, keys: &str) -> (u16, Value) {
    put_keys(portal, token, json!({"current_password": PW, "keys": keys})).await
}

async fn put_keys(portal: &Portal, token: &str, body: Value) -> (u16, Value) {
    portal
        .json_with(Method::PUT, "/api/v1/ssh-keys", Some(token), body)
        .await
}

fn strings(value: &Value) -> Vec<String> {
    let mut out: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// (event, outcome, reason, detail) rows once `event` has `want` rows.
async fn audit(portal: &Portal, event: &str, want: usize) -> Vec<(String, String, String, String)> {
    let options = SqliteConnectOptions::new().filename(portal.dir.path().join("data/passgate.db"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = options.connect().await.expect("db");
        let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT event, outcome, reason, detail FROM audit_all ORDER BY ts_ms, id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        let rows: Vec<_> = rows
            .into_iter()
            .map(|(e, o, r, d)| (e, o, r.unwrap_or_default(), d))
            .collect();
        if rows.iter().filter(|r| r.0 == event).count() >= want {
            return rows;
        }
        assert!(Instant::now() < deadline, "{event} ×{want} not in {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many `ssh_keys_change_failed` occurrences with `reason` the store counts, once it
/// counts `want` (failures of one kind in one minute share a row).
async fn failures(portal: &Portal, reason: &str, want: i64) -> i64 {
    let options = SqliteConnectOptions::new().filename(portal.dir.path().join("data/passgate.db"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = options.connect().await.expect("db");
        let counted: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(count) FROM audit_all WHERE event = 'ssh_keys_change_failed' AND reason = ?",
        )
        .bind(reason)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_default();
        let counted = counted.unwrap_or(0);
        if counted >= want || Instant::now() >= deadline {
            return counted;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn keys_are_replaced_through_the_api_and_audited_by_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let a = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let b = keygen(dir.path(), "b", &["-t", "ecdsa", "-b", "384"]);
    let c = keygen(dir.path(), "c", &["-t", "rsa", "-b", "3072"]);
    let (fa, fb, fc) = (
        fingerprint(dir.path(), "a"),
        fingerprint(dir.path(), "b"),
        fingerprint(dir.path(), "c"),
    );
    let fake = fake().await;
    let portal = start(&fake, &[]).await;
    let token = session(&portal, "dana").await;

    let (status, listing) = portal.get_json("/api/v1/ssh-keys", &token).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(
        listing,
        json!({"keys": [], "other_lines": 0, "storable": true, "code_required": false, "max_keys": 10})
    );

    // Blank lines, comments and stray spaces are dropped; each key is written on its own.
    let text = format!("{a}\n\n   {b}   \n# my keys\n{c}\n");
    let (status, body) = replace(&portal, &token, &text).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        strings(&body["added"]),
        sorted(vec![fa.clone(), fb.clone(), fc.clone()])
    );
    assert_eq!(strings(&body["removed"]), Vec::<String>::new());
    assert_eq!(body["keys"][2]["bits"], 3072);
    assert_eq!(
        fake.authorized_keys("dana").as_deref(),
        Some(&*format!("{a}\n{b}\n{c}\n")),
        "the file holds the keys, re-encoded, one per line"
    );
    let (_, listing) = portal.get_json("/api/v1/ssh-keys", &token).await;
    let listed: Vec<&str> = listing["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [fa.as_str(), fb.as_str(), fc.as_str()]);
    assert_eq!(listing["keys"][1]["algorithm"], "ecdsa-sha2-nistp384");
    assert_eq!(listing["keys"][0]["comment"], "a@laptop");

    let (status, body) = replace(&portal, &token, &b).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        strings(&body["removed"]),
        sorted(vec![fa.clone(), fc.clone()])
    );
    assert_eq!(
        fake.authorized_keys("dana").as_deref(),
        Some(&*format!("{b}\n"))
    );

    let (status, body) = replace(&portal, &token, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(strings(&body["removed"]), vec![fb.clone()]);
    assert_eq!(fake.authorized_keys("dana"), None, "no keys: no file");

    let rows = audit(&portal, "ssh_keys_changed", 3).await;
    let changes: Vec<Value> = rows
        .iter()
        .filter(|r| r.0 == "ssh_keys_changed")
        .map(|r| serde_json::from_str(&r.3).unwrap())
        .collect();
    assert_eq!(
        strings(&changes[0]["added"]),
        sorted(vec![fa, fb.clone(), fc.clone()])
    );
    assert_eq!(strings(&changes[2]["removed"]), vec![fb]);
    assert_eq!(changes[0]["via"], "api");
    // Fingerprints only: no key body anywhere in the data directory.
    portal_files_lack(&portal, &a).await;

    // Each change is told to the user.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.sent_mail().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", fake.sent_mail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mail = &fake.sent_mail()[0];
    assert_eq!(mail.to, vec!["dana@example.org".to_string()]);
    assert!(mail.text.contains("SSH keys"), "{}", mail.text);
}

async fn portal_files_lack(portal: &Portal, key_line: &str) {
    let body = key_line.split_whitespace().nth(1).unwrap();
    // The audit writer commits in the background; what it has is enough to look at.
    for entry in walk(&portal.dir.path().join("data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(body.len()).any(|w| w == body.as_bytes()),
            "{} holds a key body",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn refused_lines_wrong_passwords_and_big_bodies_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let b = keygen(dir.path(), "b", &["-t", "ed25519"]);
    let c = keygen(dir.path(), "c", &["-t", "ed25519"]);
    let short = keygen(dir.path(), "short", &["-t", "rsa", "-b", "2048"]);
    let private = std::fs::read_to_string(dir.path().join("b")).unwrap();
    let fake = fake().await;
    let portal = start(&fake, &[("PASSGATE_SSH_KEYS__MAX_KEYS", "2")]).await;
    let token = session(&portal, "dana").await;
    let (status, _) = replace(&portal, &token, &a).await;
    assert_eq!(status, 200);
    let before = fake.authorized_keys("dana");

    let cases = [
        (format!("command=\"/bin/sh\" {b}"), "options"),
        (private, "private_key"),
        (short, "rsa_too_short"),
        (format!("{b}\n{b}"), "duplicate"),
        (format!("{a}\n{b}\n{c}"), "too_many"),
        (String::from("hello world"), "unreadable"),
        (format!("{b}\u{202e}"), "non_printable"),
        (format!("{b}\n{}", "#".repeat(17 * 1024)), "too_large"),
    ];
    for (keys, code) in cases {
        let (status, body) = replace(&portal, &token, &keys).await;
        assert_eq!(status, 400, "{code}: {body}");
        assert_eq!(body["error"]["code"], "keys_refused", "{body}");
        let details = body["error"]["details"].to_string();
        assert!(details.contains(&format!("{code}: ")), "{code}: {details}");
        assert_eq!(
            fake.authorized_keys("dana"),
            before,
            "{code} changed the file"
        );
    }

    let (status, body) = put_keys(
        &portal,
        &token,
        json!({"current_password": "wrong", "keys": b.clone()}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_credentials");
    assert_eq!(fake.authorized_keys("dana"), before);
    let rows = audit(&portal, "login_failed", 1).await;
    assert!(
        rows.iter()
            .any(|r| r.0 == "login_failed" && r.1 == "failure"),
        "{rows:?}"
    );

    // Over the keys routes' own body limit: refused before anything reads it.
    let huge = "A".repeat(70 * 1024);
    let (status, _) = replace(&portal, &token, &huge).await;
    assert_eq!(status, 413);
    // No session, no keys.
    let (status, _) = portal
        .json_with(
            Method::PUT,
            "/api/v1/ssh-keys",
            None,
            json!({"current_password": PW, "keys": b}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(fake.authorized_keys("dana"), before);
}

#[tokio::test]
async fn accounts_whose_keys_cannot_be_stored_are_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let a = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let fake = fake().await;
    let portal = start(&fake, &[]).await;
    for user in ["nohome", "gone", "outside"] {
        let token = session(&portal, user).await;
        let (status, listing) = portal.get_json("/api/v1/ssh-keys", &token).await;
        assert_eq!(status, 200, "{listing}");
        assert_eq!(listing["storable"], user != "nohome", "{user}: {listing}");
        let (status, body) = replace(&portal, &token, &a).await;
        // Never a success: /var/empty is known at once, a home off every dataset is TrueNAS'
        // refusal, and a home that does not exist only shows when the keys read back empty.
        assert_eq!(status, 409, "{user}: {body}");
        assert_eq!(body["error"]["code"], "keys_not_storable", "{user}");
        assert_eq!(fake.authorized_keys(user), None, "{user}");
    }
    let rows = audit(&portal, "ssh_keys_change_failed", 3).await;
    let reasons: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.0 == "ssh_keys_change_failed")
        .map(|r| (r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("failure", "no home directory"),
            ("error", "TrueNAS did not store the keys"),
            ("failure", "no home directory"),
        ]
    );
    assert!(fake.calls().iter().any(|c| c == "user.update"));
}

#[tokio::test]
async fn administrators_keep_their_keys_in_truenas_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let a = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let fake = fake().await;
    let portal = start(&fake, &[]).await;
    let token = session(&portal, "root2").await;
    let (status, body) = portal.get_json("/api/v1/ssh-keys", &token).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("not_for_account"))
    );
    let (status, body) = replace(&portal, &token, &a).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(fake.authorized_keys("root2"), None);

    let allowing = start(&fake, &[("PASSGATE_SSH_KEYS__ALLOW_ROLES", "true")]).await;
    let token = session(&allowing, "root2").await;
    let (status, body) = replace(&allowing, &token, &a).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.authorized_keys("root2").as_deref(),
        Some(&*format!("{a}\n"))
    );

    // Off: the routes do not exist.
    let off = start(&fake, &[("PASSGATE_SSH_KEYS__ENABLED", "false")]).await;
    let token = session(&off, "dana").await;
    let (status, _) = off.get_json("/api/v1/ssh-keys", &token).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn with_two_step_sign_in_a_fresh_code_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let a = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let fake = fake().await;
    let portal = start(&fake, &[]).await;
    let token = session(&portal, "dana").await;
    let (status, offer) = portal
        .json("/api/v1/totp/enroll", Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{offer}");
    let secret = offer["secret"].as_str().unwrap().to_owned();
    let (status, body) = portal
        .json(
            "/api/v1/totp/confirm",
            Some(&token),
            json!({"code": oath(&secret, -1).await}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, listing) = portal.get_json("/api/v1/ssh-keys", &token).await;
    assert_eq!(listing["code_required"], true);

    let put = |code: Option<String>| {
        let mut body = json!({"current_password": PW, "keys": a.clone()});
        if let Some(code) = code {
            body["code"] = json!(code);
        }
        put_keys(&portal, &token, body)
    };
    let (status, body) = put(None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("invalid_code"))
    );
    let (status, _) = put(Some(String::from("000000"))).await;
    assert_eq!(status, 401);
    // The code the enrollment used is spent.
    let (status, _) = put(Some(oath(&secret, -1).await)).await;
    assert_eq!(status, 401, "a replayed code");
    assert_eq!(fake.authorized_keys("dana"), None);
    let (status, body) = put(Some(oath(&secret, 0).await)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.authorized_keys("dana").as_deref(),
        Some(&*format!("{a}\n"))
    );
    let rows = audit(&portal, "ssh_keys_change_failed", 1).await;
    assert!(
        rows.iter()
            .any(|r| r.0 == "ssh_keys_change_failed" && r.2 == "code required"),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r.0 == "totp_failed"), "{rows:?}");
}

/// Signs dana in through the pages; the cookie header and the page's form token.
async fn page_session(portal: &Portal) -> String {
    let page = portal.send(get_in("/login", "", "de")).await;
    let csrf_cookie = pair(&set_cookies(&page)[0]);
    let token = csrf_field(&body_text(page).await);
    let response = portal
        .send(form_in(
            "/login",
            &csrf_cookie,
            &format!("csrf={token}&username=dana&password={PW}"),
            "de",
        ))
        .await;
    assert_eq!(response.status(), 303);
    let session = pair(&set_cookies(&response)[0]);
    format!("{csrf_cookie}; {session}")
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn the_page_adds_and_removes_keys_in_german_and_needs_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let a = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let b = keygen(dir.path(), "b", &["-t", "ecdsa", "-b", "256"]);
    let fa = fingerprint(dir.path(), "a");
    let fake = fake().await;
    let portal = start(&fake, &[]).await;
    let cookie = page_session(&portal).await;

    let password_page = body_text(portal.send(get_in("/password", &cookie, "de")).await).await;
    assert!(password_page.contains("href=\"/keys\""), "{password_page}");
    let page = body_text(portal.send(get_in("/keys", &cookie, "de")).await).await;
    assert!(page.contains("SSH-Schlüssel"), "{page}");
    assert!(page.contains("noch keine SSH-Schlüssel"), "{page}");
    let csrf = csrf_field(&page);

    // Without the form token nothing runs.
    let body = format!("add={}&current_password={PW}", encode(&a));
    let response = portal.send(form_in("/keys", &cookie, &body, "de")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(fake.authorized_keys("dana"), None);

    let body = format!("csrf={csrf}&add={}&current_password={PW}", encode(&a));
    let response = portal.send(form_in("/keys", &cookie, &body, "de")).await;
    assert_eq!(response.status(), 200);
    let page = body_text(response).await;
    assert!(page.contains("wurden gespeichert"), "{page}");
    assert!(
        page.contains(&fa),
        "the key is listed by fingerprint: {page}"
    );
    assert_eq!(
        fake.authorized_keys("dana").as_deref(),
        Some(&*format!("{a}\n"))
    );

    // A refused line is named in German, and what was typed stays in the field, escaped.
    let hostile = format!("from=\"<script>\" {b}");
    let body = format!("csrf={csrf}&add={}&current_password={PW}", encode(&hostile));
    let response = portal.send(form_in("/keys", &cookie, &body, "de")).await;
    assert_eq!(response.status(), 400);
    let page = body_text(response).await;
    assert!(page.contains("Zeile 1: Schlüsseloptionen"), "{page}");
    assert!(page.contains("from=&#34;&#60;script&#62;&#34;"), "{page}");
    assert!(!page.contains("<script>"));

    // A private key is refused and never sent back.
    let private = std::fs::read_to_string(dir.path().join("b")).unwrap();
    let body = format!("csrf={csrf}&add={}&current_password={PW}", encode(&private));
    let response = portal.send(form_in("/keys", &cookie, &body, "de")).await;
    assert_eq!(response.status(), 400);
    let page = body_text(response).await;
    assert!(page.contains("privaten Schlüssel"), "{page}");
    let secret_line = private.lines().nth(1).unwrap();
    assert!(
        !page.contains(secret_line),
        "the private key is echoed: {page}"
    );

    // Remove one and add another in one go.
    let body = format!(
        "csrf={csrf}&remove={}&add={}&current_password={PW}",
        encode(&fa),
        encode(&b)
    );
    let response = portal.send(form_in("/keys", &cookie, &body, "de")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        fake.authorized_keys("dana").as_deref(),
        Some(&*format!("{b}\n"))
    );

    // A wrong password is said on its field.
    let body = format!(
        "csrf={csrf}&remove={}&current_password=nope",
        encode(&fingerprint(dir.path(), "b"))
    );
    let response = portal.send(form_in("/keys", &cookie, &body, "de")).await;
    assert_eq!(response.status(), 401);
    let page = body_text(response).await;
    assert!(page.contains("nicht richtig"), "{page}");
    assert_eq!(
        fake.authorized_keys("dana").as_deref(),
        Some(&*format!("{b}\n"))
    );
    let rows = audit(&portal, "ssh_keys_changed", 2).await;
    assert!(
        rows.iter()
            .filter(|r| r.0 == "ssh_keys_changed")
            .all(|r| r.3.contains("\"via\":\"web\"")),
        "{rows:?}"
    );
}

/// Before 27, TrueNAS writes `authorized_keys` as root with a plain `open(…, 'w')`, through a
/// symlink, and then gives the file to the user: a link to root's keys would hand the NAS to
/// whoever made it. passgate looks first and writes nothing through a link.
#[tokio::test]
async fn a_link_in_the_home_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let a = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let fake = fake().await;
    let portal = start(&fake, &[]).await;
    let token = session(&portal, "dana").await;
    let home = fake.home("dana");
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("authorized_keys");
    std::fs::write(&victim, "root's own key\n").unwrap();

    // The file is a link.
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::os::unix::fs::symlink(&victim, home.join(".ssh/authorized_keys")).unwrap();
    let (status, body) = replace(&portal, &token, &a).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("unsafe_ssh_directory")),
        "{body}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's own key\n"
    );

    // The folder is a link.
    std::fs::remove_dir_all(home.join(".ssh")).unwrap();
    std::os::unix::fs::symlink(victim_dir.path(), home.join(".ssh")).unwrap();
    let (status, _) = replace(&portal, &token, &a).await;
    assert_eq!(status, 409);
    // Removing every key must not delete the file behind the link either.
    let (status, _) = replace(&portal, &token, "").await;
    assert_eq!(status, 409);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's own key\n"
    );

    // The file has a second name elsewhere in the dataset.
    std::fs::remove_file(home.join(".ssh")).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let other = home.join("elsewhere");
    std::fs::write(&other, "another file\n").unwrap();
    std::fs::hard_link(&other, home.join(".ssh/authorized_keys")).unwrap();
    let (status, _) = replace(&portal, &token, &a).await;
    assert_eq!(status, 409);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "another file\n");
    // Refusals of one kind are one row, counted.
    assert_eq!(failures(&portal, "link in ~/.ssh", 4).await, 4);

    // What passgate guards against: TrueNAS itself writes straight through the link.
    std::fs::remove_file(home.join(".ssh/authorized_keys")).unwrap();
    std::os::unix::fs::symlink(&victim, home.join(".ssh/authorized_keys")).unwrap();
    fake.set_authorized_keys("dana", &a);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), format!("{a}\n"));
}
