//! The mail the CLI sends, from the real binary against the fake TrueNAS (its `mail.send`
//! delivers): `passgate notify expiring` with password aging on (`system.security`
//! `max_password_age`), and the change notice of `passgate totp reset`.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use serde_json::json;
use support::clock::oath;
use support::fake_truenas::{FakeOptions, FakeTrueNas, FakeUser, Flavour, MailSettings};
use support::portal;

fn aged(name: &str, days: u32, email: bool) -> FakeUser {
    let mut user = FakeUser::new(name, &format!("{name}-pass-1234"));
    user.password_age_days = days;
    user.email = email.then(|| format!("{name}@example.org"));
    user
}

/// Runs `passgate notify expiring` with the portal's own data directory; (success, output).
async fn notify(fake: &FakeTrueNas, data: &Path, dry_run: bool) -> (bool, String) {
    let mut args = vec!["notify", "expiring"];
    if dry_run {
        args.push("--dry-run");
    }
    passgate(fake, data, &args).await
}

/// Runs the binary with a configuration for `fake` and the portal's data directory.
async fn passgate(fake: &FakeTrueNas, data: &Path, args: &[&str]) -> (bool, String) {
    let file = data.parent().expect("parent").join("notify.toml");
    let toml = format!(
        "[truenas]\nurl = {:?}\napi_key = {:?}\napi_user = {:?}\ntls_fingerprint = {:?}\n\
         [server]\ndata_dir = {:?}\npublic_url = \"https://nas.example\"\n\
         [log]\nsyslog = \"off\"\n[notify]\nexpiry_days = [14, 3]\nlanguage = \"de\"\n",
        fake.url(),
        fake.api_key(),
        fake.api_user(),
        fake.fingerprint(),
        data
    );
    std::fs::write(&file, toml).expect("config");
    let mut args = args.to_vec();
    let file = file.to_str().expect("utf8").to_string();
    args.extend(["--config", &file]);
    // Async: the fake TrueNAS answers on this test's own runtime.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_passgate"))
        .args(&args)
        .env_remove("PASSGATE_CONFIG")
        .env("PASSGATE_LOG", "off")
        .output()
        .await
        .expect("run passgate");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), out)
}

fn status_of<'a>(out: &'a str, user: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(user))
        .and_then(|l| l.split_whitespace().last())
}

#[tokio::test]
async fn each_threshold_is_mailed_once_per_password() {
    let mut options = FakeOptions::new(Flavour::V26);
    options.max_password_age = Some(90);
    options.mail = Some(MailSettings::relay("127.0.0.1", 25, "nas@example.org"));
    let fake = FakeTrueNas::start_with(
        options,
        vec![
            aged("dave", 80, true),
            aged("erin", 88, true),
            aged("fred", 10, true),
            aged("gina", 85, false),
        ],
    )
    .await;
    // A server start creates the database and the secret the command shares with it.
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    let data = portal.dir.path().join("data");

    let (ok, out) = notify(&fake, &data, true).await;
    assert!(ok, "{out}");
    assert_eq!(status_of(&out, "dave"), Some("would_send"), "{out}");
    assert_eq!(status_of(&out, "erin"), Some("would_send"), "{out}");
    assert_eq!(status_of(&out, "gina"), Some("no_email"), "{out}");
    assert_eq!(status_of(&out, "fred"), None, "80 days left: not yet");
    assert!(fake.sent_mail().is_empty(), "a dry run sends nothing");

    let (ok, out) = notify(&fake, &data, false).await;
    assert!(ok, "{out}");
    assert_eq!(status_of(&out, "dave"), Some("sent"), "{out}");
    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let to_dave = sent
        .iter()
        .find(|m| m.to == ["dave@example.org"])
        .expect("dave's reminder");
    assert!(
        to_dave.subject.ends_with("läuft in 10 Tagen ab"),
        "{}",
        to_dave.subject
    );
    assert!(
        to_dave.text.contains("https://nas.example/login"),
        "{}",
        to_dave.text
    );

    // Once per threshold: a second pass mails nobody.
    let (ok, out) = notify(&fake, &data, false).await;
    assert!(ok, "{out}");
    assert_eq!(status_of(&out, "dave"), Some("already_sent"), "{out}");
    assert_eq!(fake.sent_mail().len(), 2);

    // Closer to expiry, the next threshold is mailed once more.
    fake.set_password_age("dave", 88);
    let (ok, out) = notify(&fake, &data, false).await;
    assert!(ok, "{out}");
    assert_eq!(status_of(&out, "dave"), Some("sent"), "{out}");
    let sent = fake.sent_mail();
    assert_eq!(sent.len(), 3);
    assert!(
        sent[2].subject.ends_with("in 2 Tagen ab"),
        "{}",
        sent[2].subject
    );
}

#[tokio::test]
async fn an_admin_reset_of_two_step_sign_in_is_mailed_to_the_user() {
    let mut options = FakeOptions::new(Flavour::V26);
    options.mail = Some(MailSettings::relay("127.0.0.1", 25, "nas@example.org"));
    let fake = FakeTrueNas::start_with(options, vec![aged("hana", 1, true)]).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    let (_, body) = portal.login("hana", "hana-pass-1234").await;
    let session = body["token"].as_str().expect("token").to_string();
    let (_, offer) = portal
        .json("/api/v1/totp/enroll", Some(&session), json!({}))
        .await;
    let code = oath(offer["secret"].as_str().expect("secret"), 0).await;
    let (status, body) = portal
        .json(
            "/api/v1/totp/confirm",
            Some(&session),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let data = portal.dir.path().join("data");
    let (ok, out) = passgate(&fake, &data, &["totp", "reset", "hana"]).await;
    assert!(ok, "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let notice = loop {
        let sent = fake.sent_mail();
        if let Some(m) = sent.iter().find(|m| m.text.contains("zurückgesetzt")) {
            break m.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no notice in {sent:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(notice.to, ["hana@example.org"]);
    assert!(
        notice.text.contains("Konsole der Administration"),
        "{}",
        notice.text
    );
    assert!(!notice.text.contains("http"), "{}", notice.text);
}
