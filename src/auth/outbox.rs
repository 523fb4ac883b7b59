//! The mails passgate sends, sent after the answer from a bounded queue by one task: a reset
//! request answers the same, at the same speed, whatever the name (the lookup, the checks and
//! the mail all happen here, later), and a slow relay never holds a request.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::audit::{Audit, Context, Event, Outcome, Record};
use crate::auth::admins::AdminPolicy;
use crate::auth::authenticator::plausible_username;
use crate::auth::reset_tokens::{now_ms, token_text, ResetTokens};
use crate::i18n::Lang;
use crate::mail::letters::{self, Change, Letter};
use crate::mail::{Mail, Mailer};
use crate::truenas::{NasClient, NasUser};
use crate::verify::account_refusal;

/// Jobs waiting for the mail task. A flood beyond this is refused at the door (and
/// audited), not buffered without end.
pub const QUEUE_CAPACITY: usize = 256;

/// What reset by mail is allowed to do, from `[reset]`, `[mail]` and `auth.allow_root`.
#[derive(Debug, Clone)]
pub struct ResetSettings {
    pub enabled: bool,
    /// `server.public_url` without its trailing slash.
    pub public_base: String,
    pub mail_interval: Duration,
    pub allow_roles: bool,
    pub allow_root: bool,
    pub notify_changes: bool,
}

enum Job {
    Reset {
        username: String,
        lang: Lang,
        context: Context,
    },
    Notice {
        username: String,
        change: Change,
        at_ms: i64,
        lang: Lang,
        context: Context,
    },
}

/// The queue's sending end, held by the actions.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Job>,
    audit: Audit,
}

/// Everything the mail task needs.
pub struct Mailroom {
    pub nas: Arc<dyn NasClient>,
    pub mailer: Arc<dyn Mailer>,
    pub tokens: Arc<ResetTokens>,
    pub admins: Arc<AdminPolicy>,
    pub audit: Audit,
    pub settings: ResetSettings,
}

impl Outbox {
    /// Starts the mail task; it ends when the last `Outbox` is dropped.
    pub fn start(room: Mailroom) -> Outbox {
        let (tx, mut rx) = mpsc::channel(QUEUE_CAPACITY);
        let audit = room.audit.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                room.run(job).await;
            }
        });
        Outbox { tx, audit }
    }

    /// Queues a reset request; never waits. A full queue is audited as `throttled`.
    pub fn request_reset(&self, username: &str, lang: Lang, context: &Context) {
        let job = Job::Reset {
            username: username.to_string(),
            lang,
            context: context.clone(),
        };
        self.queue(job, username, context, || {
            Record::new(Event::ResetRequested, Outcome::Failure)
                .reason("throttled")
                .detail(json!({"queue": "full"}))
        });
    }

    /// Queues a change notice for `username`.
    pub fn notify(&self, username: &str, change: Change, lang: Lang, context: &Context) {
        let job = Job::Notice {
            username: username.to_string(),
            change,
            at_ms: now_ms(),
            lang,
            context: context.clone(),
        };
        self.queue(job, username, context, || {
            Record::new(Event::ChangeNoticeMailed, Outcome::Error)
                .reason("mail_failed")
                .detail(json!({"change": change.as_str(), "queue": "full"}))
        });
    }

    /// The request path never waits for mail: a full queue drops the job, and the row
    /// `when_full` makes says so for `username`.
    fn queue(
        &self,
        job: Job,
        username: &str,
        context: &Context,
        when_full: impl FnOnce() -> Record<'static>,
    ) {
        if self.tx.try_send(job).is_err() {
            self.audit
                .record(when_full().user(username).context(context));
        }
    }
}

/// How a reset request ended, in the words of the audit row.
enum Requested {
    Sent { link: bool },
    NoEmail,
    UnknownUser,
    Excluded(&'static str),
    Throttled,
    MailFailed(String),
}

impl Mailroom {
    async fn run(&self, job: Job) {
        match job {
            Job::Reset {
                username,
                lang,
                context,
            } => {
                let outcome = self.reset(&username, lang).await;
                self.audit_request(&username, &context, outcome);
            }
            Job::Notice {
                username,
                change,
                at_ms,
                lang,
                context,
            } => {
                let client = crate::audit::canonical_ip(context.client_ip).to_string();
                let notice = Notice {
                    username: &username,
                    change,
                    at_ms,
                    lang,
                    client: &client,
                    context: Some(&context),
                };
                deliver_notice(self.nas.as_ref(), self.mailer.as_ref(), &self.audit, notice).await;
            }
        }
    }

    /// Why this account may not be reset by mail, if it may not.
    async fn exclusion(&self, user: &NasUser) -> Option<&'static str> {
        if let Some(why) = account_refusal(user, self.settings.allow_root) {
            return Some(why);
        }
        if self.settings.allow_roles {
            return None;
        }
        if !user.roles.is_empty() {
            return Some("account holds a TrueNAS role");
        }
        if self.admins.is_admin(self.nas.as_ref(), user).await {
            return Some("account is a portal admin");
        }
        None
    }

    async fn reset(&self, username: &str, t: Lang) -> Requested {
        if !plausible_username(username) {
            return Requested::UnknownUser;
        }
        let user = match self.nas.get_user(username).await {
            Ok(Some(user)) => user,
            Ok(None) => return Requested::UnknownUser,
            Err(e) => return Requested::MailFailed(e.to_string()),
        };
        if let Some(why) = self.exclusion(&user).await {
            return Requested::Excluded(why);
        }
        let Some(to) = user.email.clone() else {
            return Requested::NoEmail;
        };
        let now = now_ms();
        let interval = self.settings.mail_interval;
        match self.tokens.take_mail_slot(username, now, interval).await {
            Ok(true) => {}
            Ok(false) => return Requested::Throttled,
            Err(e) => return Requested::MailFailed(e.to_string()),
        }
        let name = display_name(&user);
        // TrueNAS' second factor must not be bypassed by a mailbox: no link for them.
        if user.twofactor {
            let letter = letters::reset_not_available(t, &name);
            return match self.send(&to, letter).await {
                Ok(()) => Requested::Sent { link: false },
                Err(e) => {
                    self.give_back_slot(username, now).await;
                    Requested::MailFailed(e)
                }
            };
        }
        let issued = match self.tokens.issue(username, now).await {
            Ok(issued) => issued,
            Err(e) => {
                self.give_back_slot(username, now).await;
                return Requested::MailFailed(e.to_string());
            }
        };
        let base = &self.settings.public_base;
        let token = token_text(&issued);
        let minutes = self.tokens.ttl().as_secs().div_ceil(60);
        let letter = letters::reset_link(
            t,
            &name,
            &format!("{base}/reset/{token}"),
            &format!("{base}/reset/{token}/cancel"),
            issued.expires_ms,
            minutes,
        );
        match self.send(&to, letter).await {
            Ok(()) => Requested::Sent { link: true },
            Err(e) => {
                if let Err(db) = self.tokens.discard(username, &issued).await {
                    tracing::error!(error = %db, "an unsent reset link could not be removed");
                }
                self.give_back_slot(username, now).await;
                Requested::MailFailed(e)
            }
        }
    }

    async fn give_back_slot(&self, username: &str, now: i64) {
        if let Err(e) = self.tokens.return_mail_slot(username, now).await {
            tracing::warn!(error = %e, "reset mail slot not returned");
        }
    }

    /// Sends one letter; the error is a log-safe sentence (never the body).
    async fn send(&self, to: &str, letter: Letter) -> Result<(), String> {
        let mail = Mail {
            to: to.to_string(),
            subject: letter.subject,
            text: letter.text,
        };
        self.mailer.send(&mail).await.map_err(|e| e.to_string())
    }

    fn audit_request(&self, username: &str, context: &Context, outcome: Requested) {
        let mailer = self.mailer.name();
        let (result, reason, detail) = match &outcome {
            Requested::Sent { link } => (
                Outcome::Success,
                "sent",
                json!({"link": link, "mail": mailer}),
            ),
            Requested::NoEmail => (Outcome::Failure, "no_email", json!({})),
            Requested::UnknownUser => (Outcome::Failure, "unknown_user", json!({})),
            Requested::Excluded(why) => (Outcome::Failure, "excluded", json!({"why": why})),
            Requested::Throttled => (Outcome::Failure, "throttled", json!({})),
            Requested::MailFailed(error) => (
                Outcome::Error,
                "mail_failed",
                json!({"error": error, "mail": mailer}),
            ),
        };
        self.audit.record(
            Record::new(Event::ResetRequested, result)
                .user(username)
                .context(context)
                .reason(reason)
                .detail(detail),
        );
    }
}

/// One change notice: whose account, what changed, when, and from where.
pub struct Notice<'a> {
    pub username: &'a str,
    pub change: Change,
    pub at_ms: i64,
    pub lang: Lang,
    /// The client address, or what stands for it (the admin's console).
    pub client: &'a str,
    /// The request that made the change, when there was one.
    pub context: Option<&'a Context>,
}

/// Mails one change notice and audits how that went. Used by the mail task and by the
/// CLI's `totp reset`, which has no queue.
pub async fn deliver_notice(
    nas: &dyn NasClient,
    mailer: &dyn Mailer,
    audit: &Audit,
    notice: Notice<'_>,
) {
    let record = |outcome: Outcome, reason: &str, error: Option<String>| {
        let mut row = Record::new(Event::ChangeNoticeMailed, outcome)
            .user(notice.username)
            .reason(reason)
            .detail(json!({"change": notice.change.as_str(), "error": error}));
        if let Some(context) = notice.context {
            row = row.context(context);
        }
        audit.record(row);
    };
    let user = match nas.get_user(notice.username).await {
        Ok(Some(user)) => user,
        Ok(None) => return record(Outcome::Error, "unknown_user", None),
        Err(e) => return record(Outcome::Error, "mail_failed", Some(e.to_string())),
    };
    let Some(to) = user.email.clone() else {
        return record(Outcome::Success, "no_email", None);
    };
    let letter = letters::change_notice(
        notice.lang,
        &display_name(&user),
        notice.change,
        notice.at_ms,
        notice.client,
    );
    let mail = Mail {
        to,
        subject: letter.subject,
        text: letter.text,
    };
    match mailer.send(&mail).await {
        Ok(()) => record(Outcome::Success, "sent", None),
        Err(e) => record(Outcome::Error, "mail_failed", Some(e.to_string())),
    }
}

fn display_name(user: &NasUser) -> String {
    if user.full_name.trim().is_empty() {
        user.username.clone()
    } else {
        user.full_name.clone()
    }
}
