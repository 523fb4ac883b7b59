//! One struct per page template (askama, auto-escaped), the helpers that render them, and
//! the form-error model the templates use for `aria-invalid`, `aria-describedby` and
//! `autofocus`. Every text comes from the message catalogue (`crate::i18n`).

pub mod charts;
pub mod key_refusals;
pub mod truenas_messages;

use std::convert::Infallible;
use std::fmt::Write as _;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::response::{Html, IntoResponse, Response};
use http::header::{ACCEPT_LANGUAGE, VARY};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::audit::query::format_ms;
use crate::auth::audit_review::{AuditQuery, PageView};
use crate::auth::password_aging::PasswordAging;
use crate::i18n::Lang;
use crate::views::charts::Markup;

/// The language the browser asked for (`Accept-Language`), English otherwise.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::negotiate(headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(lang_of(&parts.headers))
    }
}

/// One problem with a submitted form, tied to the fields it is about.
pub struct FormError {
    pub id: String,
    pub text: String,
    /// Explanations under the text (zxcvbn's warning and suggestions).
    pub details: Vec<String>,
    pub fields: Vec<&'static str>,
}

/// The problems of one submission, in the order they are listed.
#[derive(Default)]
pub struct Errors {
    pub items: Vec<FormError>,
    /// A line above the list, e.g. "Your password was not changed:".
    pub heading: Option<String>,
    /// The page's fields in document order: the first invalid one gets `autofocus`.
    order: &'static [&'static str],
}

impl Errors {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn one(text: impl Into<String>, fields: &[&'static str]) -> Self {
        let mut errors = Self::default();
        errors.push(text, Vec::new(), fields);
        errors
    }

    pub fn push(&mut self, text: impl Into<String>, details: Vec<String>, fields: &[&'static str]) {
        let id = format!("error-{}", self.items.len() + 1);
        self.items.push(FormError {
            id,
            text: text.into(),
            details,
            fields: fields.to_vec(),
        });
    }

    pub fn with_heading(mut self, heading: impl Into<String>) -> Self {
        self.heading = Some(heading.into());
        self
    }

    pub fn in_order(mut self, order: &'static [&'static str]) -> Self {
        self.order = order;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A single message with no heading is shown as a sentence, not a list.
    pub fn is_single(&self) -> bool {
        self.items.len() == 1 && self.heading.is_none() && self.items[0].details.is_empty()
    }

    pub fn invalid(&self, field: &str) -> bool {
        self.items.iter().any(|e| e.fields.contains(&field))
    }

    fn first_invalid(&self) -> Option<&'static str> {
        self.order.iter().copied().find(|f| self.invalid(f))
    }

    /// The accessibility attributes of one input: `aria-describedby` (its hint ids, then
    /// the ids of the errors about it), and for an invalid field `aria-invalid="true"`,
    /// plus `autofocus` on the first invalid field. Only ids made here and the literal ids
    /// from the template go in, never user text, so the template may emit it unescaped.
    pub fn attrs(&self, field: &str, hints: &str) -> String {
        let mut described: Vec<&str> = hints.split_whitespace().collect();
        let mut out = String::new();
        for e in self.items.iter().filter(|e| e.fields.contains(&field)) {
            described.push(&e.id);
        }
        if !described.is_empty() {
            let _ = write!(out, " aria-describedby=\"{}\"", described.join(" "));
        }
        if self.invalid(field) {
            out.push_str(" aria-invalid=\"true\"");
        }
        if self.first_invalid() == Some(field) {
            out.push_str(" autofocus");
        }
        out
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub errors: Errors,
    pub notice: Option<&'a str>,
    /// "Forgot your password?", when reset by mail is on.
    pub forgot_link: bool,
}

pub const LOGIN_FIELDS: &[&str] = &["username", "password"];

#[derive(Template)]
#[template(path = "reset_request.html")]
pub struct ResetRequestPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub errors: Errors,
}

#[derive(Template)]
#[template(path = "reset_confirm.html")]
pub struct ResetConfirmPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    pub token: &'a str,
    pub code_required: bool,
    pub rules: Vec<String>,
    pub errors: Errors,
}

pub const RESET_FIELDS: &[&str] = &["new_password", "confirm_password", "code"];

#[derive(Template)]
#[template(path = "reset_cancel.html")]
pub struct ResetCancelPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    pub token: &'a str,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub display_name: &'a str,
    pub rules: Vec<String>,
    pub errors: Errors,
    /// Shows the link to the audit log.
    pub admin: bool,
    /// Shows the link to the two-step sign-in settings.
    pub totp_link: bool,
    /// Shows the link to the SSH keys page.
    pub keys_link: bool,
    /// What TrueNAS says about the password's age, above the form.
    pub aging: Option<AgingNotice>,
}

#[derive(Template)]
#[template(path = "keys.html")]
pub struct KeysPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub keys: Vec<KeyRow>,
    /// The sentence about lines the page cannot show, if there are any.
    pub other_lines: Option<String>,
    /// `false`: the account has no home directory; no form is shown.
    pub storable: bool,
    pub code_required: bool,
    /// "At most 10 keys."
    pub max_hint: String,
    /// What the user typed into "Add keys", kept after a refusal so it can be fixed.
    pub add: &'a str,
    pub errors: Errors,
    pub notice: Option<String>,
}

/// One stored key as the page lists it.
pub struct KeyRow {
    pub algorithm: String,
    /// `SHA256:…`: also the value of its "remove" box.
    pub fingerprint: String,
    /// The key's comment, or the words for "no comment".
    pub comment: String,
    /// "4096 bits" for RSA.
    pub size: Option<String>,
    /// The remove box's accessible name, with the comment in it.
    pub remove_label: String,
    /// Ticked for removal in the refused submission.
    pub checked: bool,
}

impl KeyRow {
    pub fn new(t: Lang, key: &crate::authorized_keys::AcceptedKey, checked: bool) -> Self {
        let comment = if key.comment.is_empty() {
            t.tr("keys.no_comment").to_string()
        } else {
            key.comment.clone()
        };
        let name = if key.comment.is_empty() {
            &key.fingerprint
        } else {
            &key.comment
        };
        Self {
            algorithm: key.algorithm.clone(),
            fingerprint: key.fingerprint.clone(),
            size: key
                .bits
                .map(|bits| t.tr_with("keys.bits", &[("bits", &bits)])),
            remove_label: t.tr_with("keys.remove_label", &[("name", name)]),
            comment,
            checked,
        }
    }
}

pub const KEYS_FIELDS: &[&str] = &["remove", "add", "current_password", "code"];

/// One sentence about the password's age; `urgent` ones are shown as an alert.
pub struct AgingNotice {
    pub text: String,
    pub urgent: bool,
}

/// The plain-words sentence for a password's aging, or `None` when there is nothing to say
/// (no maximum age, no change asked for).
pub fn aging_notice(t: Lang, aging: &PasswordAging) -> Option<AgingNotice> {
    let urgent = |text: String| Some(AgingNotice { text, urgent: true });
    if aging.expired {
        return urgent(t.tr("password.aging_expired").to_string());
    }
    match aging.days_left {
        Some(0) => urgent(t.tr("password.aging_last_day").to_string()),
        Some(days) if days > 0 => Some(AgingNotice {
            text: t.tr_n("password.aging_days_left", days.unsigned_abs(), &[]),
            urgent: aging.change_required,
        }),
        _ if aging.change_required => urgent(t.tr("password.aging_change_required").to_string()),
        _ => None,
    }
}

pub const PASSWORD_FIELDS: &[&str] = &["current_password", "new_password", "confirm_password"];

/// Each broken rule of a new password, on the field to fix, with zxcvbn's advice under a
/// weak password (the change form and the reset form).
pub fn policy_errors(t: Lang, violations: &[crate::policy::Violation]) -> Errors {
    let mut errors = Errors::none();
    for v in violations {
        let field = if v.is_confirmation() {
            "confirm_password"
        } else {
            "new_password"
        };
        errors.push(v.describe(t), v.details(t), &[field]);
    }
    errors
}

/// TrueNAS' refusals of a new password, in plain words, on the new-password field.
pub fn truenas_errors(t: Lang, messages: &[String]) -> Errors {
    let mut errors = Errors::none();
    for m in messages {
        errors.push(
            truenas_messages::plain_words(m, t),
            Vec::new(),
            &["new_password"],
        );
    }
    errors
}

#[derive(Template)]
#[template(path = "done.html")]
pub struct DonePage<'a> {
    pub t: Lang,
    pub title: &'a str,
}

/// One message and one link on: an error (`alert`, announced at once by screen readers), or
/// something done or on its way.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub message: &'a str,
    pub link: &'a str,
    pub link_text: &'a str,
    pub alert: bool,
}

#[derive(Template)]
#[template(path = "totp_code.html")]
pub struct TotpCodePage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    pub prompt: &'a str,
    pub errors: Errors,
    /// Backup codes work for the portal's own TOTP, not for TrueNAS' code.
    pub backup_allowed: bool,
}

pub const CODE_FIELDS: &[&str] = &["code"];

#[derive(Template)]
#[template(path = "totp_settings.html")]
pub struct TotpSettingsPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    pub enabled: bool,
    /// `totp.mode = required`: no way to turn it off.
    pub required: bool,
    /// The forced-enrollment session: setting up is the only way on.
    pub forced: bool,
    pub backup_codes_left: String,
    pub errors: Errors,
    pub notice: Option<&'a str>,
}

pub const SETTINGS_FIELDS: &[&str] = &["replace-code", "disable-password", "disable-code"];

#[derive(Template)]
#[template(path = "totp_setup.html")]
pub struct TotpSetupPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub csrf: &'a str,
    /// Generated by the TOTP module from the otpauth URI: path data only, no user text.
    pub qr_svg: &'a str,
    pub secret: &'a str,
    /// The "cannot scan?" line, with the account name filled in.
    pub manual: &'a str,
    pub errors: Errors,
}

#[derive(Template)]
#[template(path = "totp_backup_codes.html")]
pub struct BackupCodesPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub codes: Vec<&'a str>,
    pub next: &'a str,
}

pub struct RowView {
    pub time: String,
    pub event: String,
    pub outcome: String,
    pub user: String,
    pub ip: String,
    pub count: i64,
    /// Still being counted in its minute (not in the chain yet).
    pub open: bool,
    pub reason: String,
}

/// The attack charts of the audit page, made by `crate::views::charts` (escaped there).
pub struct AuditCharts {
    pub last_hour: Markup,
    pub period: Markup,
    pub top_ips: Markup,
    pub top_users: Markup,
}

impl AuditCharts {
    fn new(t: Lang, view: &PageView) -> Self {
        AuditCharts {
            last_hour: charts::time_chart(
                t,
                "chart-last-hour",
                t.tr("charts.last_hour"),
                &view.activity.last_hour,
            ),
            period: charts::time_chart(
                t,
                "chart-period",
                t.tr("charts.per_hour"),
                &view.activity.period,
            ),
            top_ips: charts::top_chart(
                t,
                "chart-top-ips",
                t.tr("admin.top_ips"),
                t.tr("admin.col_ip"),
                &view.summary.top_failing_ips,
            ),
            top_users: charts::top_chart(
                t,
                "chart-top-users",
                t.tr("admin.top_users"),
                t.tr("admin.col_user"),
                &view.summary.top_failing_users,
            ),
        }
    }
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AdminAuditPage<'a> {
    pub t: Lang,
    pub title: &'a str,
    pub admin: &'a str,
    pub f: &'a AuditQuery,
    pub query: &'a str,
    pub totals: String,
    pub charts: AuditCharts,
    /// "time: user from address", already in the page's language.
    pub changes: Vec<String>,
    pub lockouts: Vec<String>,
    pub rows: Vec<RowView>,
    /// Query string of the next (older) page.
    pub next: Option<String>,
}

impl<'a> AdminAuditPage<'a> {
    /// The page for `view`, in `t`'s language; `query` is `f.query_string()`.
    pub fn new(
        t: Lang,
        admin: &'a str,
        f: &'a AuditQuery,
        query: &'a str,
        view: &PageView,
    ) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| String::from("-"));
        let entry = |ts_ms: i64, user: &Option<String>, ip: &Option<String>| {
            let time = format_ms(ts_ms);
            let (user, ip) = (text(user), text(ip));
            t.tr_with(
                "admin.entry",
                &[("time", &time), ("user", &user), ("ip", &ip)],
            )
        };
        let summary = &view.summary;
        let totals = t.tr_with(
            "admin.totals",
            &[
                ("failures", &summary.failures_total),
                ("limited", &summary.rate_limited_total),
            ],
        );
        let next = view.next_before.map(|id| {
            if query.is_empty() {
                format!("before={id}")
            } else {
                format!("{query}&before={id}")
            }
        });
        AdminAuditPage {
            t,
            title: t.tr("admin.title"),
            admin,
            f,
            query,
            totals,
            charts: AuditCharts::new(t, view),
            changes: summary
                .password_changes
                .iter()
                .map(|c| entry(c.ts_ms, &c.username, &c.client_ip))
                .collect(),
            lockouts: summary
                .lockouts
                .iter()
                .map(|l| entry(l.ts_ms, &l.username, &l.client_ip))
                .collect(),
            rows: view
                .rows
                .iter()
                .map(|r| RowView {
                    time: format_ms(r.ts_ms),
                    event: r.event.clone(),
                    outcome: r.outcome.clone(),
                    user: text(&r.username),
                    ip: text(&r.client_ip),
                    count: r.count,
                    open: r.open,
                    reason: text(&r.reason),
                })
                .collect(),
            next,
        }
    }

    /// For the outcome filter's `<select>`; the long spellings the filter accepts count too.
    pub fn outcome_is(&self, value: &str) -> bool {
        let chosen = match self.f.outcome.trim() {
            "success" => "ok",
            "failure" => "fail",
            other => other,
        };
        chosen == value
    }
}

pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = (status, Html(body)).into_response();
            response
                .headers_mut()
                .insert(VARY, HeaderValue::from_static("Accept-Language"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Please try again.",
            )
                .into_response()
        }
    }
}

/// A page with one message and one link: refusals, "not found", "please wait".
pub fn message_page(
    t: Lang,
    status: StatusCode,
    title: &str,
    message: &str,
    link: &str,
    link_text: &str,
) -> Response {
    render(
        status,
        &MessagePage {
            t,
            title,
            message,
            link,
            link_text,
            alert: true,
        },
    )
}

/// A page that reports something done or on its way (not an error), with one link on.
pub fn notice_page(t: Lang, title: &str, message: &str, link: &str, link_text: &str) -> Response {
    render(
        StatusCode::OK,
        &MessagePage {
            t,
            title,
            message,
            link,
            link_text,
            alert: false,
        },
    )
}

pub fn not_found_page(t: Lang) -> Response {
    message_page(
        t,
        StatusCode::NOT_FOUND,
        t.tr("not_found.title"),
        t.tr("not_found.text"),
        "/login",
        t.tr("not_found.link"),
    )
}

/// The login limiter's refusal, with its wait in seconds (rounded up to minutes from two
/// minutes on).
pub fn rate_limited_page(t: Lang, secs: u64) -> Response {
    let text = if secs < 120 {
        t.tr_n("limit.seconds", secs, &[])
    } else {
        t.tr_n("limit.minutes", secs.div_ceil(60), &[])
    };
    message_page(
        t,
        StatusCode::TOO_MANY_REQUESTS,
        t.tr("limit.title"),
        &text,
        "/login",
        t.tr("common.back_to_sign_in"),
    )
}
