//! The sentence for each refused line of SSH keys, in the page's language.

use crate::authorized_keys::{LineRefusal, Refusal, MIN_RSA_BITS};
use crate::i18n::Lang;

/// "Line 2: …", or "All keys together: …" for the input as a whole.
pub fn describe(t: Lang, refusal: &LineRefusal) -> String {
    let problem = problem(t, &refusal.reason);
    if refusal.line == 0 {
        t.tr_with("keys.all_keys", &[("problem", &problem)])
    } else {
        t.tr_with(
            "keys.line",
            &[("line", &refusal.line), ("problem", &problem)],
        )
    }
}

fn problem(t: Lang, reason: &Refusal) -> String {
    match reason {
        Refusal::Options => t.tr("keys.refusal.options").into(),
        Refusal::PrivateKey => t.tr("keys.refusal.private_key").into(),
        Refusal::Certificate => t.tr("keys.refusal.certificate").into(),
        Refusal::CertificateWithoutExpiry => t.tr("keys.refusal.certificate_without_expiry").into(),
        Refusal::Duplicate { first_line } => {
            t.tr_with("keys.refusal.duplicate", &[("first", first_line)])
        }
        Refusal::AlreadyStored => t.tr("keys.refusal.already_stored").into(),
        Refusal::TooMany { max } => t.tr_with("keys.refusal.too_many", &[("max", max)]),
        Refusal::TooLarge => t.tr("keys.refusal.too_large").into(),
        Refusal::NonPrintable => t.tr("keys.refusal.non_printable").into(),
        // The type name comes from the user's line: it is shown escaped, and it passed the
        // printable check, but it is capped so a long token cannot fill the page.
        Refusal::Algorithm { name } => {
            let name: String = name.chars().take(64).collect();
            t.tr_with("keys.refusal.algorithm", &[("name", &name)])
        }
        Refusal::RsaTooShort { bits } => {
            debug_assert!(*bits < MIN_RSA_BITS);
            t.tr_with("keys.refusal.rsa_too_short", &[("bits", bits)])
        }
        Refusal::Unreadable => t.tr("keys.refusal.unreadable").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_words_in_both_languages() {
        let all = [
            Refusal::Options,
            Refusal::PrivateKey,
            Refusal::Certificate,
            Refusal::CertificateWithoutExpiry,
            Refusal::Duplicate { first_line: 1 },
            Refusal::AlreadyStored,
            Refusal::TooMany { max: 10 },
            Refusal::TooLarge,
            Refusal::NonPrintable,
            Refusal::Algorithm {
                name: "ssh-dss".into(),
            },
            Refusal::RsaTooShort { bits: 2048 },
            Refusal::Unreadable,
        ];
        for lang in ["en", "de"] {
            let t = Lang::negotiate(Some(lang));
            let mut seen = std::collections::HashSet::new();
            for reason in &all {
                let text = describe(
                    t,
                    &LineRefusal {
                        line: 3,
                        reason: reason.clone(),
                    },
                );
                assert!(
                    !text.contains('{'),
                    "{lang}: unfilled placeholder in {text}"
                );
                assert!(text.contains('3'), "{lang}: no line number in {text}");
                assert!(seen.insert(text.clone()), "{lang}: said twice: {text}");
            }
        }
        let de = Lang::negotiate(Some("de"));
        let private = describe(
            de,
            &LineRefusal {
                line: 1,
                reason: Refusal::PrivateKey,
            },
        );
        assert!(private.contains("nie"), "{private}");
    }
}
