//! One struct per page template (askama, auto-escaped), and the helper that renders them.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub title: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage<'a> {
    pub title: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub display_name: &'a str,
    pub policy: &'a str,
    pub errors: Vec<String>,
    /// Shows the link to the audit log.
    pub admin: bool,
}

#[derive(Template)]
#[template(path = "done.html")]
pub struct DonePage<'a> {
    pub title: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub link: &'a str,
    pub link_text: &'a str,
}

pub struct RowView {
    pub time: String,
    pub event: String,
    pub outcome: String,
    pub user: String,
    pub ip: String,
    pub count: i64,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AdminAuditPage<'a> {
    pub title: &'a str,
    pub admin: &'a str,
    pub f: &'a crate::routes::admin::AuditQuery,
    pub query: &'a str,
    pub failures_total: i64,
    pub rate_limited_total: i64,
    pub top_ips: Vec<(String, i64)>,
    pub top_users: Vec<(String, i64)>,
    pub changes: Vec<(String, String, String)>,
    pub lockouts: Vec<(String, String, String)>,
    pub rows: Vec<RowView>,
    /// Query string of the next (older) page.
    pub next: Option<String>,
}

pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
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
