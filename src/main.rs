// No unsafe in the shipped binary; Cargo.toml can only deny it (see [lints] there).
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// passgate: a hardened self-service password portal for TrueNAS users.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the portal.
    Serve {
        /// TOML configuration file (PASSGATE_* environment variables override it).
        #[arg(long, env = "PASSGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, print it with secrets masked; with --connect,
    /// try it against the NAS step by step instead.
    CheckConfig {
        #[arg(long, env = "PASSGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Connect to TrueNAS: TLS, API, key login, key owner, mail, SMB.
        #[arg(long)]
        connect: bool,
    },
    /// Serve the whole flow against a built-in simulated TrueNAS, with demo users.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Read the audit log: list, export, verify, summary (works while the server runs).
    Audit(passgate::cli::audit_command::AuditArgs),
    /// Exit 0 when the portal answers its health URL with 200 (for a container HEALTHCHECK,
    /// where there is no curl).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Two-step sign-in for admins: status, reset (both audited).
    Totp(passgate::cli::totp_command::TotpArgs),
    /// Mail reminders before passwords expire (`notify expiring [--dry-run]`).
    Notify(passgate::cli::notify_command::NotifyArgs),
}

/// `PASSGATE_LOG` (default `info`), with the crates that write secrets at trace level always
/// silenced: pavao traces the SMB password buffer, and tungstenite dumps frames, which carry
/// `auth.login_ex` passwords.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let base = std::env::var("PASSGATE_LOG").unwrap_or_else(|_| String::from("info"));
    let filter = tracing_subscriber::EnvFilter::try_new(&base).unwrap_or_else(|e| {
        eprintln!("warning: PASSGATE_LOG={base:?} is not a valid filter ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    ["pavao=off", "tungstenite=off", "tokio_tungstenite=off"]
        .into_iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d))
}

/// `log.format` of the configuration `serve` will use; human when it cannot be read (the
/// command itself then reports why).
fn log_format(command: &Command) -> passgate::config::LogFormat {
    match command {
        Command::Serve { config } | Command::CheckConfig { config, .. } => {
            passgate::config::Config::load(config.as_deref())
                .map(|c| c.log.format)
                .unwrap_or_default()
        }
        _ => passgate::config::LogFormat::Human,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        // Colour codes only for a person at a terminal: journald, docker logs and files
        // would keep the escapes, and colouring every span's fields costs a flood's
        // refusals measurably (docs/PERFORMANCE.md).
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log_format(&cli.command) {
        passgate::config::LogFormat::Json => builder.json().init(),
        passgate::config::LogFormat::Human => builder.init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => passgate::cli::serve(config.as_deref()).await,
            Command::CheckConfig { config, connect } => {
                passgate::cli::check_config(config.as_deref(), connect).await
            }
            Command::Demo { listen } => passgate::cli::demo(listen).await,
            Command::Audit(args) => passgate::cli::audit_command::run(args).await,
            Command::Totp(args) => passgate::cli::totp_command::run(args).await,
            Command::Notify(args) => passgate::cli::notify_command::run(args).await,
            Command::Healthcheck { url } => passgate::cli::healthcheck(&url).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
