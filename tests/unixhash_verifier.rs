//! The unixhash verifier against hashes made by libxcrypt (see tests/fixtures/unixhash/).

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use passgate::truenas::NasUser;
use passgate::verify::unixhash::UnixHashVerifier;
use passgate::verify::{Account, Verdict, Verifier};
use secrecy::SecretString;

/// Timing assertions need the CPU to themselves: tests in this file take turns.
static CPU: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fixture(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "unixhash",
        name,
    ]
    .iter()
    .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn password() -> SecretString {
    SecretString::from(fixture("password.txt"))
}

fn user(hash: Option<&str>) -> NasUser {
    NasUser {
        id: 7,
        uid: 3000,
        username: "fixture".into(),
        full_name: "Fixture User".into(),
        local: true,
        locked: false,
        password_disabled: false,
        smb: false,
        builtin: false,
        twofactor: false,
        groups: Vec::new(),
        unixhash: hash.map(SecretString::from),
        aging: Default::default(),
        email: None,
        roles: Vec::new(),
        home: None,
        ssh_keys: None,
    }
}

async fn timed(
    v: &UnixHashVerifier,
    account: Account<'_>,
    pw: &SecretString,
) -> (Verdict, Duration) {
    let start = Instant::now();
    let verdict = v.verify(account, pw).await;
    (verdict, start.elapsed())
}

#[test]
fn fixtures_have_the_expected_shape() {
    assert!(fixture("sha512_rounds656000.hash").starts_with("$6$rounds=656000$"));
    let legacy = fixture("sha512_default_rounds.hash");
    assert!(legacy.starts_with("$6$") && !legacy.contains("rounds="));
    assert!(fixture("sha256_default_rounds.hash").starts_with("$5$"));
    assert_eq!(fixture("password.txt"), "correct horse ünïcode 42");
}

#[tokio::test]
async fn accepts_the_right_password_for_every_fixture() {
    let _cpu = CPU.lock().await;
    let v = UnixHashVerifier::new(2);
    for name in [
        "sha512_rounds656000.hash",
        "sha512_default_rounds.hash",
        "sha256_default_rounds.hash",
    ] {
        let hash = fixture(name);
        let u = user(Some(&hash));
        let (verdict, took) = timed(&v, Account::Real(&u), &password()).await;
        assert_eq!(verdict, Verdict::Verified, "{name}");
        eprintln!("{name}: accepted in {took:?}");
    }
}

#[tokio::test]
async fn rejects_wrong_passwords() {
    let _cpu = CPU.lock().await;
    let v = UnixHashVerifier::new(2);
    let right = fixture("password.txt");
    let wrong = [
        String::from("correct horse unicode 42"), // the same without diacritics
        format!("{right} "),
        right[..right.len() - 1].to_owned(),
        right.to_uppercase(),
        format!("{right}\0"),
    ];
    for name in [
        "sha512_rounds656000.hash",
        "sha512_default_rounds.hash",
        "sha256_default_rounds.hash",
    ] {
        let hash = fixture(name);
        let u = user(Some(&hash));
        for pw in &wrong {
            let verdict = v
                .verify(Account::Real(&u), &SecretString::from(pw.as_str()))
                .await;
            assert_eq!(
                verdict,
                Verdict::Rejected("wrong password"),
                "{name} / {pw:?}"
            );
        }
    }
}

#[tokio::test]
async fn star_x_and_masked_hashes() {
    let _cpu = CPU.lock().await;
    let v = UnixHashVerifier::new(2);
    for no_password in ["*", "x", ""] {
        let u = user(Some(no_password));
        assert_eq!(
            v.verify(Account::Real(&u), &password()).await,
            Verdict::Rejected("no usable password hash"),
            "{no_password:?}"
        );
    }
    // The server masks `unixhash` as "********" for a caller without the right role; the
    // NAS client turns that into None.
    let masked = user(None);
    assert_eq!(
        v.verify(Account::Real(&masked), &password()).await,
        Verdict::CantTell("hash not available")
    );
    // And should a literal mask ever get through, it is no usable hash either.
    let literal = user(Some("********"));
    assert_eq!(
        v.verify(Account::Real(&literal), &password()).await,
        Verdict::Rejected("no usable password hash")
    );
}

#[tokio::test]
async fn every_no_costs_about_as_much_as_a_real_check() {
    let _cpu = CPU.lock().await;
    let v = UnixHashVerifier::new(1);
    let full = fixture("sha512_rounds656000.hash");
    let legacy = fixture("sha512_default_rounds.hash");
    let (full_u, legacy_u, star_u, masked_u) = (
        user(Some(&full)),
        user(Some(&legacy)),
        user(Some("*")),
        user(None),
    );
    let wrong = SecretString::from("not the password");

    // Best of three, so a busy moment on a shared machine does not decide.
    let best = |d: Duration, slot: &mut Duration| *slot = (*slot).min(d);
    let mut t = [Duration::MAX; 6];
    for _ in 0..3 {
        best(
            timed(&v, Account::Real(&full_u), &password()).await.1,
            &mut t[0],
        );
        best(timed(&v, Account::Real(&full_u), &wrong).await.1, &mut t[1]);
        best(
            timed(&v, Account::Ghost("nobody"), &wrong).await.1,
            &mut t[2],
        );
        best(
            timed(&v, Account::Real(&legacy_u), &wrong).await.1,
            &mut t[3],
        );
        best(timed(&v, Account::Real(&star_u), &wrong).await.1, &mut t[4]);
        best(
            timed(&v, Account::Real(&masked_u), &wrong).await.1,
            &mut t[5],
        );
    }
    let labels = [
        "accept 656k",
        "reject 656k",
        "ghost",
        "reject legacy 5k",
        "'*' hash",
        "masked",
    ];
    for (label, took) in labels.iter().zip(t) {
        eprintln!("unixhash {label}: {took:?}");
    }
    let reference = t[0];
    for (label, took) in labels.iter().zip(t).skip(1) {
        assert!(
            took * 2 >= reference,
            "{label} took {took:?}, a real 656,000-round check {reference:?}: timing would tell"
        );
    }
    assert_eq!(
        v.verify(Account::Ghost("nobody"), &password()).await,
        Verdict::Rejected("wrong password")
    );
}
