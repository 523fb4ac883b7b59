//! The SSH keys page: the stored keys with a "remove" box each, a field to add keys, and the
//! current password (and code) to confirm.

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;

use crate::app::state::AppState;
use crate::auth::sessions::Claims;
use crate::auth::ssh_keys::{KeyEdit, KeyListing, KeysChange, KeysError};
use crate::authorized_keys::Refusal;
use crate::i18n::Lang;
use crate::limiter::Admitted;
use crate::totp::TotpError;
use crate::views::{
    key_refusals, lang_of, message_page, render, truenas_messages, Errors, KeyRow, KeysPage,
    KEYS_FIELDS,
};
use crate::web::csrf;
use crate::web::extract::{Call, CookieSession, CsrfForm, CsrfProtected, Full, Page};
use crate::web::responses::{retry_later_if, with_csrf_cookie};

/// More "remove" boxes than any page shows are ignored.
const MAX_REMOVE_FIELDS: usize = 128;

/// The form. Read as a list of pairs because the "remove" boxes repeat one name, which the
/// plain form parser cannot collect.
#[derive(Deserialize)]
#[serde(from = "Vec<(String, String)>")]
pub struct KeysForm {
    csrf: Option<String>,
    add: String,
    current_password: String,
    code: String,
    remove: Vec<String>,
}

impl From<Vec<(String, String)>> for KeysForm {
    fn from(pairs: Vec<(String, String)>) -> Self {
        let mut form = KeysForm {
            csrf: None,
            add: String::new(),
            current_password: String::new(),
            code: String::new(),
            remove: Vec::new(),
        };
        for (name, value) in pairs {
            match name.as_str() {
                "csrf" => form.csrf = Some(value),
                "add" => form.add = value,
                "current_password" => form.current_password = value,
                "code" => form.code = value,
                "remove" if form.remove.len() < MAX_REMOVE_FIELDS => form.remove.push(value),
                _ => {}
            }
        }
        form
    }
}

impl CsrfProtected for KeysForm {
    const PAGE: &'static str = "/keys";
    const TITLE: &'static str = "keys.title";
    fn csrf_token(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// What the page shows besides the listing: the refused submission's text and boxes.
struct Shown<'a> {
    errors: Errors,
    notice: Option<String>,
    add: &'a str,
    remove: &'a [String],
}

impl Shown<'_> {
    fn fresh() -> Self {
        Shown {
            errors: Errors::none(),
            notice: None,
            add: "",
            remove: &[],
        }
    }
}

async fn page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    claims: &Claims,
    shown: Shown<'_>,
) -> Response {
    let t = lang_of(headers);
    let listing = match state.portal.ssh_keys(claims).await {
        Ok(listing) => listing,
        Err(error) => return listing_refused(t, &error),
    };
    let KeyListing {
        keys,
        other_lines,
        storable,
        code_required,
        max_keys,
    } = listing;
    let pair = csrf::for_page(state, headers);
    let rows = keys
        .iter()
        .map(|k| KeyRow::new(t, k, shown.remove.contains(&k.fingerprint)))
        .collect();
    let other_lines = (other_lines > 0).then(|| {
        let n = u64::try_from(other_lines).unwrap_or(u64::MAX);
        t.tr_n("keys.other_lines", n, &[])
    });
    let page = KeysPage {
        t,
        title: t.tr("keys.title"),
        csrf: &pair.form_token,
        username: &claims.sub,
        keys: rows,
        other_lines,
        storable,
        code_required,
        max_hint: t.tr_with("keys.max", &[("max", &max_keys)]),
        add: shown.add,
        errors: shown.errors.in_order(KEYS_FIELDS),
        notice: shown.notice,
    };
    with_csrf_cookie(state, &pair, render(status, &page))
}

/// The listing itself could not be made: a page of its own, with a way back.
fn listing_refused(t: Lang, error: &KeysError) -> Response {
    let (status, text) = match error {
        KeysError::NotForAccount => (StatusCode::FORBIDDEN, t.tr("keys.not_for_account")),
        KeysError::Off => (StatusCode::NOT_FOUND, t.tr("not_found.text")),
        _ => (StatusCode::SERVICE_UNAVAILABLE, t.tr("common.unavailable")),
    };
    message_page(
        t,
        status,
        t.tr("keys.title"),
        text,
        "/password",
        t.tr("keys.back"),
    )
}

pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: CookieSession<Full>,
) -> Response {
    page(
        &state,
        &headers,
        StatusCode::OK,
        &session.claims,
        Shown::fresh(),
    )
    .await
}

/// What a refused change means for the page: status and the messages on their fields.
fn refusal(t: Lang, error: &KeysError) -> (StatusCode, Errors) {
    let general = |text: &str| Errors::one(text, &[]);
    match error {
        KeysError::Refused(lines) => {
            let mut errors = Errors::none();
            for line in lines {
                errors.push(key_refusals::describe(t, line), Vec::new(), &["add"]);
            }
            (StatusCode::BAD_REQUEST, errors)
        }
        KeysError::WrongPassword => (
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("keys.wrong_password"), &["current_password"]),
        ),
        KeysError::InvalidCode(None) => (
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("keys.code_required"), &["code"]),
        ),
        KeysError::InvalidCode(Some(TotpError::TooManyAttempts { retry_after })) => (
            StatusCode::TOO_MANY_REQUESTS,
            Errors::one(super::two_step::too_many_text(t, *retry_after), &["code"]),
        ),
        KeysError::InvalidCode(Some(_)) => (
            StatusCode::UNAUTHORIZED,
            Errors::one(t.tr("totp.wrong_code"), &["code"]),
        ),
        KeysError::NoHome | KeysError::NotStored => {
            (StatusCode::CONFLICT, general(t.tr("keys.no_home")))
        }
        KeysError::NotForAccount => (StatusCode::FORBIDDEN, general(t.tr("keys.not_for_account"))),
        KeysError::LinkInHome => (StatusCode::CONFLICT, general(t.tr("keys.link_in_home"))),
        KeysError::RejectedByTrueNas(messages) => {
            let mut errors = Errors::none();
            for m in messages {
                let message = truenas_messages::plain_words(m, t);
                errors.push(
                    t.tr_with("keys.rejected", &[("message", &message)]),
                    Vec::new(),
                    &["add"],
                );
            }
            (StatusCode::UNPROCESSABLE_ENTITY, errors)
        }
        KeysError::Off => (StatusCode::NOT_FOUND, general(t.tr("not_found.text"))),
        KeysError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            general(t.tr("common.unavailable")),
        ),
        KeysError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            general(t.tr("common.busy")),
        ),
    }
}

pub async fn submit(
    call: Call<Page>,
    admitted: Admitted,
    headers: HeaderMap,
    session: CookieSession<Full>,
    CsrfForm(form): CsrfForm<KeysForm>,
) -> Response {
    let Call { ref state, t, .. } = call;
    let current = SecretString::from(form.current_password);
    let code = SecretString::from(form.code);
    let change = KeysChange {
        current: &current,
        code: Some(&code),
        edit: KeyEdit::Edit {
            add: &form.add,
            remove: &form.remove,
        },
    };
    let caller = call.caller();
    let claims = &session.claims;
    match state
        .portal
        .change_ssh_keys(caller, admitted, claims, change)
        .await
    {
        Ok(changed) => {
            let n = u64::try_from(changed.keys.len()).unwrap_or(u64::MAX);
            let shown = Shown {
                notice: Some(t.tr_n("keys.saved", n, &[])),
                ..Shown::fresh()
            };
            page(state, &headers, StatusCode::OK, claims, shown).await
        }
        Err(error) => {
            let (status, errors) = refusal(t, &error);
            // A pasted private key is a secret: it is never sent back, like a password.
            let private = matches!(&error, KeysError::Refused(lines)
                if lines.iter().any(|l| l.reason == Refusal::PrivateKey));
            let shown = Shown {
                errors: errors.with_heading(t.tr("keys.not_changed")),
                notice: None,
                add: if private { "" } else { &form.add },
                remove: &form.remove,
            };
            let response = page(state, &headers, status, claims, shown).await;
            retry_later_if(matches!(error, KeysError::Busy), response)
        }
    }
}
