use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::keys::Keys;

/// A step boundary, so `T0 + 30 * n` is the start of step `T0 / 30 + n`.
const T0: u64 = 56_666_667 * 30;

struct Fixture {
    totp: Arc<Totp>,
    pool: SqlitePool,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn settings(max_failures: u32) -> TotpSettings {
    TotpSettings {
        max_failures,
        ..TotpSettings::default()
    }
}

async fn fixture_with(settings: TotpSettings) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let pool = crate::db::open(&path).await.expect("db");
    let keys = Keys::derive(&SecretString::from("k".repeat(40)));
    Fixture {
        totp: Arc::new(Totp::new(pool.clone(), keys.totp_key(), settings)),
        pool,
        path,
        _dir: dir,
    }
}

/// A generous attempt limit, for tests about something else.
async fn fixture() -> Fixture {
    fixture_with(settings(1000)).await
}

fn s(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

fn secret_of(offer: &EnrollmentOffer) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(offer.secret_base32.expose_secret())
        .expect("base32")
        .as_ref()
        .to_vec()
}

/// `code` sent for alice by `n` tasks at once, as `n` simultaneous requests would.
async fn verified_concurrently(
    totp: &Arc<Totp>,
    code: &str,
    now: u64,
    n: usize,
) -> Vec<Result<Verified, TotpError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let t = Arc::clone(totp);
            let code = code.to_owned();
            tokio::spawn(async move { t.verify("alice", &s(&code), now).await })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.expect("join"));
    }
    results
}

/// Enrolls and confirms at `now`; the secret and the backup codes.
async fn enrolled(t: &Totp, user: &str, now: u64) -> (Vec<u8>, BackupCodes) {
    let offer = t.begin_enrollment(user, None, now).await.expect("begin");
    let secret = secret_of(&offer);
    let codes = t
        .confirm_enrollment(user, &s(&code_at(&secret, now)), now)
        .await
        .expect("confirm");
    (secret, codes)
}

async fn verify(t: &Totp, user: &str, code: &str, now: u64) -> Result<Verified, TotpError> {
    t.verify(user, &s(code), now).await
}

fn is_invalid<T>(r: &Result<T, TotpError>) -> bool {
    matches!(r, Err(TotpError::InvalidCode))
}

fn is_replayed<T>(r: &Result<T, TotpError>) -> bool {
    matches!(r, Err(TotpError::Replayed))
}

const TOTP_OK: Verified = Verified {
    method: VerifyMethod::Totp,
};

#[tokio::test]
async fn enroll_confirm_verify() {
    let f = fixture().await;
    let t = &f.totp;
    assert!(matches!(
        verify(t, "alice", "123456", T0).await,
        Err(TotpError::NotEnrolled)
    ));
    let offer = t.begin_enrollment("alice", None, T0).await.expect("begin");
    let secret = secret_of(&offer);
    assert_eq!(secret.len(), 20);
    // Pending is not enabled: its codes do not sign in.
    assert!(matches!(
        verify(t, "alice", &code_at(&secret, T0), T0).await,
        Err(TotpError::NotEnrolled)
    ));
    let codes = t
        .confirm_enrollment("alice", &s(&code_at(&secret, T0)), T0)
        .await
        .expect("confirm");
    assert_eq!(codes.0.len(), 10);
    let status = t.status("alice").await.expect("status");
    assert!(status.enabled);
    assert_eq!(status.enabled_at, Some(T0 as i64));
    assert_eq!(status.backup_codes_left, 10);
    assert!(!status.pending);
    let now = T0 + 30;
    assert_eq!(
        verify(t, "alice", &code_at(&secret, now), now)
            .await
            .expect("valid"),
        TOTP_OK
    );
    assert_eq!(
        t.status("alice").await.expect("status").last_used_at,
        Some(now as i64)
    );
    // A second confirm has nothing to confirm.
    assert!(matches!(
        t.confirm_enrollment("alice", &s(&code_at(&secret, now)), now)
            .await,
        Err(TotpError::NoPendingEnrollment)
    ));
    assert_eq!(t.turns.len(), 0, "no per-user entries left behind");
}

#[tokio::test]
async fn one_step_of_skew_either_way() {
    let f = fixture().await;
    let t = &f.totp;
    let (secret, _) = enrolled(t, "alice", T0).await;
    let now = T0 + 300;
    assert!(is_invalid(
        &verify(t, "alice", &code_at(&secret, now + 60), now).await
    ));
    assert!(is_invalid(
        &verify(t, "alice", &code_at(&secret, now - 60), now).await
    ));
    assert_eq!(
        verify(t, "alice", &code_at(&secret, now - 30), now)
            .await
            .expect("-1"),
        TOTP_OK
    );
    assert_eq!(
        verify(t, "alice", &code_at(&secret, now + 30), now)
            .await
            .expect("+1"),
        TOTP_OK
    );
    // Any second within the step counts as that step.
    assert_eq!(
        verify(t, "alice", &code_at(&secret, now + 90), now + 89)
            .await
            .expect("late in the step"),
        TOTP_OK
    );
}

#[tokio::test]
async fn replays_are_refused() {
    let f = fixture().await;
    let t = &f.totp;
    let (secret, _) = enrolled(t, "alice", T0).await;
    // The confirming code cannot be used again at sign-in.
    assert!(is_replayed(
        &verify(t, "alice", &code_at(&secret, T0), T0).await
    ));
    let now = T0 + 60;
    let code = code_at(&secret, now);
    assert_eq!(
        verify(t, "alice", &code, now).await.expect("first"),
        TOTP_OK
    );
    assert!(is_replayed(&verify(t, "alice", &code, now).await));
    assert!(is_replayed(&verify(t, "alice", &code, now + 30).await));
    // An earlier step, still inside the window.
    assert!(is_replayed(
        &verify(t, "alice", &code_at(&secret, now - 30), now).await
    ));
    // The next step is fine.
    assert_eq!(
        verify(t, "alice", &code_at(&secret, now + 30), now + 30)
            .await
            .expect("next"),
        TOTP_OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_code_sent_concurrently_passes_once() {
    let f = fixture().await;
    let (secret, _) = enrolled(&f.totp, "alice", T0).await;
    let now = T0 + 30;
    let code = code_at(&secret, now);
    let mut ok = 0;
    for result in verified_concurrently(&f.totp, &code, now, 8).await {
        match result {
            Ok(v) => {
                assert_eq!(v, TOTP_OK);
                ok += 1;
            }
            Err(TotpError::Replayed) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
}

/// The compare-and-set itself, without the per-user serialisation in front of it (as two
/// processes sharing the database would see it).
#[tokio::test]
async fn step_and_backup_code_updates_are_compare_and_set() {
    let f = fixture().await;
    enrolled(&f.totp, "alice", T0).await;
    let row = store::load(&f.pool, "alice")
        .await
        .expect("load")
        .expect("row");
    let active = row.active.expect("active");
    let step = row.last_step + 1;
    let (a, b) = tokio::join!(
        store::advance_step(&f.pool, "alice", &active, step, 1),
        store::advance_step(&f.pool, "alice", &active, step, 1),
    );
    assert_eq!(winners(a, b), 1);
    // Not against a different active secret either.
    assert!(
        !store::advance_step(&f.pool, "alice", b"other", step + 1, 1)
            .await
            .expect("cas")
    );

    let (slot, hash) = store::unused_codes(&f.pool, "alice")
        .await
        .expect("codes")
        .remove(0);
    let (a, b) = tokio::join!(
        store::use_code(&f.pool, "alice", slot, &hash, 1),
        store::use_code(&f.pool, "alice", slot, &hash, 1),
    );
    assert_eq!(winners(a, b), 1);
}

/// How many of two racing compare-and-set updates won.
fn winners(a: Result<bool, sqlx::Error>, b: Result<bool, sqlx::Error>) -> usize {
    [a.expect("a"), b.expect("b")]
        .iter()
        .filter(|&&won| won)
        .count()
}

#[tokio::test]
async fn backup_codes_work_once_each() {
    let f = fixture().await;
    let t = &f.totp;
    let (_, codes) = enrolled(t, "alice", T0).await;
    for code in &codes.0 {
        let shown = code.expose_secret();
        assert_eq!(shown.len(), 14, "abcd-efgh-jkmn");
        assert!(shown
            .bytes()
            .all(|b| b == b'-' || b"abcdefghjkmnpqrstuvwxyz".contains(&b)));
    }
    let first = codes.0[0].expose_secret();
    assert_eq!(
        verify(t, "alice", first, T0).await.expect("first use"),
        Verified {
            method: VerifyMethod::BackupCode { remaining: 9 }
        }
    );
    assert!(is_invalid(&verify(t, "alice", first, T0).await));
    // Input is normalised: case, spaces and dashes do not matter.
    let second = codes.0[1].expose_secret().to_uppercase().replace('-', " ");
    assert_eq!(
        verify(t, "alice", &second, T0).await.expect("second"),
        Verified {
            method: VerifyMethod::BackupCode { remaining: 8 }
        }
    );
    assert_eq!(
        t.status("alice").await.expect("status").backup_codes_left,
        8
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backup_code_sent_concurrently_passes_once() {
    let f = fixture().await;
    let (_, codes) = enrolled(&f.totp, "alice", T0).await;
    let code = codes.0[3].expose_secret();
    let mut ok = 0;
    for result in verified_concurrently(&f.totp, code, T0, 3).await {
        match result {
            Ok(_) => ok += 1,
            Err(TotpError::InvalidCode | TotpError::Replayed) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn backup_codes_and_totp_codes_do_not_mix() {
    let f = fixture().await;
    let t = &f.totp;
    let (secret, codes) = enrolled(t, "alice", T0).await;
    // A wrong six-digit code is never tried against the backup codes.
    let wrong = if code_at(&secret, T0 + 30) == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert!(is_invalid(&verify(t, "alice", wrong, T0 + 30).await));
    assert_eq!(
        t.status("alice").await.expect("status").backup_codes_left,
        10
    );
    // Malformed input of any kind: invalid, without work.
    for junk in [
        "",
        "12345",
        "1234567",
        "abc",
        "１２３４５６",
        &"a".repeat(100),
    ] {
        assert!(
            is_invalid(&verify(t, "alice", junk, T0 + 30).await),
            "{junk:?}"
        );
    }
    // A backup code does not confirm an enrollment (only a TOTP code does).
    t.begin_enrollment("alice", Some(&s(&code_at(&secret, T0 + 30))), T0 + 30)
        .await
        .expect("re-enroll with proof");
    assert!(is_invalid(
        &t.confirm_enrollment("alice", &codes.0[0], T0 + 30).await
    ));
}

#[tokio::test]
async fn attempt_limit_refuses_even_a_correct_code() {
    let f = fixture_with(settings(3)).await;
    let t = &f.totp;
    let (secret, codes) = enrolled(t, "alice", T0).await;
    let (bob_secret, _) = enrolled(t, "bob", T0).await;
    let now = T0 + 30;
    let right = code_at(&secret, now);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..3 {
        assert!(is_invalid(&verify(t, "alice", wrong, now).await));
    }
    for code in [right.as_str(), codes.0[0].expose_secret()] {
        match verify(t, "alice", code, now).await {
            Err(TotpError::TooManyAttempts { retry_after }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(300));
            }
            other => panic!("expected TooManyAttempts, got {other:?}"),
        }
    }
    assert!(matches!(
        t.disable("alice", &s(&right), now).await,
        Err(TotpError::TooManyAttempts { .. })
    ));
    assert!(matches!(
        t.begin_enrollment("alice", Some(&s(&right)), now).await,
        Err(TotpError::TooManyAttempts { .. })
    ));
    // Per user: bob is not affected. Replays count as failures too.
    let bob_code = code_at(&bob_secret, now);
    assert_eq!(
        verify(t, "bob", &bob_code, now).await.expect("bob"),
        TOTP_OK
    );
    for _ in 0..3 {
        assert!(is_replayed(&verify(t, "bob", &bob_code, now).await));
    }
    assert!(matches!(
        verify(t, "bob", &code_at(&bob_secret, now + 30), now + 30).await,
        Err(TotpError::TooManyAttempts { .. })
    ));
    // The pruner drops both once the window has passed.
    assert_eq!(t.purge_expired(Instant::now()), 0);
    assert_eq!(
        t.purge_expired(Instant::now() + Duration::from_secs(3 * 300 + 1)),
        2
    );
}

#[tokio::test]
async fn confirm_attempts_are_limited_too() {
    let f = fixture_with(settings(2)).await;
    let t = &f.totp;
    let offer = t.begin_enrollment("alice", None, T0).await.expect("begin");
    let right = code_at(&secret_of(&offer), T0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert!(is_invalid(
        &t.confirm_enrollment("alice", &s(wrong), T0).await
    ));
    assert!(is_invalid(
        &t.confirm_enrollment("alice", &s(wrong), T0).await
    ));
    assert!(matches!(
        t.confirm_enrollment("alice", &s(&right), T0).await,
        Err(TotpError::TooManyAttempts { .. })
    ));
}

#[tokio::test]
async fn re_enrollment_needs_proof_and_keeps_the_old_secret_until_confirmed() {
    let f = fixture().await;
    let t = &f.totp;
    let (old, old_codes) = enrolled(t, "alice", T0).await;
    let mut now = T0 + 30;
    assert!(matches!(
        t.begin_enrollment("alice", None, now).await,
        Err(TotpError::ProofRequired)
    ));
    let right = code_at(&old, now);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert!(is_invalid(
        &t.begin_enrollment("alice", Some(&s(wrong)), now).await
    ));
    let offer = t
        .begin_enrollment("alice", Some(&s(&right)), now)
        .await
        .expect("proof given");
    let new = secret_of(&offer);
    assert_ne!(new, old);
    let status = t.status("alice").await.expect("status");
    assert!(status.enabled);
    // The old secret still signs in; the pending one does not yet.
    now += 30;
    assert!(is_invalid(
        &verify(t, "alice", &code_at(&new, now), now).await
    ));
    assert_eq!(
        verify(t, "alice", &code_at(&old, now), now)
            .await
            .expect("old still active"),
        TOTP_OK
    );
    // A second begin replaces the pending secret.
    now += 30;
    let offer = t
        .begin_enrollment("alice", Some(&s(&code_at(&old, now))), now)
        .await
        .expect("again");
    let replaced = new;
    let new = secret_of(&offer);
    assert!(is_invalid(
        &t.confirm_enrollment("alice", &s(&code_at(&replaced, now)), now)
            .await
    ));
    let new_codes = t
        .confirm_enrollment("alice", &s(&code_at(&new, now)), now)
        .await
        .expect("confirm");
    now += 30;
    assert!(is_invalid(
        &verify(t, "alice", &code_at(&old, now), now).await
    ));
    assert!(is_invalid(
        &verify(t, "alice", old_codes.0[0].expose_secret(), now).await
    ));
    assert_eq!(
        verify(t, "alice", &code_at(&new, now), now)
            .await
            .expect("new"),
        TOTP_OK
    );
    assert_eq!(
        verify(t, "alice", new_codes.0[0].expose_secret(), now)
            .await
            .expect("new backup code"),
        Verified {
            method: VerifyMethod::BackupCode { remaining: 9 }
        }
    );
    // A backup code is proof enough for a re-enrollment.
    t.begin_enrollment("alice", Some(&new_codes.0[1]), now)
        .await
        .expect("backup code as proof");
}

#[tokio::test]
async fn pending_enrollments_expire() {
    let f = fixture().await;
    let t = &f.totp;
    assert!(matches!(
        t.confirm_enrollment("alice", &s("123456"), T0).await,
        Err(TotpError::NoPendingEnrollment)
    ));
    let offer = t.begin_enrollment("alice", None, T0).await.expect("begin");
    let secret = secret_of(&offer);
    let late = T0 + 900;
    assert!(matches!(
        t.confirm_enrollment("alice", &s(&code_at(&secret, late)), late)
            .await,
        Err(TotpError::NoPendingEnrollment)
    ));
    // The expired secret is gone for good.
    assert!(matches!(
        t.confirm_enrollment("alice", &s(&code_at(&secret, T0)), T0)
            .await,
        Err(TotpError::NoPendingEnrollment)
    ));
    assert!(t.list().await.expect("list").is_empty());
    let offer = t.begin_enrollment("alice", None, T0).await.expect("begin");
    let secret = secret_of(&offer);
    let again = t
        .pending_offer("alice", T0 + 899)
        .await
        .expect("redisplayed");
    assert_eq!(secret_of(&again), secret);
    assert_eq!(again.qr_svg, offer.qr_svg);
    assert!(matches!(
        t.pending_offer("alice", T0 + 900).await,
        Err(TotpError::NoPendingEnrollment)
    ));
    let just_in_time = T0 + 899;
    t.confirm_enrollment("alice", &s(&code_at(&secret, just_in_time)), just_in_time)
        .await
        .expect("within the ttl");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn database_file_holds_no_secret() {
    let f = fixture().await;
    let t = &f.totp;
    let (secret, codes) = enrolled(t, "alice", T0).await;
    let offer = t
        .begin_enrollment("alice", Some(&s(&code_at(&secret, T0 + 30))), T0 + 30)
        .await
        .expect("pending too");
    let pending = secret_of(&offer);
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = f.path.clone().into_os_string();
        p.push(suffix);
        if let Ok(b) = std::fs::read(&p) {
            bytes.extend_from_slice(&b);
        }
    }
    assert!(bytes.len() > 4096, "read the database");
    assert!(contains(&bytes, b"alice"), "the search works");
    for raw in [&secret, &pending] {
        let base32 = totp_rs::Secret::from(raw.clone()).to_base32();
        assert!(!contains(&bytes, raw), "raw secret bytes");
        assert!(!contains(&bytes, base32.as_bytes()), "base32 secret");
        assert!(!contains(&bytes, base32.to_lowercase().as_bytes()));
    }
    for code in &codes.0 {
        let shown = code.expose_secret();
        assert!(!contains(&bytes, shown.as_bytes()), "backup code");
        assert!(!contains(&bytes, shown.replace('-', "").as_bytes()));
    }
}

/// Rewrites rows behind passgate's back, as anyone holding the database file could.
async fn tamper(pool: &SqlitePool, what: &str, sql: &'static str) {
    sqlx::query(sql).execute(pool).await.expect(what);
}

#[tokio::test]
async fn ciphertexts_do_not_move_between_rows_or_columns() {
    let f = fixture().await;
    let t = &f.totp;
    let (alice, _) = enrolled(t, "alice", T0).await;
    enrolled(t, "bob", T0).await;
    tamper(
        &f.pool,
        "swap",
        "UPDATE totp_enrollments SET active_secret = \
         (SELECT active_secret FROM totp_enrollments WHERE username = 'alice') \
         WHERE username = 'bob'",
    )
    .await;
    let now = T0 + 30;
    assert!(matches!(
        verify(t, "bob", &code_at(&alice, now), now).await,
        Err(TotpError::Crypto(_))
    ));
    // Pending to active within one row.
    enrolled(t, "carol", T0).await;
    let offer = t.begin_enrollment("dave", None, T0).await.expect("pending");
    let pending = secret_of(&offer);
    tamper(
        &f.pool,
        "move",
        "UPDATE totp_enrollments SET active_secret = pending_secret WHERE username = 'dave'",
    )
    .await;
    assert!(matches!(
        verify(t, "dave", &code_at(&pending, now), now).await,
        Err(TotpError::Crypto(_))
    ));
    // And a pending blob from another user does not confirm.
    let offer = t.begin_enrollment("erin", None, T0).await.expect("pending");
    tamper(
        &f.pool,
        "swap pending",
        "UPDATE totp_enrollments SET pending_secret = \
         (SELECT pending_secret FROM totp_enrollments WHERE username = 'dave') \
         WHERE username = 'erin'",
    )
    .await;
    assert!(matches!(
        t.confirm_enrollment("erin", &s(&code_at(&pending, T0)), T0)
            .await,
        Err(TotpError::Crypto(_))
    ));
    drop(offer);
}

#[tokio::test]
async fn offer_uri_qr_and_debug() {
    let f = fixture_with(TotpSettings {
        issuer: String::from("Example NAS"),
        ..settings(1000)
    })
    .await;
    let t = &f.totp;
    let offer = t.begin_enrollment("alice", None, T0).await.expect("begin");
    let base32 = offer.secret_base32.expose_secret().to_owned();
    let uri = offer.otpauth_uri.expose_secret();
    assert_eq!(base32.len(), 32, "160 bits");
    assert!(
        uri.starts_with("otpauth://totp/Example%20NAS:alice?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={base32}")));
    assert!(uri.contains("issuer=Example%20NAS"));
    // Defaults (SHA1, 6 digits, 30 s) are left implicit, as Google Authenticator expects.
    assert!(!uri.contains("algorithm=") && !uri.contains("digits=") && !uri.contains("period="));
    let parsed = totp_rs::Totp::from_url(uri).expect("parses back");
    assert_eq!(parsed.account_name(), "alice");
    assert_eq!(parsed.issuer(), Some("Example NAS"));

    let svg = &offer.qr_svg;
    assert!(svg.starts_with("<svg"));
    assert!(svg.ends_with("</svg>"));
    assert!(!svg.contains("style="));
    assert!(!svg.to_lowercase().contains("<script"));
    assert!(svg.contains(r#"role="img""#));
    assert!(svg.contains(r#"aria-label="QR code for your authenticator app""#));
    assert!(svg.contains(r#"shape-rendering="crispEdges""#));
    assert!(svg.contains("viewBox="));

    let shown = format!("{offer:?}");
    assert!(
        !shown.contains(&base32) && !shown.contains("otpauth"),
        "{shown}"
    );
    let codes = t
        .confirm_enrollment("alice", &s(&code_at(&secret_of(&offer), T0)), T0)
        .await
        .expect("confirm");
    let shown = format!("{codes:?}");
    for code in &codes.0 {
        assert!(!shown.contains(code.expose_secret()), "{shown}");
    }
    // Errors are fixed text.
    let err = verify(t, "alice", "000000", T0 + 30)
        .await
        .expect_err("wrong");
    assert!(!format!("{err} {err:?}").contains("000000"));
    assert!(!format!("{t:?}").contains(&base32));
}

#[tokio::test]
async fn names_that_cannot_go_into_a_uri_store_nothing() {
    let f = fixture().await;
    assert!(matches!(
        f.totp.begin_enrollment("a:b", None, T0).await,
        Err(TotpError::Crypto(_))
    ));
    assert!(f.totp.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn status_list_disable_and_reset() {
    let f = fixture().await;
    let t = &f.totp;
    let now = unix_now();
    let (secret, _) = enrolled(t, "zoe", now).await;
    t.begin_enrollment("carol", None, now)
        .await
        .expect("pending");
    enrolled(t, "alice", now).await;
    let list = t.list().await.expect("list");
    let names: Vec<_> = list.iter().map(|s| s.username.as_str()).collect();
    assert_eq!(names, ["alice", "carol", "zoe"]);
    assert!(list[0].enabled && !list[0].pending && list[0].backup_codes_left == 10);
    assert!(!list[1].enabled && list[1].pending && list[1].enabled_at.is_none());
    let nobody = t.status("nobody").await.expect("status");
    assert!(!nobody.enabled && !nobody.pending && nobody.backup_codes_left == 0);
    assert!(serde_json::to_string(&nobody)
        .expect("json")
        .contains(r#""enabled":false"#));

    // disable needs a valid code
    let later = now + 30;
    assert!(is_invalid(
        &t.disable("zoe", &s("abcd-efgh-jkmn"), later).await
    ));
    t.disable("zoe", &s(&code_at(&secret, later)), later)
        .await
        .expect("disable");
    assert!(!t.status("zoe").await.expect("status").enabled);
    assert!(matches!(
        verify(t, "zoe", &code_at(&secret, later + 30), later + 30).await,
        Err(TotpError::NotEnrolled)
    ));
    assert!(matches!(
        t.disable("zoe", &s("123456"), later).await,
        Err(TotpError::NotEnrolled)
    ));

    assert!(t.reset("alice").await.expect("reset"));
    assert!(!t.reset("alice").await.expect("reset again"));
    assert!(t.reset("carol").await.expect("reset pending"));
    assert!(t.list().await.expect("list").is_empty());
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM totp_backup_codes")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    assert_eq!(n, 0);
}

#[test]
fn settings_defaults_and_mode_names() {
    let d = TotpSettings::default();
    assert_eq!(d.mode, TotpMode::Optional);
    assert_eq!(TotpMode::default(), TotpMode::Optional);
    assert_eq!(d.issuer, "passgate");
    assert_eq!(d.max_failures, 5);
    assert_eq!(d.failure_window, Duration::from_secs(300));
    assert_eq!(d.enrollment_ttl, Duration::from_secs(900));
    assert_eq!(
        serde_json::to_string(&TotpMode::Required).expect("json"),
        r#""required""#
    );
    let off: TotpMode = serde_json::from_str(r#""off""#).expect("json");
    assert_eq!(off, TotpMode::Off);
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Totp>();
}
