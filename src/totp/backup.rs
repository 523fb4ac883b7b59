//! Single-use backup codes: twelve letters from an alphabet without look-alikes (no i, l,
//! o), 12 × log2(23) ≈ 54 bits each, shown as `abcd-efgh-jkmn` and stored as argon2id hashes.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use rand::rngs::OsRng;
use rand::TryRngCore;
use zeroize::Zeroizing;

use super::TotpError;

pub(crate) const COUNT: usize = 10;
const LEN: usize = 12;
const GROUP: usize = 4;
const ALPHABET: &[u8; 23] = b"abcdefghjkmnpqrstuvwxyz";
/// The largest multiple of 23 that fits a byte: bytes at or above it are redrawn, so every
/// letter is equally likely.
const UNBIASED_BELOW: u8 = 230;

/// Twelve letters of the alphabet, nothing else (the normalised form of user input).
pub(crate) fn is_well_formed(code: &str) -> bool {
    code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b))
}

/// A new code in normalised form, from the OS CSPRNG.
pub(crate) fn generate() -> Result<Zeroizing<String>, TotpError> {
    let mut code = Zeroizing::new(String::with_capacity(LEN));
    let mut buf = Zeroizing::new([0u8; 32]);
    while code.len() < LEN {
        OsRng
            .try_fill_bytes(&mut buf[..])
            .map_err(|_| TotpError::Crypto("the system random number generator failed"))?;
        for &b in buf.iter().filter(|&&b| b < UNBIASED_BELOW) {
            if code.len() == LEN {
                break;
            }
            code.push(char::from(ALPHABET[usize::from(b % 23)]));
        }
    }
    Ok(code)
}

/// `abcdefghjkmn` → `abcd-efgh-jkmn`.
pub(crate) fn display(code: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(LEN + LEN / GROUP));
    for (i, c) in code.chars().enumerate() {
        if i > 0 && i % GROUP == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// argon2id with the crate's default parameters and a random salt, as a PHC string.
/// CPU-heavy: call from a blocking thread.
pub(crate) fn hash(code: &str) -> Result<String, TotpError> {
    Argon2::default()
        .hash_password(code.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| TotpError::Crypto("cannot hash a backup code"))
}

/// The index of the first candidate whose hash `code` matches. A stored hash that does not
/// parse matches nothing. CPU-heavy: call from a blocking thread.
pub(crate) fn find<T>(code: &str, candidates: &[T], phc: impl Fn(&T) -> &str) -> Option<usize> {
    let argon2 = Argon2::default();
    candidates.iter().position(|c| {
        PasswordHash::new(phc(c)).is_ok_and(|h| argon2.verify_password(code.as_bytes(), &h).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_well_formed_and_distinct() {
        let codes: Vec<_> = (0..50).map(|_| generate().expect("rng")).collect();
        for c in &codes {
            assert!(is_well_formed(c), "{}", c.as_str());
            let shown = display(c);
            assert_eq!(shown.len(), 14);
            assert_eq!(shown.matches('-').count(), 2);
        }
        let distinct: std::collections::HashSet<&str> = codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(distinct.len(), codes.len());
        assert!(12.0 * 23f64.log2() >= 50.0);
        assert_eq!(display("abcdefghjkmn").as_str(), "abcd-efgh-jkmn");
    }

    #[test]
    fn hash_and_find() {
        let a = hash("abcdefghjkmn").expect("hash");
        let b = hash("abcdefghjkmn").expect("hash");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "a random salt per code");
        let other = hash("zzzzzzzzzzzz").expect("hash");
        let list = [other.clone(), "not a phc string".to_string(), a];
        assert_eq!(find("abcdefghjkmn", &list, |s| s.as_str()), Some(2));
        assert_eq!(find("zzzzzzzzzzzz", &list, |s| s.as_str()), Some(0));
        assert_eq!(find("abcdefghjkmm", &list, |s| s.as_str()), None);
    }
}
