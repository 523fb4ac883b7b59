//! Six-digit TOTP codes (RFC 6238: HMAC-SHA1, 30 s steps) and the classification of what a
//! user typed.

use crate::verify::unixhash::constant_time_eq;
use totp_rs::{Algorithm, Builder};
use zeroize::Zeroizing;

use super::{backup, TotpError};

pub(crate) const STEP_SECS: u64 = 30;
const DIGITS: usize = 6;
/// Longer input is refused before any work (a backup code with separators is 14 bytes).
pub(crate) const MAX_INPUT_LEN: usize = 64;

/// What a submitted code can be. Six digits are only ever a TOTP code, a backup code is
/// never digits only, so one input is never tried both ways.
pub(crate) enum Input {
    Totp(Zeroizing<String>),
    Backup(Zeroizing<String>),
    Invalid,
}

/// Lowercases and drops spaces and dashes; anything too long or not ASCII is `Invalid`.
pub(crate) fn classify(raw: &str) -> Input {
    if raw.len() > MAX_INPUT_LEN || !raw.is_ascii() {
        return Input::Invalid;
    }
    let normalised = Zeroizing::new(
        raw.chars()
            .filter(|c| !c.is_ascii_whitespace() && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>(),
    );
    if normalised.len() == DIGITS && normalised.bytes().all(|b| b.is_ascii_digit()) {
        Input::Totp(normalised)
    } else if backup::is_well_formed(&normalised) {
        Input::Backup(normalised)
    } else {
        Input::Invalid
    }
}

/// The outcome of matching a code against the steps around `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    /// Valid for this step, which is newer than any accepted before.
    Fresh(u64),
    /// Valid only for a step already accepted (or older).
    Replayed,
    None,
}

/// Compares `code` with the codes of steps now-1, now and now+1, all three in constant time.
/// `last_step` is the highest step accepted before (None for a secret never used).
pub(crate) fn match_code(
    secret: &[u8],
    code: &str,
    now: u64,
    last_step: Option<u64>,
) -> Result<Match, TotpError> {
    let totp = generator(secret)?;
    let current = now / STEP_SECS;
    let mut fresh = None;
    let mut seen = false;
    for step in current.saturating_sub(1)..=current.saturating_add(1) {
        let expected = Zeroizing::new(totp.generate(step.saturating_mul(STEP_SECS)).to_string());
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            seen = true;
            if last_step.is_none_or(|last| step > last) {
                fresh = Some(step);
            }
        }
    }
    Ok(match (fresh, seen) {
        (Some(step), _) => Match::Fresh(step),
        (None, true) => Match::Replayed,
        (None, false) => Match::None,
    })
}

/// The code of `secret` at `unix_time` (6 digits, SHA1, 30 s). For tests and tools that hold
/// a secret already; the service never needs it.
pub fn code_at(secret: &[u8], unix_time: u64) -> String {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_step_duration(STEP_SECS)
        .with_secret(secret.to_vec())
        .build_noncompliant()
        .generate(unix_time)
        .to_string()
}

/// `build` insists on RFC parameters (a secret of at least 128 bits): anything else stored
/// is refused rather than used.
fn generator(secret: &[u8]) -> Result<totp_rs::Totp, TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_skew(1)
        .with_step_duration(STEP_SECS)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|_| TotpError::Crypto("the stored TOTP secret is not usable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_vectors() {
        let eight = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_step_duration(30)
            .with_secret(RFC_SECRET.to_vec())
            .build()
            .expect("rfc parameters");
        assert_eq!(eight.generate(59).to_string(), "94287082");
        // RFC 6238 appendix B, truncated to 6 digits (the last six of the 8-digit value).
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(RFC_SECRET, t), code, "T={t}");
            assert_eq!(
                match_code(RFC_SECRET, code, t, None).expect("usable"),
                Match::Fresh(t / 30)
            );
        }
    }

    #[test]
    fn window_and_replay() {
        let now = 1_111_111_109;
        let step = now / 30;
        let at = |s: u64| code_at(RFC_SECRET, s * 30);
        let m = |code: &str, last| match_code(RFC_SECRET, code, now, last).expect("usable");
        assert_eq!(m(&at(step - 1), None), Match::Fresh(step - 1));
        assert_eq!(m(&at(step + 1), None), Match::Fresh(step + 1));
        assert_eq!(m(&at(step + 2), None), Match::None);
        assert_eq!(m(&at(step - 2), None), Match::None);
        assert_eq!(m(&at(step), Some(step)), Match::Replayed);
        assert_eq!(m(&at(step - 1), Some(step)), Match::Replayed);
        assert_eq!(m(&at(step + 1), Some(step)), Match::Fresh(step + 1));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(match_code(b"short", "123456", 59, None).is_err());
    }

    #[test]
    fn classification() {
        assert!(matches!(classify("123456"), Input::Totp(c) if c.as_str() == "123456"));
        assert!(matches!(classify(" 123 456 "), Input::Totp(c) if c.as_str() == "123456"));
        assert!(
            matches!(classify("ABCD-efgh-JKMN"), Input::Backup(c) if c.as_str() == "abcdefghjkmn")
        );
        assert!(matches!(classify("abcd efgh jkmn"), Input::Backup(_)));
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "１２３４５６",
            "abcd-efgh-jkm",
            "abcd-efgh-jkmnp",
            "abcd-efgh-jkml",
            "000000000000",
            &"1".repeat(65),
            &format!("123456{}", " ".repeat(60)),
        ] {
            assert!(matches!(classify(bad), Input::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"123456", b"123456"));
        assert!(!constant_time_eq(b"123456", b"123457"));
        assert!(!constant_time_eq(b"123456", b"12345"));
    }
}
