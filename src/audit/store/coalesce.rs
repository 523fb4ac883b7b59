//! The writer's failure rows of the open minute: merged per key, capped, kept on disk in
//! `audit_open` by group commit and sealed into the chain when the minute closes.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::front::Tally;
use super::{Pending, GROUP_COMMIT, MAX_DROPPED_TRACKED, MAX_KEYS_PER_MINUTE, MINUTE_MS};

type Key = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A failure row of the open minute, with the `audit_open` slot it is kept in on disk.
struct OpenRow {
    row: Pending,
    slot: i64,
    /// Changed since it was last written to `audit_open`.
    dirty: bool,
    /// Repeats counted on the request side (one tally per row sent for this key).
    tallies: Vec<Arc<Tally>>,
    /// Sum of the tallies when the row was last written, and when last read for writing.
    seen: i64,
    snap: i64,
}

impl OpenRow {
    pub(super) fn new(row: Pending, slot: i64, tally: Option<Arc<Tally>>) -> Self {
        Self {
            row,
            slot,
            dirty: true,
            tallies: tally.into_iter().collect(),
            seen: 0,
            snap: 0,
        }
    }

    fn absorb(&mut self, row: &Pending, tally: Option<Arc<Tally>>) {
        self.row.absorb(row);
        self.tallies.extend(tally);
        self.dirty = true;
    }

    fn extra(&self) -> i64 {
        self.tallies
            .iter()
            .map(|t| t.read())
            .fold(0, i64::saturating_add)
    }

    /// The row with the repeats counted so far, if it changed since it was last written.
    fn changed(&mut self) -> Option<Pending> {
        let extra = self.extra();
        if !self.dirty && extra == self.seen {
            return None;
        }
        self.snap = extra;
        let mut row = self.row.clone();
        row.count = row.count.saturating_add(extra);
        row.last_ts_ms = self
            .tallies
            .iter()
            .map(|t| t.last_ts_ms.load(Ordering::Acquire))
            .fold(row.last_ts_ms, i64::max);
        Some(row)
    }

    fn clean(&mut self) {
        self.dirty = false;
        self.seen = self.snap;
    }

    /// The final row: its tallies are sealed, so no later repeat can count on it.
    fn seal(mut self) -> (i64, Pending) {
        for tally in &self.tallies {
            let (extra, last) = tally.seal();
            self.row.count = self.row.count.saturating_add(extra);
            self.row.last_ts_ms = self.row.last_ts_ms.max(last);
        }
        (self.slot, self.row)
    }
}

struct Overflow {
    open: OpenRow,
    dropped: HashSet<u64>,
    saturated: bool,
}

impl Overflow {
    /// `detail` says how many keys the row stands for: those the writer merged itself, and
    /// those the request side counted on the row's tallies (see `Front`).
    fn detail(&self) -> String {
        let counted = self
            .open
            .tallies
            .iter()
            .map(|t| t.keys.load(Ordering::Acquire))
            .fold(0, i64::saturating_add);
        let saturated = self.saturated
            || self
                .open
                .tallies
                .iter()
                .any(|t| t.keys_saturated.load(Ordering::Acquire));
        serde_json::json!({
            "overflow": true,
            "key_cap": MAX_KEYS_PER_MINUTE,
            "distinct_keys_dropped": (self.dropped.len() as i64).saturating_add(counted),
            "distinct_keys_dropped_saturated": saturated,
        })
        .to_string()
    }
}

fn key_of(row: &Pending) -> Key {
    (
        row.event.clone(),
        row.outcome.clone(),
        row.client_ip.clone(),
        row.username.clone(),
        row.reason.clone(),
    )
}

/// Rows whose minute closed: appended to the chain, and removed from `audit_open`, in one
/// transaction.
#[derive(Default)]
pub(super) struct Sealed {
    pub(super) rows: Vec<Pending>,
    pub(super) slots: Vec<i64>,
}

/// Failure rows of the current minute, merged per key.
pub(super) struct Coalescer {
    minute: i64,
    /// Keys admitted this minute, including ones already flushed: the cap is per minute.
    admitted: usize,
    buckets: HashMap<Key, OpenRow>,
    overflow: HashMap<(String, String), Overflow>,
    /// Randomly keyed, so nobody can aim key collisions at the dropped-key count.
    hasher: RandomState,
    /// The next `audit_open` slot; slots are never reused by one writer.
    next_slot: i64,
    /// When the oldest change not yet in `audit_open` was made.
    pub(super) dirty_since: Option<tokio::time::Instant>,
}

impl Coalescer {
    pub(super) fn new(now: i64) -> Self {
        Self {
            minute: now.div_euclid(MINUTE_MS),
            admitted: 0,
            buckets: HashMap::new(),
            overflow: HashMap::new(),
            hasher: RandomState::new(),
            next_slot: 1,
            dirty_since: None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.overflow.is_empty()
    }

    /// Wall-clock ms at which the open minute closes.
    pub(super) fn closes_at_ms(&self) -> i64 {
        self.minute.saturating_add(1).saturating_mul(MINUTE_MS)
    }

    /// When the changes not yet on disk must be written.
    pub(super) fn commit_due(&self) -> Option<tokio::time::Instant> {
        self.dirty_since.map(|at| at + GROUP_COMMIT)
    }

    /// Closes the open minute when the clock has left it.
    pub(super) fn roll(&mut self, now: i64, out: &mut Sealed) {
        let minute = now.div_euclid(MINUTE_MS);
        if minute != self.minute {
            self.drain(out);
            self.minute = minute;
            self.admitted = 0;
        }
    }

    /// Moves every open row to `out`, oldest first.
    pub(super) fn drain(&mut self, out: &mut Sealed) {
        let start = out.rows.len();
        for (_, open) in self.buckets.drain() {
            let (slot, row) = open.seal();
            out.slots.push(slot);
            out.rows.push(row);
        }
        for (_, o) in self.overflow.drain() {
            let detail = o.detail();
            let (slot, mut row) = o.open.seal();
            row.detail = detail;
            out.slots.push(slot);
            out.rows.push(row);
        }
        out.rows[start..].sort_by_key(|r| (r.ts_ms, r.last_ts_ms));
        self.dirty_since = None;
    }

    /// The rows changed since they were last written, as they must be stored now.
    pub(super) fn dirty(&mut self) -> Vec<(i64, Pending)> {
        let mut out: Vec<(i64, Pending)> = self
            .buckets
            .values_mut()
            .filter_map(|o| Some((o.slot, o.changed()?)))
            .collect();
        for o in self.overflow.values_mut() {
            let detail = o.detail();
            if let Some(mut row) = o.open.changed() {
                row.detail = detail;
                out.push((o.open.slot, row));
            }
        }
        out
    }

    /// After the rows of [`Coalescer::dirty`] committed. Repeats counted on tallies since
    /// then are not lost: `seen` is what was read, not what is there now.
    pub(super) fn mark_clean(&mut self) {
        for o in self.buckets.values_mut() {
            o.clean();
        }
        for o in self.overflow.values_mut() {
            o.open.clean();
        }
        self.dirty_since = None;
    }

    fn slot(&mut self) -> i64 {
        let slot = self.next_slot;
        self.next_slot = self.next_slot.saturating_add(1);
        slot
    }

    pub(super) fn add(&mut self, row: Pending, tally: Option<Arc<Tally>>) {
        self.dirty_since
            .get_or_insert_with(tokio::time::Instant::now);
        let key = key_of(&row);
        let full = self.admitted >= MAX_KEYS_PER_MINUTE;
        let slot = match self.buckets.get_mut(&key) {
            Some(open) => {
                open.absorb(&row, tally);
                return;
            }
            None => self.slot(),
        };
        if !full {
            self.buckets.insert(key, OpenRow::new(row, slot, tally));
            self.admitted += 1;
            return;
        }
        let key_hash = self.hasher.hash_one(&key);
        self.overflow_row(row, tally, slot, key_hash);
    }

    /// A row the request side filed past its key cap, with the tally it counts that
    /// event's later overflow on.
    pub(super) fn add_overflow(&mut self, row: Pending, tally: Arc<Tally>) {
        self.dirty_since
            .get_or_insert_with(tokio::time::Instant::now);
        let key_hash = self.hasher.hash_one(key_of(&row));
        let slot = self.slot();
        self.overflow_row(row, Some(tally), slot, key_hash);
    }

    fn overflow_row(&mut self, row: Pending, tally: Option<Arc<Tally>>, slot: i64, key_hash: u64) {
        let o = self
            .overflow
            .entry((row.event.clone(), row.outcome.clone()))
            .or_insert_with(|| Overflow {
                open: OpenRow::new(
                    // Counts this event for anyone: keep what it is and when, name no one
                    // (a field added to Pending later stays empty here by default).
                    Pending {
                        ts_ms: row.ts_ms,
                        last_ts_ms: row.last_ts_ms,
                        event: row.event.clone(),
                        outcome: row.outcome.clone(),
                        detail: row.detail.clone(),
                        ..Pending::default()
                    },
                    slot,
                    None,
                ),
                dropped: HashSet::new(),
                saturated: false,
            });
        o.open.absorb(&row, tally);
        if o.dropped.len() < MAX_DROPPED_TRACKED {
            o.dropped.insert(key_hash);
        } else if !o.dropped.contains(&key_hash) {
            o.saturated = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::store::NewRow;

    fn failure(ip: &str, user: &str) -> Pending {
        let mut row = NewRow::new("login_failed", "failure");
        row.client_ip = Some(ip.to_string());
        row.username = Some(user.to_string());
        Pending::from_new(row).expect("valid")
    }

    #[test]
    fn coalescer_merges_per_key_and_caps_keys() {
        let now = 1_700_000_000_000;
        let mut co = Coalescer::new(now);
        for i in 0..(MAX_KEYS_PER_MINUTE + 50) {
            co.add(
                failure(&format!("10.0.{}.{}", i / 256, i % 256), "bob"),
                None,
            );
            co.add(
                failure(&format!("10.0.{}.{}", i / 256, i % 256), "bob"),
                None,
            );
        }
        assert_eq!(co.dirty().len(), MAX_KEYS_PER_MINUTE + 1);
        co.mark_clean();
        assert!(co.dirty().is_empty());
        co.add(failure("10.0.0.0", "bob"), None);
        assert_eq!(co.dirty().len(), 1, "only the changed row is written again");
        let mut sealed = Sealed::default();
        co.roll(now + MINUTE_MS, &mut sealed);
        let out = sealed.rows;
        assert_eq!(out.len(), MAX_KEYS_PER_MINUTE + 1);
        let mut slots = sealed.slots.clone();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(
            slots.len(),
            out.len(),
            "every sealed row names its own slot"
        );
        assert_eq!(
            out.iter().map(|r| r.count).sum::<i64>(),
            2 * (MAX_KEYS_PER_MINUTE as i64 + 50) + 1
        );
        let overflow: Vec<_> = out.iter().filter(|r| r.client_ip.is_none()).collect();
        assert_eq!(overflow.len(), 1);
        assert!(overflow[0].detail.contains("\"distinct_keys_dropped\":50"));
        assert!(co.is_empty());
    }
}
