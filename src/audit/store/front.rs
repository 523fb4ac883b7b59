//! The request side's count of repeated failures: this minute's keys, each with a tally
//! that later occurrences raise instead of sending a row (see the parent module).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use super::{MAX_DROPPED_TRACKED, MAX_KEYS_PER_MINUTE};

/// What makes two failures the same row (see the module docs), borrowed from the caller.
#[derive(Debug, Clone, Copy, Hash)]
pub struct FailureKey<'a> {
    pub event: &'a str,
    pub outcome: &'a str,
    pub client_ip: Option<IpAddr>,
    pub username: Option<&'a str>,
    pub reason: Option<&'a str>,
}

impl FailureKey<'_> {
    pub(super) fn to_owned(self) -> OwnedKey {
        OwnedKey {
            event: self.event.to_owned(),
            outcome: self.outcome.to_owned(),
            client_ip: self.client_ip,
            username: self.username.map(str::to_owned),
            reason: self.reason.map(str::to_owned),
        }
    }
}

pub(super) struct OwnedKey {
    event: String,
    outcome: String,
    client_ip: Option<IpAddr>,
    username: Option<String>,
    reason: Option<String>,
}

impl OwnedKey {
    pub(super) fn matches(&self, key: &FailureKey<'_>) -> bool {
        self.event == key.event
            && self.outcome == key.outcome
            && self.client_ip == key.client_ip
            && self.username.as_deref() == key.username
            && self.reason.as_deref() == key.reason
    }
}

/// Repeats of one key counted on the request side. `extra` becomes [`SEALED`] when the writer
/// closes the row's minute; a repeat that finds it sealed starts a new row instead, so no
/// count can land on a row already in the chain.
#[derive(Default)]
pub(super) struct Tally {
    extra: AtomicI64,
    pub(super) last_ts_ms: AtomicI64,
    /// On an overflow row's tally: distinct keys counted here, besides the one of the row
    /// sent (which the writer counts), and whether that count reached its bound.
    pub(super) keys: AtomicI64,
    pub(super) keys_saturated: AtomicBool,
}

const SEALED: i64 = i64::MIN;

impl Tally {
    /// Counts one more occurrence; `false` if the row was sealed.
    pub(super) fn count(&self, now: i64) -> bool {
        let counted = self
            .extra
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v != SEALED).then(|| v.saturating_add(1))
            })
            .is_ok();
        if counted {
            self.last_ts_ms.fetch_max(now, Ordering::AcqRel);
        }
        counted
    }

    pub(super) fn read(&self) -> i64 {
        self.extra.load(Ordering::Acquire).max(0)
    }

    /// Takes the final count; later repeats start a new row.
    pub(super) fn seal(&self) -> (i64, i64) {
        let extra = self.extra.swap(SEALED, Ordering::AcqRel).max(0);
        (extra, self.last_ts_ms.load(Ordering::Acquire))
    }
}

/// What the request side did with a failure.
pub(super) enum Counted {
    /// Counted on the tally of a row already sent: nothing more to send.
    Done,
    /// The first of its key (or the first since its row was sealed): send its row with
    /// this tally.
    NewKey(Arc<Tally>),
    /// Past the key cap, the first of its event and outcome: send it as the overflow row,
    /// with this tally.
    NewOverflow(Arc<Tally>),
}

/// The request side's table of this minute's failure keys, at most
/// [`MAX_KEYS_PER_MINUTE`], and past that one overflow row per event and outcome. A flood
/// from many addresses is mostly keys past the cap, so those too are counted here rather
/// than each built into a row that the writer would only merge.
#[derive(Default)]
pub(super) struct Front {
    minute: i64,
    entries: HashMap<u64, Vec<FrontEntry>>,
    len: usize,
    /// Four event kinds at most, so a list.
    overflow: Vec<FrontOverflow>,
    hasher: RandomState,
}

struct FrontEntry {
    key: OwnedKey,
    tally: Arc<Tally>,
}

struct FrontOverflow {
    event: String,
    outcome: String,
    tally: Arc<Tally>,
    /// Hashes of the keys merged into the row, for its distinct-key count; bounded like
    /// the writer's.
    seen: HashSet<u64>,
}

impl FrontOverflow {
    fn new(key: &FailureKey<'_>, hash: u64) -> Self {
        Self {
            event: key.event.to_owned(),
            outcome: key.outcome.to_owned(),
            tally: Arc::new(Tally::default()),
            seen: HashSet::from([hash]),
        }
    }

    fn note(&mut self, hash: u64) {
        if self.seen.len() < MAX_DROPPED_TRACKED {
            if self.seen.insert(hash) {
                self.tally.keys.fetch_add(1, Ordering::AcqRel);
            }
        } else if !self.seen.contains(&hash) {
            self.tally.keys_saturated.store(true, Ordering::Release);
        }
    }
}

impl Front {
    /// Counts `key` at wall-clock `now` (ms) if a row for it (or for its overflow) is open,
    /// or says which row to send.
    pub(super) fn count(&mut self, key: FailureKey<'_>, now: i64) -> Counted {
        let minute = now.div_euclid(super::MINUTE_MS);
        if self.minute != minute {
            self.entries.clear();
            self.overflow.clear();
            self.len = 0;
            self.minute = minute;
        }
        let hash = self.hasher.hash_one(key);
        let known = self
            .entries
            .get_mut(&hash)
            .and_then(|bucket| bucket.iter_mut().find(|e| e.key.matches(&key)));
        if let Some(entry) = known {
            if entry.tally.count(now) {
                return Counted::Done;
            }
            // Sealed with its minute: this occurrence starts a new row.
            let tally = Arc::new(Tally::default());
            entry.tally = Arc::clone(&tally);
            return Counted::NewKey(tally);
        }
        if self.len < MAX_KEYS_PER_MINUTE {
            let tally = Arc::new(Tally::default());
            self.entries.entry(hash).or_default().push(FrontEntry {
                key: key.to_owned(),
                tally: Arc::clone(&tally),
            });
            self.len += 1;
            return Counted::NewKey(tally);
        }
        let open = self
            .overflow
            .iter_mut()
            .find(|o| o.event == key.event && o.outcome == key.outcome);
        match open {
            Some(o) if o.tally.count(now) => {
                o.note(hash);
                Counted::Done
            }
            Some(o) => {
                *o = FrontOverflow::new(&key, hash);
                Counted::NewOverflow(Arc::clone(&o.tally))
            }
            None => {
                let o = FrontOverflow::new(&key, hash);
                let tally = Arc::clone(&o.tally);
                self.overflow.push(o);
                Counted::NewOverflow(tally)
            }
        }
    }

    /// Forgets the open rows (their message was lost): later failures send rows again.
    pub(super) fn forget(&mut self) {
        self.entries.clear();
        self.overflow.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_rows_key_count_saturates_instead_of_growing() {
        let key = FailureKey {
            event: "rate_limited",
            outcome: "failure",
            client_ip: None,
            username: None,
            reason: None,
        };
        let mut o = FrontOverflow::new(&key, 0);
        for hash in 1..(MAX_DROPPED_TRACKED as u64 + 10) {
            o.note(hash);
            o.note(hash);
        }
        // The key of the row sent is the writer's to count, not this tally's.
        assert_eq!(
            o.tally.keys.load(Ordering::Acquire),
            MAX_DROPPED_TRACKED as i64 - 1
        );
        assert!(o.tally.keys_saturated.load(Ordering::Acquire));
        assert_eq!(o.seen.len(), MAX_DROPPED_TRACKED);
    }
}
