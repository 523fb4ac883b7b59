//! Building the application: state from configuration, and the router with its middleware
//! stack in one function, in one order.

pub mod readiness;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::{middleware, Router};
use http::{StatusCode, Uri};

use crate::app::state::{AppInner, AppState};
use crate::audit::store::{AuditStore, StoreOptions};
use crate::audit::Audit;
use crate::auth::admins::AdminPolicy;
use crate::auth::authenticator::{Authenticator, Capacity};
use crate::auth::lockout::{LockoutPolicy, UserLockout};
use crate::auth::outbox::{Mailroom, Outbox, ResetSettings};
use crate::auth::reset_tokens::ResetTokens;
use crate::auth::sessions::Sessions;
use crate::auth::ssh_keys::SshKeySettings;
use crate::auth::steps::LoginSteps;
use crate::auth::Portal;
use crate::authorized_keys::KeyPolicy;
use crate::config::{Config, MailTransportChoice, VerifierName};
use crate::keys::{create_private_dir, load_or_create_secret, Keys};
use crate::limiter::LoginLimiter;
use crate::policy::Policy;
use crate::totp::Totp;
use crate::truenas::NasClient;
use crate::verify::smb::SmbVerifier;
use crate::verify::truenas::TrueNasVerifier;
use crate::verify::unixhash::UnixHashVerifier;
use crate::verify::{Verifier, VerifierChain};
use crate::web::api_error::ApiError;
use crate::web::client_ip::{self, TrustedProxies};
use crate::web::cookies::CookieNames;
use crate::web::security_headers;
use crate::web::{request_context, throttle};

/// Requests larger than this are refused with 413 before any handler reads them.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn verifier_chain(config: &Config, nas: &Arc<dyn NasClient>) -> anyhow::Result<VerifierChain> {
    let mut verifiers: Vec<Box<dyn Verifier>> = Vec::new();
    for name in &config.auth.verifiers {
        match name {
            VerifierName::Truenas => verifiers.push(Box::new(TrueNasVerifier::new(nas.clone()))),
            VerifierName::Smb => {
                let host = config
                    .smb_host()
                    .context("auth.verifiers lists smb but neither auth.smb_host nor truenas.url names a host")?;
                verifiers.push(Box::new(SmbVerifier::new(
                    host,
                    config.auth.smb_port,
                    config.auth.smb_share.clone(),
                    Duration::from_secs(config.auth.smb_timeout_secs),
                )));
            }
            VerifierName::Unixhash => {
                let cores = std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2);
                verifiers.push(Box::new(UnixHashVerifier::new(cores)));
            }
        }
    }
    Ok(VerifierChain::new(verifiers))
}

/// Opens the database, loads keys and assembles the state. `secure_cookies` is false only
/// for `demo` and the explicit `server.insecure_cookies` development setting.
pub async fn build_state(config: &Config, nas: Arc<dyn NasClient>) -> anyhow::Result<AppState> {
    create_private_dir(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create server.data_dir {}",
            config.server.data_dir.display()
        )
    })?;
    let secret = load_or_create_secret(config.server.secret_key.as_ref(), &config.server.data_dir)?;
    let keys = Arc::new(Keys::derive(&secret));
    let db_path = config.server.data_dir.join("passgate.db");
    let pool = crate::db::open(&db_path)
        .await
        .with_context(|| format!("cannot open the database {}", db_path.display()))?;
    let audit_path = config.audit_database();
    let audit_pool = if audit_path == db_path {
        pool.clone()
    } else {
        crate::db::open(&audit_path)
            .await
            .with_context(|| format!("cannot open audit.database {}", audit_path.display()))?
    };
    let totp = Arc::new(Totp::new(
        pool.clone(),
        keys.totp_key(),
        config.totp.settings(),
    ));
    let sessions = Arc::new(Sessions::new(
        &keys,
        Duration::from_secs(config.server.session_ttl_secs),
        pool.clone(),
    ));
    let steps = Arc::new(LoginSteps::new(
        sessions.clone(),
        totp.clone(),
        Duration::from_secs(config.totp.pending_ttl_secs),
    ));
    let chain = verifier_chain(config, &nas)?;
    let r = &config.rate_limit;
    let lockout = UserLockout::new(LockoutPolicy {
        failures: r.user_failures,
        window: Duration::from_secs(r.user_window_secs),
        base_lockout: Duration::from_secs(r.user_lockout_secs),
        max_lockout: Duration::from_secs(r.user_lockout_max_secs),
        max_tracked_users: r.max_tracked_users,
    });
    let capacity = Capacity {
        concurrent: r.verify_concurrency,
        wait: Duration::from_secs(r.verify_wait_secs),
    };
    let auth = Authenticator::new(
        nas.clone(),
        chain,
        config.auth.allow_root,
        lockout,
        capacity,
    );
    let limiter = LoginLimiter::new(
        r.login_attempts,
        Duration::from_secs(r.login_window_secs),
        r.max_tracked_keys,
    );
    let throttle = throttle::config(r.global_per_second, r.global_burst, r.ipv6_prefix)
        .context("rate_limit.global_per_second / global_burst give no valid throttle")?;
    throttle::spawn_pruner(throttle.clone());
    let limiter = Arc::new(limiter);
    let auth = Arc::new(auth);
    spawn_pruner(limiter.clone(), auth.clone(), steps.clone());
    let store = AuditStore::start(
        audit_pool.clone(),
        keys.audit_key(),
        StoreOptions {
            recover_open: true,
            ..StoreOptions::default()
        },
    );
    let audit = Audit::from_config(&config.log)
        .context("log settings")?
        .with_store(store);
    spawn_audit_pruner(
        audit_pool.clone(),
        keys.audit_key(),
        config.audit.retention_days,
    );
    let admin = Arc::new(AdminPolicy::new(&config.admin));
    let reset_tokens = Arc::new(ResetTokens::new(
        pool.clone(),
        keys.clone(),
        Duration::from_secs(config.reset.token_ttl_secs),
        // A confirmation makes at most three TrueNAS calls (user, verification, change).
        Duration::from_secs(
            config
                .truenas
                .timeout_secs
                .saturating_mul(3)
                .saturating_add(30),
        ),
    ));
    let reset = ResetSettings {
        enabled: config.reset.enabled,
        public_base: config.public_base().unwrap_or_default(),
        mail_interval: Duration::from_secs(config.reset.mail_interval_secs),
        allow_roles: config.reset.allow_roles,
        allow_root: config.auth.allow_root,
        notify_changes: config.mail.notify_changes
            && config.mail.transport != MailTransportChoice::Off,
    };
    let mailer = crate::mail::from_config(&config.mail, nas.clone()).context("[mail] settings")?;
    tracing::info!(transport = mailer.name(), reset = reset.enabled, "mail");
    let outbox = Outbox::start(Mailroom {
        nas: nas.clone(),
        mailer,
        tokens: reset_tokens.clone(),
        admins: admin.clone(),
        audit: audit.clone(),
        settings: reset.clone(),
    });
    spawn_reset_pruner(reset_tokens.clone(), reset.mail_interval);
    let policy = Arc::new(Policy {
        min_length: config.policy.min_length,
        min_strength: config.policy.min_strength,
    });
    Ok(AppState::new(AppInner {
        portal: Portal {
            admins: admin,
            nas: nas.clone(),
            authenticator: auth.clone(),
            sessions,
            totp,
            steps,
            policy,
            audit: audit.clone(),
            reset,
            reset_tokens,
            outbox,
            ssh_keys: SshKeySettings {
                enabled: config.ssh_keys.enabled,
                policy: KeyPolicy {
                    max_keys: config.ssh_keys.max_keys,
                    allow_certificates: config.ssh_keys.allow_certificates,
                },
                allow_roles: config.ssh_keys.allow_roles,
            },
        },
        readiness: crate::app::readiness::Readiness::new(nas, audit_pool.clone()),
        audit_pool,
        db: pool,
        keys,
        audit,
        cookies: CookieNames::new(!config.server.insecure_cookies),
        serves_tls: config.server.tls_cert.is_some(),
        limiter,
        ipv6_prefix: r.ipv6_prefix,
        trusted_proxies: TrustedProxies::new(config.proxy.trusted.clone()),
        metrics_allow: config.metrics.allow.clone(),
        throttle,
    }))
}

/// Prunes audit rows older than the retention period once an hour, leaving a signed anchor
/// so that the remaining chain still verifies.
fn spawn_audit_pruner(pool: sqlx::SqlitePool, key: [u8; 32], retention_days: u32) {
    if retention_days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let retention_ms = i64::from(retention_days) * 86_400_000;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            match crate::audit::chain::prune(&pool, &key, now_ms - retention_ms).await {
                Ok(report) => tracing::debug!(?report, "audit retention pass"),
                Err(e) => tracing::error!(error = %e, "audit retention pass failed"),
            }
        }
    });
}

/// Expired links and old mail slots, once a minute, so the tables stay as small as the
/// user list.
fn spawn_reset_pruner(tokens: Arc<ResetTokens>, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = tokens
                .purge(crate::auth::reset_tokens::now_ms(), interval)
                .await
            {
                tracing::warn!(error = %e, "reset token purge failed");
            }
        }
    });
}

/// Expired entries are also dropped as traffic passes; this returns memory when traffic
/// stops after a flood.
fn spawn_pruner(limiter: Arc<LoginLimiter>, auth: Arc<Authenticator>, steps: Arc<LoginSteps>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = std::time::Instant::now();
            limiter.purge_expired(now, 4096);
            auth.purge_expired(now, 4096);
            steps.purge_expired(now);
        }
    });
}

/// The whole application, with the middleware stack in one place. A request passes, in
/// order: security headers (outermost, so every answer carries them, refusals included),
/// the body limit, the client-address resolver (once; everything after uses its answer),
/// the request context (id, user agent; `X-Request-Id` on every answer), the global
/// throttle, then (on the routes that verify a password or a code) the login limiter, and
/// only then a handler.
pub fn router(state: AppState) -> Router {
    // `layer` wraps what is already there, so the innermost layer comes first below.
    crate::routes::router(&state)
        .fallback(not_found)
        .layer(throttle::layer(state.throttle.clone()))
        .layer(middleware::from_fn(request_context::attach))
        .layer(middleware::from_fn_with_state(
            state.trusted_proxies.clone(),
            client_ip::resolve,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers::add,
        ))
        .with_state(state)
}

async fn not_found(uri: Uri, lang: crate::i18n::Lang) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such API endpoint.").into_response()
    } else {
        crate::views::not_found_page(lang)
    }
}
