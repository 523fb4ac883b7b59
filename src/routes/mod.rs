//! The routes. Each handler only parses its input (typed extractors check the session, the
//! CSRF token and the login limiter), calls one action of `auth::Portal`, and renders its
//! outcome as a page or JSON. Pages and API cannot drift: there is one flow per action.

use axum::extract::DefaultBodyLimit;
use axum::{middleware, Router};

use crate::app::state::AppState;
use crate::web::login_limit;

/// The body limit of the routes that take SSH keys.
pub const MAX_KEYS_BODY_BYTES: usize = 64 * 1024;

pub mod api;
pub mod audit_log;
pub mod ops;
pub mod pages;

/// Every route. The routes that verify a password or a code are in `limited` routers, with
/// the login limiter as their `route_layer`; their handlers take the limiter's `Admitted`
/// proof, so one outside them cannot reach a verification.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut limited = Router::new().merge(pages::limited()).merge(api::limited());
    let mut open = Router::new();
    // Without reset by mail its routes do not exist (404), rather than answering "off".
    if state.portal.reset.enabled {
        limited = limited
            .merge(pages::reset_limited())
            .merge(api::reset_limited());
        open = open.merge(pages::reset());
    }
    // Keys need more room than the 16 KiB every other request gets: 16 KiB of keys, sent
    // form-encoded, is up to three times that.
    if state.portal.ssh_keys.enabled {
        let room = DefaultBodyLimit::max(MAX_KEYS_BODY_BYTES);
        limited = limited.merge(
            Router::new()
                .merge(pages::keys_limited())
                .merge(api::keys_limited())
                .layer(room),
        );
        open = open.merge(pages::keys()).merge(api::keys());
    }
    let limited = limited.route_layer(middleware::from_fn_with_state(
        state.clone(),
        login_limit::enforce,
    ));
    Router::new()
        .merge(open)
        .merge(pages::router())
        .merge(api::router())
        .merge(audit_log::router())
        .merge(ops::router())
        .merge(limited)
}
