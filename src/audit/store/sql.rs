//! The statements that write audit rows: onto the chain, and into `audit_open`.

use sqlx::SqliteConnection;

use super::super::chain;
use super::{now_ms, Pending, StoreError};

/// Binds a row's content columns, in the order both tables list them (ts_ms … detail).
pub(super) fn bind_content<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    row: &'q Pending,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(row.ts_ms)
        .bind(row.last_ts_ms)
        .bind(row.count)
        .bind(&row.event)
        .bind(&row.outcome)
        .bind(&row.username)
        .bind(&row.client_ip)
        .bind(&row.peer_ip)
        .bind(&row.user_agent)
        .bind(&row.request_id)
        .bind(&row.verifier)
        .bind(&row.reason)
        .bind(&row.detail)
}

pub(super) async fn upsert_open(
    conn: &mut SqliteConnection,
    writer: &str,
    slot: i64,
    now: i64,
    row: &Pending,
) -> Result<(), sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO audit_open (writer, slot, updated_ms, ts_ms, last_ts_ms, count, event, \
         outcome, username, client_ip, peer_ip, user_agent, request_id, verifier, reason, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
         ON CONFLICT (writer, slot) DO UPDATE SET updated_ms = excluded.updated_ms, \
         ts_ms = excluded.ts_ms, last_ts_ms = excluded.last_ts_ms, count = excluded.count, \
         detail = excluded.detail",
    )
    .bind(writer)
    .bind(slot)
    .bind(now);
    bind_content(query, row).execute(&mut *conn).await?;
    Ok(())
}

/// What `audit_head.mac` holds when the writer found the head missing or forged: the new
/// head is left unsigned, so `verify` keeps reporting the tampering instead of the writer
/// re-signing (and so hiding) it.
const UNSIGNED_HEAD: &str = "unsigned: the head was missing or forged when this batch was written";

/// Appends `rows` to the chain and moves the head, inside the caller's IMMEDIATE transaction.
pub(super) async fn append(
    tx: &mut SqliteConnection,
    key: &[u8; 32],
    rows: &[Pending],
) -> Result<(), StoreError> {
    let (mut last_id, mut last_hash, mut row_count, mut signed) = match chain::read_head(&mut *tx)
        .await?
    {
        Some(head) => {
            let valid = chain::head_is_valid(key, &head);
            if !valid {
                tracing::error!("audit_head does not verify; new rows stay unsigned until `audit verify` is investigated");
            }
            (head.last_id, head.last_hash, head.row_count, valid)
        }
        None => {
            let last: Option<(i64, String)> =
                sqlx::query_as("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            let anchors: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_anchors")
                .fetch_one(&mut *tx)
                .await?;
            match last {
                None if anchors == 0 => (0, chain::GENESIS_HASH.to_string(), 0, true),
                last => {
                    tracing::error!("audit_head is missing; new rows stay unsigned until `audit verify` is investigated");
                    let (id, hash) = last.unwrap_or((0, chain::GENESIS_HASH.to_string()));
                    (id, hash, id, false)
                }
            }
        }
    };
    let mut prev = chain::decode_hash(&last_hash).unwrap_or([0u8; 32]);
    if chain::decode_hash(&last_hash).is_none() {
        signed = false;
    }
    for row in rows {
        let id = last_id
            .checked_add(1)
            .ok_or(StoreError::InvalidRow("audit ids exhausted"))?;
        let hash = chain::row_hash(&prev, &row.content());
        let hash_hex = hex::encode(hash);
        let query = sqlx::query(
            "INSERT INTO audit_events (id, ts_ms, last_ts_ms, count, event, outcome, username, \
             client_ip, peer_ip, user_agent, request_id, verifier, reason, detail, prev_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )
        .bind(id);
        bind_content(query, row)
            .bind(hex::encode(prev))
            .bind(&hash_hex)
            .execute(&mut *tx)
            .await?;
        prev = hash;
        last_id = id;
        last_hash = hash_hex;
        row_count = row_count.saturating_add(1);
    }
    let mac = if signed {
        chain::head_mac(key, last_id, &last_hash, row_count)
    } else {
        UNSIGNED_HEAD.to_string()
    };
    sqlx::query(
        "INSERT INTO audit_head (id, last_id, last_hash, row_count, updated_ms, mac) \
         VALUES (1, ?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, \
         last_hash = excluded.last_hash, row_count = excluded.row_count, \
         updated_ms = excluded.updated_ms, mac = excluded.mac",
    )
    .bind(last_id)
    .bind(&last_hash)
    .bind(row_count)
    .bind(now_ms())
    .bind(&mac)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
