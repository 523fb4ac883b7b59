//! SQL for `totp_enrollments` and `totp_backup_codes` (migrations/0003_totp.sql).
//!
//! Every state change that an attacker could race (using a step, using a backup code,
//! activating a pending secret) is one conditional UPDATE whose affected-row count decides
//! who won, and it names the exact blob or hash that was checked, so a row changed in
//! between is not updated.

use sqlx::SqlitePool;

pub(crate) struct Enrollment {
    pub active: Option<Vec<u8>>,
    pub pending: Option<Vec<u8>>,
    pub pending_created_at: Option<i64>,
    pub last_step: i64,
}

pub(crate) struct StatusRow {
    pub username: String,
    pub enabled: bool,
    pub enabled_at: Option<i64>,
    pub pending_created_at: Option<i64>,
    pub backup_codes_left: i64,
    pub last_used_at: Option<i64>,
}

type EnrollmentTuple = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>, i64);
type StatusTuple = (String, bool, Option<i64>, Option<i64>, i64, Option<i64>);

/// A macro rather than a const so each query stays one static string.
macro_rules! status_select {
    ($tail:literal) => {
        concat!(
            "SELECT e.username, e.active_secret IS NOT NULL, e.enabled_at, e.pending_created_at, ",
            "(SELECT COUNT(*) FROM totp_backup_codes b ",
            "WHERE b.username = e.username AND b.used_at IS NULL), ",
            "e.last_used_at FROM totp_enrollments e ",
            $tail
        )
    };
}

fn status_row(t: StatusTuple) -> StatusRow {
    StatusRow {
        username: t.0,
        enabled: t.1,
        enabled_at: t.2,
        pending_created_at: t.3,
        backup_codes_left: t.4,
        last_used_at: t.5,
    }
}

pub(crate) async fn load(
    pool: &SqlitePool,
    username: &str,
) -> Result<Option<Enrollment>, sqlx::Error> {
    let row: Option<EnrollmentTuple> = sqlx::query_as(
        "SELECT active_secret, pending_secret, pending_created_at, last_step \
         FROM totp_enrollments WHERE username = ?",
    )
    .bind(username)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(active, pending, pending_created_at, last_step)| Enrollment {
            active,
            pending,
            pending_created_at,
            last_step,
        },
    ))
}

/// Stores a new pending secret, replacing any earlier pending one; the active one stays.
pub(crate) async fn put_pending(
    pool: &SqlitePool,
    username: &str,
    blob: &[u8],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO totp_enrollments (username, pending_secret, pending_created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (username) DO UPDATE SET \
         pending_secret = excluded.pending_secret, \
         pending_created_at = excluded.pending_created_at, \
         updated_at = excluded.updated_at",
    )
    .bind(username)
    .bind(blob)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Drops a pending secret (expired), if it is still the one that was read.
pub(crate) async fn clear_pending(
    pool: &SqlitePool,
    username: &str,
    blob: &[u8],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE totp_enrollments SET pending_secret = NULL, pending_created_at = NULL, \
         updated_at = ? WHERE username = ? AND pending_secret = ?",
    )
    .bind(now)
    .bind(username)
    .bind(blob)
    .execute(pool)
    .await?;
    // A row left with nothing in it is no enrollment at all.
    sqlx::query(
        "DELETE FROM totp_enrollments WHERE username = ? \
         AND active_secret IS NULL AND pending_secret IS NULL",
    )
    .bind(username)
    .execute(pool)
    .await?;
    Ok(())
}

/// The replay guard: records `step` as used only if it is newer than every step used
/// before and the active secret is still the one the code was checked against. False when
/// another request got there first.
pub(crate) async fn advance_step(
    pool: &SqlitePool,
    username: &str,
    active: &[u8],
    step: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE totp_enrollments SET last_step = ?1, last_used_at = ?2, updated_at = ?2 \
         WHERE username = ?3 AND last_step < ?1 AND active_secret = ?4",
    )
    .bind(step)
    .bind(now)
    .bind(username)
    .bind(active)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Unused backup codes: (slot, PHC hash).
pub(crate) async fn unused_codes(
    pool: &SqlitePool,
    username: &str,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT slot, hash FROM totp_backup_codes \
         WHERE username = ? AND used_at IS NULL ORDER BY slot",
    )
    .bind(username)
    .fetch_all(pool)
    .await
}

/// Marks a backup code used if it still is unused and unchanged. False when another request
/// used it first (or the set was replaced meanwhile).
pub(crate) async fn use_code(
    pool: &SqlitePool,
    username: &str,
    slot: i64,
    hash: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE totp_backup_codes SET used_at = ? \
         WHERE username = ? AND slot = ? AND hash = ? AND used_at IS NULL",
    )
    .bind(now)
    .bind(username)
    .bind(slot)
    .bind(hash)
    .execute(pool)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE totp_enrollments SET last_used_at = ?1, updated_at = ?1 WHERE username = ?2",
    )
    .bind(now)
    .bind(username)
    .execute(pool)
    .await?;
    Ok(true)
}

pub(crate) async fn count_unused(pool: &SqlitePool, username: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM totp_backup_codes WHERE username = ? AND used_at IS NULL",
    )
    .bind(username)
    .fetch_one(pool)
    .await
}

/// Makes the pending secret active (re-encrypted for the active column) and replaces the
/// backup codes, in one transaction. False if the pending secret is no longer the one that
/// was confirmed (replaced, confirmed or reset meanwhile).
pub(crate) async fn activate(
    pool: &SqlitePool,
    username: &str,
    pending: &[u8],
    active: &[u8],
    step: i64,
    now: i64,
    code_hashes: &[String],
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE totp_enrollments SET active_secret = ?1, pending_secret = NULL, \
         pending_created_at = NULL, last_step = ?2, enabled_at = ?3, last_used_at = ?3, \
         updated_at = ?3 WHERE username = ?4 AND pending_secret = ?5",
    )
    .bind(active)
    .bind(step)
    .bind(now)
    .bind(username)
    .bind(pending)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query("DELETE FROM totp_backup_codes WHERE username = ?")
        .bind(username)
        .execute(&mut *tx)
        .await?;
    for (slot, hash) in code_hashes.iter().enumerate() {
        sqlx::query("INSERT INTO totp_backup_codes (username, slot, hash) VALUES (?, ?, ?)")
            .bind(username)
            .bind(i64::try_from(slot).unwrap_or(i64::MAX))
            .bind(hash)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Deletes the enrollment and backup codes; the number of rows removed.
pub(crate) async fn delete(pool: &SqlitePool, username: &str) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let codes = sqlx::query("DELETE FROM totp_backup_codes WHERE username = ?")
        .bind(username)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let rows = sqlx::query("DELETE FROM totp_enrollments WHERE username = ?")
        .bind(username)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(codes + rows)
}

pub(crate) async fn status(
    pool: &SqlitePool,
    username: &str,
) -> Result<Option<StatusRow>, sqlx::Error> {
    let row: Option<StatusTuple> = sqlx::query_as(status_select!("WHERE e.username = ?"))
        .bind(username)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(status_row))
}

pub(crate) async fn list(pool: &SqlitePool) -> Result<Vec<StatusRow>, sqlx::Error> {
    let rows: Vec<StatusTuple> = sqlx::query_as(status_select!("ORDER BY e.username"))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(status_row).collect())
}
