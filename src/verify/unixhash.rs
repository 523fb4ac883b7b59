//! Checks a password against the account's TrueNAS `unixhash` (SHA-crypt), locally.
//!
//! TrueNAS stores `$6$rounds=656000$<salt>$<checksum>`: one check costs a few hundred ms of
//! CPU, so it runs on the blocking pool under a concurrency cap, never on the async workers.
//! Every answer except a match costs at least one full 656,000-round computation, so the time
//! a request takes does not tell an attacker whether the account exists, has a usable hash,
//! or carries a cheap legacy hash.

use std::sync::Arc;

use async_trait::async_trait;
use pwhash::{sha256_crypt, sha512_crypt};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::{Account, Verdict, Verifier};

/// SHA-512 crypt of a random password that was thrown away, at TrueNAS' cost. It can never
/// match; it only makes a ghost account (or an unusable hash) cost the same as a real one.
/// Made with: `python3 -c "import crypt, secrets; print(crypt.crypt(secrets.token_urlsafe(32),
/// crypt.mksalt(crypt.METHOD_SHA512, rounds=656000)))"`.
const DUMMY_HASH: &str = "$6$rounds=656000$yeDERH50yLx1074V$6x2SlQwCQuTURfmvg.emUzFYbbRIaxvmQnbB73JY3r3M6yhGtXwtbPVG66DrtB4goQbF8T8MgTHBmiw0nCoTx0";

/// The rounds in [`DUMMY_HASH`]; cheaper real hashes are padded up to at least this.
const DUMMY_ROUNDS: u32 = 656_000;

/// SHA-crypt cost grows with the password length on every round, so an unbounded password is
/// a CPU amplifier. 512 bytes is far beyond any human password and still costs < 2x a short one.
pub use crate::policy::MAX_PASSWORD_BYTES;

/// A hash asking for more rounds than this is refused rather than computed: a single
/// `rounds=999999999` entry would otherwise pin a blocking thread for minutes per attempt.
const MAX_ROUNDS: u32 = 10_000_000;

/// SHA-crypt rounds when the hash has no `rounds=` field.
const DEFAULT_ROUNDS: u32 = 5_000;

const CRYPT_ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Verifies against `NasUser::unixhash` with pwhash (pure Rust; results are identical to
/// libxcrypt's, see `tests/unixhash_verifier.rs`).
pub struct UnixHashVerifier {
    permits: Arc<Semaphore>,
}

impl UnixHashVerifier {
    /// `max_concurrent` bounds how many hash computations run at once (each keeps one CPU
    /// busy for ~0.3 s); further requests wait for a permit. 0 is treated as 1.
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }
}

impl std::fmt::Debug for UnixHashVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixHashVerifier")
            .field("available_permits", &self.permits.available_permits())
            .finish()
    }
}

#[async_trait]
impl Verifier for UnixHashVerifier {
    fn name(&self) -> &'static str {
        "unixhash"
    }

    async fn verify(&self, account: Account<'_>, password: &SecretString) -> Verdict {
        // Owned copies: the blocking task may outlive this future if the request is dropped.
        // Both stay wrapped in SecretString, so they are zeroized when the task ends.
        let stored = match account {
            Account::Real(user) => Stored::Real(user.unixhash.clone()),
            Account::Ghost(_) => Stored::Ghost,
        };
        let password = password.clone();
        run_limited(&self.permits, move || {
            check(&stored, password.expose_secret().as_bytes())
        })
        .await
    }
}

enum Stored {
    Real(Option<SecretString>),
    Ghost,
}

/// Runs `work` on the blocking pool once a permit is free. The permit moves into the task, so
/// the cap holds even when the caller gives up waiting and the computation carries on.
async fn run_limited<F>(permits: &Arc<Semaphore>, work: F) -> Verdict
where
    F: FnOnce() -> Verdict + Send + 'static,
{
    let permit = match Arc::clone(permits).acquire_owned().await {
        Ok(permit) => permit,
        Err(_) => return Verdict::Unavailable(String::from("hash verifier is shut down")),
    };
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match task.await {
        Ok(verdict) => verdict,
        Err(err) => {
            // A panic here is a bug, not a verdict on the password: fail closed but tell the
            // chain the backend is broken, and keep the process alive.
            tracing::error!(
                panicked = err.is_panic(),
                "unixhash verification task failed"
            );
            Verdict::Unavailable(String::from("hash verification task failed"))
        }
    }
}

/// What the stored string is, judged before any expensive work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashKind {
    Sha512 {
        rounds: u32,
    },
    Sha256 {
        rounds: u32,
    },
    /// `*`, `x`, empty, `!`-locked, or garbage: the account cannot log in with a password.
    NoPassword,
    /// A well-formed `$id$...` this verifier does not implement (yescrypt, bcrypt, ...):
    /// another verifier may still know the answer, so this is not a rejection.
    Unsupported,
    TooExpensive,
}

fn classify(hash: &str) -> HashKind {
    let (kind_sha512, body, checksum_len) = if let Some(body) = hash.strip_prefix("$6$") {
        (true, body, 86)
    } else if let Some(body) = hash.strip_prefix("$5$") {
        (false, body, 43)
    } else if is_other_modular_crypt(hash) {
        return HashKind::Unsupported;
    } else {
        return HashKind::NoPassword;
    };

    let mut fields: Vec<&str> = body.split('$').collect();
    let rounds = match fields.first().and_then(|f| f.strip_prefix("rounds=")) {
        Some(digits) => {
            let valid = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0');
            match digits.parse::<u32>() {
                Ok(n) if valid => {
                    fields.remove(0);
                    n
                }
                // Past u32 or malformed: libxcrypt would refuse it too.
                _ if valid => return HashKind::TooExpensive,
                _ => return HashKind::NoPassword,
            }
        }
        None => DEFAULT_ROUNDS,
    };
    let [salt, checksum] = fields.as_slice() else {
        return HashKind::NoPassword;
    };
    let alphabet_ok = |s: &str| s.bytes().all(|b| CRYPT_ALPHABET.contains(&b));
    if salt.len() > 16
        || !alphabet_ok(salt)
        || checksum.len() != checksum_len
        || !alphabet_ok(checksum)
    {
        return HashKind::NoPassword;
    }
    if rounds > MAX_ROUNDS {
        return HashKind::TooExpensive;
    }
    if kind_sha512 {
        HashKind::Sha512 { rounds }
    } else {
        HashKind::Sha256 { rounds }
    }
}

/// `$id$...` with a short alphanumeric id, e.g. `$y$` (yescrypt) or `$2b$` (bcrypt).
fn is_other_modular_crypt(hash: &str) -> bool {
    let Some(rest) = hash.strip_prefix('$') else {
        return false;
    };
    match rest.split_once('$') {
        Some((id, tail)) => {
            !id.is_empty()
                && id.len() <= 4
                && id.bytes().all(|b| b.is_ascii_alphanumeric())
                && !tail.is_empty()
        }
        None => false,
    }
}

/// The blocking part: everything that costs CPU happens here.
fn check(stored: &Stored, password: &[u8]) -> Verdict {
    if password.len() > MAX_PASSWORD_BYTES {
        burn(&password[..MAX_PASSWORD_BYTES]);
        return Verdict::Rejected("password too long");
    }
    let hash = match stored {
        Stored::Ghost => {
            burn(password);
            // The same reason a real account gets, in case a caller ever shows it.
            return Verdict::Rejected("wrong password");
        }
        Stored::Real(None) => {
            burn(password);
            return Verdict::CantTell("hash not available");
        }
        Stored::Real(Some(hash)) => hash.expose_secret(),
    };
    let (computed, rounds) = match classify(hash) {
        HashKind::Sha512 { rounds } => (sha512_crypt::hash_with(hash, password), rounds),
        HashKind::Sha256 { rounds } => (sha256_hash_with(hash, password), rounds),
        HashKind::NoPassword => {
            burn(password);
            return Verdict::Rejected("no usable password hash");
        }
        HashKind::Unsupported => {
            burn(password);
            return Verdict::CantTell("unsupported hash scheme");
        }
        HashKind::TooExpensive => {
            burn(password);
            return Verdict::CantTell("hash rounds above limit");
        }
    };
    if rounds < DUMMY_ROUNDS {
        // A legacy 5,000-round hash would answer ~100x faster than a ghost account.
        burn(password);
    }
    match computed {
        Ok(computed) if constant_time_eq(computed.as_bytes(), hash.as_bytes()) => Verdict::Verified,
        Ok(_) => Verdict::Rejected("wrong password"),
        // Only a salt pwhash cannot take gets here; classify() already checked the shape.
        Err(_) => Verdict::Rejected("no usable password hash"),
    }
}

/// pwhash deprecates SHA-256 crypt for *new* hashes; checking an existing one is still right.
#[allow(deprecated)]
fn sha256_hash_with(hash: &str, password: &[u8]) -> pwhash::Result<String> {
    sha256_crypt::hash_with(hash, password)
}

/// One full-cost computation whose result is thrown away.
fn burn(password: &[u8]) {
    let result = sha512_crypt::hash_with(DUMMY_HASH, password);
    // Keeps the optimiser from proving the work unused.
    std::hint::black_box(result.is_ok());
}

/// pwhash's own `verify` compares in constant time too, but returns a bare bool that mixes up
/// "malformed hash" and "wrong password"; this keeps the comparison explicit here. The TOTP
/// code check uses it as well. `subtle` returns early only on a length mismatch: lengths are
/// fixed by the scheme, not secret.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truenas::NasUser;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    // Cheap hashes made by pwhash itself (1,000 rounds) keep these unit tests fast; the
    // libxcrypt-made, full-cost fixtures are exercised in tests/unixhash_verifier.rs.
    fn cheap_sha512(password: &str) -> String {
        sha512_crypt::hash_with("$6$rounds=1000$abcdefghijklmnop$", password)
            .expect("valid setting")
    }

    fn user(hash: Option<&str>) -> NasUser {
        NasUser {
            unixhash: hash.map(SecretString::from),
            ..NasUser::sample("alice")
        }
    }

    fn real(hash: &str, password: &str) -> Verdict {
        check(
            &Stored::Real(Some(SecretString::from(hash))),
            password.as_bytes(),
        )
    }

    #[test]
    fn dummy_hash_is_a_full_cost_sha512_hash() {
        assert_eq!(
            classify(DUMMY_HASH),
            HashKind::Sha512 {
                rounds: DUMMY_ROUNDS
            }
        );
    }

    #[test]
    fn classifies_stored_strings() {
        let h = cheap_sha512("pw");
        assert_eq!(classify(&h), HashKind::Sha512 { rounds: 1000 });
        for none in [
            "*",
            "x",
            "",
            "!",
            "!!",
            "*LK*",
            &format!("!{h}"),
            "garbage",
            "$6$",
            "$6$salt",
        ] {
            assert_eq!(classify(none), HashKind::NoPassword, "{none:?}");
        }
        let bad_rounds = h.replace("rounds=1000", "rounds=01000");
        assert_eq!(classify(&bad_rounds), HashKind::NoPassword);
        let short_checksum = &h[..h.len() - 1];
        assert_eq!(classify(short_checksum), HashKind::NoPassword);
        for other in [
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
            "$2b$12$abcdefghijklmnopqrstuu5u9hnoEhZlVZ0y4QbIjm4qBkw8Ry2UW",
        ] {
            assert_eq!(classify(other), HashKind::Unsupported, "{other}");
        }
        let costly = h.replace("rounds=1000", "rounds=999999999");
        assert_eq!(classify(&costly), HashKind::TooExpensive);
        let overflow = h.replace("rounds=1000", "rounds=99999999999");
        assert_eq!(classify(&overflow), HashKind::TooExpensive);
    }

    #[test]
    fn accepts_right_and_rejects_wrong_password() {
        let h = cheap_sha512("right one");
        assert_eq!(real(&h, "right one"), Verdict::Verified);
        assert_eq!(real(&h, "right on"), Verdict::Rejected("wrong password"));
        assert_eq!(real(&h, "right one\0"), Verdict::Rejected("wrong password"));
        let h256 =
            sha256_hash_with("$5$rounds=1000$abcdefghijklmnop$", b"pw").expect("valid setting");
        assert_eq!(real(&h256, "pw"), Verdict::Verified);
        assert_eq!(real(&h256, "pW"), Verdict::Rejected("wrong password"));
    }

    #[test]
    fn unusable_missing_and_foreign_hashes() {
        assert_eq!(
            real("*", "pw"),
            Verdict::Rejected("no usable password hash")
        );
        assert_eq!(
            real("x", "pw"),
            Verdict::Rejected("no usable password hash")
        );
        assert_eq!(
            check(&Stored::Real(None), b"pw"),
            Verdict::CantTell("hash not available")
        );
        assert_eq!(
            real(
                "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
                "pw"
            ),
            Verdict::CantTell("unsupported hash scheme")
        );
        assert_eq!(
            check(&Stored::Ghost, b"pw"),
            Verdict::Rejected("wrong password")
        );
    }

    #[test]
    fn overlong_password_is_rejected_without_hashing_all_of_it() {
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        let h = cheap_sha512(&long);
        assert_eq!(real(&h, &long), Verdict::Rejected("password too long"));
        let at_limit = "a".repeat(MAX_PASSWORD_BYTES);
        assert_eq!(real(&cheap_sha512(&at_limit), &at_limit), Verdict::Verified);
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[tokio::test]
    async fn verifier_uses_the_users_hash() {
        let v = UnixHashVerifier::new(2);
        assert_eq!(v.name(), "unixhash");
        let h = cheap_sha512("pw");
        let u = user(Some(&h));
        assert_eq!(
            v.verify(Account::Real(&u), &SecretString::from("pw")).await,
            Verdict::Verified
        );
        assert_eq!(
            v.verify(Account::Real(&u), &SecretString::from("nope"))
                .await,
            Verdict::Rejected("wrong password")
        );
    }

    #[tokio::test]
    async fn a_panic_in_the_task_is_unavailable() {
        let permits = Arc::new(Semaphore::new(1));
        let verdict = run_limited(&permits, || panic!("boom")).await;
        assert!(matches!(verdict, Verdict::Unavailable(_)), "{verdict:?}");
        // The permit came back despite the panic.
        assert_eq!(permits.available_permits(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn never_more_than_max_concurrent_tasks() {
        let permits = Arc::new(Semaphore::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs = (0..8).map(|_| {
            let (running, peak, permits) = (running.clone(), peak.clone(), permits.clone());
            tokio::spawn(async move {
                run_limited(&permits, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Verdict::Verified
                })
                .await
            })
        });
        for job in jobs.collect::<Vec<_>>() {
            assert_eq!(job.await.expect("verification task"), Verdict::Verified);
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let v = UnixHashVerifier::new(3);
        assert_eq!(
            format!("{v:?}"),
            "UnixHashVerifier { available_permits: 3 }"
        );
    }
}
