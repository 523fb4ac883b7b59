//! How old a user's password is, in the terms the portal shows: expired, must be changed
//! soon, days left. Knows nothing about HTTP.
//!
//! TrueNAS' rules, as read in the middleware sources (25.04.1 to 27):
//! - `system.security.config` `max_password_age` (7–365 days or null) is written into the
//!   shadow file with inactivity 0 (utils/security.py `shadow_parse_aging`), and pam_unix
//!   refuses the account once the UTC dates of today and of the last change are more than the
//!   maximum apart: expired means `age > max`, not `≥`. `login_ex` then answers `EXPIRED`
//!   (utils/account/authenticator.py turns "Your account has expired" into PAM_ACCT_EXPIRED).
//! - `user.query` `password_change_required` is `password_age >= max − 6` (plugins/account.py
//!   `user_extend`, PASSWORD_PROMPT_AGE = 6).
//! - root never ages (`shadow_parse_aging` special case), nor an account whose password is
//!   disabled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::truenas::{NasClient, NasUser};

const DAY_SECS: i64 = 86_400;
/// PASSWORD_PROMPT_AGE in TrueNAS' utils/security.py.
pub const PROMPT_DAYS: i64 = 6;

/// What the portal tells a user about their password's age. Serialised as
/// `{"expired": …, "change_required": …, "days_left": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PasswordAging {
    pub expired: bool,
    pub change_required: bool,
    /// `max_password_age − age`, when TrueNAS has a maximum age and knows the age: 0 is the
    /// last day the password works, below 0 it has expired.
    pub days_left: Option<i64>,
}

/// Whole days between the last change and `now`, counted as pam_unix counts them (UTC
/// dates), or TrueNAS' `password_age` when the change time is not known.
fn age_days(user: &NasUser, now_secs: i64) -> Option<i64> {
    match user.aging.last_change_secs {
        Some(changed) if changed <= now_secs => {
            Some(now_secs.div_euclid(DAY_SECS) - changed.div_euclid(DAY_SECS))
        }
        // A change "in the future": TrueNAS reports no age either.
        Some(_) => None,
        None => user.aging.age_days,
    }
}

/// Reads one user's aging. `max_age` is `system.security`'s `max_password_age`;
/// `confirmed_expired` is true when TrueNAS answered `EXPIRED` and the unix hash confirmed
/// the password (see `verify::truenas`).
pub fn assess(
    user: &NasUser,
    max_age: Option<i64>,
    now_secs: i64,
    confirmed_expired: bool,
) -> PasswordAging {
    let ages = user.username != "root" && !user.password_disabled;
    let max_age = max_age.filter(|_| ages);
    let days_left = max_age
        .zip(age_days(user, now_secs))
        .map(|(max, age)| max - age);
    let expired = confirmed_expired || days_left.is_some_and(|d| d < 0);
    let change_required = expired
        || user.aging.change_required == Some(true)
        || days_left.is_some_and(|d| d <= PROMPT_DAYS);
    PasswordAging {
        expired,
        change_required,
        days_left,
    }
}

fn now_secs() -> i64 {
    i64::try_from(crate::totp::unix_now()).unwrap_or(i64::MAX)
}

/// How long a `max_password_age` read is reused. An administrator changing the setting
/// waits this long to see it in the portal; in exchange a sign-in costs no extra TrueNAS
/// call. A failed read is retried sooner.
pub const MAX_AGE_TTL: Duration = Duration::from_secs(300);
const MAX_AGE_ERROR_TTL: Duration = Duration::from_secs(60);

/// The cached `max_password_age`, owned by the `Authenticator` (one per process).
pub struct MaxAgeCache {
    slot: tokio::sync::Mutex<Option<(Instant, Option<i64>)>>,
}

impl Default for MaxAgeCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MaxAgeCache {
    pub fn new() -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The maximum age, read from TrueNAS at most every [`MAX_AGE_TTL`]. A failed read is
    /// "no maximum known" (the portal then shows only what TrueNAS said per user), so a key
    /// without the SYSTEM_SECURITY_READ role never blocks a sign-in.
    pub async fn get(&self, nas: &dyn NasClient) -> Option<i64> {
        // Held across the read so that a burst of sign-ins costs one call, not one each.
        let mut slot = self.slot.lock().await;
        if let Some((until, value)) = *slot {
            if Instant::now() < until {
                return value;
            }
        }
        let (value, ttl) = match nas.password_max_age().await {
            Ok(value) => (value, MAX_AGE_TTL),
            Err(e) => {
                tracing::warn!(error = %e, "could not read system.security max_password_age");
                (None, MAX_AGE_ERROR_TTL)
            }
        };
        *slot = Some((Instant::now() + ttl, value));
        value
    }
}

/// Users whose last sign-in TrueNAS answered with a confirmed `EXPIRED`, so that later pages
/// still say so when the age alone cannot tell (no maximum readable, or no
/// `last_password_change`: TrueNAS then forces a change, see `shadow_parse_aging`).
pub struct ExpiredMarks {
    marks: Mutex<HashMap<String, i64>>,
}

/// Far beyond any session's life; a mark is only a display hint.
const MARK_TTL_SECS: i64 = 24 * 3600;
/// Every entry is a user who proved their password: the cap only guards memory.
const MAX_MARKS: usize = 10_000;

impl Default for ExpiredMarks {
    fn default() -> Self {
        Self::new()
    }
}

impl ExpiredMarks {
    pub fn new() -> Self {
        Self {
            marks: Mutex::new(HashMap::new()),
        }
    }

    /// Records the outcome of a verified sign-in.
    pub fn record(&self, username: &str, expired: bool) {
        let Ok(mut marks) = self.marks.lock() else {
            return;
        };
        if !expired {
            marks.remove(username);
            return;
        }
        let now = now_secs();
        if marks.len() >= MAX_MARKS {
            marks.retain(|_, at| now - *at < MARK_TTL_SECS);
        }
        if marks.len() < MAX_MARKS || marks.contains_key(username) {
            marks.insert(username.to_owned(), now);
        }
    }

    /// True while the mark stands: younger than a day, and no password change since.
    pub fn is_marked(&self, user: &NasUser) -> bool {
        let Ok(marks) = self.marks.lock() else {
            return false;
        };
        marks.get(&user.username).is_some_and(|at| {
            now_secs() - at < MARK_TTL_SECS
                && user
                    .aging
                    .last_change_secs
                    .is_none_or(|changed| changed < *at)
        })
    }
}

/// The aging of a signed-in user as pages show it: the user's fresh entry, the cached
/// maximum and the sign-in's mark.
pub async fn current(
    nas: &dyn NasClient,
    cache: &MaxAgeCache,
    marks: &ExpiredMarks,
    user: &NasUser,
) -> PasswordAging {
    let max_age = cache.get(nas).await;
    assess(user, max_age, now_secs(), marks.is_marked(user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truenas::UserAging;

    const NOW: i64 = 20_000 * DAY_SECS + 12 * 3600;

    fn user(aging: UserAging) -> NasUser {
        NasUser {
            aging,
            ..NasUser::sample("alice")
        }
    }

    fn changed_days_ago(days: i64) -> NasUser {
        user(UserAging {
            last_change_secs: Some(NOW - days * DAY_SECS),
            age_days: Some(days),
            change_required: None,
        })
    }

    #[test]
    fn serialises_as_the_api_promises() {
        let a = PasswordAging {
            expired: false,
            change_required: true,
            days_left: Some(3),
        };
        assert_eq!(
            serde_json::to_value(a).expect("serialises"),
            serde_json::json!({"expired": false, "change_required": true, "days_left": 3})
        );
        let none = assess(&changed_days_ago(5), None, NOW, false);
        assert_eq!(
            serde_json::to_value(none).expect("serialises"),
            serde_json::json!({"expired": false, "change_required": false, "days_left": null})
        );
    }

    #[test]
    fn days_left_and_expiry_at_the_boundary() {
        let at = |days| assess(&changed_days_ago(days), Some(30), NOW, false);
        assert_eq!(at(10).days_left, Some(20));
        assert!(!at(10).change_required);
        assert!(!at(23).change_required, "7 days left");
        assert!(at(24).change_required, "6 days left: TrueNAS' prompt");
        assert!(!at(24).expired);
        // The maximum age itself is still a working day (pam_unix: passed > max).
        assert_eq!(at(30).days_left, Some(0));
        assert!(!at(30).expired);
        assert!(at(31).expired);
        assert!(at(31).change_required);
        assert_eq!(at(31).days_left, Some(-1));
    }

    #[test]
    fn the_age_counts_utc_dates_like_pam() {
        // Changed late on one day, read early on another: 31 dates apart, 30.1 days elapsed.
        let mut u = changed_days_ago(0);
        u.aging.last_change_secs = Some(NOW - 31 * DAY_SECS + 11 * 3600);
        u.aging.age_days = Some(30);
        assert!(assess(&u, Some(30), NOW, false).expired);
        // Without the change time, TrueNAS' own password_age is used.
        u.aging.last_change_secs = None;
        assert_eq!(assess(&u, Some(30), NOW, false).days_left, Some(0));
    }

    #[test]
    fn confirmed_expired_and_truenas_flag_count_without_a_maximum() {
        let u = changed_days_ago(3);
        let expired = assess(&u, None, NOW, true);
        assert!(expired.expired && expired.change_required);
        assert_eq!(expired.days_left, None);
        let mut flagged = changed_days_ago(3);
        flagged.aging.change_required = Some(true);
        let a = assess(&flagged, None, NOW, false);
        assert!(a.change_required && !a.expired);
        assert_eq!(a.days_left, None);
    }

    #[test]
    fn root_and_password_disabled_accounts_do_not_age() {
        let mut root = changed_days_ago(400);
        root.username = "root".into();
        assert_eq!(
            assess(&root, Some(30), NOW, false),
            PasswordAging {
                expired: false,
                change_required: false,
                days_left: None
            }
        );
        let mut disabled = changed_days_ago(400);
        disabled.password_disabled = true;
        assert!(!assess(&disabled, Some(30), NOW, false).expired);
    }

    #[test]
    fn unknown_age_has_no_days_left() {
        let u = user(UserAging::default());
        let a = assess(&u, Some(30), NOW, false);
        assert_eq!(a.days_left, None);
        assert!(!a.expired && !a.change_required);
        let mut future = changed_days_ago(0);
        future.aging.last_change_secs = Some(NOW + DAY_SECS);
        assert_eq!(assess(&future, Some(30), NOW, false).days_left, None);
    }

    #[test]
    fn a_mark_lasts_until_a_change_or_a_clean_sign_in() {
        let marks = ExpiredMarks::new();
        let mut u = user(UserAging {
            last_change_secs: Some(now_secs() - 90 * DAY_SECS),
            ..UserAging::default()
        });
        assert!(!marks.is_marked(&u));
        marks.record("alice", true);
        assert!(marks.is_marked(&u));
        u.aging.last_change_secs = None;
        assert!(marks.is_marked(&u), "no change time: the mark stands");
        u.aging.last_change_secs = Some(now_secs() + 5);
        assert!(!marks.is_marked(&u), "changed after the mark");
        u.aging.last_change_secs = None;
        marks.record("alice", false);
        assert!(!marks.is_marked(&u));
    }
}
