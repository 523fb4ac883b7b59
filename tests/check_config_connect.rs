//! `passgate check-config --connect`, the real binary against the fake TrueNAS: each step in
//! plain words, and a non-zero exit at the first failure with the fix to apply.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::fake_truenas::{FakeOptions, FakeTrueNas, FakeUser, Flavour, MailSettings};

struct Run {
    ok: bool,
    out: String,
}

/// Writes `toml` to a config file and runs `passgate check-config --connect` on it.
async fn check(toml: &str) -> Run {
    check_with(toml, "").await
}

/// `server` holds more `key = value` lines for the `[server]` section.
async fn check_with(toml: &str, server: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("passgate.toml");
    let toml = format!(
        "{toml}\n[server]\n{server}\ndata_dir = {:?}\n[log]\nsyslog = \"off\"\n",
        dir.path().join("data")
    );
    std::fs::write(&file, toml).expect("write config");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_passgate"))
            .args(["check-config", "--connect", "--config"])
            .arg(&file)
            .env_remove("PASSGATE_CONFIG")
            .env("PASSGATE_LOG", "off")
            .output(),
    )
    .await
    .expect("check-config finished in time")
    .expect("run passgate");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Run {
        ok: output.status.success(),
        out,
    }
}

fn truenas_section(fake: &FakeTrueNas, trust: &str) -> String {
    format!(
        "[truenas]\nurl = {:?}\napi_key = {:?}\napi_user = {:?}\n{trust}\n[auth]\nverifiers = [\"truenas\", \"unixhash\"]\n",
        fake.url(),
        fake.api_key(),
        fake.api_user()
    )
}

fn pinned(fake: &FakeTrueNas) -> String {
    format!("tls_fingerprint = {:?}", fake.fingerprint())
}

async fn fake(flavour: Flavour, mail: bool) -> FakeTrueNas {
    let mut options = FakeOptions::new(flavour);
    if mail {
        options.mail = Some(MailSettings::relay(
            "smtp.example.org",
            587,
            "nas@example.org",
        ));
    }
    FakeTrueNas::start_with(options, vec![FakeUser::new("alice", "alice-password")]).await
}

#[tokio::test]
async fn every_step_passes_on_a_good_configuration() {
    let fake = fake(Flavour::V26, true).await;
    let run = check(&truenas_section(&fake, &pinned(&fake))).await;
    println!("{}", run.out);
    assert!(run.ok, "{}", run.out);
    for expected in [
        "[ok]   TLS: ",
        "pinned by truenas.tls_fingerprint",
        "[ok]   API: JSON-RPC 2.0",
        "[ok]   API key login: SCRAM-SHA-512 as truenas_admin (the key never crossed the wire); TrueNAS 26.04",
        "[ok]   Key owner truenas_admin is FULL_ADMIN; user.query returns password hashes",
        "[ok]   Mail: TrueNAS sends mail through smtp.example.org:587",
        "works against this TrueNAS",
    ] {
        assert!(run.out.contains(expected), "missing {expected:?} in:\n{}", run.out);
    }
    assert!(!run.out.contains(fake.api_key()), "the key was printed");
}

#[tokio::test]
async fn on_25_10_the_plain_key_login_is_named_and_missing_mail_is_a_warning() {
    let fake = fake(Flavour::V25_10, false).await;
    let run = check(&truenas_section(&fake, &pinned(&fake))).await;
    assert!(run.ok, "{}", run.out);
    assert!(
        run.out.contains("API key login: API_KEY_PLAIN as truenas_admin (the key was sent inside TLS); TrueNAS 25.10"),
        "{}",
        run.out
    );
    assert!(
        run.out
            .contains("[warn] Mail: TrueNAS has no outgoing mail server"),
        "{}",
        run.out
    );
}

/// With reset by mail on, a relay that is not set up is a failure, not a warning.
#[tokio::test]
async fn reset_by_mail_needs_the_relay() {
    let fake = fake(Flavour::V26, false).await;
    let toml = format!(
        "{}\n[reset]\nenabled = true\n",
        truenas_section(&fake, &pinned(&fake))
    );
    let run = check_with(&toml, "public_url = \"https://nas.example\"").await;
    assert!(!run.ok, "{}", run.out);
    assert!(
        run.out
            .contains("[FAIL] Mail: TrueNAS has no outgoing mail server")
            && run.out.contains("reset.enabled needs it"),
        "{}",
        run.out
    );
}

/// TrueNAS' default certificate names only localhost: as a CA file it fails on the name, and
/// the report gives the pin to use instead.
#[tokio::test]
async fn the_default_certificate_as_a_ca_file_fails_on_its_name_and_offers_the_pin() {
    let fake = fake(Flavour::V26, true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.cert_pem()).expect("write ca");
    let run = check(&truenas_section(&fake, &format!("ca_file = {ca:?}"))).await;
    println!("{}", run.out);
    assert!(!run.ok, "{}", run.out);
    assert!(
        run.out.contains("[FAIL] TLS: certificate name mismatch"),
        "{}",
        run.out
    );
    assert!(run.out.contains("DNS:localhost"), "{}", run.out);
    assert!(
        run.out
            .contains(&format!("tls_fingerprint = \"{}\"", fake.fingerprint())),
        "{}",
        run.out
    );
    assert!(
        !run.out.contains("API key login"),
        "stops at the first failure: {}",
        run.out
    );
}

#[tokio::test]
async fn a_wrong_pin_names_the_presented_one() {
    let fake = fake(Flavour::V26, true).await;
    let wrong = format!("tls_fingerprint = \"sha256:{}\"", "ab".repeat(32));
    let run = check(&truenas_section(&fake, &wrong)).await;
    assert!(!run.ok, "{}", run.out);
    assert!(run.out.contains("[FAIL] TLS: "), "{}", run.out);
    assert!(run.out.contains("pin"), "{}", run.out);
    assert!(run.out.contains(&fake.fingerprint()), "{}", run.out);
}

#[tokio::test]
async fn a_refused_key_and_a_dead_smb_host_fail_their_steps() {
    let fake = fake(Flavour::V26, true).await;
    let section = truenas_section(&fake, &pinned(&fake)).replace(fake.api_key(), "1-wrongkey");
    let run = check(&section).await;
    assert!(!run.ok, "{}", run.out);
    assert!(
        run.out.contains("[FAIL] API key login: refused"),
        "{}",
        run.out
    );

    // Nothing listens on this port: the SMB step says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let section = truenas_section(&fake, &pinned(&fake)).replace(
        "verifiers = [\"truenas\", \"unixhash\"]",
        &format!(
            "verifiers = [\"truenas\", \"smb\"]\nsmb_host = \"127.0.0.1\"\nsmb_port = {closed}"
        ),
    );
    let run = check(&section).await;
    assert!(!run.ok, "{}", run.out);
    assert!(run.out.contains("[ok]   Key owner"), "{}", run.out);
    assert!(
        run.out.contains(&format!("[FAIL] SMB: 127.0.0.1:{closed}")),
        "{}",
        run.out
    );
}

/// A server that cannot prove it knows the key (a wrong SCRAM server signature) is refused.
#[tokio::test]
async fn a_scram_server_that_cannot_sign_is_refused() {
    let mut options = FakeOptions::new(Flavour::V26);
    options.scram_wrong_signature = true;
    let fake =
        FakeTrueNas::start_with(options, vec![FakeUser::new("alice", "alice-password")]).await;
    let run = check(&truenas_section(&fake, &pinned(&fake))).await;
    assert!(!run.ok, "{}", run.out);
    assert!(
        run.out.contains(
            "[FAIL] API key login: refused: SCRAM: the server could not prove it knows the API key"
        ),
        "{}",
        run.out
    );
}
