//! Tamper evidence for the `audit_events` table: a SHA-256 hash chain over the rows, an
//! HMAC-signed head, and HMAC-signed anchors that let old rows be pruned.
//!
//! - Every row stores `hash = SHA-256(prev_hash || canonical(row))`, where `prev_hash` is
//!   the previous row's hash (32 zero bytes, 64 zeros in hex, for the first row) and
//!   [`canonical`] is a length-prefixed encoding of every content column in a fixed order.
//!   Editing a row, deleting one in the middle or moving rows around breaks the chain.
//! - A hash chain alone cannot show that rows were cut off its end, and anyone with write
//!   access can recompute unkeyed hashes. The single `audit_head` row therefore records the
//!   last id, last hash and row count under an HMAC keyed by a key the caller derives from
//!   the server secret; it is updated in the same transaction as every batch.
//! - [`prune`] deletes a prefix of the chain and writes a signed anchor (last pruned id, its
//!   hash, rows pruned, the cutoff), and [`verify`] starts from the newest anchor.
//!
//! Limits, stated so nobody relies on more: someone holding both write access to the
//! database and an old copy of a valid head can roll the log back to that copy (a replay the
//! database alone cannot reveal; an external witness such as a periodically logged head hash
//! can). Rotating the server secret invalidates the head and anchor MACs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use super::store::StoreError;

/// `prev_hash` of the first row ever written.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A label for deriving the audit key from the server secret (HMAC(secret, label)), so the
/// key is independent of the session and CSRF keys.
pub const KEY_LABEL: &[u8] = b"passgate audit chain v1";

/// Domain tags keep a row hash, a head MAC and an anchor MAC from ever being interchangeable.
const ROW_DOMAIN: &[u8] = b"passgate audit row v1\0";
const HEAD_DOMAIN: &[u8] = b"passgate audit head v1\0";
const ANCHOR_DOMAIN: &[u8] = b"passgate audit anchor v1\0";

/// Rows read per query while walking; the walk stays in one read transaction throughout.
const PAGE: i64 = 1000;

/// The hashed content of one row: every column except `id`, `prev_hash` and `hash`. The id
/// is left out on purpose: position is already fixed by the chain links and id gaps are
/// checked separately, and keeping it out lets a swap of two rows be told apart from an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowContent<'a> {
    pub ts_ms: i64,
    pub last_ts_ms: i64,
    pub count: i64,
    pub event: &'a str,
    pub outcome: &'a str,
    pub username: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub peer_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub verifier: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// The JSON text exactly as stored: hashing bytes, not re-serialized JSON, avoids any
    /// dependence on a JSON canonicalization.
    pub detail: &'a str,
}

/// The [`RowContent`] of a row type that holds the hashed fields under their own names
/// ([`StoredRow`], the store's pending row): one mapping, so the row the writer hashes and
/// the row `verify` reads back can never be hashed from different fields.
macro_rules! row_content {
    ($row:expr) => {{
        let row = $row;
        $crate::audit::chain::RowContent {
            ts_ms: row.ts_ms,
            last_ts_ms: row.last_ts_ms,
            count: row.count,
            event: &row.event,
            outcome: &row.outcome,
            username: row.username.as_deref(),
            client_ip: row.client_ip.as_deref(),
            peer_ip: row.peer_ip.as_deref(),
            user_agent: row.user_agent.as_deref(),
            request_id: row.request_id.as_deref(),
            verifier: row.verifier.as_deref(),
            reason: row.reason.as_deref(),
            detail: &row.detail,
        }
    }};
}
pub(crate) use row_content;

/// The unambiguous byte encoding of a row: a domain tag, then the integers as 8-byte
/// big-endian, then each text field as a presence byte (nullable ones) and an 8-byte length
/// followed by the UTF-8 bytes. No two different rows encode to the same bytes.
pub fn canonical(row: &RowContent<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + row.detail.len());
    out.extend_from_slice(ROW_DOMAIN);
    for n in [row.ts_ms, row.last_ts_ms, row.count] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    put_str(&mut out, row.event);
    put_str(&mut out, row.outcome);
    for field in [
        row.username,
        row.client_ip,
        row.peer_ip,
        row.user_agent,
        row.request_id,
        row.verifier,
        row.reason,
    ] {
        match field {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_str(&mut out, s);
            }
        }
    }
    put_str(&mut out, row.detail);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `SHA-256(prev_hash || canonical(row))`.
pub fn row_hash(prev_hash: &[u8; 32], row: &RowContent<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical(row));
    h.finalize().into()
}

/// Decodes a stored hex hash; `None` for anything that is not exactly 32 bytes of hex.
pub fn decode_hash(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

#[expect(
    clippy::expect_used,
    reason = "HMAC accepts keys of any length: new_from_slice cannot fail"
)]
fn new_mac(key: &[u8; 32], domain: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(domain);
    m
}

fn head_mac_input(key: &[u8; 32], last_id: i64, last_hash: &str, row_count: i64) -> Hmac<Sha256> {
    let mut m = new_mac(key, HEAD_DOMAIN);
    let mut buf = Vec::with_capacity(96);
    buf.extend_from_slice(&last_id.to_be_bytes());
    put_str(&mut buf, last_hash);
    buf.extend_from_slice(&row_count.to_be_bytes());
    m.update(&buf);
    m
}

/// The hex HMAC stored in `audit_head.mac`.
pub fn head_mac(key: &[u8; 32], last_id: i64, last_hash: &str, row_count: i64) -> String {
    hex::encode(
        head_mac_input(key, last_id, last_hash, row_count)
            .finalize()
            .into_bytes(),
    )
}

fn head_mac_ok(key: &[u8; 32], head: &Head) -> bool {
    match hex::decode(&head.mac) {
        // verify_slice compares in constant time.
        Ok(tag) => head_mac_input(key, head.last_id, &head.last_hash, head.row_count)
            .verify_slice(&tag)
            .is_ok(),
        Err(_) => false,
    }
}

fn anchor_mac_input(key: &[u8; 32], a: &AnchorFields<'_>) -> Hmac<Sha256> {
    let mut m = new_mac(key, ANCHOR_DOMAIN);
    let mut buf = Vec::with_capacity(128);
    for n in [a.created_ms, a.cutoff_ms, a.last_id] {
        buf.extend_from_slice(&n.to_be_bytes());
    }
    put_str(&mut buf, a.last_hash);
    for n in [a.pruned_rows, a.chain_rows] {
        buf.extend_from_slice(&n.to_be_bytes());
    }
    m.update(&buf);
    m
}

struct AnchorFields<'a> {
    created_ms: i64,
    cutoff_ms: i64,
    last_id: i64,
    last_hash: &'a str,
    pruned_rows: i64,
    chain_rows: i64,
}

/// One row of `audit_events` as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredRow {
    pub id: i64,
    pub ts_ms: i64,
    pub last_ts_ms: i64,
    pub count: i64,
    pub event: String,
    pub outcome: String,
    pub username: Option<String>,
    pub client_ip: Option<String>,
    pub peer_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub verifier: Option<String>,
    pub reason: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    /// Still being counted: a row of `audit_open` read through the view `audit_all` (id 0,
    /// no hashes). Rows read from `audit_events` never are.
    #[sqlx(default)]
    pub open: bool,
}

impl StoredRow {
    pub fn content(&self) -> RowContent<'_> {
        row_content!(self)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Head {
    pub last_id: i64,
    pub last_hash: String,
    pub row_count: i64,
    pub mac: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Anchor {
    id: i64,
    created_ms: i64,
    cutoff_ms: i64,
    last_id: i64,
    last_hash: String,
    pruned_rows: i64,
    chain_rows: i64,
    mac: String,
}

impl Anchor {
    fn fields(&self) -> AnchorFields<'_> {
        AnchorFields {
            created_ms: self.created_ms,
            cutoff_ms: self.cutoff_ms,
            last_id: self.last_id,
            last_hash: &self.last_hash,
            pruned_rows: self.pruned_rows,
            chain_rows: self.chain_rows,
        }
    }

    fn mac_ok(&self, key: &[u8; 32]) -> bool {
        match hex::decode(&self.mac) {
            Ok(tag) => anchor_mac_input(key, &self.fields())
                .verify_slice(&tag)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// What is wrong with the chain: the first problem found, walking rows in id order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    /// The row's stored hash is not the hash of its content: the row was edited.
    #[error("row {id} was edited: its content does not match its hash")]
    Edited { id: i64 },
    /// Ids jump: the rows in between were deleted.
    #[error(
        "rows {missing_from}..={missing_to} were deleted (row {id} follows row {previous_id})"
    )]
    Deleted {
        id: i64,
        previous_id: i64,
        missing_from: i64,
        missing_to: i64,
    },
    /// Ids are consecutive and the row's own hash is intact, but it does not link to the row
    /// before it: rows were swapped or moved (or the previous row was rewritten with a
    /// recomputed hash, or rows were deleted and the rest renumbered).
    #[error(
        "row {id} does not follow row {previous_id}: rows were reordered \
         (or row {previous_id} was rewritten, or rows were deleted and renumbered)"
    )]
    Reordered { id: i64, previous_id: i64 },
    /// A row with an id at or before the start of the chain (the newest anchor, or genesis):
    /// it was inserted after the fact.
    #[error("row {id} lies before the start of the chain (row {start_id}): it was inserted")]
    BeforeStart { id: i64, start_id: i64 },
    /// The newest prune anchor's HMAC does not verify.
    #[error("prune anchor {anchor_id} is forged or was edited: its signature does not verify")]
    AnchorForged { anchor_id: i64 },
    /// Rows or anchors exist but the signed head row is gone.
    #[error("the signed chain head (audit_head) is missing")]
    HeadMissing,
    /// The head's HMAC does not verify.
    #[error(
        "the signed chain head (audit_head) is forged or was edited: its signature does not verify"
    )]
    HeadForged,
    /// The chain ends before the row the signed head names: rows were cut off the end.
    #[error("rows {first_missing}..={head_last_id} were cut off the end: the signed head ends at row {head_last_id}")]
    HeadTruncated {
        first_missing: i64,
        head_last_id: i64,
    },
    /// Rows exist after the row the signed head names: they were appended without the key.
    #[error("row {id} and any after it were added after the signed head: they were inserted")]
    BeyondHead { id: i64 },
    /// The last row has the head's id, but not its hash or row count: the chain was rewritten.
    #[error("row {id} does not match the signed head: the chain was rewritten")]
    HeadMismatch { id: i64 },
}

impl Tamper {
    /// The row the problem was found at, when there is one.
    pub fn row_id(&self) -> Option<i64> {
        match self {
            Tamper::Edited { id }
            | Tamper::Deleted { id, .. }
            | Tamper::Reordered { id, .. }
            | Tamper::BeforeStart { id, .. }
            | Tamper::BeyondHead { id }
            | Tamper::HeadMismatch { id } => Some(*id),
            Tamper::HeadTruncated { first_missing, .. } => Some(*first_missing),
            Tamper::AnchorForged { .. } | Tamper::HeadMissing | Tamper::HeadForged => None,
        }
    }
}

/// The result of a walk. `problem` is `None` when the chain is intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub rows_checked: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// The prune anchor the walk started from.
    pub anchor_id: Option<i64>,
    pub problem: Option<Tamper>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            Some(p) => write!(f, "audit chain BROKEN: {p}"),
            None => {
                write!(f, "audit chain intact: {} rows", self.rows_checked)?;
                if let (Some(a), Some(b)) = (self.first_id, self.last_id) {
                    write!(f, " ({a}..={b})")?;
                }
                if let Some(anchor) = self.anchor_id {
                    write!(f, ", starting at prune anchor {anchor}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where a walk started and ended; `prune` needs the start to sign the next anchor.
struct Walk {
    report: VerifyReport,
    start_rows: i64,
}

/// Walks the whole chain in id order and reports the first problem. Database errors are
/// `Err`; tampering is `Ok` with `problem` set.
pub async fn verify(pool: &SqlitePool, key: &[u8; 32]) -> Result<VerifyReport, StoreError> {
    let mut conn = pool.acquire().await?;
    // One read transaction: in WAL mode all its SELECTs see the same snapshot, so a batch
    // committed during the walk cannot make the head look ahead of the rows.
    let mut tx = conn.begin().await?;
    let walk = walk(&mut tx, key).await?;
    tx.rollback().await?;
    Ok(walk.report)
}

const SELECT_ROWS: &str = "SELECT id, ts_ms, last_ts_ms, count, event, outcome, username, \
     client_ip, peer_ip, user_agent, request_id, verifier, reason, detail, prev_hash, hash \
     FROM audit_events WHERE id >= ?1 ORDER BY id LIMIT ?2";

pub(crate) async fn read_head(conn: &mut SqliteConnection) -> Result<Option<Head>, sqlx::Error> {
    sqlx::query_as::<_, Head>(
        "SELECT last_id, last_hash, row_count, mac FROM audit_head WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await
}

pub(crate) fn head_is_valid(key: &[u8; 32], head: &Head) -> bool {
    head_mac_ok(key, head)
}

async fn walk(conn: &mut SqliteConnection, key: &[u8; 32]) -> Result<Walk, StoreError> {
    let anchor = sqlx::query_as::<_, Anchor>(
        "SELECT id, created_ms, cutoff_ms, last_id, last_hash, pruned_rows, chain_rows, mac \
         FROM audit_anchors ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let head = read_head(conn).await?;

    let mut report = VerifyReport {
        rows_checked: 0,
        first_id: None,
        last_id: None,
        anchor_id: anchor.as_ref().map(|a| a.id),
        problem: None,
    };
    let (start_id, start_hash, start_rows) = match &anchor {
        Some(a) => match decode_hash(&a.last_hash) {
            Some(h) if a.mac_ok(key) => (a.last_id, h, a.chain_rows),
            _ => {
                report.problem = Some(Tamper::AnchorForged { anchor_id: a.id });
                return Ok(Walk {
                    report,
                    start_rows: 0,
                });
            }
        },
        None => (0, [0u8; 32], 0),
    };

    let (mut prev_id, mut prev_hash, mut chain_rows) = (start_id, start_hash, start_rows);
    let mut cursor = i64::MIN;
    'pages: loop {
        let rows = sqlx::query_as::<_, StoredRow>(SELECT_ROWS)
            .bind(cursor)
            .bind(PAGE)
            .fetch_all(&mut *conn)
            .await?;
        let Some(last) = rows.last() else { break };
        let next_cursor = last.id.checked_add(1);
        for row in &rows {
            if let Some(problem) = check_row(row, start_id, prev_id, &prev_hash) {
                report.problem = Some(problem);
                break 'pages;
            }
            // check_row verified the hash decodes and matches.
            prev_hash = decode_hash(&row.hash).unwrap_or([0u8; 32]);
            prev_id = row.id;
            chain_rows += 1;
            report.rows_checked += 1;
            report.first_id.get_or_insert(row.id);
            report.last_id = Some(row.id);
        }
        match next_cursor {
            Some(c) if rows.len() as i64 == PAGE => cursor = c,
            _ => break,
        }
    }
    if report.problem.is_some() {
        return Ok(Walk { report, start_rows });
    }

    report.problem = match head {
        None if report.rows_checked == 0 && anchor.is_none() => None,
        None => Some(Tamper::HeadMissing),
        Some(h) if !head_mac_ok(key, &h) => Some(Tamper::HeadForged),
        Some(h) if prev_id > h.last_id => Some(Tamper::BeyondHead {
            id: h.last_id.saturating_add(1).max(start_id.saturating_add(1)),
        }),
        Some(h) if prev_id < h.last_id => Some(Tamper::HeadTruncated {
            first_missing: prev_id.saturating_add(1),
            head_last_id: h.last_id,
        }),
        Some(h) if decode_hash(&h.last_hash) != Some(prev_hash) || h.row_count != chain_rows => {
            Some(Tamper::HeadMismatch { id: prev_id })
        }
        Some(_) => None,
    };
    Ok(Walk { report, start_rows })
}

/// The checks for one row, in the order that names the cause best: position first (an id
/// gap means deleted rows), then the row's own hash (edited), then its link (reordered).
fn check_row(row: &StoredRow, start_id: i64, prev_id: i64, prev_hash: &[u8; 32]) -> Option<Tamper> {
    if row.id <= start_id {
        return Some(Tamper::BeforeStart {
            id: row.id,
            start_id,
        });
    }
    if Some(row.id) != prev_id.checked_add(1) {
        return Some(Tamper::Deleted {
            id: row.id,
            previous_id: prev_id,
            missing_from: prev_id.saturating_add(1),
            missing_to: row.id.saturating_sub(1),
        });
    }
    let (Some(stored_prev), Some(stored_hash)) =
        (decode_hash(&row.prev_hash), decode_hash(&row.hash))
    else {
        return Some(Tamper::Edited { id: row.id });
    };
    if row_hash(&stored_prev, &row.content()) != stored_hash {
        return Some(Tamper::Edited { id: row.id });
    }
    if &stored_prev != prev_hash {
        return Some(Tamper::Reordered {
            id: row.id,
            previous_id: prev_id,
        });
    }
    None
}

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub pruned_rows: u64,
    pub last_pruned_id: Option<i64>,
    pub anchor_id: Option<i64>,
}

/// Deletes the rows whose last occurrence is older than `before_ts_ms` and records a signed
/// anchor so that [`verify`] still passes from there on.
///
/// Only a prefix of the chain can be cut (the anchor names one point), and coalesced rows
/// are written up to a minute after their first occurrence, so time is not monotone in id:
/// this prunes up to the first row that is not entirely older than the cutoff. Later old
/// rows go at a later prune.
///
/// Refuses (`StoreError::Tampered`) when the chain does not verify: signing an anchor over
/// a tampered prefix would launder the tampering.
pub async fn prune(
    pool: &SqlitePool,
    key: &[u8; 32],
    before_ts_ms: i64,
) -> Result<PruneReport, StoreError> {
    let mut conn = pool.acquire().await?;
    // IMMEDIATE takes the write lock up front, so the writer cannot append between the
    // walk and the delete, and this transaction cannot fail to upgrade from a read lock.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let walk = walk(&mut tx, key).await?;
    if let Some(tamper) = walk.report.problem {
        return Err(StoreError::Tampered {
            action: "prune",
            tamper,
        });
    }
    let first_kept: Option<i64> =
        sqlx::query_scalar("SELECT MIN(id) FROM audit_events WHERE last_ts_ms >= ?1")
            .bind(before_ts_ms)
            .fetch_one(&mut *tx)
            .await?;
    let last_pruned: Option<(i64, String)> =
        sqlx::query_as("SELECT id, hash FROM audit_events WHERE id < ?1 ORDER BY id DESC LIMIT 1")
            .bind(first_kept.unwrap_or(i64::MAX))
            .fetch_optional(&mut *tx)
            .await?;
    let Some((last_id, last_hash)) = last_pruned else {
        tx.rollback().await?;
        return Ok(PruneReport {
            pruned_rows: 0,
            last_pruned_id: None,
            anchor_id: None,
        });
    };
    let deleted = sqlx::query("DELETE FROM audit_events WHERE id <= ?1")
        .bind(last_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let pruned_rows = i64::try_from(deleted).unwrap_or(i64::MAX);
    let fields = AnchorFields {
        created_ms: super::store::now_ms(),
        cutoff_ms: before_ts_ms,
        last_id,
        last_hash: &last_hash,
        pruned_rows,
        chain_rows: walk.start_rows.saturating_add(pruned_rows),
    };
    let mac = hex::encode(anchor_mac_input(key, &fields).finalize().into_bytes());
    let anchor_id = sqlx::query(
        "INSERT INTO audit_anchors \
         (created_ms, cutoff_ms, last_id, last_hash, pruned_rows, chain_rows, mac) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(fields.created_ms)
    .bind(fields.cutoff_ms)
    .bind(fields.last_id)
    .bind(fields.last_hash)
    .bind(fields.pruned_rows)
    .bind(fields.chain_rows)
    .bind(&mac)
    .execute(&mut *tx)
    .await?
    .last_insert_rowid();
    tx.commit().await?;
    Ok(PruneReport {
        pruned_rows: deleted,
        last_pruned_id: Some(last_id),
        anchor_id: Some(anchor_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>() -> RowContent<'a> {
        RowContent {
            ts_ms: 1,
            last_ts_ms: 2,
            count: 1,
            event: "login_failed",
            outcome: "failure",
            username: Some("bob"),
            client_ip: None,
            peer_ip: None,
            user_agent: None,
            request_id: None,
            verifier: None,
            reason: None,
            detail: "null",
        }
    }

    #[test]
    fn encoding_tells_null_empty_and_shifted_fields_apart() {
        let base = sample();
        let empty_user = RowContent {
            username: Some(""),
            ..base
        };
        let no_user = RowContent {
            username: None,
            ..base
        };
        assert_ne!(canonical(&empty_user), canonical(&no_user));
        // Moving text from one field to the next must change the encoding.
        let a = RowContent {
            username: Some("ab"),
            client_ip: Some("c"),
            ..base
        };
        let b = RowContent {
            username: Some("a"),
            client_ip: Some("bc"),
            ..base
        };
        assert_ne!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&base), canonical(&sample()));
    }

    #[test]
    fn hash_depends_on_prev_and_macs_on_domain() {
        let zero = [0u8; 32];
        let one = [1u8; 32];
        assert_ne!(row_hash(&zero, &sample()), row_hash(&one, &sample()));
        assert_eq!(decode_hash(GENESIS_HASH), Some(zero));
        assert_eq!(decode_hash("zz"), None);
        let key = [7u8; 32];
        let head = Head {
            last_id: 3,
            last_hash: GENESIS_HASH.to_string(),
            row_count: 3,
            mac: head_mac(&key, 3, GENESIS_HASH, 3),
        };
        assert!(head_mac_ok(&key, &head));
        assert!(!head_mac_ok(&[8u8; 32], &head));
        let moved = Head {
            row_count: 4,
            ..head
        };
        assert!(!head_mac_ok(&key, &moved));
    }
}
