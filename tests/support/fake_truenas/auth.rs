//! `auth.login_ex`, `auth.login_ex_continue`, `auth.login_with_api_key`
//! (plugins/auth.py for 25.10, plugins/auth_/login_ex_impl.py for 26).
//!
//! - PASSWORD_PLAIN: unknown user, wrong password, locked or password-disabled account →
//!   AUTH_ERR after a PAM-like delay. Correct password: FULL_ADMINs get SUCCESS; anyone else
//!   gets AUTH_ERR on 25.10 (the version trap) and DENIED on 26. Two-factor users get
//!   OTP_REQUIRED instead, except on 25.10 for users without API access: there the access
//!   check comes first (auth.authenticate_plain), so they get AUTH_ERR.
//! - OTP_TOKEN (auth.login_ex_continue, or login_ex itself): the only valid code is
//!   `123456`. On 25.10 a wrong code answers OTP_REQUIRED up to MAX_OTP_ATTEMPTS (3) times,
//!   then AUTH_ERR; on 26 (login_ex_oath_token) the first wrong code is AUTH_ERR and the
//!   login is over. After a valid code: SUCCESS for FULL_ADMINs, DENIED on 26 for users
//!   without API access.
//! - API_KEY_PLAIN: a correct key over a plain connection is revoked and answers EXPIRED
//!   ("API key revoked due to insecure transport"); a wrong or revoked key is AUTH_ERR.
//! - Password aging: pam_unix's account stage (utils/account/authenticator.py `authenticate`
//!   calls `pam_acct_mgmt` right after a successful `pam_authenticate`) refuses a password
//!   older than the shadow `max` field (utils/security.py `shadow_parse_aging`), which login_ex
//!   answers `EXPIRED`: after a correct password, before the API-access check. On 25.10 this
//!   also comes before the OTP step (middleware asks for the code after PAM is done); on 26
//!   the OTP prompt is part of `pam_authenticate`, which then returns early, and
//!   `login_ex_oath_token` never runs the account stage: a two-factor user is not refused
//!   for an old password there.
//! - Failure delays: `CURRENT_AAL.get_delay_interval()`, see `Shared::failure_sleep`.
//! - SCRAM (26+): `scram_login.rs`.

use serde_json::{json, Value};

use super::errors::{RpcError, EINVAL};
use super::jsonrpc::{lock, ConnHandle, PendingOtp, Session};
use super::methods::required_str;
use super::server::Transport;
use super::state::Shared;
use super::users::verify_password;
use super::Flavour;

/// The one OTP code the fake accepts.
const VALID_OTP: &str = "123456";
/// Wrong codes that still get another chance (plugins/auth.py MAX_OTP_ATTEMPTS).
const OTP_RETRIES: u32 = 3;

pub(super) async fn login_ex(
    shared: &Shared,
    conn: &ConnHandle,
    params: &[Value],
) -> Result<Value, RpcError> {
    let data = params.first().cloned().unwrap_or(Value::Null);
    let mechanism = required_str(&data, "mechanism", "auth.login_ex.data")?;
    match mechanism.as_str() {
        "PASSWORD_PLAIN" => password_plain(shared, conn, &data).await,
        "API_KEY_PLAIN" => {
            let username = required_str(&data, "username", "auth.login_ex.data")?;
            let key = required_str(&data, "api_key", "auth.login_ex.data")?;
            Ok(api_key_login(shared, conn, &username, &key).await)
        }
        "OTP_TOKEN" => otp_token(shared, conn, &data).await,
        "SCRAM" if shared.flavour != Flavour::V25_10 => {
            super::scram_login::login(shared, conn, &data).await
        }
        other => Err(RpcError::validation(
            "auth.login_ex.data.mechanism",
            format!("Input tag '{other}' found using 'mechanism' does not match any of the expected tags"),
        )),
    }
}

/// Continuation of a login that answered OTP_REQUIRED.
pub(super) async fn login_ex_continue(
    shared: &Shared,
    conn: &ConnHandle,
    params: &[Value],
) -> Result<Value, RpcError> {
    let data = params.first().cloned().unwrap_or(Value::Null);
    match required_str(&data, "mechanism", "auth.login_ex_continue.data")?.as_str() {
        "OTP_TOKEN" => otp_token(shared, conn, &data).await,
        other => Err(RpcError::validation(
            "auth.login_ex_continue.data.mechanism",
            format!("Input tag '{other}' found using 'mechanism' does not match any of the expected tags"),
        )),
    }
}

/// `[KEY]` → `true`/`false`; the key's owner is implied by the key id.
pub(super) async fn login_with_api_key(
    shared: &Shared,
    conn: &ConnHandle,
    params: &[Value],
) -> Result<Value, RpcError> {
    let Some(key) = params.first().and_then(Value::as_str) else {
        return Err(RpcError::validation(
            "auth.login_with_api_key.api_key",
            "Field required",
        ));
    };
    let response = api_key_login(shared, conn, &shared.api_user, key).await;
    Ok(json!(response["response_type"] == "SUCCESS"))
}

async fn password_plain(
    shared: &Shared,
    conn: &ConnHandle,
    data: &Value,
) -> Result<Value, RpcError> {
    let username = required_str(data, "username", "auth.login_ex.data")?;
    let password = required_str(data, "password", "auth.login_ex.data")?;
    // A new login abandons any half-finished two-factor login on this connection.
    lock(conn).pending_otp = None;

    let candidate = shared
        .lock()
        .user_by_name(&username)
        .map(|u| (u.unixhash.clone(), u.profile.clone()));
    let Some((unixhash, profile)) = candidate else {
        return Ok(auth_err(shared).await);
    };
    // ~0.3 s per 656,000-round hash, like PAM on the NAS: keep it off the async threads.
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &unixhash))
        .await
        .expect("verification task finished");
    if !verified || profile.locked || profile.password_disabled {
        return Ok(auth_err(shared).await);
    }
    let expired = password_expired(shared, &username);
    if expired && (shared.flavour == Flavour::V25_10 || !profile.twofactor) {
        return Ok(json!({"response_type": "EXPIRED"}));
    }
    let api_access_checked_first = shared.flavour == Flavour::V25_10 && !profile.full_admin;
    if profile.twofactor && !api_access_checked_first {
        lock(conn).pending_otp = Some(PendingOtp {
            username: username.clone(),
            full_admin: profile.full_admin,
            failures: 0,
        });
        return Ok(json!({"response_type": "OTP_REQUIRED", "username": username}));
    }
    Ok(user_authenticated(shared, conn, &username, profile.full_admin, data).await)
}

async fn otp_token(shared: &Shared, conn: &ConnHandle, data: &Value) -> Result<Value, RpcError> {
    let code = required_str(data, "otp_token", "auth.login_ex.data")?;
    let Some(mut pending) = lock(conn).pending_otp.take() else {
        return Err(RpcError::call(
            EINVAL,
            "No two-factor authentication is in progress on this connection",
        ));
    };
    if code == VALID_OTP {
        return Ok(
            user_authenticated(shared, conn, &pending.username, pending.full_admin, data).await,
        );
    }
    shared.failure_sleep().await;
    if shared.flavour != Flavour::V25_10 || pending.failures >= OTP_RETRIES {
        return Ok(json!({"response_type": "AUTH_ERR"}));
    }
    pending.failures += 1;
    let username = pending.username.clone();
    lock(conn).pending_otp = Some(pending);
    Ok(json!({"response_type": "OTP_REQUIRED", "username": username}))
}

/// PAM accepted the user; what remains is whether the user may use the API.
async fn user_authenticated(
    shared: &Shared,
    conn: &ConnHandle,
    username: &str,
    full_admin: bool,
    data: &Value,
) -> Value {
    if full_admin {
        lock(conn).session = Some(Session::User {
            username: username.to_owned(),
            full_admin,
        });
        return success(data, username);
    }
    match shared.flavour {
        Flavour::V25_10 => auth_err(shared).await,
        Flavour::V26 | Flavour::V27 => json!({"response_type": "DENIED"}),
    }
}

async fn api_key_login(shared: &Shared, conn: &ConnHandle, username: &str, key: &str) -> Value {
    if !shared.key_matches(username, key) {
        return auth_err(shared).await;
    }
    if lock(conn).transport == Transport::Plain {
        shared.lock().key_revoked = true;
        shared.failure_sleep().await;
        return json!({"response_type": "EXPIRED"});
    }
    lock(conn).session = Some(Session::ApiKey);
    success(&json!({}), username)
}

fn success(data: &Value, username: &str) -> Value {
    let wants_user_info = data
        .pointer("/login_options/user_info")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let user_info = if wants_user_info {
        json!({"pw_name": username, "privilege": {"roles": {"$set": ["FULL_ADMIN"]}}})
    } else {
        Value::Null
    };
    json!({"response_type": "SUCCESS", "user_info": user_info, "authenticator": "LEVEL_1"})
}

pub(super) async fn auth_err(shared: &Shared) -> Value {
    shared.failure_sleep().await;
    json!({"response_type": "AUTH_ERR"})
}

/// Would pam_unix's account stage refuse this user's password as too old?
///
/// pam_unix refuses when `today - lastchg > max` (days). The shadow file leaves `max` out for
/// FULL_ADMINs when every password-using FULL_ADMIN is within a day of expiry
/// (etc_files/shadow.mako `max_age_overrides`), so that the box keeps an administrator.
fn password_expired(shared: &Shared, username: &str) -> bool {
    let inner = shared.lock();
    let Some(max) = inner.max_password_age.map(u64::from) else {
        return false;
    };
    let Some(user) = inner.user_by_name(username) else {
        return false;
    };
    if user.profile.password_disabled {
        return false;
    }
    let password_admins: Vec<_> = inner
        .users
        .iter()
        .filter(|u| {
            u.profile.full_admin
                && !u.profile.password_disabled
                && !u.profile.locked
                && u.unixhash != "*"
        })
        .collect();
    let all_admins_expiring = !password_admins.is_empty()
        && password_admins
            .iter()
            .all(|u| u.password_age() >= max.saturating_sub(1));
    if all_admins_expiring
        && password_admins
            .iter()
            .any(|u| u.profile.username == username)
    {
        return false;
    }
    user.password_age() > max
}
