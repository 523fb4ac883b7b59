//! `passgate audit …`: list, export, verify and summarise the audit log from a shell.
//!
//! Every subcommand opens the database read-only and without migrating, so it runs safely
//! next to a live server: in WAL mode readers never block the writer nor wait for it, and a
//! read-only connection cannot take the write lock, change the schema or create a database
//! by mistake.
//!
//! Usernames and user agents are typed by strangers. Table output escapes everything that is
//! not printable text (an ANSI escape must not reach the terminal); CSV and JSON lines are
//! written by [`crate::audit::export`], shared with the admin download.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::chain::{self, StoredRow};
use crate::audit::export::{self, parse_time, Pages};
use crate::audit::query::{self, Filter, Summary, Tally};
use crate::config::Config;
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, SqlitePool};

/// `passgate audit`: read the tamper-evident audit log (works while the server runs).
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// TOML configuration file (PASSGATE_* environment variables override it). Only the
    /// server and audit sections matter here.
    #[arg(long, env = "PASSGATE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show matching events, newest first.
    List {
        #[command(flatten)]
        filters: FilterArgs,
        /// At most this many rows (1 to 10000).
        #[arg(long, default_value_t = query::DEFAULT_LIMIT,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(query::MAX_LIMIT)))]
        limit: u32,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write every matching event, oldest first, as JSON lines or CSV.
    Export {
        #[command(flatten)]
        filters: FilterArgs,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Write to this new file (created 0600; an existing file is never overwritten)
        /// instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Walk the hash chain: exit 0 when intact, 1 naming the first bad row otherwise.
    Verify,
    /// Top failing IPs and usernames, password changes, lockouts and rate limits.
    Summary {
        /// Start of the period (default: 24h ago).
        #[arg(long, default_value = "24h", value_parser = parse_time)]
        since: i64,
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
    },
}

#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Events at or after T: RFC 3339 (2026-11-22T10:00:00Z) or relative (30m, 24h, 7d).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Events before T (exclusive); same forms as --since.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Exact username as typed.
    #[arg(long)]
    pub user: Option<String>,
    /// Exact client IP.
    #[arg(long)]
    pub ip: Option<String>,
    /// Event name, e.g. login_failed, password_changed, user_locked_out.
    #[arg(long)]
    pub event: Option<String>,
    /// ok (stored as success), fail (failure) or error (the backend could not answer).
    #[arg(long, value_enum)]
    pub outcome: Option<OutcomeArg>,
}

impl FilterArgs {
    fn to_filter(&self, limit: u32) -> Filter {
        Filter {
            since_ms: self.since,
            until_ms: self.until,
            user: self.user.clone(),
            ip: self.ip.clone(),
            event: self.event.clone(),
            outcome: self.outcome.map(|o| o.stored().to_string()),
            limit,
            before_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    #[value(alias = "success")]
    Ok,
    #[value(alias = "failure")]
    Fail,
    Error,
}

impl OutcomeArg {
    fn stored(self) -> &'static str {
        match self {
            OutcomeArg::Ok => "success",
            OutcomeArg::Fail => "failure",
            OutcomeArg::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    Table,
    Json,
}

/// Rows fetched per query by `export`, so memory stays flat whatever the table size.
const EXPORT_PAGE: u32 = 1000;

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let db_path = config.audit_database();
    match args.command {
        AuditCommand::List {
            filters,
            limit,
            format,
        } => {
            let pool = open_read_only(&db_path).await?;
            let rows = query::list(&pool, &filters.to_filter(limit)).await?;
            pool.close().await;
            ignore_broken_pipe(print_rows(&rows, format))
        }
        AuditCommand::Export {
            filters,
            format,
            output,
        } => {
            let pool = open_read_only(&db_path).await?;
            let result = export(&pool, &filters.to_filter(EXPORT_PAGE), format, output).await;
            pool.close().await;
            result
        }
        AuditCommand::Verify => {
            let key = audit_key(&config)?;
            let pool = open_read_only(&db_path).await?;
            let report = chain::verify(&pool, &key).await?;
            pool.close().await;
            if report.is_intact() {
                println!("{report}");
                Ok(())
            } else {
                // main prints this and exits 1.
                bail!("{report}")
            }
        }
        AuditCommand::Summary {
            since,
            until,
            format,
        } => {
            let pool = open_read_only(&db_path).await?;
            let summary = query::summary(&pool, Some(since), until).await?;
            pool.close().await;
            ignore_broken_pipe(print_summary(&summary, format))
        }
    }
}

/// The audit key, from the configured secret or `<data_dir>/secret_key`. Unlike `serve`,
/// never creates a secret: a fresh one could not verify anything and would make the next
/// server start sign with a key unrelated to the existing chain's.
fn audit_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    Ok(server_keys(config, "audit verify")?.audit_key())
}

/// The server's keys, from the same secret the server uses; never creates one.
pub(crate) fn server_keys(config: &Config, command: &str) -> anyhow::Result<crate::keys::Keys> {
    if config.server.secret_key.is_none() {
        let path = config.server.data_dir.join("secret_key");
        if !path.is_file() {
            bail!(
                "no server secret: {} does not exist and server.secret_key is not set; \
                 run `{command}` with the same configuration as the server",
                path.display()
            );
        }
    }
    let secret = crate::keys::load_or_create_secret(
        config.server.secret_key.as_ref(),
        &config.server.data_dir,
    )?;
    Ok(crate::keys::Keys::derive(&secret))
}

/// What a CLI command shares with the running server: its keys, its database and its audit
/// store. Never creates the database: a command before the first start is a mistake.
pub(crate) struct ServerData {
    pub keys: crate::keys::Keys,
    pub pool: SqlitePool,
    pub audit: crate::audit::Audit,
}

impl ServerData {
    pub(crate) async fn open(config: &Config, command: &str) -> anyhow::Result<ServerData> {
        let db_path = config.server.data_dir.join("passgate.db");
        if !db_path.is_file() {
            bail!(
                "the database {} does not exist (has the server run yet? see server.data_dir)",
                db_path.display()
            );
        }
        let keys = server_keys(config, command)?;
        let pool = crate::db::open(&db_path).await?;
        let audit_path = config.audit_database();
        let audit_pool = if audit_path == db_path {
            pool.clone()
        } else {
            crate::db::open(&audit_path).await?
        };
        let store = crate::audit::store::AuditStore::start(
            audit_pool,
            keys.audit_key(),
            crate::audit::store::StoreOptions::default(),
        );
        let audit = crate::audit::Audit::from_config(&config.log)?.with_store(store);
        Ok(ServerData { keys, pool, audit })
    }
}

/// Opens an existing database read-only, without migrations.
async fn open_read_only(path: &Path) -> anyhow::Result<SqlitePool> {
    if !path.is_file() {
        bail!(
            "the audit database {} does not exist (has the server run yet? see audit.database)",
            path.display()
        );
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        // A checkpoint or the writer's commit can hold a lock for a moment.
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the audit database {}", path.display()))?;
    // `audit_all` came with migration 0004; a database only an older server has opened lacks it.
    let objects: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE (type = 'table' AND name = 'audit_events') \
         OR (type = 'view' AND name = 'audit_all')",
    )
    .fetch_one(&pool)
    .await?;
    if objects < 2 {
        pool.close().await;
        bail!(
            "{} has no audit_events table or audit_all view; start the server (this version) \
             once so it can migrate the database",
            path.display()
        );
    }
    Ok(pool)
}

/// `| head` closing the pipe early is not an error worth a message.
fn ignore_broken_pipe(result: io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_rows(rows: &[StoredRow], format: Format) -> io::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    match format {
        Format::Table => write_table(&mut out, rows)?,
        Format::Json => {
            for row in rows {
                out.write_all(export::json_line(row).as_bytes())?;
            }
        }
        Format::Csv => {
            out.write_all(export::csv_header().as_bytes())?;
            for row in rows {
                out.write_all(export::csv_line(row).as_bytes())?;
            }
        }
    }
    out.flush()
}

async fn export(
    pool: &SqlitePool,
    filter: &Filter,
    format: ExportFormat,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    match output {
        None => {
            let out = BufWriter::new(io::stdout().lock());
            match export_to(pool, filter, format, out).await {
                Err(e) if is_broken_pipe(&e) => Ok(()),
                other => other,
            }
        }
        Some(path) => {
            // create_new: never overwrite (nor follow a symlink planted at the path); 0600
            // because the export holds usernames and addresses.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| {
                    format!(
                        "cannot create {} (an existing file is never overwritten)",
                        path.display()
                    )
                })?;
            let result = export_to(pool, filter, format, BufWriter::new(file)).await;
            if result.is_err() {
                // A partial export must not pass for a complete one. Best effort: the
                // error below is what matters.
                let _ = std::fs::remove_file(&path);
            }
            result
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Pages through the rows by id inside one read transaction: memory stays at one page, and
/// the export is one consistent snapshot even while the server keeps appending.
async fn export_to<W: Write>(
    pool: &SqlitePool,
    filter: &Filter,
    format: ExportFormat,
    mut out: W,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    if format == ExportFormat::Csv {
        out.write_all(export::csv_header().as_bytes())?;
    }
    let format = match format {
        ExportFormat::Json => export::Format::Json,
        ExportFormat::Csv => export::Format::Csv,
    };
    let mut pages = Pages::new(filter.clone(), None);
    while let Some(page) = pages.next(&mut tx).await? {
        for row in &page {
            out.write_all(format.line(row).as_bytes())?;
        }
    }
    tx.rollback().await?;
    out.flush()?;
    Ok(())
}

// ---- table -----------------------------------------------------------------------------

/// Makes attacker-typed text safe for a terminal and caps it at `max` characters (after
/// escaping). Printable ASCII and non-ASCII letters and digits are kept; everything else
/// (control characters such as ESC, bidi overrides, zero-width characters) becomes
/// `\u{…}`, and `\` becomes `\\` so the escapes are unambiguous.
pub fn terminal_safe(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 8));
    for c in text.chars() {
        let piece = match c {
            '\\' => String::from("\\\\"),
            ' '..='~' => c.to_string(),
            c if !c.is_ascii() && c.is_alphanumeric() => c.to_string(),
            c => format!("\\u{{{:x}}}", u32::from(c)),
        };
        if out.chars().count() + piece.chars().count() > max {
            // Reserve room for the marker so the width stays within max.
            while out.chars().count() + 3 > max && out.pop().is_some() {}
            out.push_str("...");
            return out;
        }
        out.push_str(&piece);
    }
    out
}

fn opt(text: &Option<String>) -> &str {
    text.as_deref().unwrap_or("-")
}

const TABLE_COLUMNS: [(&str, usize); 8] = [
    ("ID", 8),
    ("TIME (UTC)", 24),
    ("COUNT", 5),
    ("EVENT", 22),
    ("OUTCOME", 7),
    ("USER", 24),
    ("CLIENT IP", 39),
    ("REASON", 40),
];

fn write_table(out: &mut impl Write, rows: &[StoredRow]) -> io::Result<()> {
    let header: Vec<String> = TABLE_COLUMNS
        .iter()
        .map(|(name, width)| format!("{name:<width$}"))
        .collect();
    writeln!(out, "{}", header.join(" ").trim_end())?;
    for row in rows {
        let cells = [
            // Still being counted: not in the chain yet, so no id.
            if row.open {
                String::from("open")
            } else {
                row.id.to_string()
            },
            query::format_ms(row.ts_ms),
            row.count.to_string(),
            row.event.clone(),
            row.outcome.clone(),
            opt(&row.username).to_string(),
            opt(&row.client_ip).to_string(),
            opt(&row.reason).to_string(),
        ];
        let line: Vec<String> = cells
            .iter()
            .zip(TABLE_COLUMNS)
            .map(|(cell, (_, width))| format!("{:<width$}", terminal_safe(cell, width)))
            .collect();
        writeln!(out, "{}", line.join(" ").trim_end())?;
    }
    if rows.is_empty() {
        writeln!(out, "(no matching events)")?;
    }
    Ok(())
}

fn print_summary(s: &Summary, format: SummaryFormat) -> io::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    match format {
        SummaryFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &query::summary_json(s))?;
            writeln!(out)?;
        }
        SummaryFormat::Table => write_summary_table(&mut out, s)?,
    }
    out.flush()
}

fn write_tally(out: &mut impl Write, title: &str, what: &str, rows: &[Tally]) -> io::Result<()> {
    writeln!(out, "\n{title}")?;
    if rows.is_empty() {
        return writeln!(out, "  (none)");
    }
    writeln!(
        out,
        "  {what:<40} {:>9} {:>6}  LAST (UTC)",
        "FAILURES", "ROWS"
    )?;
    for t in rows {
        writeln!(
            out,
            "  {:<40} {:>9} {:>6}  {}",
            terminal_safe(&t.key, 40),
            t.total,
            t.rows,
            query::format_ms(t.last_ms)
        )?;
    }
    Ok(())
}

fn write_summary_table(out: &mut impl Write, s: &Summary) -> io::Result<()> {
    writeln!(
        out,
        "Audit summary from {} to {}",
        s.since_ms
            .map_or_else(|| String::from("the start"), query::format_ms),
        s.until_ms
            .map_or_else(|| String::from("now"), query::format_ms),
    )?;
    writeln!(out, "Failures: {}", s.failures_total)?;
    writeln!(out, "Rate-limited requests: {}", s.rate_limited_total)?;
    write_tally(
        out,
        "Top failing client IPs",
        "CLIENT IP",
        &s.top_failing_ips,
    )?;
    write_tally(out, "Top failing usernames", "USER", &s.top_failing_users)?;
    write_tally(
        out,
        "Top rate-limited client IPs",
        "CLIENT IP",
        &s.top_rate_limited_ips,
    )?;
    write_newest_first(out, "Password changes", &s.password_changes, |out, p| {
        writeln!(
            out,
            "  {} {}",
            when_and_who(p.ts_ms, &p.username),
            terminal_safe(opt(&p.client_ip), 39)
        )
    })?;
    write_newest_first(out, "Lockouts", &s.lockouts, |out, l| {
        writeln!(
            out,
            "  {} {:<39} x{}",
            when_and_who(l.ts_ms, &l.username),
            terminal_safe(opt(&l.client_ip), 39),
            l.count
        )
    })
}

/// A titled list of the summary's recent rows, `(none)` when there are none.
fn write_newest_first<W: Write, T>(
    out: &mut W,
    title: &str,
    rows: &[T],
    mut write_row: impl FnMut(&mut W, &T) -> io::Result<()>,
) -> io::Result<()> {
    writeln!(out, "\n{title} (newest first)")?;
    if rows.is_empty() {
        writeln!(out, "  (none)")?;
    }
    rows.iter().try_for_each(|row| write_row(out, row))
}

/// The time and username columns that start a row of a recent-rows list.
fn when_and_who(ts_ms: i64, username: &Option<String>) -> String {
    format!(
        "{:<24} {:<32}",
        query::format_ms(ts_ms),
        terminal_safe(opt(username), 32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_safe_escapes_and_truncates() {
        assert_eq!(terminal_safe("\x1b[31mred", 40), "\\u{1b}[31mred");
        assert_eq!(terminal_safe("jörg", 40), "jörg");
        assert_eq!(terminal_safe("a\u{202e}b", 40), "a\\u{202e}b");
        assert_eq!(terminal_safe(&"x".repeat(50), 10), "xxxxxxx...");
        assert!(!terminal_safe("\x1b\x1b\x1b\x1b", 6).contains('\x1b'));
    }
}
