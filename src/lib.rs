//! passgate: a security-hardened self-service password portal for TrueNAS users.
//!
//! The data path, outside in (README "Architecture"): `server` accepts connections, `app`
//! builds the router and its middleware, `web` holds the extractors and the HTTP plumbing,
//! `routes` parse input and render `views`, `auth` runs each action (its use cases, the
//! sessions, the lockout and the code steps) over the domain: `verify`, `truenas`, `limiter`,
//! `totp`, `policy`, and `audit`, which records everything.

#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod authorized_keys;
pub mod cli;
pub mod config;
pub mod db;
pub mod i18n;
pub mod keys;
pub mod limiter;
pub mod mail;
pub mod metrics;
pub mod policy;
pub mod routes;
pub mod server;
pub mod totp;
pub mod truenas;
pub mod verify;
pub mod views;
pub mod web;
