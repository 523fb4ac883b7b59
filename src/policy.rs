//! The portal's own password rules, checked before TrueNAS applies its own.

use std::fmt;

/// Linux PAM accepts at most 512 bytes (PAM_MAX_RESP_SIZE), so TrueNAS could never verify a
/// longer password; and SHA-512 crypt's cost grows with length, so the cap also keeps one
/// request from buying seconds of CPU.
pub const MAX_PASSWORD_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Empty,
    ContainsNul,
    TooShort { min: usize },
    TooLong { max: usize },
    SameAsCurrent,
    ConfirmationMismatch,
}

impl Violation {
    /// Stable machine name, used in audit details.
    pub fn code(&self) -> &'static str {
        match self {
            Violation::Empty => "empty",
            Violation::ContainsNul => "contains_nul",
            Violation::TooShort { .. } => "too_short",
            Violation::TooLong { .. } => "too_long",
            Violation::SameAsCurrent => "same_as_current",
            Violation::ConfirmationMismatch => "confirmation_mismatch",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Empty => write!(f, "Enter a new password."),
            Violation::ContainsNul => write!(
                f,
                "The new password contains a NUL character, which TrueNAS cannot store. Choose another."
            ),
            Violation::TooShort { min } => {
                write!(f, "The new password must be at least {min} characters long.")
            }
            Violation::TooLong { max } => {
                write!(f, "The new password must be at most {max} bytes long.")
            }
            Violation::SameAsCurrent => {
                write!(f, "The new password must be different from the current one.")
            }
            Violation::ConfirmationMismatch => {
                write!(f, "The two new passwords do not match. Type the same password twice.")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub min_length: usize,
}

impl Policy {
    /// Every rule the new password breaks, in the order a user should fix them. Passwords are
    /// compared exactly as typed: never trimmed or normalised.
    pub fn check(&self, current: &str, new: &str, confirmation: Option<&str>) -> Vec<Violation> {
        let mut violations = Vec::new();
        if new.is_empty() {
            violations.push(Violation::Empty);
            return violations;
        }
        if new.contains('\0') {
            violations.push(Violation::ContainsNul);
        }
        let length = new.chars().count();
        if length < self.min_length {
            violations.push(Violation::TooShort {
                min: self.min_length,
            });
        }
        if new.len() > MAX_PASSWORD_BYTES {
            violations.push(Violation::TooLong {
                max: MAX_PASSWORD_BYTES,
            });
        }
        if new == current {
            violations.push(Violation::SameAsCurrent);
        }
        if let Some(confirmation) = confirmation {
            if confirmation != new {
                violations.push(Violation::ConfirmationMismatch);
            }
        }
        violations
    }

    /// A short description shown before the user types.
    pub fn summary(&self) -> String {
        format!(
            "At least {} characters, different from your current password. TrueNAS may add its own rules.",
            self.min_length
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy { min_length: 8 }
    }

    #[test]
    fn accepts_a_good_password() {
        assert!(policy()
            .check("old-password", "new-password", Some("new-password"))
            .is_empty());
    }

    #[test]
    fn names_each_broken_rule() {
        let v = policy().check("same", "same", Some("other"));
        assert!(v.contains(&Violation::TooShort { min: 8 }));
        assert!(v.contains(&Violation::SameAsCurrent));
        assert!(v.contains(&Violation::ConfirmationMismatch));
        assert_eq!(policy().check("a", "", None), vec![Violation::Empty]);
        assert!(policy()
            .check("a", "abc\0defghij", None)
            .contains(&Violation::ContainsNul));
        assert!(policy()
            .check("a", &"x".repeat(2000), None)
            .contains(&Violation::TooLong { max: 512 }));
    }

    #[test]
    fn never_trims_or_normalises() {
        // A trailing space is part of the password, so these differ.
        assert!(policy().check("password1", "password1 ", None).is_empty());
        // Length counts characters, not bytes: eight umlauts are eight characters.
        assert!(policy().check("x", "ääääääää", None).is_empty());
        // Composed and decomposed forms are different passwords; no normalisation.
        assert!(policy()
            .check("caf\u{e9}-caf\u{e9}", "cafe\u{301}-cafe\u{301}", None)
            .is_empty());
    }
}
