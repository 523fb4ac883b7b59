//! Driving the server-rendered pages in-process: cookies, CSRF fields, form posts.

use axum::body::Body;
use http::header::SET_COOKIE;
use http::{Request, Response};

pub fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect()
}

/// `name=value` for a Cookie header, from a Set-Cookie line.
pub fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("pair").to_string()
}

pub fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("csrf field") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

pub fn form(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(Body::from(body.to_string()))
        .expect("request")
}

pub fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header("cookie", cookie)
        .body(Body::empty())
        .expect("request")
}

/// A GET with an `Accept-Language` header.
pub fn get_in(path: &str, cookie: &str, language: &str) -> Request<Body> {
    Request::get(path)
        .header("cookie", cookie)
        .header("accept-language", language)
        .body(Body::empty())
        .expect("request")
}

/// A form post with an `Accept-Language` header.
pub fn form_in(path: &str, cookie: &str, body: &str, language: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .header("accept-language", language)
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// Every `name=value` pair the response sets, for a Cookie header.
pub fn cookie_pairs(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect()
}
