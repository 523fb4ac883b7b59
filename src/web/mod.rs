//! HTTP plumbing shared by the routes: cookies, CSRF, session extraction, client address and
//! security headers.

pub mod api_error;
pub mod client_ip;
pub mod cookies;
pub mod csrf;
pub mod extract;
pub mod login_limit;
pub mod request_context;
pub mod responses;
pub mod security_headers;
pub mod throttle;
