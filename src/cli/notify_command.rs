//! `passgate notify expiring [--dry-run]`: mails the users whose password expires soon, the
//! same pass `serve` makes once a day, for a cron job or a systemd timer.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::auth::expiry_reminders::{Due, ExpiryReminders};
use crate::cli::audit_command::{terminal_safe, ServerData};
use crate::config::Config;
use crate::i18n::Lang;
use crate::truenas::NasClient;

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// TOML configuration file: the server's own.
    #[arg(long, env = "PASSGATE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Mail each user whose password expires within one of notify.expiry_days (once per
    /// threshold); with --dry-run, only list them.
    Expiring {
        #[arg(long)]
        dry_run: bool,
    },
}

/// The reminders as `serve` and this command run them.
pub fn reminders(
    config: &Config,
    nas: Arc<dyn NasClient>,
    pool: sqlx::SqlitePool,
    audit: crate::audit::Audit,
) -> anyhow::Result<ExpiryReminders> {
    let mailer = crate::mail::from_config(&config.mail, nas.clone())?;
    let lang = Lang::by_tag(&config.notify.language).unwrap_or_else(Lang::english);
    Ok(ExpiryReminders::new(
        nas,
        mailer,
        pool,
        audit,
        config.notify.expiry_days.clone(),
        lang,
        config.public_base(),
        config.auth.allow_root,
    ))
}

pub async fn run(args: NotifyArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let NotifyCommand::Expiring { dry_run } = args.command;
    let ServerData { pool, audit, .. } = ServerData::open(&config, "notify").await?;
    let nas = crate::truenas::connect::build(&config)?;
    let reminders = reminders(&config, nas, pool, audit.clone())?;
    let found = reminders.sweep(dry_run).await;
    audit.shutdown().await;
    let found = found?;
    print(&found, dry_run);
    if found.iter().any(|d| d.status == "mail_failed") {
        anyhow::bail!("some reminders could not be sent (see the audit log)");
    }
    Ok(())
}

fn print(found: &[Due], dry_run: bool) {
    if found.is_empty() {
        println!("No password expires within notify.expiry_days (or password aging is off).");
        return;
    }
    println!(
        "{:<24} {:>9} {:>9}  STATUS",
        "USER", "DAYS LEFT", "THRESHOLD"
    );
    for due in found {
        println!(
            "{:<24} {:>9} {:>9}  {}",
            terminal_safe(&due.username, 24),
            due.days_left,
            due.threshold_days,
            due.status
        );
    }
    if dry_run {
        println!("(dry run: nothing was sent)");
    }
}
