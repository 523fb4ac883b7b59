//! `passgate totp status [USER]` and `passgate totp reset USER`, for admins on the server.
//! Both are audited like the web admin pages.

use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

use crate::audit::{Event, Outcome, Record};
use crate::auth::outbox::{deliver_notice, Notice};
use crate::auth::reset_tokens::now_ms;
use crate::cli::audit_command::{terminal_safe, ServerData};
use crate::config::{Config, MailTransportChoice};
use crate::i18n::Lang;
use crate::mail::letters::Change;
use crate::totp::{Totp, TotpStatus};

#[derive(Debug, Args)]
pub struct TotpArgs {
    /// TOML configuration file (PASSGATE_* environment variables override it).
    #[arg(long, env = "PASSGATE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: TotpCommand,
}

#[derive(Debug, Subcommand)]
pub enum TotpCommand {
    /// Show who has two-step sign-in on (one user, or everyone with an enrollment).
    Status {
        user: Option<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Turn a user's two-step sign-in off (lost phone and backup codes). Their next sign-in
    /// asks them to set it up again when `totp.mode = required`.
    Reset { user: String },
}

/// Who ran the command, for the audit row (the server has no request here).
fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| String::from("unknown"))
}

pub async fn run(args: TotpArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let ServerData { keys, pool, audit } = ServerData::open(&config, "totp").await?;
    let totp = Totp::new(pool.clone(), keys.totp_key(), config.totp.settings());
    let result = match args.command {
        TotpCommand::Status { user, json } => {
            let rows = match &user {
                Some(name) => vec![totp.status(name).await?],
                None => totp.list().await?,
            };
            audit
                .record_durable(
                    Record::new(Event::TotpStatusViewed, Outcome::Success)
                        .user(user.as_deref().unwrap_or(""))
                        .detail(json!({"via": "cli", "operator": operator(), "rows": rows.len()})),
                )
                .await;
            print_status(&rows, json);
            Ok(())
        }
        TotpCommand::Reset { user } => {
            let existed = totp.reset(&user).await?;
            audit
                .record_durable(
                    Record::new(Event::TotpReset, Outcome::Success)
                        .user(&user)
                        .reason(if existed {
                            "enrollment removed"
                        } else {
                            "no enrollment"
                        })
                        .detail(json!({"via": "cli", "operator": operator()})),
                )
                .await;
            if existed {
                println!(
                    "Two-step sign-in for {} is reset.",
                    terminal_safe(&user, 64)
                );
                notify_reset(&config, &audit, &user).await;
            } else {
                println!(
                    "{} had no two-step sign-in; nothing changed.",
                    terminal_safe(&user, 64)
                );
            }
            Ok(())
        }
    };
    audit.shutdown().await;
    result
}

/// Tells the user by mail (when `mail.notify_changes` is on) that an admin removed their
/// second factor: if it was not at their request, they should know at once.
async fn notify_reset(config: &Config, audit: &crate::audit::Audit, username: &str) {
    if !config.mail.notify_changes || config.mail.transport == MailTransportChoice::Off {
        return;
    }
    let nas = match crate::truenas::connect::build(config) {
        Ok(nas) => nas,
        Err(e) => return eprintln!("warning: no change notice mailed: {e}"),
    };
    let mailer = match crate::mail::from_config(&config.mail, nas.clone()) {
        Ok(mailer) => mailer,
        Err(e) => return eprintln!("warning: no change notice mailed: {e}"),
    };
    let lang = Lang::by_tag(&config.notify.language).unwrap_or_else(Lang::english);
    let notice = Notice {
        username,
        change: Change::TotpReset,
        at_ms: now_ms(),
        lang,
        client: lang.tr("mail.admin_console"),
        context: None,
    };
    deliver_notice(nas.as_ref(), mailer.as_ref(), audit, notice).await;
    println!("The user was sent a change notice if TrueNAS has an e-mail address for them (see the audit log).");
}

fn print_status(rows: &[TotpStatus], json: bool) {
    if json {
        for row in rows {
            if let Ok(line) = serde_json::to_string(row) {
                println!("{line}");
            }
        }
        return;
    }
    if rows.is_empty() {
        println!("No user has two-step sign-in.");
        return;
    }
    println!(
        "{:<24} {:<8} {:<20} {:>6} {:<20}",
        "USER", "STATE", "ENABLED", "BACKUP", "LAST USED"
    );
    for row in rows {
        let state = match (row.enabled, row.pending) {
            (true, true) => "on*",
            (true, false) => "on",
            (false, true) => "pending",
            (false, false) => "off",
        };
        println!(
            "{:<24} {:<8} {:<20} {:>6} {:<20}",
            terminal_safe(&row.username, 24),
            state,
            time_text(row.enabled_at),
            row.backup_codes_left,
            time_text(row.last_used_at),
        );
    }
    if rows.iter().any(|r| r.enabled && r.pending) {
        println!("* a new authenticator is being set up and is not confirmed yet");
    }
}

fn time_text(unix: Option<i64>) -> String {
    unix.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| String::from("-"))
}
