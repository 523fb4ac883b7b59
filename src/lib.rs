pub mod authenticate;
pub mod config;
pub mod password_change;
pub mod policy;
pub mod truenas;
pub mod verify;
