//! Signing in and what a signed-in user may do, without HTTP: the use cases (one function
//! per action) and what they are built from: the authenticator, sessions, the per-username
//! lockout, the code steps, who is an admin, and password aging.

pub mod action_code;
pub mod admins;
pub mod audit_review;
pub mod authenticator;
pub mod change_password;
pub mod expiry_reminders;
pub mod lockout;
pub mod outbox;
pub mod password_aging;
pub mod portal;
pub mod reset_tokens;
pub mod sessions;
pub mod steps;

pub mod code_step;
pub mod reset;
pub mod sign_in;
pub mod sign_out;
pub mod ssh_keys;
pub mod totp_settings;

pub use portal::{Caller, Portal, Via};
