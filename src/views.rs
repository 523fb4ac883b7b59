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
