//! What passgate's mails say, in the language of the request that caused them. Plain text:
//! no HTML to render, no tracking, and nothing in a notice that acts when clicked.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::i18n::Lang;

/// A mail's subject and body, before it has an address.
pub struct Letter {
    pub subject: String,
    pub text: String,
}

impl std::fmt::Debug for Letter {
    // The body of a reset mail holds the link; only the subject may be shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Letter")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

const WHEN: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute] UTC");

/// `2026-12-02 17:15 UTC`: mails are read later and elsewhere, so the zone is spelled out.
pub fn format_when(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(WHEN).ok())
        .unwrap_or_else(|| String::from("?"))
}

/// The reset link, its expiry, and the link that voids it.
pub fn reset_link(
    t: Lang,
    name: &str,
    link: &str,
    cancel_link: &str,
    expires_ms: i64,
    minutes: u64,
) -> Letter {
    let expires = format_when(expires_ms);
    let text = [
        t.tr_with("mail.greeting", &[("name", &name)]),
        t.tr("mail.reset_intro").to_string(),
        link.to_string(),
        t.tr_n("mail.reset_expires", minutes, &[("when", &expires)]),
        t.tr("mail.reset_not_me").to_string(),
        cancel_link.to_string(),
        t.tr("mail.reset_never_asks").to_string(),
    ]
    .join("\n\n");
    Letter {
        subject: t.tr("mail.reset_subject").to_string(),
        text,
    }
}

/// For a user with TrueNAS two-factor authentication: a mailbox alone must not replace the
/// factor they chose, so they are told to ask their administrator.
pub fn reset_not_available(t: Lang, name: &str) -> Letter {
    let text = [
        t.tr_with("mail.greeting", &[("name", &name)]),
        t.tr("mail.reset_unavailable").to_string(),
        t.tr("mail.reset_not_me_ignore").to_string(),
    ]
    .join("\n\n");
    Letter {
        subject: t.tr("mail.reset_subject").to_string(),
        text,
    }
}

/// What a change notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    PasswordChanged,
    PasswordReset,
    TotpEnabled,
    TotpDisabled,
    /// An administrator removed it (`passgate totp reset`).
    TotpReset,
    SshKeysChanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::PasswordChanged => "password_changed",
            Change::PasswordReset => "password_reset",
            Change::TotpEnabled => "totp_enabled",
            Change::TotpDisabled => "totp_disabled",
            Change::TotpReset => "totp_reset",
            Change::SshKeysChanged => "ssh_keys_changed",
        }
    }

    fn sentence(self, t: Lang) -> &'static str {
        match self {
            Change::PasswordChanged => t.tr("mail.change_password"),
            Change::PasswordReset => t.tr("mail.change_reset"),
            Change::TotpEnabled => t.tr("mail.change_totp_on"),
            Change::TotpDisabled => t.tr("mail.change_totp_off"),
            Change::TotpReset => t.tr("mail.change_totp_reset"),
            Change::SshKeysChanged => t.tr("mail.change_ssh_keys"),
        }
    }
}

/// "Your password was changed": what, when, from where, and what to do if it was not them.
pub fn change_notice(t: Lang, name: &str, change: Change, at_ms: i64, client: &str) -> Letter {
    let when = format_when(at_ms);
    let text = [
        t.tr_with("mail.greeting", &[("name", &name)]),
        change.sentence(t).to_string(),
        t.tr_with("mail.change_when", &[("when", &when), ("ip", &client)]),
        t.tr("mail.change_not_me").to_string(),
    ]
    .join("\n\n");
    Letter {
        subject: t.tr("mail.change_subject").to_string(),
        text,
    }
}

/// "Your password expires in N days": when, and where to change it (the portal's own
/// address; a link to a page, not one that acts).
pub fn expiry_reminder(
    t: Lang,
    name: &str,
    days_left: u64,
    expires_ms: i64,
    portal: Option<&str>,
) -> Letter {
    let when = format_when(expires_ms);
    let mut parts = vec![
        t.tr_with("mail.greeting", &[("name", &name)]),
        t.tr_n("mail.expiry_text", days_left, &[("when", &when)]),
    ];
    match portal {
        Some(url) => {
            parts.push(t.tr("mail.expiry_where").to_string());
            parts.push(format!("{url}/login"));
        }
        None => parts.push(t.tr("mail.expiry_ask").to_string()),
    }
    parts.push(t.tr("mail.reset_never_asks").to_string());
    Letter {
        subject: t.tr_n("mail.expiry_subject", days_left, &[]),
        text: parts.join("\n\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_mail_holds_both_links_and_the_expiry_in_each_language() {
        for tag in ["en", "de"] {
            let t = Lang::negotiate(Some(tag));
            let letter = reset_link(
                t,
                "Alice",
                "https://nas.example/reset/TOKEN",
                "https://nas.example/reset/TOKEN/cancel",
                1_764_695_700_000,
                15,
            );
            assert!(letter.text.contains("https://nas.example/reset/TOKEN\n"));
            assert!(letter
                .text
                .contains("https://nas.example/reset/TOKEN/cancel"));
            assert!(
                letter.text.contains("2025-12-02 17:15 UTC"),
                "{}",
                letter.text
            );
            assert!(letter.text.contains("15"));
            assert!(!format!("{letter:?}").contains("TOKEN"));
        }
        let de = reset_link(Lang::negotiate(Some("de")), "A", "l", "c", 0, 15);
        assert!(de.subject.contains("Passwort"), "{}", de.subject);
    }

    #[test]
    fn a_reminder_says_when_and_where() {
        let t = Lang::negotiate(Some("de"));
        let letter = expiry_reminder(t, "Dave", 3, 86_400_000, Some("https://nas.example"));
        assert!(letter.text.contains("3 Tagen"), "{}", letter.text);
        assert!(
            letter.text.contains("1970-01-02 00:00 UTC"),
            "{}",
            letter.text
        );
        assert!(letter.text.contains("https://nas.example/login"));
        let plain = expiry_reminder(Lang::english(), "Dave", 1, 0, None);
        assert!(plain.subject.contains("1 day"), "{}", plain.subject);
        assert!(!plain.text.contains("http"));
    }

    #[test]
    fn a_notice_has_no_link() {
        let letter = change_notice(
            Lang::english(),
            "Bob",
            Change::PasswordChanged,
            0,
            "192.0.2.7",
        );
        assert!(letter.text.contains("192.0.2.7"));
        assert!(letter.text.contains("1970-01-01 00:00 UTC"));
        assert!(!letter.text.contains("http"), "{}", letter.text);
    }
}
