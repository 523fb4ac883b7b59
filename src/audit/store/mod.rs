//! The sqlite audit store: one writer task fed by a bounded queue, writing rows in batches
//! onto the hash chain of [`super::chain`].
//!
//! # Writing
//!
//! [`AuditStore::submit`] never blocks a request: it `try_send`s onto a bounded queue and
//! returns `false` (counted in [`StoreStats::dropped`]) when the queue is full.
//! [`AuditStore::submit_durable`] waits for queue space and resolves only once the row's
//! transaction has committed; login success and password changed use it, so their rows are
//! on disk before the response is sent. The writer drains whatever is queued into one
//! transaction (up to [`MAX_BATCH_MESSAGES`] messages), appends the rows to the chain and
//! updates the signed `audit_head` row in that same transaction.
//!
//! # Durability
//!
//! The pool runs WAL with `synchronous=NORMAL` (see `db.rs`). In WAL mode NORMAL commits
//! survive a crash of the process (kill -9: the committed WAL frames are in the OS page
//! cache and are replayed on the next open), but the most recent commits can be lost on
//! power loss or an OS crash, because the WAL is only fsynced at checkpoints. An audit row
//! that was promised durable must survive both, so the writer switches its connection to
//! `synchronous=FULL` for every audit commit (the WAL is fsynced at each commit) and back
//! to NORMAL before returning it to the pool. The cost is one fsync per batch, not per row,
//! and the coalescing below bounds how many batches a flood can cause.
//!
//! # Coalescing, and the row bound
//!
//! Rows with outcome `failure` (failed logins, rate limits, lockouts, wrong TOTP codes) are
//! merged in memory, when coalescing is on: rows with the same (event, outcome, client_ip,
//! username, reason) within the same UTC minute (of the writer's clock) become one row with
//! `count` and `last_ts_ms`; the first occurrence's other fields (request id, user agent,
//! detail) are kept. Rows in the chain are never updated after they are written, which keeps
//! it append-only, so a row joins the chain only when its minute closes (or on flush or
//! shutdown).
//!
//! Repeats are counted before they reach the writer: [`AuditStore::submit_failure`] keeps
//! this minute's keys (at most [`MAX_KEYS_PER_MINUTE`]) with a shared tally, and a failure
//! whose key already has a row only increments it. The writer reads the tallies at every
//! group commit and seals them when the minute closes; a repeat that finds its tally sealed
//! sends a row of its own, so no count lands on a row already in the chain. Past the key cap
//! the same holds for the overflow row (below): the first failure of each event kind sends
//! it, and later ones only count on its tally, with their distinct keys. A flood, from one
//! address or from a million, therefore costs at most `MAX_KEYS_PER_MINUTE` + 4 rows built
//! and sent a minute, not one per refusal.
//!
//! # Group commit: failures on disk within a fraction of a second
//!
//! Until then the row lives in `audit_open` (migration 0004), which the writer updates in
//! place: a new or changed row is written at most [`GROUP_COMMIT`] after the change, all
//! changes of that window in one transaction. Sealing a minute appends its rows to the chain
//! and deletes them from `audit_open` in one transaction, so a row is always in exactly one
//! of the two tables. After `kill -9` the open rows are on disk with the counts of their last
//! group commit; the next `serve` chains them at start ([`StoreOptions::recover_open`]). What
//! a kill loses is therefore the counts of the last [`GROUP_COMMIT`] plus one commit. The
//! view `audit_all` shows both tables to the read side, so the admin sees an attack while it
//! runs. Open rows are not covered by the chain until they are sealed.
//!
//! At most [`MAX_KEYS_PER_MINUTE`] distinct keys are tracked per minute. Failures with any
//! further key are merged into one overflow row per (event, outcome) for that minute, with
//! username, IPs and reason left empty and `detail.distinct_keys_dropped` counting the
//! distinct keys merged (exact up to 65,536; `distinct_keys_dropped_saturated` says when it
//! is a lower bound). So a flood of failures, from any number of addresses and usernames,
//! grows the table by at most
//!
//! **`MAX_KEYS_PER_MINUTE` + (number of failure event kinds) rows per minute**
//!
//! (1,000 + 4 with today's events: login failed, rate limited, user locked out, TOTP
//! failed). An explicit [`AuditStore::flush`] mid-minute writes the open rows early; the key
//! cap still counts from the start of the minute, so a flush adds at most one overflow row
//! per event kind. Success and error rows are not coalesced; they are bounded by the
//! limiters in front of the verifiers, not here.
//!
//! Memory is bounded too: the queue holds at most `queue` rows, every text field is cut to a
//! fixed length and `detail` to [`MAX_DETAIL_BYTES`] before it is queued, and the coalescing
//! buffer holds at most `MAX_KEYS_PER_MINUTE` rows plus the overflow rows.

mod coalesce;
mod front;
mod sql;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::chain::{RowContent, Tamper};
use coalesce::{Coalescer, Sealed};
pub use front::FailureKey;
use front::{Counted, Front, Tally};
use sql::{append, upsert_open};

/// Default capacity of the writer's queue.
pub const DEFAULT_QUEUE: usize = 4096;
/// Distinct coalescing keys tracked per minute before failures go into the overflow row.
pub const MAX_KEYS_PER_MINUTE: usize = 1000;
/// Queue messages taken into one transaction at most.
pub const MAX_BATCH_MESSAGES: usize = 1024;
/// `detail` JSON longer than this is replaced by a note saying how long it was.
pub const MAX_DETAIL_BYTES: usize = 8192;
/// Distinct dropped keys counted exactly per overflow row; beyond, the count saturates so
/// that counting cannot itself grow memory without bound.
const MAX_DROPPED_TRACKED: usize = 65_536;

const MAX_EVENT_BYTES: usize = 64;
const MAX_USERNAME_CHARS: usize = 256;
const MAX_IP_CHARS: usize = 64;
const MAX_USER_AGENT_CHARS: usize = 256;
const MAX_REQUEST_ID_CHARS: usize = 128;
const MAX_VERIFIER_CHARS: usize = 64;
const MAX_REASON_CHARS: usize = 512;

const MINUTE_MS: i64 = 60_000;

/// How long a changed failure row may wait before it is written to `audit_open`. Changes
/// within this window share one commit (one fsync), so a flood costs at most ten commits a
/// second; a failure is on disk at most this long plus one commit after it was recorded.
pub const GROUP_COMMIT: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("audit database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the audit writer has stopped")]
    Closed,
    #[error("invalid audit row: {0}")]
    InvalidRow(&'static str),
    /// The batch holding this row failed to commit; the message is the database error.
    #[error("audit write failed: {0}")]
    Write(String),
    #[error("the audit chain does not verify, refusing to {action}: {tamper}")]
    Tampered {
        action: &'static str,
        tamper: Tamper,
    },
}

/// A row to append. Never put a secret in any field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewRow {
    /// UTC milliseconds.
    pub ts_ms: i64,
    pub event: String,
    /// `success`, `failure` or `error`.
    pub outcome: String,
    /// As typed by the user (hostile text).
    pub username: Option<String>,
    pub client_ip: Option<String>,
    pub peer_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub verifier: Option<String>,
    pub reason: Option<String>,
    pub detail: serde_json::Value,
}

impl NewRow {
    /// A row stamped now, with every optional field empty.
    pub fn new(event: impl Into<String>, outcome: impl Into<String>) -> Self {
        Self {
            ts_ms: now_ms(),
            event: event.into(),
            outcome: outcome.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Capacity of the writer's queue, in rows.
    pub queue: usize,
    /// Merge failure rows per key and minute (see the module docs).
    pub coalesce: bool,
    /// At start, chain the rows other writers left in `audit_open`. Only for `serve`: one
    /// server per database, and a CLI command must never take a running server's rows.
    pub recover_open: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            queue: DEFAULT_QUEUE,
            coalesce: true,
            recover_open: false,
        }
    }
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// `submit` calls refused because the queue was full (or the writer had stopped).
    pub dropped: u64,
    /// Rows refused as invalid (unknown outcome, empty or overlong event name).
    pub rejected: u64,
    /// Rows lost because their batch failed to commit.
    pub lost: u64,
    /// Rows committed (a coalesced row counts once).
    pub written: u64,
}

/// A cheap-to-clone handle on the writer task.
#[derive(Clone)]
pub struct AuditStore {
    tx: mpsc::Sender<Msg>,
    coalesce: bool,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStore")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    front: Mutex<Front>,
    /// Set by a repeat counted on a tally since the writer last read the tallies.
    front_dirty: AtomicBool,
    dropped: AtomicU64,
    rejected: AtomicU64,
    lost: AtomicU64,
    written: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
}

type Reply = oneshot::Sender<Result<(), String>>;

enum Msg {
    /// A row, with the tally later repeats of its key are counted on (see [`Front`]).
    Row(Pending, Option<Arc<Tally>>),
    /// The overflow row of its event (see [`Front`]), whatever the writer's own count of
    /// keys says, so that the repeats counted on its tally are never put on one key's row.
    Overflow(Pending, Arc<Tally>),
    /// Repeats were counted on tallies: a group commit is due.
    Wake,
    Durable(Pending, Reply),
    Flush(Reply),
    Shutdown(Reply),
}

impl AuditStore {
    /// Spawns the writer on the current tokio runtime. `key` signs the chain head (derive it
    /// from the server secret, e.g. HMAC(secret, [`chain::KEY_LABEL`])).
    /// Messages queued for the writer now.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn start(pool: SqlitePool, key: [u8; 32], options: StoreOptions) -> AuditStore {
        // tokio panics on a zero-capacity channel.
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let shared = Arc::new(Shared::default());
        let mut id = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
        let writer = Writer {
            pool,
            key,
            coalesce: options.coalesce,
            recover_open: options.recover_open,
            id: hex::encode(id),
            shared: Arc::clone(&shared),
        };
        let handle = tokio::spawn(writer.run(rx));
        *lock(&shared.writer) = Some(handle);
        AuditStore {
            tx,
            coalesce: options.coalesce,
            shared,
        }
    }

    /// Queues a row without waiting. `false` when the queue is full, the writer has stopped
    /// or the row is invalid; each case is counted in [`AuditStore::stats`].
    pub fn submit(&self, row: NewRow) -> bool {
        let pending = match Pending::from_new(row) {
            Ok(p) => p,
            Err(_) => {
                self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        match self.tx.try_send(Msg::Row(pending, None)) {
            Ok(()) => true,
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a failure row, or only counts it when its key already has an open row this
    /// minute: a repeat costs a hash, a lookup and an increment, not a row built, sent and
    /// merged by the writer (a flood's refusals are almost all repeats). `row` is built only
    /// when it is needed. The writer reads the counts at its group commits and at the
    /// minute's close, so durability is the same as for a row sent.
    pub fn submit_failure(&self, key: FailureKey<'_>, row: impl FnOnce() -> NewRow) -> bool {
        if !self.coalesce {
            return self.submit(row());
        }
        let now = now_ms();
        let counted = lock(&self.shared.front).count(key, now);
        let (tally, overflow) = match counted {
            Counted::Done => {
                if !self.shared.front_dirty.swap(true, Ordering::AcqRel) {
                    // One wake per group commit; if the queue is full the writer is busy
                    // and sees the flag on its next pass anyway.
                    let _ = self.tx.try_send(Msg::Wake);
                }
                return true;
            }
            Counted::NewKey(tally) => (tally, false),
            Counted::NewOverflow(tally) => (tally, true),
        };
        let pending = match Pending::from_new(row()) {
            Ok(p) => p,
            Err(_) => {
                // As below: a tally no row carries must not take later counts.
                lock(&self.shared.front).forget();
                self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let msg = if overflow {
            Msg::Overflow(pending, tally)
        } else {
            Msg::Row(pending, Some(tally))
        };
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(_) => {
                // Nothing would ever read that tally: forget the key.
                lock(&self.shared.front).forget();
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a row (waiting for queue space) and resolves once its transaction committed
    /// with `synchronous=FULL`. Never coalesced, whatever its outcome.
    pub async fn submit_durable(&self, row: NewRow) -> Result<(), StoreError> {
        let pending = Pending::from_new(row).inspect_err(|_| {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        })?;
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Durable(pending, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait(done).await
    }

    /// Writes everything queued or held for coalescing, and resolves once it committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Flush(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait(done).await
    }

    /// Drains the queue and the coalescing buffer, commits, and stops the writer. Other
    /// clones of the handle get `false` / `Closed` afterwards.
    pub async fn shutdown(self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        let sent = self.tx.send(Msg::Shutdown(reply)).await.is_ok();
        let result = if sent { wait(done).await } else { Ok(()) };
        let handle = lock(&self.shared.writer).take();
        if let Some(handle) = handle {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "the audit writer task failed");
            }
        }
        result
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            lost: self.shared.lost.load(Ordering::Relaxed),
            written: self.shared.written.load(Ordering::Relaxed),
        }
    }
}

async fn wait(done: oneshot::Receiver<Result<(), String>>) -> Result<(), StoreError> {
    match done.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(StoreError::Write(message)),
        Err(_) => Err(StoreError::Closed),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere while holding the handle slot; the slot
    // itself is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A validated row with bounded field sizes, ready to be hashed and inserted (or read back
/// from `audit_open`, which was written from one).
#[derive(Debug, Clone, Default, sqlx::FromRow)]
struct Pending {
    ts_ms: i64,
    last_ts_ms: i64,
    count: i64,
    event: String,
    outcome: String,
    username: Option<String>,
    client_ip: Option<String>,
    peer_ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    verifier: Option<String>,
    reason: Option<String>,
    detail: String,
}

impl Pending {
    /// Validates before queueing: one invalid row reaching the database would fail its
    /// whole batch on the schema's CHECK constraints.
    fn from_new(row: NewRow) -> Result<Self, StoreError> {
        if row.event.is_empty() || row.event.len() > MAX_EVENT_BYTES {
            return Err(StoreError::InvalidRow("event must be 1 to 64 bytes"));
        }
        if !matches!(row.outcome.as_str(), "success" | "failure" | "error") {
            return Err(StoreError::InvalidRow(
                "outcome must be success, failure or error",
            ));
        }
        let detail = match serde_json::to_string(&row.detail) {
            Ok(text) if text.len() <= MAX_DETAIL_BYTES => text,
            Ok(text) => {
                serde_json::json!({ "detail_truncated": true, "bytes": text.len() }).to_string()
            }
            Err(_) => String::from("null"),
        };
        Ok(Self {
            ts_ms: row.ts_ms,
            last_ts_ms: row.ts_ms,
            count: 1,
            event: row.event,
            outcome: row.outcome,
            username: cut(row.username, MAX_USERNAME_CHARS),
            client_ip: cut(row.client_ip, MAX_IP_CHARS),
            peer_ip: cut(row.peer_ip, MAX_IP_CHARS),
            user_agent: cut(row.user_agent, MAX_USER_AGENT_CHARS),
            request_id: cut(row.request_id, MAX_REQUEST_ID_CHARS),
            verifier: cut(row.verifier, MAX_VERIFIER_CHARS),
            reason: cut(row.reason, MAX_REASON_CHARS),
            detail,
        })
    }

    fn content(&self) -> RowContent<'_> {
        crate::audit::chain::row_content!(self)
    }

    fn absorb(&mut self, other: &Pending) {
        self.count = self.count.saturating_add(other.count);
        self.ts_ms = self.ts_ms.min(other.ts_ms);
        self.last_ts_ms = self.last_ts_ms.max(other.last_ts_ms);
    }
}

/// Cuts to `max` characters (never inside a character).
fn cut(text: Option<String>, max: usize) -> Option<String> {
    text.map(|mut s| {
        if let Some((at, _)) = s.char_indices().nth(max) {
            s.truncate(at);
        }
        s
    })
}

struct Writer {
    pool: SqlitePool,
    key: [u8; 32],
    coalesce: bool,
    recover_open: bool,
    /// Names this writer's rows in `audit_open`, so that two processes never share a slot.
    id: String,
    shared: Arc<Shared>,
}

/// What one pass of the writer loop collected.
#[derive(Default)]
struct Batch {
    /// Rows for the chain: sealed failure rows and every row that is not coalesced.
    sealed: Sealed,
    waiters: Vec<Reply>,
    flush: bool,
    stop: bool,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Msg>) {
        if self.recover_open {
            self.recover().await;
        }
        let mut co = Coalescer::new(now_ms());
        loop {
            let mut batch = Batch::default();
            let first = if co.is_empty() {
                Step::from(rx.recv().await)
            } else {
                // +1 ms so the wall clock has left the minute when the timer fires.
                let wait_ms = co.closes_at_ms().saturating_sub(now_ms()).max(0) + 1;
                let close = tokio::time::Instant::now()
                    + Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1));
                let wake = co.commit_due().map_or(close, |due| due.min(close));
                tokio::select! {
                    msg = rx.recv() => Step::from(msg),
                    _ = tokio::time::sleep_until(wake) => Step::Tick,
                }
            };
            match first {
                Step::Msg(msg) => self.take(msg, &mut batch, &mut co),
                // The open minute closed or a group commit is due: both are handled below.
                Step::Tick => {}
                // Every handle is gone: write what is held and stop.
                Step::Closed => {
                    batch.flush = true;
                    batch.stop = true;
                }
            }
            let mut taken = 1;
            while taken < MAX_BATCH_MESSAGES && !batch.stop {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg, &mut batch, &mut co),
                    Err(_) => break,
                }
                taken += 1;
            }
            if batch.stop {
                // Refuse new messages, then drain everything already queued.
                rx.close();
                while let Some(msg) = rx.recv().await {
                    self.take(msg, &mut batch, &mut co);
                }
            }
            if self.shared.front_dirty.load(Ordering::Acquire) {
                co.dirty_since.get_or_insert_with(tokio::time::Instant::now);
            }
            co.roll(now_ms(), &mut batch.sealed);
            if batch.flush {
                co.drain(&mut batch.sealed);
            }
            // Open rows are written when their group commit is due, or for free alongside
            // a transaction that happens anyway.
            let due = co
                .commit_due()
                .is_some_and(|due| due <= tokio::time::Instant::now());
            let busy = !batch.sealed.rows.is_empty() || !batch.sealed.slots.is_empty();
            let open = if due || (busy && co.commit_due().is_some()) {
                // Cleared before the tallies are read, so a repeat counted after the read
                // raises it again and gets its own commit.
                self.shared.front_dirty.store(false, Ordering::Release);
                co.dirty()
            } else {
                Vec::new()
            };
            let result = if !busy && open.is_empty() {
                Ok(())
            } else {
                self.write(&batch.sealed, &open).await
            };
            if result.is_ok() && !open.is_empty() {
                co.mark_clean();
            } else if result.is_err() && !open.is_empty() {
                // Try again a group-commit interval later rather than at once in a loop.
                co.dirty_since = Some(tokio::time::Instant::now());
            }
            for waiter in batch.waiters {
                // The waiter may have given up (its request was cancelled); nothing to do.
                let _ = waiter.send(result.clone());
            }
            if batch.stop {
                break;
            }
        }
    }

    fn take(&self, msg: Msg, batch: &mut Batch, co: &mut Coalescer) {
        match msg {
            Msg::Row(row, tally) if self.coalesce && row.outcome == "failure" => {
                // Close the previous minute first, so a row never joins a closed minute.
                co.roll(now_ms(), &mut batch.sealed);
                co.add(row, tally);
            }
            Msg::Row(row, _) => batch.sealed.rows.push(row),
            Msg::Overflow(row, tally) => {
                co.roll(now_ms(), &mut batch.sealed);
                co.add_overflow(row, tally);
            }
            Msg::Wake => {
                co.dirty_since.get_or_insert_with(tokio::time::Instant::now);
            }
            Msg::Durable(row, reply) => {
                batch.sealed.rows.push(row);
                batch.waiters.push(reply);
            }
            Msg::Flush(reply) => {
                batch.flush = true;
                batch.waiters.push(reply);
            }
            Msg::Shutdown(reply) => {
                batch.flush = true;
                batch.stop = true;
                batch.waiters.push(reply);
            }
        }
    }

    /// Chains the rows another writer left in `audit_open` (a process that was killed), so
    /// that they are tamper-evident again. Only `serve` does this at start: a CLI command
    /// running next to a live server must not take that server's rows.
    async fn recover(&self) {
        let result: Result<usize, StoreError> = async {
            let mut conn = self.pool.acquire().await?;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            let rows: Vec<Pending> = sqlx::query_as(
                "SELECT ts_ms, last_ts_ms, count, event, outcome, username, client_ip, peer_ip, \
                 user_agent, request_id, verifier, reason, detail FROM audit_open \
                 WHERE writer <> ?1 ORDER BY ts_ms, last_ts_ms",
            )
            .bind(&self.id)
            .fetch_all(&mut *tx)
            .await?;
            tx.rollback().await?;
            if rows.is_empty() {
                return Ok(0);
            }
            let n = rows.len();
            self.commit(&rows, Recovery::OtherWriters, &[]).await?;
            Ok(n)
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                target: "passgate::audit",
                rows = n,
                "chained failure rows left open by a previous run (it was killed or crashed)"
            ),
            Err(e) => tracing::error!(
                target: "passgate::audit",
                error = %e,
                "cannot chain the failure rows a previous run left open; they stay in audit_open"
            ),
        }
    }

    /// Commits sealed rows and the open rows' new counts, counting the outcome. Errors are
    /// returned as text because one failure is reported to every waiter of the batch.
    async fn write(&self, sealed: &Sealed, open: &[(i64, Pending)]) -> Result<(), String> {
        let result = self
            .commit(&sealed.rows, Recovery::Slots(&sealed.slots), open)
            .await;
        let n = sealed.rows.len() as u64;
        match &result {
            Ok(()) => {
                self.shared.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.shared.lost.fetch_add(n, Ordering::Relaxed);
                tracing::error!(error = %e, rows = n, "audit rows could not be written");
            }
        }
        result.map_err(|e| e.to_string())
    }

    /// One transaction with `synchronous=FULL`: `rows` appended to the chain, the open rows
    /// they replace deleted, `open` written (inserted or updated in place).
    async fn commit(
        &self,
        rows: &[Pending],
        remove: Recovery<'_>,
        open: &[(i64, Pending)],
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await?;
        let result = async {
            // IMMEDIATE takes the write lock before reading the head, so two writers (the
            // server and a CLI, say) can never both chain onto the same head.
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            if !rows.is_empty() {
                append(&mut tx, &self.key, rows).await?;
            }
            match remove {
                Recovery::Slots(slots) => {
                    for slot in slots {
                        sqlx::query("DELETE FROM audit_open WHERE writer = ?1 AND slot = ?2")
                            .bind(&self.id)
                            .bind(slot)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                Recovery::OtherWriters => {
                    sqlx::query("DELETE FROM audit_open WHERE writer <> ?1")
                        .bind(&self.id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let now = now_ms();
            for (slot, row) in open {
                upsert_open(&mut tx, &self.id, *slot, now, row).await?;
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        }
        .await;
        // Hand the connection back with the pool's own setting (db.rs); if that fails,
        // close it rather than leave a surprise in the pool.
        if sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await
            .is_err()
        {
            conn.close_on_drop();
        }
        result
    }
}

/// Which `audit_open` rows a commit replaces by the chain rows it appends.
#[derive(Clone, Copy)]
enum Recovery<'a> {
    /// This writer's rows in these slots.
    Slots(&'a [i64]),
    /// Every row of other writers (read in [`Writer::recover`]).
    OtherWriters,
}

/// What woke the writer. It lives for one loop pass on the stack, so the size difference
/// between its variants costs nothing worth a heap allocation per message.
#[allow(clippy::large_enum_variant)]
enum Step {
    Msg(Msg),
    Tick,
    Closed,
}

impl From<Option<Msg>> for Step {
    fn from(msg: Option<Msg>) -> Self {
        msg.map_or(Step::Closed, Step::Msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_truncation() {
        assert!(Pending::from_new(NewRow::new("", "failure")).is_err());
        assert!(Pending::from_new(NewRow::new("x", "maybe")).is_err());
        let mut row = NewRow::new("x", "error");
        row.username = Some("ö".repeat(1000));
        row.detail = serde_json::json!({ "blob": "y".repeat(20_000) });
        let p = Pending::from_new(row).expect("valid");
        assert_eq!(
            p.username.as_deref().map(|u| u.chars().count()),
            Some(MAX_USERNAME_CHARS)
        );
        assert!(p.detail.contains("detail_truncated"));
    }
}
