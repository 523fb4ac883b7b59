//! passgate: a security-hardened self-service password portal for TrueNAS users.

pub mod admin;
pub mod api_error;
pub mod app;
pub mod audit;
pub mod audit_cli;
pub mod authenticate;
pub mod commands;
pub mod config;
pub mod db;
pub mod keys;
pub mod limiter;
pub mod lockout;
pub mod login_steps;
pub mod password_change;
pub mod policy;
pub mod routes;
pub mod server;
pub mod sessions;
pub mod state;
pub mod totp;
pub mod totp_cli;
pub mod truenas;
pub mod truenas_messages;
pub mod verify;
pub mod views;
pub mod web;
