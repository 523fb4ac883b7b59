//! The portal's own password rules, checked before TrueNAS applies its own: length, a
//! zxcvbn strength estimate, different from the current password, typed the same twice.
//! Texts come from the message catalogue; `Display` is the English text (the JSON API).

use std::fmt;

use zxcvbn::feedback::{Suggestion, Warning};

use crate::i18n::Lang;

/// Linux PAM accepts at most 512 bytes (PAM_MAX_RESP_SIZE), so TrueNAS could never verify a
/// longer password; and SHA-512 crypt's cost grows with length, so the cap also keeps one
/// request from buying seconds of CPU.
pub const MAX_PASSWORD_BYTES: usize = 512;
/// zxcvbn's scale: 0 (guessable in about 10³ tries) to 4 (more than 10¹⁰).
pub const MAX_STRENGTH: u8 = 4;

/// zxcvbn's explanation of a weak password, kept as its enums so that each language
/// translates them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Feedback {
    pub warning: Option<Warning>,
    pub suggestions: Vec<Suggestion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Strength {
    /// 0 to 4.
    pub score: u8,
    pub feedback: Feedback,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    Empty,
    ContainsNul,
    TooShort {
        min: usize,
    },
    TooLong {
        max: usize,
    },
    SameAsCurrent,
    TooWeak {
        score: u8,
        min: u8,
        feedback: Feedback,
    },
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
            Violation::TooWeak { .. } => "too_weak",
            Violation::ConfirmationMismatch => "confirmation_mismatch",
        }
    }

    /// The rule that failed, in one sentence that starts with the rule's name.
    pub fn describe(&self, lang: Lang) -> String {
        match self {
            Violation::Empty => lang.tr("policy.empty").to_string(),
            Violation::ContainsNul => lang.tr("policy.contains_nul").to_string(),
            Violation::TooShort { min } => lang.tr_with("policy.too_short", &[("min", min)]),
            Violation::TooLong { max } => lang.tr_with("policy.too_long", &[("max", max)]),
            Violation::SameAsCurrent => lang.tr("policy.same_as_current").to_string(),
            Violation::TooWeak { score, min, .. } => {
                lang.tr_with("policy.too_weak", &[("score", score), ("min", min)])
            }
            Violation::ConfirmationMismatch => lang.tr("policy.confirmation_mismatch").to_string(),
        }
    }

    /// zxcvbn's warning and suggestions, for a password that is too easy to guess.
    pub fn details(&self, lang: Lang) -> Vec<String> {
        match self {
            Violation::TooWeak { feedback, .. } => feedback_texts(feedback, lang),
            _ => Vec::new(),
        }
    }

    /// True when the confirmation field, not the new password, is what to fix.
    pub fn is_confirmation(&self) -> bool {
        matches!(self, Violation::ConfirmationMismatch)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let english = Lang::english();
        write!(f, "{}", self.describe(english))?;
        for detail in self.details(english) {
            write!(f, " {detail}")?;
        }
        Ok(())
    }
}

/// The warning first, then the suggestions; never empty for a refused password.
pub fn feedback_texts(feedback: &Feedback, lang: Lang) -> Vec<String> {
    let warning = feedback.warning.map(|w| warning_text(w, lang));
    let suggestions = feedback
        .suggestions
        .iter()
        .map(|s| suggestion_text(*s, lang));
    warning
        .into_iter()
        .chain(suggestions)
        .map(str::to_string)
        .collect()
}

pub fn score_label(score: u8, lang: Lang) -> &'static str {
    match score {
        0 => lang.tr("strength.score_0"),
        1 => lang.tr("strength.score_1"),
        2 => lang.tr("strength.score_2"),
        3 => lang.tr("strength.score_3"),
        _ => lang.tr("strength.score_4"),
    }
}

fn warning_text(warning: Warning, lang: Lang) -> &'static str {
    match warning {
        Warning::StraightRowsOfKeysAreEasyToGuess => lang.tr("strength.warning.straight_rows"),
        Warning::ShortKeyboardPatternsAreEasyToGuess => {
            lang.tr("strength.warning.short_keyboard_patterns")
        }
        Warning::RepeatsLikeAaaAreEasyToGuess => lang.tr("strength.warning.repeats"),
        Warning::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess => {
            lang.tr("strength.warning.repeated_groups")
        }
        Warning::ThisIsATop10Password => lang.tr("strength.warning.top10"),
        Warning::ThisIsATop100Password => lang.tr("strength.warning.top100"),
        Warning::ThisIsACommonPassword => lang.tr("strength.warning.common"),
        Warning::ThisIsSimilarToACommonlyUsedPassword => {
            lang.tr("strength.warning.similar_to_common")
        }
        Warning::SequencesLikeAbcAreEasyToGuess => lang.tr("strength.warning.sequences"),
        Warning::RecentYearsAreEasyToGuess => lang.tr("strength.warning.recent_years"),
        Warning::AWordByItselfIsEasyToGuess => lang.tr("strength.warning.single_word"),
        Warning::DatesAreOftenEasyToGuess => lang.tr("strength.warning.dates"),
        Warning::NamesAndSurnamesByThemselvesAreEasyToGuess => lang.tr("strength.warning.names"),
        Warning::CommonNamesAndSurnamesAreEasyToGuess => lang.tr("strength.warning.common_names"),
    }
}

fn suggestion_text(suggestion: Suggestion, lang: Lang) -> &'static str {
    match suggestion {
        Suggestion::UseAFewWordsAvoidCommonPhrases => lang.tr("strength.suggestion.few_words"),
        Suggestion::NoNeedForSymbolsDigitsOrUppercaseLetters => {
            lang.tr("strength.suggestion.no_need_for_symbols")
        }
        Suggestion::AddAnotherWordOrTwo => lang.tr("strength.suggestion.another_word"),
        Suggestion::CapitalizationDoesntHelpVeryMuch => {
            lang.tr("strength.suggestion.capitalization")
        }
        Suggestion::AllUppercaseIsAlmostAsEasyToGuessAsAllLowercase => {
            lang.tr("strength.suggestion.all_uppercase")
        }
        Suggestion::ReversedWordsArentMuchHarderToGuess => lang.tr("strength.suggestion.reversed"),
        Suggestion::PredictableSubstitutionsDontHelpVeryMuch => {
            lang.tr("strength.suggestion.substitutions")
        }
        Suggestion::UseALongerKeyboardPatternWithMoreTurns => {
            lang.tr("strength.suggestion.longer_keyboard_pattern")
        }
        Suggestion::AvoidRepeatedWordsAndCharacters => lang.tr("strength.suggestion.repeated"),
        Suggestion::AvoidSequences => lang.tr("strength.suggestion.sequences"),
        Suggestion::AvoidRecentYears => lang.tr("strength.suggestion.recent_years"),
        Suggestion::AvoidYearsThatAreAssociatedWithYou => lang.tr("strength.suggestion.years"),
        Suggestion::AvoidDatesAndYearsThatAreAssociatedWithYou => {
            lang.tr("strength.suggestion.dates")
        }
    }
}

/// What zxcvbn should treat as easy to guess for this user: their username, full name and
/// each part of it, and the names of this service.
pub fn user_inputs(username: &str, full_name: &str) -> Vec<String> {
    let mut inputs = vec![username.to_string(), full_name.to_string()];
    inputs.extend(
        full_name
            .split(|c: char| !c.is_alphanumeric())
            .filter(|part| part.chars().count() >= 3)
            .map(str::to_string),
    );
    inputs.extend(["passgate", "truenas"].map(String::from));
    inputs.retain(|s| !s.trim().is_empty());
    inputs
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub min_length: usize,
    /// The zxcvbn score a new password needs, 0 (no check) to 4.
    pub min_strength: u8,
}

impl Policy {
    /// Every rule the new password breaks, in the order a user should fix them. Passwords are
    /// compared exactly as typed: never trimmed or normalised. `user_inputs` are words zxcvbn
    /// treats as easy to guess (see [`user_inputs`]).
    pub fn check(
        &self,
        current: &str,
        new: &str,
        confirmation: Option<&str>,
        user_inputs: &[String],
    ) -> Vec<Violation> {
        let mut violations = self.check_characters(new);
        if violations.contains(&Violation::Empty) {
            return violations;
        }
        if new == current {
            violations.push(Violation::SameAsCurrent);
        } else if let Some(weak) = self.weakness(new, user_inputs) {
            violations.push(weak);
        }
        if let Some(confirmation) = confirmation {
            if confirmation != new {
                violations.push(Violation::ConfirmationMismatch);
            }
        }
        violations
    }

    /// The rules about the text alone: not empty, no NUL, length.
    pub fn check_characters(&self, new: &str) -> Vec<Violation> {
        if new.is_empty() {
            return vec![Violation::Empty];
        }
        let mut violations = Vec::new();
        if new.contains('\0') {
            violations.push(Violation::ContainsNul);
        }
        if new.chars().count() < self.min_length {
            violations.push(Violation::TooShort {
                min: self.min_length,
            });
        }
        if new.len() > MAX_PASSWORD_BYTES {
            violations.push(Violation::TooLong {
                max: MAX_PASSWORD_BYTES,
            });
        }
        violations
    }

    /// zxcvbn's estimate. It reads at most the first 100 characters, so its cost is bounded.
    pub fn strength(&self, new: &str, user_inputs: &[String]) -> Strength {
        let inputs: Vec<&str> = user_inputs.iter().map(String::as_str).collect();
        let entropy = zxcvbn::zxcvbn(new, &inputs);
        let feedback = entropy
            .feedback()
            .map(|f| Feedback {
                warning: f.warning(),
                suggestions: f.suggestions().to_vec(),
            })
            .unwrap_or_default();
        Strength {
            score: u8::from(entropy.score()),
            feedback,
        }
    }

    fn weakness(&self, new: &str, user_inputs: &[String]) -> Option<Violation> {
        if self.min_strength == 0 {
            return None;
        }
        let Strength {
            score,
            mut feedback,
        } = self.strength(new, user_inputs);
        if score >= self.min_strength {
            return None;
        }
        // zxcvbn gives no feedback above score 2; a refusal always says what to do.
        if feedback.warning.is_none() && feedback.suggestions.is_empty() {
            feedback.suggestions.push(Suggestion::AddAnotherWordOrTwo);
        }
        Some(Violation::TooWeak {
            score,
            min: self.min_strength,
            feedback,
        })
    }

    /// The rules, shown before the user types.
    pub fn rules(&self, lang: Lang) -> Vec<String> {
        self.listed_rules(lang, true)
    }

    /// The rules on the reset form: the current password is not known there, so "different
    /// from your current password" is left to TrueNAS' history rule rather than promised.
    pub fn reset_rules(&self, lang: Lang) -> Vec<String> {
        self.listed_rules(lang, false)
    }

    fn listed_rules(&self, lang: Lang, knows_current: bool) -> Vec<String> {
        let mut rules = vec![lang.tr_with("policy.rule_length", &[("min", &self.min_length)])];
        if self.min_strength > 0 {
            rules.push(lang.tr_with("policy.rule_strength", &[("min", &self.min_strength)]));
        }
        if knows_current {
            rules.push(lang.tr("policy.rule_different").to_string());
        }
        rules.push(lang.tr("policy.rule_truenas").to_string());
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_length: 8,
            min_strength: 2,
        }
    }

    fn check(current: &str, new: &str, confirmation: Option<&str>) -> Vec<Violation> {
        policy().check(
            current,
            new,
            confirmation,
            &user_inputs("erin", "Erin Example"),
        )
    }

    #[test]
    fn accepts_a_good_password() {
        assert!(check(
            "old-password",
            "maple-kettle-orbit",
            Some("maple-kettle-orbit")
        )
        .is_empty());
    }

    #[test]
    fn names_each_broken_rule() {
        let v = check("same", "same", Some("other"));
        assert!(v.contains(&Violation::TooShort { min: 8 }));
        assert!(v.contains(&Violation::SameAsCurrent));
        assert!(v.contains(&Violation::ConfirmationMismatch));
        assert_eq!(check("a", "", None), vec![Violation::Empty]);
        assert!(check("a", "abc\0defghij", None).contains(&Violation::ContainsNul));
        assert!(check("a", &"x".repeat(2000), None).contains(&Violation::TooLong { max: 512 }));
    }

    #[test]
    fn a_guessable_password_is_refused_with_zxcvbn_feedback() {
        let v = check("old-password", "password1234", None);
        let Some(Violation::TooWeak {
            score,
            min,
            feedback,
        }) = v.iter().find(|v| v.code() == "too_weak")
        else {
            panic!("not refused as too weak: {v:?}");
        };
        assert!(*score < 2 && *min == 2);
        assert!(feedback.warning.is_some() || !feedback.suggestions.is_empty());
        let english = v[0].to_string();
        assert!(english.starts_with("Hard to guess:"), "{english}");
        // The username and the parts of the full name count as known words.
        let inputs = user_inputs("zorbuflex", "Quandary Zorbuflex");
        assert!(policy().strength("Zorbuflex2024", &[]).score >= 3);
        assert!(policy()
            .check("x", "Zorbuflex2024", None, &inputs)
            .iter()
            .any(|v| v.code() == "too_weak"));
        // Zero turns the estimate off.
        let lax = Policy {
            min_length: 8,
            min_strength: 0,
        };
        assert!(lax.check("x", "password1234", None, &[]).is_empty());
    }

    #[test]
    fn german_texts_come_from_the_catalogue() {
        let de = Lang::negotiate(Some("de"));
        let v = check("x", "password1234", None);
        let text = v[0].describe(de);
        assert!(text.starts_with("Schwer zu erraten"), "{text}");
        assert!(!v[0].details(de).is_empty());
        assert!(policy().rules(de)[0].contains("Mindestens 8 Zeichen"));
    }

    #[test]
    fn never_trims_or_normalises() {
        let lax = Policy {
            min_length: 8,
            min_strength: 0,
        };
        // A trailing space is part of the password, so these differ.
        assert!(lax.check("password1", "password1 ", None, &[]).is_empty());
        // Length counts characters, not bytes: eight umlauts are eight characters.
        assert!(lax.check("x", "ääääääää", None, &[]).is_empty());
        // Composed and decomposed forms are different passwords; no normalisation.
        assert!(lax
            .check("caf\u{e9}-caf\u{e9}", "cafe\u{301}-cafe\u{301}", None, &[])
            .is_empty());
    }
}
