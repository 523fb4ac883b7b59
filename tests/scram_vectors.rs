//! SCRAM-SHA-512: the fake TrueNAS server (tests/support/fake_truenas/scram.rs) against fixed
//! vectors, and the portal's client (passgate::truenas::scram) against the fake.
//!
//! The key, salt and SaltedPassword come from pam_truenas tests/conftest.py
//! (`pytest_sessionstart`, a key made by the middleware). truenas_scram's own tests
//! (tests/test_*.py) have random nonces and keys only; what they pin down (32-byte nonces,
//! 16-byte salts, 64-byte keys, iteration limits 50,000..=5,000,000, `n=testuser:12345`,
//! `c=biws`) is checked here through the fake. The whole-exchange strings were computed with
//! Python's hashlib/hmac for client nonce bytes 0..32 and server nonce bytes 32..64.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/fake_truenas/scram.rs"]
mod fake_scram;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fake_scram::{
    credentials_from_salted_password, new_salt, parse_client_first, scram_credentials, Reject,
    ServerExchange, ServerOptions,
};
use passgate::truenas::scram::{api_key_secret, KeyCache, ScramClient, ScramError};
use proptest::prelude::*;
use secrecy::SecretString;

const RAW_KEY: &str = "2-DJpfT7q7dHu6RRfeMwP8aJlGeUOmRWbDKnnzxnsc8F1YAsDNbl8aDM4X1cYwPmcC";
const SALT: &[u8] = b"KCwXnX9l35e0ndOu";
const SALTED_PASSWORD: &str =
    "sljMczeiN9kEqyOIrjoQ1QiBhnrmL++DtRdeyv+DHmQkkzoypbkzHIVA1iM/NVviC50dVpDKKlD3L2pv9KDdfw==";
const STORED_KEY: &str =
    "fdEfVvNcoUaFfRfgBhuutkqsmSo/U5yO5fCULuljXyHlhQyTMo8rofr7Ld6+wPgpU1oy/ZCUCPFAYvF/+10apg==";
const SERVER_KEY: &str =
    "uThGm5iYErrlwLhk6KmdYVgQ0PZT6RIaTHEK02Z5e3QwR0ygEoRFMffKOVkyMIRFNwoOB8Man9OS+SYXViEdiQ==";
const CLIENT_FIRST: &str = "n,,n=bob:2,r=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SERVER_FIRST: &str = "r=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==,s=S0N3WG5YOWwzNWUwbmRPdQ==,i=500000";
const CLIENT_FINAL: &str = "c=biws,r=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==,p=VPfUTkxYHhHc97cETIX0iBG6SbMZzfkMuupoQFz3sv+IkwqbCkscug6K6ewEKDX7FWM0JTmA98Ta2K7cye0wxg==";
const SERVER_FINAL: &str =
    "v=u/jqWQen1/QaxNpktgm1dGMisGG4qJjMgLDfm+lUhD/FXdY3P1sestxvn9GWE19Zk19AzqCFVjh1vnMs11oBXw==";

/// TrueNAS' minimum, to keep debug-build PBKDF2 under a second per derivation.
const FAST_ITERATIONS: u32 = 50_000;

fn b64(text: &str) -> Vec<u8> {
    STANDARD.decode(text).expect("test constant is base64")
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

fn vector_server() -> (ServerExchange, String) {
    let first = parse_client_first(CLIENT_FIRST).expect("vector client-first");
    let creds = credentials_from_salted_password(&b64(SALTED_PASSWORD), SALT, 500_000);
    let server_nonce: [u8; 32] = std::array::from_fn(|i| 32 + u8::try_from(i).expect("< 32"));
    ServerExchange::server_first_with_nonce(first, creds, ServerOptions::default(), server_nonce)
        .expect("vector iterations are in range")
}

#[test]
fn fake_derives_the_pam_truenas_credentials_from_the_part_after_the_id() {
    let material = RAW_KEY.split_once('-').expect("ID-KEY").1;
    let creds = scram_credentials(material, SALT, 500_000);
    assert_eq!(creds.stored_key.to_vec(), b64(STORED_KEY));
    assert_eq!(creds.server_key.to_vec(), b64(SERVER_KEY));
    let from_salted = credentials_from_salted_password(&b64(SALTED_PASSWORD), SALT, 500_000);
    assert_eq!(from_salted.stored_key, creds.stored_key);
}

#[test]
fn fake_answers_the_vector_exchange() {
    let first = parse_client_first(CLIENT_FIRST).expect("valid");
    assert_eq!((first.username.as_str(), first.api_key_id), ("bob", 2));
    let (exchange, server_first) = vector_server();
    assert_eq!(server_first, SERVER_FIRST);
    assert_eq!(
        exchange.client_final(CLIENT_FINAL),
        Ok(SERVER_FINAL.to_owned())
    );
}

#[test]
fn fake_refuses_a_tampered_proof_nonce_or_binding() {
    let mut proof = b64(CLIENT_FINAL.rsplit_once("p=").expect("p=").1);
    proof[10] ^= 1;
    let prefix = CLIENT_FINAL.rsplit_once("p=").expect("p=").0;
    let tampered = format!("{prefix}p={}", STANDARD.encode(proof));
    assert_eq!(
        vector_server().0.client_final(&tampered),
        Err(Reject::ProofMismatch)
    );

    let other_nonce = CLIENT_FINAL.replacen("AAEC", "AAED", 1);
    assert_eq!(
        vector_server().0.client_final(&other_nonce),
        Err(Reject::NonceMismatch)
    );

    let yes_binding = CLIENT_FINAL.replacen("c=biws", "c=eSws", 1);
    assert_eq!(
        vector_server().0.client_final(&yes_binding),
        Err(Reject::ChannelBinding)
    );
    assert_eq!(
        parse_client_first("p=tls-server-end-point,,n=bob:2,r=AAAA"),
        Err(Reject::ChannelBinding)
    );
}

#[test]
fn fake_follows_truenas_limits() {
    // truenas_scram tests/test_server_first.py test_server_first_message_invalid_iterations
    // and test_server_first_message_different_iterations.
    let first = parse_client_first(CLIENT_FIRST).expect("valid");
    let salted = b64(SALTED_PASSWORD);
    for bad in [1000, 49_999, 5_000_001, 6_000_000, 0] {
        let creds = credentials_from_salted_password(&salted, SALT, bad);
        assert!(matches!(
            ServerExchange::server_first(first.clone(), creds, ServerOptions::default()),
            Err(Reject::IterationsOutOfRange)
        ));
    }
    for good in [50_000, 100_000, 250_000, 500_000] {
        let creds = credentials_from_salted_password(&salted, SALT, good);
        let (_, server_first) =
            ServerExchange::server_first(first.clone(), creds, ServerOptions::default())
                .expect("in range");
        assert!(server_first.ends_with(&format!(",i={good}")));
        let nonce = b64(&server_first[2..server_first.find(",s=").expect("s=")]);
        assert_eq!(nonce.len(), 64);
        assert_eq!(&nonce[..32], &b64(&CLIENT_FIRST[13..])[..]);
    }
    // truenas_scram tests/test_rfc_parsing.py test_username_api_key_combinations.
    for (text, id) in [
        ("user2:1", 1),
        ("user4:65535", 65_535),
        ("user5:2147483647", 2_147_483_647),
    ] {
        let parsed = parse_client_first(&format!("n,,n={text},r={}", &CLIENT_FIRST[13..]))
            .expect("valid id");
        assert_eq!(parsed.api_key_id, id);
    }
    for bad in ["user:0", "user:2147483648", "user:", "user:0x10"] {
        assert!(parse_client_first(&format!("n,,n={bad},r={}", &CLIENT_FIRST[13..])).is_err());
    }
    let salt = new_salt();
    assert_eq!(salt.len(), 16);
    assert!(salt
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'/'));
}

struct Exchange {
    client_final: String,
    verdict: Result<(), ScramError>,
}

/// A whole exchange between the portal's client and the fake, with `client_secret` on the
/// client side and credentials made from `server_secret` on the fake's.
fn run(
    client_secret: &str,
    server_secret: &str,
    options: ServerOptions,
    keys: &KeyCache,
) -> Result<Exchange, Reject> {
    let salt = b"fixed-test-salt.";
    let creds = scram_credentials(server_secret, salt, FAST_ITERATIONS);
    let (client, client_first) = ScramClient::start_api_key("truenas_admin", 7).expect("valid");
    let first = parse_client_first(&client_first)?;
    assert_eq!(
        (first.username.as_str(), first.api_key_id),
        ("truenas_admin", 7)
    );
    let (exchange, server_first) = ServerExchange::server_first(first, creds, options)?;
    let (fin, client_final) = client
        .respond(&server_first, &secret(client_secret), keys)
        .expect("a valid server-first");
    let server_final = exchange.client_final(&client_final)?;
    Ok(Exchange {
        verdict: fin.verify(&server_final),
        client_final,
    })
}

#[test]
fn client_and_fake_agree_and_the_cache_skips_the_second_pbkdf2() {
    let (id, material) = api_key_secret(&secret(&format!("7-{}", "k".repeat(64)))).expect("key");
    assert_eq!(id, 7);
    let keys = KeyCache::default();
    let material = secrecy::ExposeSecret::expose_secret(&material).to_owned();
    let first = run(&material, &material, ServerOptions::default(), &keys).expect("accepted");
    first.verdict.expect("the fake's signature verifies");
    assert!(first.client_final.starts_with("c=biws,r="));
    assert_eq!(keys.derivations(), 1);
    let second = run(&material, &material, ServerOptions::default(), &keys).expect("accepted");
    second.verdict.expect("verifies from cached keys");
    assert_eq!(keys.derivations(), 1, "a reconnect reuses the derived keys");
    assert_ne!(
        first.client_final, second.client_final,
        "fresh nonces each time"
    );
}

#[test]
fn a_wrong_key_is_rejected_by_the_server() {
    let outcome = run(
        "wrong-key",
        "right-key",
        ServerOptions::default(),
        &KeyCache::default(),
    );
    assert!(matches!(outcome, Err(Reject::ProofMismatch)));
}

#[test]
fn the_client_refuses_a_server_that_cannot_sign() {
    let options = ServerOptions {
        wrong_server_signature: true,
    };
    let outcome = run("same-key", "same-key", options, &KeyCache::default()).expect("proof ok");
    assert!(matches!(
        outcome.verdict,
        Err(ScramError::ServerSignatureMismatch)
    ));
}

#[test]
fn the_client_refuses_a_server_nonce_that_does_not_extend_its_own() {
    let creds = scram_credentials("k", b"fixed-test-salt.", FAST_ITERATIONS);
    let (_, other_first) = ScramClient::start_api_key("bob", 2).expect("valid");
    let foreign = parse_client_first(&other_first).expect("valid");
    let (_, server_first) =
        ServerExchange::server_first(foreign, creds, ServerOptions::default()).expect("valid");
    let (client, _) = ScramClient::start_api_key("bob", 2).expect("valid");
    let keys = KeyCache::default();
    let outcome = client.respond(&server_first, &secret("k"), &keys);
    assert!(matches!(outcome, Err(ScramError::NonceMismatch)));
    assert_eq!(keys.derivations(), 0, "refused before any PBKDF2");
}

#[test]
fn truncated_messages_are_refused_on_both_sides() {
    for end in 0..CLIENT_FIRST.len() {
        assert!(parse_client_first(&CLIENT_FIRST[..end]).is_err(), "{end}");
    }
    for end in 0..CLIENT_FINAL.len() {
        assert!(
            vector_server()
                .0
                .client_final(&CLIENT_FINAL[..end])
                .is_err(),
            "{end}"
        );
    }
    // Cut inside r= and s= only: a cut inside i= can leave a valid, smaller count.
    let creds = scram_credentials("k", b"fixed-test-salt.", FAST_ITERATIONS);
    let (client, client_first) = ScramClient::start("bob").expect("valid");
    drop(client);
    let first = parse_client_first(&client_first).expect("valid");
    let (_, server_first) =
        ServerExchange::server_first(first, creds, ServerOptions::default()).expect("valid");
    let keys = KeyCache::default();
    let count_at = server_first.find(",i=").expect("i=");
    for end in 0..count_at + 3 {
        let (client, _) = ScramClient::start("bob").expect("valid");
        let cut = &server_first[..end];
        assert!(client.respond(cut, &secret("k"), &keys).is_err(), "{end}");
    }
    assert_eq!(keys.derivations(), 0);
}

proptest! {
    #[test]
    fn fake_parsers_never_panic(input in ".{0,300}") {
        let _ = parse_client_first(&input);
        let _ = vector_server().0.client_final(&input);
        let _ = parse_client_first(&format!("n,,{input}"));
        let _ = vector_server().0.client_final(&format!("c=biws,{input}"));
    }

    #[test]
    fn client_parsers_never_panic(input in ".{0,300}") {
        let keys = KeyCache::default();
        let (client, _) = ScramClient::start("bob").expect("valid");
        // A random string cannot extend a fresh random nonce, so no PBKDF2 ever runs here.
        prop_assert!(client.respond(&input, &secret("k"), &keys).is_err());
        prop_assert_eq!(keys.derivations(), 0);
    }
}
