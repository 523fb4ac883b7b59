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
//! ([`crate::auth::lockout`]) bounds the guesses against one account however many addresses are used.
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

use self::table::Table;

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

/// Proof that the login limiter let an attempt through. Only [`LoginLimiter::admit`] makes
/// one, and every action that verifies a password or a code takes one, so a route that
/// reaches such an action without the limiter in front does not get one (it answers 500, and
/// the route test names it).
#[derive(Debug, Clone)]
pub struct Admitted(());

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

type LimiterShard = table::Shard<4, 1>;

fn lower_stamps(p: &mut [u32], shift: u32) {
    table::lower(&mut p[P_RING..], shift);
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
        let shards = table::Sharded::new(cap, || LimiterShard::new(payload, lower_stamps));
        Self {
            shards,
            attempts,
            window,
            window_ticks,
            tick_ms,
            max_tracked_keys: cap,
        }
    }

    /// [`Self::check_and_record`], with the proof the actions ask for.
    pub fn admit(&self, key: LimitKey, now: Instant) -> Result<Admitted, Duration> {
        match self.check_and_record(key, now) {
            Decision::Allowed => Ok(Admitted(())),
            Decision::Limited { retry_after } => Err(retry_after),
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
pub(crate) mod table;

#[cfg(test)]
mod tests;
