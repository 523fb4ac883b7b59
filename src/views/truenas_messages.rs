//! TrueNAS' validation messages (plugins/account.py) in plain words for the password page,
//! each naming the TrueNAS rule that failed. Unknown messages are shown as TrueNAS wrote
//! them, never dropped.

use crate::i18n::Lang;

/// The number that follows `marker` in `text`, if any.
fn number_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let digits: String = text[start..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

/// One character class of TrueNAS' complexity rule (`UPPER`, `LOWER`, `NUMBER`, `SPECIAL`).
fn character_class(name: &str, lang: Lang) -> String {
    match name.trim().to_ascii_lowercase().as_str() {
        "upper" => lang.tr("truenas.class_upper").to_string(),
        "lower" => lang.tr("truenas.class_lower").to_string(),
        "number" | "digit" => lang.tr("truenas.class_number").to_string(),
        "special" => lang.tr("truenas.class_special").to_string(),
        other => other.to_string(),
    }
}

pub fn plain_words(message: &str, lang: Lang) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("does not match any of the last") {
        match number_after(&lower, "any of the last") {
            Some(n) => lang.tr_with("truenas.history", &[("n", &n)]),
            None => lang.tr("truenas.history_unknown").to_string(),
        }
    } else if lower.contains("minimum complexity requirements") {
        let missing: Vec<String> = message
            .split_once("absent:")
            .map(|(_, rest)| rest.trim().trim_end_matches('.'))
            .unwrap_or_default()
            .split(',')
            .filter(|c| !c.trim().is_empty())
            .map(|c| character_class(c, lang))
            .collect();
        if missing.is_empty() {
            lang.tr("truenas.complexity_unknown").to_string()
        } else {
            lang.tr_with("truenas.complexity", &[("missing", &missing.join(", "))])
        }
    } else if lower.contains("password is too short") {
        match number_after(&lower, "minimum password length is") {
            Some(n) => lang.tr_with("truenas.too_short", &[("n", &n)]),
            None => lang.tr("truenas.too_short_unknown").to_string(),
        }
    } else if lower.contains("changed too recently") {
        lang.tr("truenas.too_recent").to_string()
    } else if lower.contains("account is locked") {
        lang.tr("truenas.locked").to_string()
    } else if lower.contains("password authentication disabled") {
        lang.tr("truenas.password_disabled").to_string()
    } else {
        lang.tr_with("truenas.other", &[("message", &message)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_messages_become_plain_words() {
        let en = Lang::english();
        let history = "The security configuration of the TrueNAS server requires a password that does not match any of the last 3 passwords for this account.";
        let text = plain_words(history, en);
        assert!(text.contains("last 3 passwords"), "{text}");
        assert!(
            text.starts_with("Password history"),
            "the rule is named: {text}"
        );
        let complexity = "The specified password does not meet minimum complexity requirements. The following character types are absent: UPPER, SPECIAL";
        let text = plain_words(complexity, en);
        assert!(
            text.contains("capital letters (A–Z), symbols such as ! or #"),
            "{text}"
        );
        assert!(plain_words(
            "The specified password is too short. The minimum password length is 12 characters.",
            en
        )
        .contains("12"));
        assert!(plain_words("bob: user account is locked.", en).contains("locked"));
        assert_eq!(
            plain_words("something new {n}", en),
            "TrueNAS refused the new password: something new {n}"
        );
    }

    #[test]
    fn in_german() {
        let de = Lang::negotiate(Some("de"));
        let complexity = "The specified password does not meet minimum complexity requirements. The following character types are absent: UPPER, NUMBER";
        let text = plain_words(complexity, de);
        assert!(
            text.contains("Großbuchstaben (A–Z), Ziffern (0–9)"),
            "{text}"
        );
        let text = plain_words("does not match any of the last 5 passwords", de);
        assert!(text.contains("letzten 5 Passwörter"), "{text}");
    }
}
