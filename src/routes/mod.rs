//! One module per area; each exposes `router()`. Pages and API handlers only parse input,
//! call one action of `auth`, and render its outcome.

pub mod api;
pub mod audit_log;
pub mod health;
pub mod metrics;
pub mod pages;
