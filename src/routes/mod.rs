//! One module per area; each exposes `router()`.

pub mod admin;
pub mod api_totp;
pub mod api_v1;
pub mod health;
pub mod metrics;
pub mod pages;
pub mod totp_pages;
