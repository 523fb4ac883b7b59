//! The TrueNAS client's behaviour under real conditions: a few logged-in connections,
//! reconnect after an outage, a silent peer, certificate trust, admin logout, and no cheap
//! path for unknown users.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::fake_truenas::{CertKind, FakeOptions, FakeTrueNas, FakeUser, Flavour};
use support::portal;

/// Logins of the portal's own connections with the API key (SCRAM takes two calls).
fn key_logins(fake: &FakeTrueNas) -> usize {
    let calls = fake.calls();
    let plain = calls
        .iter()
        .filter(|c| c.starts_with("auth.login_ex:API_KEY_PLAIN"))
        .count();
    let scram = calls
        .iter()
        .filter(|c| c.starts_with("auth.login_ex:SCRAM"))
        .count();
    plain + scram / 2
}

fn users() -> Vec<FakeUser> {
    let mut admin = FakeUser::new("ada", "ada-admin-password");
    admin.full_admin = true;
    let mut otp = FakeUser::new("otto", "otto-password");
    otp.twofactor = true;
    vec![FakeUser::new("alice", "alice-password"), admin, otp]
}

#[tokio::test]
async fn concurrent_requests_share_a_few_logged_in_connections() {
    let fake = FakeTrueNas::start(Flavour::V26, users()).await;
    // Generous waits: this counts logins; on a busy machine twelve 656,000-round hashes
    // in the fake can take longer than the default waits.
    let portal = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[
            ("PASSGATE_TRUENAS__TIMEOUT_SECS", "30"),
            ("PASSGATE_RATE_LIMIT__VERIFY_WAIT_SECS", "30"),
        ],
    )
    .await;
    let logins = (0..12).map(|i| {
        let portal = &portal;
        async move {
            let password = if i % 2 == 0 {
                "alice-password"
            } else {
                "wrong-password"
            };
            portal.login("alice", password).await.0
        }
    });
    let statuses = futures_util::future::join_all(logins).await;
    for (i, status) in statuses.iter().enumerate() {
        assert_eq!(*status, if i % 2 == 0 { 200 } else { 401 }, "request {i}");
    }
    let admin_logins = key_logins(&fake);
    // One admin connection plus at most four verification connections (pool.rs), each
    // logged in once: twelve sign-ins never cost twelve logins.
    assert!(
        (2..=5).contains(&admin_logins),
        "{admin_logins} key logins; calls: {:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn reconnects_and_logs_in_again_after_an_outage() {
    let fake = FakeTrueNas::start(Flavour::V26, users()).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    assert_eq!(portal.login("alice", "alice-password").await.0, 200);
    fake.set_down(true);
    assert_eq!(portal.login("alice", "alice-password").await.0, 503);
    fake.set_down(false);
    // Backoff after one failure is about a second; allow a few.
    let start = Instant::now();
    loop {
        let (status, _) = portal.login("alice", "alice-password").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(start.elapsed() < Duration::from_secs(10), "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let admin_logins = key_logins(&fake);
    assert!(
        admin_logins >= 2,
        "must log in again after reconnecting: {:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn a_silent_peer_times_out_as_unavailable() {
    // Accepts TCP connections and never says a word, like a hung NAS.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let fake = FakeTrueNas::start(Flavour::V26, users()).await;
    let url = format!("https://127.0.0.1:{port}");
    let portal = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[
            ("PASSGATE_TRUENAS__URL", &url),
            ("PASSGATE_TRUENAS__TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let start = Instant::now();
    let (status, body) = portal.login("alice", "alice-password").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    hold.abort();
}

#[tokio::test]
async fn certificate_trust_modes() {
    // TrueNAS' default certificate names only `localhost`: a CA file cannot make 127.0.0.1
    // verify, so this test serves the variant with the address in its SAN.
    let options = FakeOptions {
        cert: CertKind::LoopbackIp,
        ..FakeOptions::new(Flavour::V26)
    };
    let fake = FakeTrueNas::start_with(options, users()).await;
    // The fake's own certificate as a CA file: accepted (the host name 127.0.0.1 matches).
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.cert_pem()).expect("write");
    let ca_path = ca.to_str().expect("utf8");
    let with_ca = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[
            ("PASSGATE_TRUENAS__TLS_FINGERPRINT", ""),
            ("PASSGATE_TRUENAS__CA_FILE", ca_path),
        ],
    )
    .await;
    assert_eq!(with_ca.login("alice", "alice-password").await.0, 200);

    // Neither pin nor CA: the self-signed certificate is refused, so nothing is sent.
    let untrusted = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[("PASSGATE_TRUENAS__TLS_FINGERPRINT", "")],
    )
    .await;
    assert_eq!(untrusted.login("alice", "alice-password").await.0, 503);

    // A wrong pin is refused too.
    let wrong = format!("sha256:{}", "00".repeat(32));
    let pinned_wrong = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[("PASSGATE_TRUENAS__TLS_FINGERPRINT", &wrong)],
    )
    .await;
    assert_eq!(pinned_wrong.login("alice", "alice-password").await.0, 503);

    // Explicit opt-out of verification works (and is logged loudly).
    let insecure = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[
            ("PASSGATE_TRUENAS__TLS_FINGERPRINT", ""),
            ("PASSGATE_TRUENAS__INSECURE_SKIP_VERIFY", "true"),
        ],
    )
    .await;
    assert_eq!(insecure.login("alice", "alice-password").await.0, 200);
}

#[tokio::test]
async fn admin_sessions_on_the_nas_are_logged_out_and_2fa_users_get_a_code_step() {
    let fake = FakeTrueNas::start(Flavour::V26, users()).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    assert_eq!(portal.login("ada", "ada-admin-password").await.0, 200);
    let calls = fake.calls();
    let success_at = calls
        .iter()
        .rposition(|c| c.starts_with("auth.login_ex:PASSWORD_PLAIN"))
        .expect("password check");
    assert!(
        calls[success_at..].iter().any(|c| c == "auth.logout"),
        "SUCCESS must be followed by auth.logout: {calls:?}"
    );
    // A user with TrueNAS-side 2FA gets only a pending token: the code step comes next.
    let (status, body) = portal.login("otto", "otto-password").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "totp_required", "{body}");
    assert_eq!(body["factor"], "truenas", "{body}");
}

#[tokio::test]
async fn unknown_users_cost_a_real_check_on_the_nas() {
    let fake = FakeTrueNas::start(Flavour::V26, users()).await;
    let portal = portal::start(&fake, "jsonrpc", r#"["truenas"]"#, &[]).await;
    let before = fake.calls().len();
    assert_eq!(portal.login("no-such-user", "some-password").await.0, 401);
    let after = fake.calls();
    assert!(
        after[before..]
            .iter()
            .any(|c| c.starts_with("auth.login_ex:PASSWORD_PLAIN")),
        "an unknown user must take the same path as a known one: {after:?}"
    );
}

#[tokio::test]
async fn without_api_user_the_admin_session_uses_login_with_api_key() {
    let fake = FakeTrueNas::start(Flavour::V25_10, users()).await;
    let portal = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas","unixhash"]"#,
        &[("PASSGATE_TRUENAS__API_USER", "")],
    )
    .await;
    assert_eq!(portal.login("alice", "alice-password").await.0, 200);
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("auth.login_with_api_key")),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("auth.login_ex:API_KEY_PLAIN")),
        "{calls:?}"
    );
}
