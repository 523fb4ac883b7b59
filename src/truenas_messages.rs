//! TrueNAS' validation messages (plugins/account.py) in plain words for the password page.
//! Unknown messages are shown as TrueNAS wrote them, never dropped.

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

pub fn plain_words(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("does not match any of the last") {
        let n = number_after(&lower, "any of the last").unwrap_or_else(|| String::from("few"));
        format!("You have used this password before. The NAS does not allow any of your last {n} passwords. Choose one you have not used.")
    } else if lower.contains("minimum complexity requirements") {
        let missing = message
            .split_once("absent:")
            .map(|(_, rest)| rest.trim().trim_end_matches('.').to_lowercase())
            .unwrap_or_default();
        if missing.is_empty() {
            String::from("The NAS requires more kinds of characters in the password.")
        } else {
            format!("The NAS requires more kinds of characters. Add: {missing} (upper = capital letters, lower = small letters, number = digits, special = symbols such as ! or #).")
        }
    } else if lower.contains("password is too short") {
        match number_after(&lower, "minimum password length is") {
            Some(n) => format!("The NAS requires at least {n} characters."),
            None => String::from("The NAS requires a longer password."),
        }
    } else if lower.contains("changed too recently") {
        String::from("You changed your password too recently. The NAS requires a waiting period between changes; try again later.")
    } else if lower.contains("account is locked") {
        String::from("Your account is locked on the NAS. Ask your administrator to unlock it.")
    } else if lower.contains("password authentication disabled") {
        String::from("Password sign-in is turned off for your account. Ask your administrator.")
    } else {
        format!("The NAS refused the new password: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_messages_become_plain_words() {
        let history = "The security configuration of the TrueNAS server requires a password that does not match any of the last 3 passwords for this account.";
        assert!(plain_words(history).contains("last 3 passwords"));
        let complexity = "The specified password does not meet minimum complexity requirements. The following character types are absent: UPPER, SPECIAL";
        assert!(plain_words(complexity).contains("upper, special"));
        assert!(plain_words(
            "The specified password is too short. The minimum password length is 12 characters."
        )
        .contains("12"));
        assert!(plain_words("bob: user account is locked.").contains("locked"));
        assert_eq!(
            plain_words("something new"),
            "The NAS refused the new password: something new"
        );
    }
}
