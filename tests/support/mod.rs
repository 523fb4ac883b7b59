//! Support code shared by integration tests. Each test binary uses only part of it, hence
//! the `dead_code` allowance.

// Test code: a failed unwrap, expect or panic is a failed test. Said here too, so that the
// support modules hold whichever crate root includes them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

#[allow(dead_code)]
pub mod clock;

#[allow(dead_code)]
pub mod deploy_files;

#[allow(dead_code)]
pub mod keygen;
