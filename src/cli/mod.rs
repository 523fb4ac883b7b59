//! What each CLI subcommand does.

pub mod audit_command;
pub mod connect_check;
pub mod notify_command;
pub mod totp_command;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use tokio::net::TcpListener;

use crate::audit::{Audit, Event, Outcome, Record};

use crate::config::{Config, VerifierName};
use crate::truenas::sim::{SimUser, SimulatedNas};
use crate::truenas::tls::{client_config, TrustMode};
use crate::truenas::NasClient;

/// Everything `serve` would refuse, found without starting: configuration, TLS files and
/// the CA file.
pub fn preflight(config: &Config) -> anyhow::Result<()> {
    config.require_truenas()?;
    Audit::validate(&config.log)?;
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
        crate::server::check_tls_files(cert, key)?;
    }
    if let Some(ca) = &config.truenas.ca_file {
        client_config(TrustMode::Roots { ca_file: Some(ca) })?;
    }
    Ok(())
}

/// `passgate check-config [--connect]`. With `connect`, the configuration is also tried
/// against the NAS, step by step; the first failing step makes the exit status non-zero.
pub async fn check_config(file: Option<&Path>, connect: bool) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    preflight(&config)?;
    if config.truenas.insecure_skip_verify && config.truenas.tls_fingerprint.is_none() {
        eprintln!("WARNING: truenas.insecure_skip_verify is true: the TrueNAS certificate is not checked.");
    }
    if !connect {
        print!("{}", config.render_masked());
        eprintln!("configuration OK");
        return Ok(());
    }
    println!(
        "Trying the configuration against {}:",
        config.truenas.url.as_deref().unwrap_or("TrueNAS")
    );
    let report = crate::cli::connect_check::run(&config).await;
    print!("{}", report.render());
    anyhow::ensure!(
        !report.failed(),
        "the configuration does not work against this TrueNAS yet (see the [FAIL] line)"
    );
    println!("The configuration works against this TrueNAS.");
    Ok(())
}

/// `passgate healthcheck`: GET the URL (loopback in practice), succeed on 200.
pub async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let status = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?
        .status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

pub async fn serve(file: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    preflight(&config)?;
    let nas = crate::truenas::connect::build(&config)?;
    run(config, nas).await
}

/// carol's TrueNAS-side two-factor secret (base32), printed in the demo banner.
const DEMO_2FA_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// The simulated NAS's `max_password_age`, and how old dave's and erin's passwords are.
const DEMO_MAX_PASSWORD_AGE: i64 = 90;
const DEMO_SOON_AGE: i64 = 87;
const DEMO_EXPIRED_AGE: i64 = 100;

const DEMO_USERS: [SimUser; 5] = [
    SimUser {
        username: "alice",
        email: Some("alice@demo.example"),
        full_name: "Alice Example",
        password: "wonderland-2026",
        smb: false,
        admin: true,
        twofactor_secret: None,
    },
    SimUser {
        username: "bob",
        email: Some("bob@demo.example"),
        full_name: "Bob Builder",
        password: "can-we-fix-it",
        smb: false,
        admin: false,
        twofactor_secret: None,
    },
    SimUser {
        username: "carol",
        email: Some("carol@demo.example"),
        full_name: "Carol Two-Step",
        password: "second-factor",
        smb: false,
        admin: false,
        twofactor_secret: Some(DEMO_2FA_SECRET),
    },
    SimUser {
        username: "dave",
        email: Some("dave@demo.example"),
        full_name: "Dave Soon",
        password: "expires-soon-1",
        smb: false,
        admin: false,
        twofactor_secret: None,
    },
    SimUser {
        username: "erin",
        email: Some("erin@demo.example"),
        full_name: "Erin Expired",
        password: "long-expired-1",
        smb: false,
        admin: false,
        twofactor_secret: None,
    },
];

pub async fn demo(listen: SocketAddr) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("passgate-demo-{}", std::process::id()));
    let mut config = Config::default();
    config.server.listen = listen;
    config.server.data_dir = data_dir.clone();
    // The demo serves plain HTTP on loopback, where `Secure` cookies would not come back.
    config.server.insecure_cookies = true;
    config.auth.verifiers = vec![VerifierName::Truenas, VerifierName::Unixhash];
    // The demo's made-up events do not belong in the host's syslog.
    config.log.syslog = String::from("off");
    // "Forgot your password?" works too: the simulated NAS' relay prints each mail here.
    config.reset.enabled = true;
    config.ssh_keys.enabled = true;
    config.server.public_url = Some(format!("http://{listen}"));
    eprintln!("Preparing the simulated TrueNAS (hashing demo passwords)...");
    let nas: Arc<dyn NasClient> = Arc::new(
        SimulatedNas::new(&DEMO_USERS)
            .await?
            .with_max_password_age(DEMO_MAX_PASSWORD_AGE)
            .with_password_age("dave", DEMO_SOON_AGE)
            .with_password_age("erin", DEMO_EXPIRED_AGE),
    );
    println!();
    println!("passgate demo: a simulated TrueNAS 26.04, nothing leaves this machine.");
    println!("Open http://{listen}/ and sign in as one of:");
    for user in &DEMO_USERS {
        let role = if user.admin {
            "  (administrator: also sees /admin/audit)"
        } else if user.twofactor_secret.is_some() {
            "  (TrueNAS two-factor: see below)"
        } else if user.username == "dave" {
            "  (password expires in a few days)"
        } else if user.username == "erin" {
            "  (password expired: TrueNAS says EXPIRED; renew it here)"
        } else {
            ""
        };
        println!(
            "  username {:<8} password {}{role}",
            user.username, user.password
        );
    }
    println!(
        "The simulated NAS refuses any of a user's last 3 passwords, like TrueNAS' history rule."
    );
    println!(
        "carol has two-factor authentication on the simulated TrueNAS: add the key {DEMO_2FA_SECRET}\n\
         to an authenticator app, or run `oathtool --totp -b {DEMO_2FA_SECRET}` for her code."
    );
    println!(
        "Passwords expire after {DEMO_MAX_PASSWORD_AGE} days here: dave's expires in {} days, \
         erin's expired {} days ago.",
        DEMO_MAX_PASSWORD_AGE - DEMO_SOON_AGE,
        DEMO_EXPIRED_AGE - DEMO_MAX_PASSWORD_AGE
    );
    println!("Any user can turn on passgate's own two-step sign-in at /totp after signing in.");
    println!(
        "SSH keys: /keys adds and removes a user's public keys (alice, an administrator, is \
         sent to TrueNAS for hers)."
    );
    println!(
        "Forgot a password? /reset mails a link; the demo's mailbox is this terminal \
         (mails are printed here). Change notices arrive the same way."
    );
    println!(
        "Press Ctrl-C to stop. Demo data lives in {}",
        data_dir.display()
    );
    println!();
    let result = run(config, nas).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

/// The daily pass of `passgate notify expiring`, a minute after start and then every day.
fn spawn_expiry_sweep(
    config: &Config,
    nas: Arc<dyn NasClient>,
    state: &crate::app::state::AppState,
) -> anyhow::Result<()> {
    if config.notify.expiry_days.is_empty()
        || config.mail.transport == crate::config::MailTransportChoice::Off
    {
        return Ok(());
    }
    let reminders = notify_command::reminders(config, nas, state.db.clone(), state.audit.clone())?;
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let mut day = tokio::time::interval(std::time::Duration::from_secs(86_400));
        loop {
            day.tick().await;
            match reminders.sweep(false).await {
                Ok(found) => tracing::info!(users = found.len(), "expiry reminder pass"),
                Err(e) => tracing::warn!(error = %e, "expiry reminder pass failed"),
            }
        }
    });
    Ok(())
}

async fn run(config: Config, nas: Arc<dyn NasClient>) -> anyhow::Result<()> {
    let state = crate::app::build_state(&config, nas).await?;
    reopen_logs_on_sighup(state.audit.clone());
    state.audit.record(
        Record::new(Event::ConfigLoaded, Outcome::Success).detail(json!({
            "listen": config.server.listen.to_string(),
            "verifiers": state.portal.authenticator.verifier_names(),
            "tls": config.server.tls_cert.is_some(),
        })),
    );
    spawn_expiry_sweep(&config, state.portal.nas.clone(), &state)?;
    let audit = state.audit.clone();
    let edge = crate::server::EdgeSettings::from_config(&config);
    // One SIGTERM stops every listener at once; each then lets its requests finish.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            // An error means the sender is gone, which only happens after it sent.
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };
    let metrics_listener = match config.server.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on server.metrics_listen {addr}"))?;
            let metrics = crate::routes::ops::metrics_router(state.clone());
            tracing::info!(listen = %addr, "serving /metrics");
            let edge = edge.clone();
            let stopped = stopped();
            Some(tokio::spawn(async move {
                if let Err(e) =
                    crate::server::serve_with(listener, metrics, None, &edge, stopped).await
                {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            }))
        }
        None => None,
    };
    let app = crate::app::router(state);
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    tracing::info!(listen = %config.server.listen, "passgate is serving");
    let tls = config
        .server
        .tls_cert
        .as_deref()
        .zip(config.server.tls_key.as_deref());
    let served = crate::server::serve_with(listener, app, tls, &edge, stopped()).await;
    if let Some(metrics) = metrics_listener {
        // It was told to stop at the same moment and keeps the same grace.
        let _ = metrics.await;
    }
    // In-flight requests have finished; write what the audit queue still holds.
    audit.shutdown().await;
    served
}

/// logrotate moves the fail2ban file away and sends SIGHUP; reopening then starts a new one.
fn reopen_logs_on_sighup(audit: Audit) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reopening the fail2ban file");
                    audit.reopen();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP; log reopening disabled"),
    }
}
