//! The request side's count of repeated failures: this minute's keys, each with a tally
//! that later occurrences raise instead of sending a row (see the parent module).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

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

/// The request side's table of this minute's failure keys, at most [`super::MAX_KEYS_PER_MINUTE`].
#[derive(Default)]
pub(super) struct Front {
    pub(super) minute: i64,
    pub(super) entries: HashMap<u64, Vec<FrontEntry>>,
    pub(super) len: usize,
    pub(super) hasher: RandomState,
}

pub(super) struct FrontEntry {
    pub(super) key: OwnedKey,
    pub(super) tally: Arc<Tally>,
}
