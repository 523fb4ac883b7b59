//! Support code shared by integration tests. Each test binary uses only part of it, hence
//! the `dead_code` allowance.

#[allow(dead_code)]
pub mod fake_truenas;

#[allow(dead_code)]
pub mod portal;

#[allow(dead_code)]
pub mod nginx;

#[allow(dead_code)]
pub mod logs;

#[allow(dead_code)]
pub mod pages;

#[allow(dead_code)]
pub mod server_process;
