//! Reminders before a password expires (TrueNAS' `max_password_age`): each local user whose
//! password expires within one of `notify.expiry_days` gets one mail for that threshold,
//! remembered in `expiry_reminders` (migrations/0006) so that a daily sweep and a cron job
//! never mail twice. A new password starts over.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use sqlx::SqlitePool;

use crate::audit::{Audit, Event, Outcome, Record};
use crate::auth::password_aging::assess;
use crate::auth::reset_tokens::now_ms;
use crate::i18n::Lang;
use crate::mail::letters;
use crate::mail::{Mail, Mailer};
use crate::truenas::{NasClient, NasError, NasUser};
use crate::verify::account_refusal;

const DAY_MS: i64 = 86_400_000;
/// Rows of passwords changed long ago say nothing any more.
const KEEP_MS: i64 = 400 * DAY_MS;

pub struct ExpiryReminders {
    pub nas: Arc<dyn NasClient>,
    pub mailer: Arc<dyn Mailer>,
    pub pool: SqlitePool,
    pub audit: Audit,
    /// Sorted, smallest first.
    thresholds: Vec<u32>,
    pub lang: Lang,
    /// `server.public_url`, for "change it here".
    pub portal: Option<String>,
    pub allow_root: bool,
}

/// One user the sweep found, and what it did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Due {
    pub username: String,
    pub days_left: i64,
    pub threshold_days: u32,
    /// `sent`, `already_sent`, `no_email`, `mail_failed` or, dry, `would_send`.
    pub status: &'static str,
}

impl ExpiryReminders {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nas: Arc<dyn NasClient>,
        mailer: Arc<dyn Mailer>,
        pool: SqlitePool,
        audit: Audit,
        mut thresholds: Vec<u32>,
        lang: Lang,
        portal: Option<String>,
        allow_root: bool,
    ) -> Self {
        thresholds.sort_unstable();
        thresholds.dedup();
        Self {
            nas,
            mailer,
            pool,
            audit,
            thresholds,
            lang,
            portal,
            allow_root,
        }
    }

    /// The smallest threshold that `days_left` is within, if any.
    fn threshold_for(&self, days_left: i64) -> Option<u32> {
        if days_left < 0 {
            return None;
        }
        self.thresholds
            .iter()
            .copied()
            .find(|t| i64::from(*t) >= days_left)
    }

    /// One pass over every local user. `dry`: lists who would be mailed, mails nobody and
    /// remembers nothing.
    pub async fn sweep(&self, dry: bool) -> Result<Vec<Due>, NasError> {
        let Some(max_age) = self.nas.password_max_age().await? else {
            return Ok(Vec::new());
        };
        if self.thresholds.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut found = Vec::new();
        for user in self.nas.list_users().await? {
            if account_refusal(&user, self.allow_root).is_some() {
                continue;
            }
            let aging = assess(&user, Some(max_age), now.div_euclid(1000), false);
            let Some(days_left) = aging.days_left else {
                continue;
            };
            let Some(threshold) = self.threshold_for(days_left) else {
                continue;
            };
            let status = self.remind(&user, days_left, threshold, now, dry).await;
            found.push(Due {
                username: user.username.clone(),
                days_left,
                threshold_days: threshold,
                status,
            });
        }
        if !dry {
            if let Err(e) = sqlx::query("DELETE FROM expiry_reminders WHERE sent_ms < ?")
                .bind(now - KEEP_MS)
                .execute(&self.pool)
                .await
            {
                tracing::warn!(error = %e, "old expiry reminders not purged");
            }
        }
        Ok(found)
    }

    async fn remind(
        &self,
        user: &NasUser,
        days_left: i64,
        threshold: u32,
        now: i64,
        dry: bool,
    ) -> &'static str {
        let Some(to) = user.email.clone() else {
            return "no_email";
        };
        let changed = user.aging.last_change_secs.unwrap_or(0);
        let seen: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "SELECT sent_ms FROM expiry_reminders \
             WHERE username = ? AND threshold_days = ? AND password_changed = ?",
        )
        .bind(&user.username)
        .bind(threshold)
        .bind(changed)
        .fetch_optional(&self.pool)
        .await;
        match seen {
            Ok(Some(_)) => return "already_sent",
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "expiry reminders unreadable");
                return "mail_failed";
            }
        }
        if dry {
            return "would_send";
        }
        let expires_ms = now + days_left * DAY_MS;
        let name = if user.full_name.trim().is_empty() {
            user.username.as_str()
        } else {
            user.full_name.as_str()
        };
        let letter = letters::expiry_reminder(
            self.lang,
            name,
            days_left.unsigned_abs(),
            expires_ms,
            self.portal.as_deref(),
        );
        let mail = Mail {
            to,
            subject: letter.subject,
            text: letter.text,
        };
        let detail = |error: Option<String>| json!({"threshold_days": threshold, "days_left": days_left, "error": error});
        if let Err(e) = self.mailer.send(&mail).await {
            self.audit.record(
                Record::new(Event::ExpiryReminderMailed, Outcome::Error)
                    .user(&user.username)
                    .reason("mail_failed")
                    .detail(detail(Some(e.to_string()))),
            );
            return "mail_failed";
        }
        let stored = sqlx::query(
            "INSERT OR IGNORE INTO expiry_reminders \
             (username, threshold_days, password_changed, sent_ms) VALUES (?, ?, ?, ?)",
        )
        .bind(&user.username)
        .bind(threshold)
        .bind(changed)
        .bind(now)
        .execute(&self.pool)
        .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "an expiry reminder was sent but not remembered");
        }
        self.audit.record(
            Record::new(Event::ExpiryReminderMailed, Outcome::Success)
                .user(&user.username)
                .reason("sent")
                .detail(detail(None)),
        );
        "sent"
    }
}
