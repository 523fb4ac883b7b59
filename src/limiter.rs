//! Sliding-window login limiter: at most `attempts` login attempts per client in any
//! `window`, decided in O(1) with a hard bound on memory.
//!
//! **What counts.** Every attempt the limiter lets through is recorded, whatever its outcome
//! (it runs before anyone knows whether the password was right). A refused attempt is *not*
//! recorded, so `retry_after` is exactly the time until the oldest recorded attempt leaves the
//! window, and a client that waits that long is let in. A client is an IPv4 address or an
//! IPv6 prefix (/64 by default); an IPv4-mapped IPv6 address counts as the IPv4 address.
//!
//! **Cost.** The keys are spread over up to 64 shards, each behind its own mutex, by a SipHash
//! keyed with a random per-process key, so a remote client can neither aim at one shard nor
//! build hash-collision chains. A decision is one hash, one lock, one probe of an open-addressing
//! index, a look at no more than two entries at the head of the shard's expiry list and, for a
//! new key when the table is full, at up to four more (see "At the cap" below). There is no
//! scan over tracked keys, ever: entries are kept in order of their last recorded attempt, so
//! the entries whose window has passed are always at the head, and each decision removes up to
//! two of them. `purge_expired` does the same for a periodic task when traffic stops, and the
//! tables shrink as they empty, so memory goes back to near zero after a flood.
//!
//! **Memory.** A tracked key costs `4 × (attempts + 8)` bytes in its shard's slab (the last
//! `attempts` attempt times as 32-bit millisecond offsets, a ring cursor, the 16-byte key, its
//! hash and two list links: 52 bytes at the default 5 attempts) plus its share of the index
//! (8-byte buckets kept between 3/8 and 3/4 full, 11–21 bytes): about 65–75 bytes all-in
//! (71 bytes of VmRSS per key measured at 1,000,000 keys), so the default cap of 1,000,000
//! keys bounds the limiter at roughly 70 MB. Large `attempts` values cost 4 bytes each per
//! key; lower `max_tracked_keys` accordingly.
//!
//! **At the cap.** `max_tracked_keys` is a hard limit on the whole table:
//! [`LoginLimiter::tracked_keys`] never exceeds it. When a new client arrives and the table is
//! full, room is made in the shard the new key belongs to (a random sample of all keys):
//!
//! 1. keys whose window has passed are dropped first; they carry no information;
//! 2. otherwise, among the four least recently recorded keys, the first one that is not
//!    currently limited is forgotten; it loses fewer than `attempts` attempts of history;
//! 3. only if all four are limited is the least recently recorded key forgotten.
//!
//! The new client is always admitted and tracked. The limiter never refuses a client because
//! its table is full: failing closed at the cap would give anyone holding a million addresses
//! (a single IPv6 /44 contains a million /64s) a switch that locks every honest user out of the
//! portal. The price, stated plainly: an attacker who controls more distinct keys than the cap
//! can get one of their own limited keys forgotten and start it again with a fresh budget. Each
//! such reset needs about `max_tracked_keys` attempts from keys the limiter has not seen
//! recently, and every one of those keys was itself entitled to `attempts` guesses, so forgetting
//! never gives such an attacker more guesses than owning that many addresses already does. The
//! per-client limiter is not the defence against a botnet; the per-username lockout
//! ([`crate::lockout`]) bounds the guesses against one account however many addresses are used.
//!
//! Limits: `attempts` is clamped to 1..=65,536, `window` to at most 366 days, and
//! `max_tracked_keys` to 1..=2^30. Times are kept to the millisecond for windows up to about
//! six days (2^29 ms) and to `window / 2^29` above that: 59 ms at the 366-day maximum.

use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use self::table::{Clock, Table};

/// A client as the limiter sees it: see [`key_for_ip`].
pub type LimitKey = u128;

pub const DEFAULT_ATTEMPTS: u32 = 5;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
pub const DEFAULT_MAX_TRACKED_KEYS: usize = 1_000_000;

const MAX_ATTEMPTS: u32 = 65_536;
pub(crate) const MAX_SPAN: Duration = Duration::from_secs(366 * 24 * 3600);
/// Each decision also examines this many entries at the head of the expiry list. Two is
/// enough for expired entries to drain faster than one decision can add a key.
const SWEEP_PER_CALL: usize = 2;
/// How far the at-cap eviction looks for a key that is not currently limited.
const EVICT_CANDIDATES: usize = 4;

/// The limiter key for a client address.
///
/// IPv4 addresses map to their `::ffff:a.b.c.d` form, so an IPv4-mapped IPv6 address gives the
/// same key as the IPv4 address. No native IPv6 key can fall in that range: a masked prefix
/// shorter than 96 bits clears the `ffff`, and a longer one keeps the top 96 bits, which are
/// not `::ffff:0:0/96` for a native address. IPv6 addresses are masked to `ipv6_prefix` bits
/// (clamped to 128), because a single subscriber usually holds a whole /64 and could otherwise
/// rotate through 2^64 keys.
pub fn key_for_ip(ip: IpAddr, ipv6_prefix: u8) -> LimitKey {
    match ip {
        IpAddr::V4(v4) => ipv4_key(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ipv4_key(v4),
            None => {
                let host_bits = 128 - u32::from(ipv6_prefix.min(128));
                // A /0 prefix shifts by 128, which `checked_shl` refuses: every address shares one key.
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                u128::from(v6) & mask
            }
        },
    }
}

fn ipv4_key(v4: Ipv4Addr) -> LimitKey {
    u128::from(v4.to_ipv6_mapped())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// `retry_after` is exact; use [`Decision::retry_after_secs`] for a `Retry-After` header.
    Limited {
        retry_after: Duration,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }

    /// Whole seconds for `Retry-After`, rounded up and at least 1, so that a client that waits
    /// exactly this long is let in.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Decision::Allowed => None,
            Decision::Limited { retry_after } => Some(retry_after_secs(*retry_after)),
        }
    }
}

/// `d` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Per-key payload: a cursor, then a ring of the last `attempts` attempt stamps. The cursor
/// points at the oldest stamp, which is also the slot the next attempt overwrites.
const P_HEAD: usize = 0;
const P_RING: usize = 1;
const ONLY_LIST: usize = 0;

pub struct LoginLimiter {
    shards: table::Sharded<LimiterShard>,
    attempts: u32,
    window: Duration,
    window_ticks: u32,
    tick_ms: u64,
    max_tracked_keys: usize,
}

struct LimiterShard {
    table: Table<4, 1>,
    clock: Clock,
}

impl table::ShardState for LimiterShard {
    fn len(&self) -> usize {
        self.table.len()
    }
    fn reset(&mut self) {
        self.table.clear();
    }
}

impl LimiterShard {
    fn now(&mut self, now: Instant, tick_ms: u64) -> u32 {
        let (t, shift) = self.clock.ticks(now, tick_ms);
        if shift > 0 {
            self.table.for_each_payload_mut(|p| {
                for v in &mut p[P_RING..] {
                    *v = v.saturating_sub(shift);
                }
            });
        }
        t
    }
}

impl LoginLimiter {
    /// `attempts` per `window` per key; at most `max_tracked_keys` keys remembered at once (see
    /// the module documentation for what happens at the cap).
    pub fn new(attempts: u32, window: Duration, max_tracked_keys: usize) -> Self {
        let attempts = attempts.clamp(1, MAX_ATTEMPTS);
        let window = window.min(MAX_SPAN);
        let window_ms = table::ceil_millis(window);
        let tick_ms = table::tick_for_span(window_ms);
        let window_ticks = table::to_ticks(window_ms, tick_ms);
        let cap = max_tracked_keys.clamp(1, table::MAX_KEYS);
        let payload = P_RING + attempts as usize;
        let shards = table::Sharded::new(cap, || LimiterShard {
            table: Table::new(payload),
            clock: Clock::default(),
        });
        Self {
            shards,
            attempts,
            window,
            window_ticks,
            tick_ms,
            max_tracked_keys: cap,
        }
    }

    /// Decides one attempt by `key` at `now` and, if it is allowed, records it.
    pub fn check_and_record(&self, key: LimitKey, now: Instant) -> Decision {
        let h = self.shards.hash(&key);
        let words = key_words(key);
        self.shards.with_shard(h, |shard, room| {
            let now_t = shard.now(now, self.tick_ms);
            self.sweep(&mut shard.table, now_t, SWEEP_PER_CALL);
            match shard.table.find(h as u32, &words) {
                Some(slot) => self.decide_tracked(&mut shard.table, slot, now_t),
                None => {
                    if !room.claim() && !self.evict_one(&mut shard.table, now_t) {
                        // The table is full and this shard holds nothing to give up. With keys
                        // spread by a keyed hash over shards sized for hundreds of keys each,
                        // that does not happen; if it did, letting one attempt through
                        // untracked is the answer that never locks out an honest client.
                        return Decision::Allowed;
                    }
                    let slot = shard.table.insert(h as u32, &words, ONLY_LIST);
                    let p = shard.table.payload_mut(slot);
                    p[P_RING] = table::stamp(now_t);
                    p[P_HEAD] = if self.attempts == 1 { 0 } else { 1 };
                    Decision::Allowed
                }
            }
        })
    }

    /// Keys currently remembered (never more than `max_tracked_keys`).
    pub fn tracked_keys(&self) -> usize {
        self.shards.tracked()
    }

    /// Heap bytes held per tracked key, all-in (slab, index and their spare capacity); with no
    /// key tracked, the nominal cost of one key at a typical index load.
    pub fn approx_bytes_per_key(&self) -> usize {
        let keys = self.tracked_keys();
        if keys == 0 {
            return self.nominal_bytes_per_key();
        }
        let mut bytes = 0;
        self.shards
            .for_each_shard(|s| bytes += s.table.heap_bytes());
        bytes.div_ceil(keys)
    }

    fn nominal_bytes_per_key(&self) -> usize {
        Table::<4, 1>::node_bytes_for(P_RING + self.attempts as usize) + 16
    }

    /// Drops up to `max_per_shard` keys per shard whose window has passed, for a periodic task
    /// to call when traffic may have stopped (decisions already reclaim expired keys as they
    /// go). Returns how many were dropped.
    pub fn purge_expired(&self, now: Instant, max_per_shard: usize) -> usize {
        let mut dropped = 0;
        self.shards.for_each_shard(|shard| {
            let now_t = shard.now(now, self.tick_ms);
            dropped += self.sweep(&mut shard.table, now_t, max_per_shard);
        });
        dropped
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn max_tracked_keys(&self) -> usize {
        self.max_tracked_keys
    }

    fn decide_tracked(&self, table: &mut Table<4, 1>, slot: u32, now_t: u32) -> Decision {
        if let Some(left) = self.limited_for(table, slot, now_t) {
            // Not moved in the expiry list: only recorded attempts change when a key expires.
            return Decision::Limited {
                retry_after: table::ticks_to_duration(left, self.tick_ms),
            };
        }
        let p = table.payload_mut(slot);
        let head = p[P_HEAD] as usize;
        p[P_RING + head] = table::stamp(now_t);
        p[P_HEAD] = if head + 1 == self.attempts as usize {
            0
        } else {
            head as u32 + 1
        };
        table.move_to_back(slot, ONLY_LIST);
        Decision::Allowed
    }

    /// Ticks until the key may try again, if it is limited now. The ring holds the last
    /// `attempts` allowed attempts, so the key is limited exactly when the oldest of them is
    /// still inside the window.
    fn limited_for(&self, table: &Table<4, 1>, slot: u32, now_t: u32) -> Option<u32> {
        let p = table.payload(slot);
        let oldest = p[P_RING + p[P_HEAD] as usize];
        let age = table::age(oldest, now_t)?;
        (age < self.window_ticks).then(|| self.window_ticks - age)
    }

    fn expired(&self, table: &Table<4, 1>, slot: u32, now_t: u32) -> bool {
        let p = table.payload(slot);
        let head = p[P_HEAD] as usize;
        let newest = if head == 0 {
            self.attempts as usize - 1
        } else {
            head - 1
        };
        table::age(p[P_RING + newest], now_t).is_none_or(|age| age >= self.window_ticks)
    }

    /// The list is in order of last recorded attempt, which is the order keys expire in, so
    /// the sweep can stop at the first live key.
    fn sweep(&self, table: &mut Table<4, 1>, now_t: u32, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            match table.front(ONLY_LIST) {
                Some(front) if self.expired(table, front, now_t) => {
                    table.remove(front);
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }

    /// Makes room for a new key; false if the shard is empty.
    fn evict_one(&self, table: &mut Table<4, 1>, now_t: u32) -> bool {
        let front = table.front(ONLY_LIST);
        let mut victim = front;
        let mut candidate = front;
        for _ in 0..EVICT_CANDIDATES {
            let Some(slot) = candidate else { break };
            if self.limited_for(table, slot, now_t).is_none() {
                victim = Some(slot);
                break;
            }
            candidate = table.next(slot);
        }
        match victim {
            Some(slot) => {
                table.remove(slot);
                true
            }
            None => false,
        }
    }
}

impl fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("attempts", &self.attempts)
            .field("window", &self.window)
            .field("max_tracked_keys", &self.max_tracked_keys)
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

fn key_words(key: LimitKey) -> [u32; 4] {
    [
        key as u32,
        (key >> 32) as u32,
        (key >> 64) as u32,
        (key >> 96) as u32,
    ]
}

/// The storage shared by the limiter and the username lockout: sharded, bounded tables of
/// fixed-size records, each record in an intrusive expiry list.
pub(crate) mod table {
    use super::*;

    const NIL: u32 = u32::MAX;
    const PREV: usize = 0;
    const NEXT: usize = 1;
    const HASH: usize = 2;
    const KEY: usize = 3;
    const MIN_BUCKETS: usize = 8;
    const MAX_SHARDS: usize = 64;
    /// Fewer keys per shard than this and a full table could plausibly leave a shard empty,
    /// with nothing to evict when a new key lands there.
    const MIN_KEYS_PER_SHARD: usize = 256;
    /// Slots are u32 and `slot + 1` must fit next to a hash in a bucket. A thousand million
    /// keys is far beyond any memory we would want to spend anyway.
    pub(crate) const MAX_KEYS: usize = 1 << 30;

    /// Stored times are `ticks since the shard's epoch + 1`, with 0 meaning "none". Windows and
    /// future deadlines never exceed `MAX_SPAN_TICKS`, and the epoch moves forward once "now"
    /// reaches `REBASE_AT`, so every stamp fits a u32 for as long as the process runs.
    const MAX_SPAN_TICKS: u64 = 1 << 29;
    const REBASE_AT: u64 = 1 << 31;
    const REBASE_TO: u64 = 1 << 30;

    pub(crate) fn ceil_millis(d: Duration) -> u64 {
        u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// The smallest whole-millisecond tick that fits `span_ms` into `MAX_SPAN_TICKS`.
    pub(crate) fn tick_for_span(span_ms: u64) -> u64 {
        span_ms.div_ceil(MAX_SPAN_TICKS).max(1)
    }

    /// Rounded up, so a window or a lockout is never shortened by the tick.
    pub(crate) fn to_ticks(ms: u64, tick_ms: u64) -> u32 {
        u32::try_from(ms.div_ceil(tick_ms).min(MAX_SPAN_TICKS)).unwrap_or(u32::MAX)
    }

    pub(crate) fn ticks_to_duration(ticks: u32, tick_ms: u64) -> Duration {
        Duration::from_millis(u64::from(ticks).saturating_mul(tick_ms))
    }

    pub(crate) fn stamp(now_t: u32) -> u32 {
        now_t + 1
    }

    /// Age in ticks of a stored stamp, or None if the slot is empty. A stamp slightly in the
    /// future (another thread took its `Instant` later but the lock earlier) has age 0.
    pub(crate) fn age(stored: u32, now_t: u32) -> Option<u32> {
        (stored != 0).then(|| now_t.saturating_sub(stored - 1))
    }

    /// Ticks from `now_t` until a stored deadline, if it is still ahead.
    pub(crate) fn until(stored: u32, now_t: u32) -> Option<u32> {
        (stored != 0 && stored - 1 > now_t).then(|| stored - 1 - now_t)
    }

    #[derive(Default)]
    pub(crate) struct Clock {
        epoch: Option<Instant>,
    }

    impl Clock {
        /// "Now" in ticks since this shard's epoch, and by how much stored stamps must be
        /// lowered (0: not at all). The epoch is the first instant the shard sees, so callers
        /// that pass instants from before the limiter existed still work; earlier instants
        /// than that count as the epoch itself.
        pub(crate) fn ticks(&mut self, now: Instant, tick_ms: u64) -> (u32, u32) {
            let epoch = *self.epoch.get_or_insert(now);
            let t = floor_millis(now.saturating_duration_since(epoch)) / tick_ms;
            if t < REBASE_AT {
                return (t as u32, 0);
            }
            let shift = t - REBASE_TO;
            // Stamps at or before the new epoch become 0. They are at least REBASE_TO ticks
            // old, beyond any window or deadline, so "none" gives the same answers.
            match epoch.checked_add(Duration::from_millis(shift.saturating_mul(tick_ms))) {
                Some(moved) => {
                    self.epoch = Some(moved);
                    (REBASE_TO as u32, u32::try_from(shift).unwrap_or(u32::MAX))
                }
                // Cannot happen (the new epoch is not after `now`), but forgetting is safe.
                None => {
                    self.epoch = Some(now);
                    (0, u32::MAX)
                }
            }
        }
    }

    fn floor_millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    #[derive(Clone, Copy)]
    struct Ends {
        front: u32,
        back: u32,
    }

    const NO_ENDS: Ends = Ends {
        front: NIL,
        back: NIL,
    };

    /// Fixed-size records in one dense slab of u32 words:
    /// `[prev, next, hash, key × KW, payload …]`. Removal moves the last record into the hole,
    /// so the slab never has gaps and can shrink. Records are found through an open-addressing
    /// index of `(hash << 32) | (slot + 1)` buckets with linear probing and backward-shift
    /// deletion (no tombstones). Each record sits in one of `LISTS` doubly linked lists.
    pub(crate) struct Table<const KW: usize, const LISTS: usize> {
        stride: usize,
        len: usize,
        nodes: Vec<u32>,
        index: Vec<u64>,
        lists: [Ends; LISTS],
    }

    impl<const KW: usize, const LISTS: usize> Table<KW, LISTS> {
        pub(crate) fn new(payload_words: usize) -> Self {
            Self {
                stride: KEY + KW + payload_words,
                len: 0,
                nodes: Vec::new(),
                index: Vec::new(),
                lists: [NO_ENDS; LISTS],
            }
        }

        pub(crate) fn node_bytes_for(payload_words: usize) -> usize {
            (KEY + KW + payload_words) * 4
        }

        pub(crate) fn len(&self) -> usize {
            self.len
        }

        pub(crate) fn heap_bytes(&self) -> usize {
            self.nodes.capacity() * 4 + self.index.capacity() * 8
        }

        pub(crate) fn clear(&mut self) {
            self.len = 0;
            self.nodes = Vec::new();
            self.index = Vec::new();
            self.lists = [NO_ENDS; LISTS];
        }

        #[inline]
        fn at(&self, slot: u32, field: usize) -> u32 {
            self.nodes[slot as usize * self.stride + field]
        }

        #[inline]
        fn set(&mut self, slot: u32, field: usize, value: u32) {
            self.nodes[slot as usize * self.stride + field] = value;
        }

        pub(crate) fn payload(&self, slot: u32) -> &[u32] {
            let base = slot as usize * self.stride;
            &self.nodes[base + KEY + KW..base + self.stride]
        }

        pub(crate) fn payload_mut(&mut self, slot: u32) -> &mut [u32] {
            let base = slot as usize * self.stride;
            &mut self.nodes[base + KEY + KW..base + self.stride]
        }

        pub(crate) fn for_each_payload_mut(&mut self, mut f: impl FnMut(&mut [u32])) {
            for node in self.nodes.chunks_exact_mut(self.stride) {
                f(&mut node[KEY + KW..]);
            }
        }

        pub(crate) fn front(&self, list: usize) -> Option<u32> {
            let f = self.lists[list].front;
            (f != NIL).then_some(f)
        }

        pub(crate) fn next(&self, slot: u32) -> Option<u32> {
            let n = self.at(slot, NEXT);
            (n != NIL).then_some(n)
        }

        pub(crate) fn find(&self, h32: u32, key: &[u32; KW]) -> Option<u32> {
            if self.index.is_empty() {
                return None;
            }
            let mask = self.index.len() - 1;
            let mut i = h32 as usize & mask;
            // Terminates: the index is never more than 3/4 full.
            loop {
                let bucket = self.index[i];
                if bucket == 0 {
                    return None;
                }
                if (bucket >> 32) as u32 == h32 {
                    let slot = (bucket as u32).wrapping_sub(1);
                    let base = slot as usize * self.stride + KEY;
                    if self.nodes[base..base + KW] == key[..] {
                        return Some(slot);
                    }
                }
                i = (i + 1) & mask;
            }
        }

        /// Adds a record with a zeroed payload at the back of `list`. The caller has checked
        /// that the key is absent and that the shard has room.
        pub(crate) fn insert(&mut self, h32: u32, key: &[u32; KW], list: usize) -> u32 {
            if (self.len + 1) * 4 > self.index.len() * 3 {
                self.resize_index((self.index.len() * 2).max(MIN_BUCKETS));
            }
            let slot = self.len as u32;
            let base = self.nodes.len();
            self.nodes.resize(base + self.stride, 0);
            self.nodes[base + HASH] = h32;
            self.nodes[base + KEY..base + KEY + KW].copy_from_slice(key);
            self.len += 1;
            self.link_back(slot, list);
            place(&mut self.index, h32, slot);
            slot
        }

        pub(crate) fn remove(&mut self, slot: u32) {
            let Some(last) = self.len.checked_sub(1) else {
                return;
            };
            let last = last as u32;
            self.unlink(slot);
            if let Some(i) = self.bucket_of(slot) {
                self.delete_bucket(i);
            }
            if slot != last {
                // Looked up after the deletion above, which may have shifted its bucket.
                let moved_bucket = self.bucket_of(last);
                let (src, dst) = (last as usize * self.stride, slot as usize * self.stride);
                self.nodes.copy_within(src..src + self.stride, dst);
                let (p, n) = (self.at(slot, PREV), self.at(slot, NEXT));
                if p == NIL {
                    self.replace_front(last, slot);
                } else {
                    self.set(p, NEXT, slot);
                }
                if n == NIL {
                    self.replace_back(last, slot);
                } else {
                    self.set(n, PREV, slot);
                }
                if let Some(i) = moved_bucket {
                    self.index[i] = (self.index[i] & !u64::from(u32::MAX)) | u64::from(slot + 1);
                }
            }
            self.nodes.truncate(last as usize * self.stride);
            self.len -= 1;
            self.shrink();
        }

        pub(crate) fn move_to_back(&mut self, slot: u32, list: usize) {
            if self.lists[list].back == slot {
                return;
            }
            self.unlink(slot);
            self.link_back(slot, list);
        }

        fn link_back(&mut self, slot: u32, list: usize) {
            let back = self.lists[list].back;
            self.set(slot, PREV, back);
            self.set(slot, NEXT, NIL);
            if back == NIL {
                self.lists[list].front = slot;
            } else {
                self.set(back, NEXT, slot);
            }
            self.lists[list].back = slot;
        }

        /// A record does not know its list; an end pointer that names it does.
        fn unlink(&mut self, slot: u32) {
            let (p, n) = (self.at(slot, PREV), self.at(slot, NEXT));
            if p == NIL {
                self.replace_front(slot, n);
            } else {
                self.set(p, NEXT, n);
            }
            if n == NIL {
                self.replace_back(slot, p);
            } else {
                self.set(n, PREV, p);
            }
        }

        fn replace_front(&mut self, old: u32, new: u32) {
            if let Some(ends) = self.lists.iter_mut().find(|e| e.front == old) {
                ends.front = new;
            }
        }

        fn replace_back(&mut self, old: u32, new: u32) {
            if let Some(ends) = self.lists.iter_mut().find(|e| e.back == old) {
                ends.back = new;
            }
        }

        fn bucket_of(&self, slot: u32) -> Option<usize> {
            if self.index.is_empty() {
                return None;
            }
            let mask = self.index.len() - 1;
            let mut i = self.at(slot, HASH) as usize & mask;
            loop {
                let bucket = self.index[i];
                if bucket == 0 {
                    return None;
                }
                if bucket as u32 == slot + 1 {
                    return Some(i);
                }
                i = (i + 1) & mask;
            }
        }

        /// Backward-shift deletion: pulls later members of the probe run into the hole when
        /// their home bucket allows it, so lookups never need tombstones.
        fn delete_bucket(&mut self, mut hole: usize) {
            let mask = self.index.len() - 1;
            let mut j = hole;
            loop {
                j = (j + 1) & mask;
                let bucket = self.index[j];
                if bucket == 0 {
                    break;
                }
                let home = (bucket >> 32) as usize & mask;
                if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                    self.index[hole] = bucket;
                    hole = j;
                }
            }
            self.index[hole] = 0;
        }

        fn resize_index(&mut self, buckets: usize) {
            let old = std::mem::replace(&mut self.index, vec![0; buckets]);
            for bucket in old.into_iter().filter(|&b| b != 0) {
                place(&mut self.index, (bucket >> 32) as u32, (bucket as u32) - 1);
            }
        }

        /// Gives memory back as a shard empties; the thresholds leave room so that a shard
        /// hovering around one size does not resize back and forth.
        fn shrink(&mut self) {
            let buckets = self.index.len();
            if buckets > MIN_BUCKETS && self.len * 8 < buckets {
                self.resize_index((self.len * 2).next_power_of_two().max(MIN_BUCKETS));
            }
            let cap = self.nodes.capacity();
            if cap > 64 * self.stride && cap > 4 * self.nodes.len() {
                self.nodes.shrink_to(2 * self.nodes.len());
            }
        }

        #[cfg(test)]
        pub(crate) fn check_invariants(&self) {
            assert_eq!(self.nodes.len(), self.len * self.stride);
            let mut seen = vec![false; self.len];
            for ends in &self.lists {
                let mut prev = NIL;
                let mut cur = ends.front;
                while cur != NIL {
                    assert!(!seen[cur as usize], "slot {cur} linked twice");
                    seen[cur as usize] = true;
                    assert_eq!(self.at(cur, PREV), prev);
                    prev = cur;
                    cur = self.at(cur, NEXT);
                }
                assert_eq!(ends.back, prev);
            }
            assert!(seen.iter().all(|&s| s), "a slot is in no list");
            let used = self.index.iter().filter(|&&b| b != 0).count();
            assert_eq!(used, self.len);
            assert!(self.len * 4 <= self.index.len() * 3 || self.len == 0);
            for slot in 0..self.len as u32 {
                let base = slot as usize * self.stride + KEY;
                let mut key = [0u32; KW];
                key.copy_from_slice(&self.nodes[base..base + KW]);
                assert_eq!(self.find(self.at(slot, HASH), &key), Some(slot));
            }
        }
    }

    fn place(index: &mut [u64], h32: u32, slot: u32) {
        let mask = index.len() - 1;
        let mut i = h32 as usize & mask;
        while index[i] != 0 {
            i = (i + 1) & mask;
        }
        index[i] = (u64::from(h32) << 32) | u64::from(slot + 1);
    }

    pub(crate) trait ShardState {
        fn len(&self) -> usize;
        /// Forget everything (after a panic poisoned the shard's lock).
        fn reset(&mut self);
    }

    /// Keeps shards on separate cache lines so that two cores working on neighbouring
    /// shards do not bounce one line between them.
    #[repr(align(128))]
    struct Padded<T>(T);

    pub(crate) struct Sharded<S> {
        shards: Box<[Padded<Mutex<S>>]>,
        shift: u32,
        /// Keys in all shards plus claims not yet turned into keys; never above `cap`.
        tracked: AtomicUsize,
        cap: usize,
        hasher: RandomState,
    }

    /// Admission to the whole table for new keys, handed to code running under a shard lock.
    pub(crate) struct Room<'a> {
        tracked: &'a AtomicUsize,
        cap: usize,
        claimed: usize,
    }

    impl Room<'_> {
        /// Reserves space for one more key. False when the table is full: the caller must
        /// then free a slot in its own shard before adding a key.
        pub(crate) fn claim(&mut self) -> bool {
            let cap = self.cap;
            let claimed = self
                .tracked
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_ok();
            self.claimed += usize::from(claimed);
            claimed
        }
    }

    impl<S: ShardState> Sharded<S> {
        /// Up to 64 shards (a power of two), fewer for small caps, so that every shard of a
        /// full table holds hundreds of keys.
        pub(crate) fn new(cap: usize, mut make: impl FnMut() -> S) -> Self {
            let count = match cap / MIN_KEYS_PER_SHARD {
                0 => 1,
                n => (1usize << n.ilog2()).min(MAX_SHARDS),
            };
            Self {
                shards: (0..count).map(|_| Padded(Mutex::new(make()))).collect(),
                shift: 64 - count.ilog2(),
                tracked: AtomicUsize::new(0),
                cap,
                hasher: RandomState::new(),
            }
        }

        pub(crate) fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
            self.hasher.hash_one(value)
        }

        /// Runs `f` on the shard that owns hash `h`: its top bits pick the shard, its low 32
        /// bits are the in-shard hash, so the two are independent.
        /// A shard may add keys only after `Room::claim` succeeded or after removing as many.
        pub(crate) fn with_shard<R>(
            &self,
            h: u64,
            f: impl FnOnce(&mut S, &mut Room<'_>) -> R,
        ) -> R {
            let i = h.checked_shr(self.shift).unwrap_or(0) as usize;
            let mut shard = self.lock(i);
            let before = shard.len();
            let mut room = Room {
                tracked: &self.tracked,
                cap: self.cap,
                claimed: 0,
            };
            let result = f(&mut shard, &mut room);
            // Claims are already counted.
            self.account(before + room.claimed, shard.len());
            result
        }

        pub(crate) fn for_each_shard(&self, mut f: impl FnMut(&mut S)) {
            for i in 0..self.shards.len() {
                let mut shard = self.lock(i);
                let before = shard.len();
                f(&mut shard);
                self.account(before, shard.len());
            }
        }

        pub(crate) fn tracked(&self) -> usize {
            self.tracked.load(Ordering::Relaxed)
        }

        /// Called with the shard still locked, so each shard's changes reach the counter in
        /// order and it can never dip below zero.
        fn account(&self, before: usize, after: usize) {
            if after > before {
                self.tracked.fetch_add(after - before, Ordering::Relaxed);
            } else if before > after {
                self.tracked.fetch_sub(before - after, Ordering::Relaxed);
            }
        }

        fn lock(&self, i: usize) -> MutexGuard<'_, S> {
            let mutex = &self.shards[i].0;
            match mutex.lock() {
                Ok(guard) => guard,
                Err(poisoned) => {
                    // A panic half-way through an update may have left links or the index
                    // inconsistent. Starting the shard afresh forgets its history, which is
                    // better than answering from a structure we no longer trust.
                    let mut guard = poisoned.into_inner();
                    let before = guard.len();
                    guard.reset();
                    self.account(before, guard.len());
                    mutex.clear_poison();
                    guard
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::Ipv6Addr;
    use std::sync::Arc;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn five_allowed_then_sixth_limited_with_exact_retry_after() {
        let limiter = LoginLimiter::new(5, secs(300), 1000);
        let t0 = Instant::now();
        for i in 0..5 {
            let d = limiter.check_and_record(7, t0 + secs(10 * i));
            assert_eq!(d, Decision::Allowed, "attempt {i}");
        }
        // The oldest attempt (t0) leaves the window at t0 + 300 s.
        let d = limiter.check_and_record(7, t0 + secs(100));
        assert_eq!(
            d,
            Decision::Limited {
                retry_after: secs(200)
            }
        );
        assert_eq!(d.retry_after_secs(), Some(200));
        let d = limiter.check_and_record(7, t0 + ms(299_500));
        assert_eq!(
            d,
            Decision::Limited {
                retry_after: ms(500)
            }
        );
        assert_eq!(d.retry_after_secs(), Some(1));
    }

    #[test]
    fn allowed_again_once_the_oldest_attempt_leaves_the_window() {
        let limiter = LoginLimiter::new(5, secs(300), 1000);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(limiter.check_and_record(1, t0 + secs(i)).is_allowed());
        }
        assert!(!limiter.check_and_record(1, t0 + ms(299_999)).is_allowed());
        // Exactly when the retry_after given at t0 + 5 s runs out.
        let Decision::Limited { retry_after } = limiter.check_and_record(1, t0 + secs(5)) else {
            panic!("should be limited");
        };
        assert_eq!(retry_after, secs(295));
        assert!(limiter
            .check_and_record(1, t0 + secs(5) + retry_after)
            .is_allowed());
        // That used the slot freed by t0; the next frees at t0 + 301 s.
        assert_eq!(
            limiter.check_and_record(1, t0 + secs(300)),
            Decision::Limited {
                retry_after: secs(1)
            }
        );
        // Long after, the whole budget is back.
        for i in 0..5 {
            assert!(limiter
                .check_and_record(1, t0 + secs(1000 + i))
                .is_allowed());
        }
    }

    #[test]
    fn refused_attempts_are_not_recorded() {
        let limiter = LoginLimiter::new(2, secs(60), 1000);
        let t0 = Instant::now();
        assert!(limiter.check_and_record(3, t0).is_allowed());
        assert!(limiter.check_and_record(3, t0 + secs(1)).is_allowed());
        for s in 2..60 {
            assert!(!limiter.check_and_record(3, t0 + secs(s)).is_allowed());
        }
        // Hammering did not push the window forward.
        assert!(limiter.check_and_record(3, t0 + secs(60)).is_allowed());
    }

    #[test]
    fn keys_are_independent() {
        let limiter = LoginLimiter::new(5, secs(300), 1000);
        let t0 = Instant::now();
        let a = key_for_ip(ip("192.0.2.1"), 64);
        let b = key_for_ip(ip("192.0.2.2"), 64);
        for _ in 0..5 {
            assert!(limiter.check_and_record(a, t0).is_allowed());
        }
        assert!(!limiter.check_and_record(a, t0).is_allowed());
        for _ in 0..5 {
            assert!(limiter.check_and_record(b, t0).is_allowed());
        }
        assert!(!limiter.check_and_record(b, t0).is_allowed());
        assert_eq!(limiter.tracked_keys(), 2);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        let a = ip("2001:db8:1:2:aaaa::1");
        let b = ip("2001:db8:1:2:ffff:ffff:ffff:ffff");
        let c = ip("2001:db8:1:3::1");
        assert_eq!(key_for_ip(a, 64), key_for_ip(b, 64));
        assert_ne!(key_for_ip(a, 64), key_for_ip(c, 64));
        assert_eq!(key_for_ip(a, 48), key_for_ip(c, 48));
        assert_ne!(key_for_ip(a, 128), key_for_ip(b, 128));
        assert_eq!(key_for_ip(a, 200), key_for_ip(a, 128));
        assert_eq!(key_for_ip(a, 0), key_for_ip(ip("fe80::1"), 0));
        assert_eq!(key_for_ip(a, 64), u128::from(ip_v6("2001:db8:1:2::")));

        let limiter = LoginLimiter::new(5, secs(300), 1000);
        let t0 = Instant::now();
        for i in 0..5u16 {
            let addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, i, i, i));
            assert!(limiter
                .check_and_record(key_for_ip(addr, 64), t0)
                .is_allowed());
        }
        assert!(!limiter.check_and_record(key_for_ip(b, 64), t0).is_allowed());
        assert!(limiter.check_and_record(key_for_ip(c, 64), t0).is_allowed());
    }

    fn ip_v6(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_client() {
        for prefix in [0, 48, 64, 96, 128] {
            assert_eq!(
                key_for_ip(ip("::ffff:203.0.113.9"), prefix),
                key_for_ip(ip("203.0.113.9"), prefix)
            );
        }
        assert_ne!(
            key_for_ip(ip("203.0.113.9"), 64),
            key_for_ip(ip("203.0.113.10"), 64)
        );
        // IPv4-compatible (deprecated) and NAT64 forms are IPv6 clients, not the IPv4 one.
        assert_ne!(
            key_for_ip(ip("::203.0.113.9"), 128),
            key_for_ip(ip("203.0.113.9"), 128)
        );
        assert_ne!(
            key_for_ip(ip("64:ff9b::203.0.113.9"), 128),
            key_for_ip(ip("203.0.113.9"), 128)
        );
        // Native IPv6 keys never land in the IPv4 key range, whatever the prefix.
        let v4_range = |k: u128| k >> 32 == 0xffff;
        for prefix in [0, 32, 64, 95, 96, 97, 128] {
            assert!(!v4_range(key_for_ip(ip("::1"), prefix)));
            assert!(!v4_range(key_for_ip(
                ip("0:0:0:0:0:fffe:ffff:ffff"),
                prefix
            )));
            assert!(!v4_range(key_for_ip(ip("2001:db8::ffff:1.2.3.4"), prefix)));
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(ms(1)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(Decision::Allowed.retry_after_secs(), None);
    }

    #[test]
    fn tracked_keys_never_exceed_the_cap() {
        for cap in [1, 7, 100, 300, 5000] {
            let limiter = LoginLimiter::new(5, secs(300), cap);
            let t0 = Instant::now();
            for k in 0..20_000u128 {
                limiter.check_and_record(k, t0 + ms(k as u64));
                assert!(limiter.tracked_keys() <= cap, "cap {cap}");
            }
            assert_eq!(limiter.tracked_keys(), cap);
            let mut counted = 0;
            limiter.shards.for_each_shard(|s| {
                s.table.check_invariants();
                counted += s.table.len();
            });
            assert_eq!(counted, cap);
        }
    }

    #[test]
    fn limited_keys_survive_a_flood_of_new_keys_at_the_cap() {
        let limiter = LoginLimiter::new(5, secs(300), 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check_and_record(u128::MAX, t0).is_allowed());
        }
        for k in 0..10_000u128 {
            assert!(limiter
                .check_and_record(k, t0 + ms(1 + k as u64))
                .is_allowed());
        }
        assert!(limiter.tracked_keys() <= 100);
        assert!(!limiter
            .check_and_record(u128::MAX, t0 + secs(20))
            .is_allowed());
    }

    #[test]
    fn expired_keys_give_their_memory_back() {
        let limiter = LoginLimiter::new(5, secs(300), 1_000_000);
        let t0 = Instant::now();
        for k in 0..100_000u128 {
            limiter.check_and_record(k, t0);
        }
        assert_eq!(limiter.tracked_keys(), 100_000);
        let full = limiter.approx_bytes_per_key() * limiter.tracked_keys();
        // Ordinary traffic after the flood (one client a second) reclaims the expired keys
        // by itself...
        let later = t0 + secs(301);
        for i in 0..200_000u64 {
            let key = (1u128 << 120) | u128::from(i % 10_000);
            assert!(limiter.check_and_record(key, later + secs(i)).is_allowed());
        }
        assert!(
            limiter.tracked_keys() <= 600,
            "{} keys left",
            limiter.tracked_keys()
        );
        // ...and the heap it used shrinks with it.
        let mut bytes = 0;
        limiter
            .shards
            .for_each_shard(|s| bytes += s.table.heap_bytes());
        assert!(bytes * 20 < full, "{bytes} bytes left of {full}");

        let quiet = LoginLimiter::new(5, secs(300), 1_000_000);
        for k in 0..10_000u128 {
            quiet.check_and_record(k, t0);
        }
        assert_eq!(quiet.purge_expired(t0 + secs(299), usize::MAX), 0);
        assert_eq!(quiet.purge_expired(t0 + secs(300), usize::MAX), 10_000);
        assert_eq!(quiet.tracked_keys(), 0);
    }

    #[test]
    fn memory_per_key_is_compact() {
        let limiter = LoginLimiter::new(5, secs(300), 1_000_000);
        let t0 = Instant::now();
        for k in 0..200_000u128 {
            limiter.check_and_record(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), t0);
        }
        let per_key = limiter.approx_bytes_per_key();
        assert!(per_key <= 100, "{per_key} bytes per key");
        assert_eq!(limiter.nominal_bytes_per_key(), 68);
    }

    #[test]
    fn long_windows_large_budgets_and_long_uptimes_work() {
        let day = secs(86_400);
        let limiter = LoginLimiter::new(1000, day, 1000);
        let t0 = Instant::now();
        for i in 0..1000u64 {
            assert!(limiter.check_and_record(9, t0 + secs(i * 60)).is_allowed());
        }
        assert_eq!(
            limiter.check_and_record(9, t0 + secs(999 * 60)),
            Decision::Limited {
                retry_after: day - secs(999 * 60)
            }
        );
        assert!(limiter.check_and_record(9, t0 + day).is_allowed());

        // Thirty-day windows use a coarser tick but stay exact for whole seconds.
        let month = secs(30 * 86_400);
        let slow = LoginLimiter::new(1, month, 10);
        assert!(slow.check_and_record(1, t0).is_allowed());
        let d = slow.check_and_record(1, t0 + secs(86_400));
        assert_eq!(
            d,
            Decision::Limited {
                retry_after: month - secs(86_400)
            }
        );
        assert!(slow.check_and_record(1, t0 + month).is_allowed());

        // Far past the 2^31 ms at which a shard moves its epoch, several times over.
        let limiter = LoginLimiter::new(2, secs(300), 1000);
        let mut t = t0;
        for _ in 0..400 {
            t += secs(86_400) + ms(123);
            assert!(limiter.check_and_record(5, t).is_allowed());
            assert!(limiter.check_and_record(5, t + secs(299)).is_allowed());
            assert_eq!(
                limiter.check_and_record(5, t + secs(299)),
                Decision::Limited {
                    retry_after: secs(1)
                }
            );
            assert!(limiter.check_and_record(5, t + secs(300)).is_allowed());
        }
        // A whole year without a single call.
        t += secs(365 * 86_400);
        assert!(limiter.check_and_record(5, t).is_allowed());
        assert!(limiter.check_and_record(5, t).is_allowed());
        assert!(!limiter.check_and_record(5, t).is_allowed());
    }

    #[test]
    fn degenerate_settings_are_clamped() {
        let t0 = Instant::now();
        let none = LoginLimiter::new(0, secs(60), 0);
        assert_eq!(none.attempts(), 1);
        assert_eq!(none.max_tracked_keys(), 1);
        assert!(none.check_and_record(1, t0).is_allowed());
        assert!(!none.check_and_record(1, t0).is_allowed());
        assert!(none.check_and_record(2, t0).is_allowed());
        assert_eq!(none.tracked_keys(), 1);

        let zero_window = LoginLimiter::new(1, Duration::ZERO, 10);
        assert!(zero_window.check_and_record(1, t0).is_allowed());
        assert!(zero_window.check_and_record(1, t0).is_allowed());

        let forever = LoginLimiter::new(1, Duration::MAX, 10);
        assert_eq!(forever.window(), MAX_SPAN);
        assert!(forever.check_and_record(1, t0).is_allowed());
        assert!(!forever
            .check_and_record(1, t0 + secs(365 * 86_400))
            .is_allowed());
    }

    #[test]
    fn instants_before_the_first_one_seen_do_not_break_anything() {
        let early = Instant::now();
        let limiter = LoginLimiter::new(1, secs(10), 10);
        let late = early + secs(5);
        assert!(limiter.check_and_record(1, late).is_allowed());
        assert_eq!(
            limiter.check_and_record(1, early),
            Decision::Limited {
                retry_after: secs(10)
            }
        );
    }

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<LoginLimiter>();

        let limiter = Arc::new(LoginLimiter::new(5, secs(300), 200_000));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4u128)
            .map(|t| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || {
                    let mut allowed = 0;
                    for i in 0..40_000u128 {
                        // Keys 0..1000 shared by all threads, the rest private.
                        let key = if i % 2 == 0 {
                            (i / 2) % 1000
                        } else {
                            ((t + 1) << 64) | i
                        };
                        if limiter
                            .check_and_record(key, t0 + ms(i as u64 / 1000))
                            .is_allowed()
                        {
                            allowed += 1;
                        }
                    }
                    allowed
                })
            })
            .collect();
        let allowed: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        // Every private key is allowed once; the 1000 shared keys 5 times each.
        assert_eq!(allowed, 4 * 20_000 + 1000 * 5);
        assert_eq!(limiter.tracked_keys(), 4 * 20_000 + 1000);
        let mut counted = 0;
        limiter.shards.for_each_shard(|s| {
            s.table.check_invariants();
            counted += s.table.len();
        });
        assert_eq!(counted, limiter.tracked_keys());
    }

    /// The obvious implementation: a list of the attempt times per key, pruned on each call.
    #[derive(Default)]
    struct Reference {
        attempts: usize,
        window_ms: u64,
        log: HashMap<u8, Vec<u64>>,
    }

    impl Reference {
        fn decide(&mut self, key: u8, now_ms: u64) -> Decision {
            let log = self.log.entry(key).or_default();
            log.retain(|&t| now_ms - t < self.window_ms);
            if log.len() >= self.attempts {
                let oldest = log[log.len() - self.attempts];
                return Decision::Limited {
                    retry_after: ms(oldest + self.window_ms - now_ms),
                };
            }
            log.push(now_ms);
            Decision::Allowed
        }
    }

    fn advance() -> impl Strategy<Value = u64> {
        prop_oneof![
            6 => 0..20u64,
            6 => 0..2_000u64,
            3 => 0..10_000u64,
            // Days at a time, so shards move their epoch mid-sequence.
            1 => 0..(20 * 86_400_000u64),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_the_naive_reference(
            attempts in 1..7u32,
            window_ms in prop_oneof![1..50u64, 1..10_000u64, Just(300_000u64)],
            ops in prop::collection::vec((0..6u8, advance()), 1..300),
        ) {
            let limiter = LoginLimiter::new(attempts, ms(window_ms), 1000);
            let mut model = Reference { attempts: attempts as usize, window_ms, ..Default::default() };
            let t0 = Instant::now();
            let mut now_ms = 0;
            for (key, step) in ops {
                now_ms += step;
                let got = limiter.check_and_record(u128::from(key) << 100, t0 + ms(now_ms));
                prop_assert_eq!(got, model.decide(key, now_ms), "key {} at {} ms", key, now_ms);
            }
            prop_assert!(limiter.tracked_keys() <= 6);
        }

        #[test]
        fn the_cap_holds_and_the_table_stays_consistent(
            cap in 1..40usize,
            ops in prop::collection::vec((0..80u8, 0..3_000u64), 1..400),
        ) {
            let limiter = LoginLimiter::new(3, ms(5_000), cap);
            let t0 = Instant::now();
            let mut now_ms = 0;
            for (key, step) in ops {
                now_ms += step;
                limiter.check_and_record(u128::from(key), t0 + ms(now_ms));
                prop_assert!(limiter.tracked_keys() <= cap);
            }
            limiter.shards.for_each_shard(|s| s.table.check_invariants());
        }

        #[test]
        fn table_operations_keep_the_structure_sound(
            ops in prop::collection::vec((0..4u8, 0..64u32, 0..2usize), 1..600),
        ) {
            let mut table = Table::<1, 2>::new(1);
            let mut model: HashMap<u32, u32> = HashMap::new();
            // Deliberately poor hashes: many keys share probe runs.
            let h = |k: u32| k.wrapping_mul(3) % 8;
            for (op, key, list) in ops {
                match op {
                    0 | 1 => {
                        if table.find(h(key), &[key]).is_none() {
                            let slot = table.insert(h(key), &[key], list);
                            table.payload_mut(slot)[0] = key ^ 0xabcd;
                            model.insert(key, key ^ 0xabcd);
                        }
                    }
                    2 => {
                        if let Some(slot) = table.find(h(key), &[key]) {
                            table.remove(slot);
                            model.remove(&key);
                        }
                    }
                    _ => {
                        if let Some(slot) = table.find(h(key), &[key]) {
                            table.move_to_back(slot, list);
                        }
                    }
                }
                table.check_invariants();
                prop_assert_eq!(table.len(), model.len());
            }
            for (key, value) in &model {
                let slot = table.find(h(*key), &[*key]);
                prop_assert!(slot.is_some());
                prop_assert_eq!(slot.map(|s| table.payload(s)[0]), Some(*value));
            }
        }
    }
}
