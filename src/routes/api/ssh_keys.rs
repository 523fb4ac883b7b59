//! `GET` and `PUT /api/v1/ssh-keys`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::state::AppState;
use crate::auth::ssh_keys::{KeyEdit, KeysChange, KeysError};
use crate::authorized_keys::AcceptedKey;
use crate::i18n::Lang;
use crate::limiter::Admitted;
use crate::totp::TotpError;
use crate::views::{key_refusals, truenas_messages};
use crate::web::api_error::ApiError;
use crate::web::extract::{Api, BearerSession, Call, Full};

#[derive(Deserialize)]
pub struct ReplaceBody {
    current_password: String,
    /// The whole new set, one key per line; `""` removes every key.
    keys: String,
    #[serde(default)]
    code: Option<String>,
}

fn key_json(key: &AcceptedKey) -> Value {
    json!({
        "algorithm": key.algorithm,
        "fingerprint": key.fingerprint,
        "comment": key.comment,
        "bits": key.bits,
    })
}

fn refusal(t: Lang, error: KeysError) -> ApiError {
    match error {
        KeysError::Off => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such API endpoint.")
        }
        KeysError::NotForAccount => ApiError::new(
            StatusCode::FORBIDDEN,
            "not_for_account",
            "This account manages its SSH keys in TrueNAS.",
        ),
        KeysError::NoHome | KeysError::NotStored => ApiError::new(
            StatusCode::CONFLICT,
            "keys_not_storable",
            "SSH keys cannot be stored for this account: it has no home directory on the NAS.",
        ),
        KeysError::LinkInHome => ApiError::new(
            StatusCode::CONFLICT,
            "unsafe_ssh_directory",
            "~/.ssh or ~/.ssh/authorized_keys on the NAS is a link; nothing was written.",
        ),
        KeysError::Refused(lines) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "keys_refused",
            "Some lines are not acceptable SSH public keys. Nothing was changed.",
        )
        .with_details(
            lines
                .iter()
                .map(|l| format!("{}: {}", l.reason.code(), key_refusals::describe(t, l)))
                .collect(),
        ),
        KeysError::WrongPassword => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "The current password is not correct.",
        ),
        KeysError::InvalidCode(Some(TotpError::TooManyAttempts { retry_after })) => {
            super::two_step::too_many(retry_after)
        }
        KeysError::InvalidCode(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_code",
            "Two-step sign-in is on: a current code or an unused backup code is required.",
        ),
        KeysError::RejectedByTrueNas(messages) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rejected_by_truenas",
            "TrueNAS refused the keys.",
        )
        .with_details(
            messages
                .iter()
                .map(|m| truenas_messages::plain_words(m, t))
                .collect(),
        ),
        KeysError::Unavailable => ApiError::backend_unavailable(),
        KeysError::Busy => ApiError::busy(),
    }
}

pub async fn list(
    State(state): State<AppState>,
    t: Lang,
    session: BearerSession<Full>,
) -> Result<Response, ApiError> {
    let listing = state
        .portal
        .ssh_keys(&session.claims)
        .await
        .map_err(|e| refusal(t, e))?;
    Ok(Json(json!({
        "keys": listing.keys.iter().map(key_json).collect::<Vec<_>>(),
        "other_lines": listing.other_lines,
        "storable": listing.storable,
        "code_required": listing.code_required,
        "max_keys": listing.max_keys,
    }))
    .into_response())
}

pub async fn replace(
    call: Call<Api>,
    admitted: Admitted,
    session: BearerSession<Full>,
    body: Result<Json<ReplaceBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let current = SecretString::from(body.current_password);
    let code = body.code.map(SecretString::from);
    let change = KeysChange {
        current: &current,
        code: code.as_ref(),
        edit: KeyEdit::Replace(&body.keys),
    };
    let changed = call
        .state
        .portal
        .change_ssh_keys(call.caller(), admitted, &session.claims, change)
        .await
        .map_err(|e| refusal(call.t, e))?;
    Ok(Json(json!({
        "status": "changed",
        "keys": changed.keys.iter().map(key_json).collect::<Vec<_>>(),
        "added": changed.added,
        "removed": changed.removed,
    }))
    .into_response())
}
