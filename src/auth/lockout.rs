//! Per-username lockout: the defence against guesses spread over many addresses, which the
//! per-client limiter cannot see.
//!
//! **Rule.** After `failures` failed verifications of one username within `window`, the
//! username is locked for `base_lockout`. Each further lockout while the previous one is still
//! remembered doubles the length, up to `max_lockout`. A lockout is remembered until
//! `max_lockout` after it ends; an attacker who waits that long to reset the doubling gets no
//! more guesses per day than one who keeps going at the maximum length. [`UserLockout::check`]
//! runs before any verification, so a locked username costs no hash, no SMB handshake and no
//! TrueNAS call. Failures reported while the username is locked (verifications that were already
//! running when the lock began) are ignored rather than extending it.
//!
//! **Success.** A successful verification clears the failure window, so a user who mistyped a
//! few times starts afresh. It does not lift a running lockout and does not forget the
//! escalation: otherwise every routine sign-in by the real user would hand an attacker who is
//! guessing the same account the short first lockout again.
//!
//! **Names.** Usernames are compared exactly (TrueNAS usernames are case-sensitive) through a
//! 64-bit SipHash of the whole name, keyed randomly per process, so a record costs the same
//! for any name length and no name is stored. A remote party cannot compute the hash, so they
//! cannot look for two names that share a record; an accidental collision among a million
//! tracked names has a probability around 10^-8 and would only make two names share a counter.
//!
//! **Memory.** A tracked username costs `4 × (failures + 10)` bytes (80 at the default 10
//! failures) plus 11–21 bytes of index (99 bytes of VmRSS per name measured at 1,000,000
//! names), and at most `max_tracked_users` are tracked, in up to 64 independently locked
//! shards. Only failed verifications add names, so in practice the table holds no more names
//! than the verifiers can reject in one `window`. Usernames whose failures have left the window and whose
//! lockout is no longer remembered are dropped as calls go by (no scans) or by
//! [`UserLockout::purge_expired`].
//!
//! **At the cap.** Names that are locked or whose escalation is remembered are kept in a
//! separate list from names that only have failures counted. A new name arriving when the
//! table is full displaces, in its own shard, the name whose latest failure is the oldest; a
//! locked or escalated name is displaced only when its shard holds nothing else. To push a
//! lockout out early, an attacker would therefore have to lock about `max_tracked_users` names
//! first (`failures` failed verifications each: ten million at the defaults, every one of them
//! passing the per-client limiter). Flooding with fresh names can make the counter of a name that is guessed very
//! slowly forget its failures; the flood itself is made of verifications, limited per client
//! and by the verification concurrency cap.
//!
//! **Trade-off.** Like every account lockout, this lets anyone who knows a username keep that
//! user out by failing on purpose. The per-client limiter makes that take several addresses,
//! and every lockout is audited.

use std::fmt;
use std::time::{Duration, Instant};

use crate::limiter::table::{self, age, stamp, until, Shard, Sharded, Table};
use crate::limiter::MAX_SPAN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub failures: u32,
    pub window: Duration,
    pub base_lockout: Duration,
    pub max_lockout: Duration,
    pub max_tracked_users: usize,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            failures: 10,
            window: Duration::from_secs(900),
            base_lockout: Duration::from_secs(900),
            max_lockout: Duration::from_secs(86_400),
            max_tracked_users: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Open,
    Locked { remaining: Duration },
}

const MAX_FAILURES: u32 = 65_536;
const MAX_LEVEL: u32 = 64;
const SWEEP_PER_CALL: usize = 2;

/// Names with only failures counted, in order of their latest failure.
const COUNTING: usize = 0;
/// Names locked now, or whose last lockout is still remembered, in order of lockout.
const LOCKED: usize = 1;

/// Per-name payload. The failure ring works as in the limiter: the cursor points at the
/// oldest of the last `failures` failure stamps.
const P_LIST: usize = 0;
const P_HEAD: usize = 1;
const P_LOCKED_UNTIL: usize = 2;
const P_REMEMBER_UNTIL: usize = 3;
const P_LEVEL: usize = 4;
const P_RING: usize = 5;

pub struct UserLockout {
    shards: Sharded<LockoutShard>,
    policy: LockoutPolicy,
    window_ticks: u32,
    memory_ticks: u32,
    tick_ms: u64,
}

type LockoutShard = Shard<2, 2>;

/// The level is a count, not a stamp, so it is left alone.
fn lower_stamps(p: &mut [u32], shift: u32) {
    p[P_LOCKED_UNTIL] = p[P_LOCKED_UNTIL].saturating_sub(shift);
    p[P_REMEMBER_UNTIL] = p[P_REMEMBER_UNTIL].saturating_sub(shift);
    table::lower(&mut p[P_RING..], shift);
}

impl UserLockout {
    /// Out-of-range settings are brought into range: `failures` to 1..=65,536, `max_lockout`
    /// to at least `base_lockout` (itself at least 1 ms) and at most half of 366 days, the
    /// window to at most 366 days, `max_tracked_users` to 1..=2^30.
    pub fn new(policy: LockoutPolicy) -> Self {
        let max_lockout = policy.max_lockout.min(MAX_SPAN / 2);
        let base_lockout = policy
            .base_lockout
            .max(Duration::from_millis(1))
            .min(max_lockout);
        let max_lockout = max_lockout.max(base_lockout);
        let policy = LockoutPolicy {
            failures: policy.failures.clamp(1, MAX_FAILURES),
            window: policy.window.min(MAX_SPAN),
            base_lockout,
            max_lockout,
            max_tracked_users: policy.max_tracked_users.clamp(1, table::MAX_KEYS),
        };
        let window_ms = table::ceil_millis(policy.window);
        let memory_ms = table::ceil_millis(policy.max_lockout);
        // The furthest stamp ahead of now: the end of a maximal lockout plus its memory.
        let tick_ms = table::tick_for_span(window_ms.max(memory_ms.saturating_mul(2)));
        let payload = P_RING + policy.failures as usize;
        let shards = Sharded::new(policy.max_tracked_users, || {
            LockoutShard::new(payload, lower_stamps)
        });
        Self {
            shards,
            window_ticks: table::to_ticks(window_ms, tick_ms),
            memory_ticks: table::to_ticks(memory_ms, tick_ms),
            tick_ms,
            policy,
        }
    }

    /// Whether `username` may be verified at all right now.
    pub fn check(&self, username: &str, now: Instant) -> LockState {
        let h = self.shards.hash(username);
        self.shards.with_shard(h, |shard, _| {
            let now_t = shard.now(now, self.tick_ms);
            self.maintain(&mut shard.table, now_t, SWEEP_PER_CALL);
            let Some(slot) = shard.table.find(h as u32, &key_words(h)) else {
                return LockState::Open;
            };
            match until(shard.table.payload(slot)[P_LOCKED_UNTIL], now_t) {
                Some(left) => LockState::Locked {
                    remaining: table::ticks_to_duration(left, self.tick_ms),
                },
                None => LockState::Open,
            }
        })
    }

    /// Records a failed verification. Returns the lockout length when this failure started a
    /// lockout.
    pub fn record_failure(&self, username: &str, now: Instant) -> Option<Duration> {
        let h = self.shards.hash(username);
        self.shards.with_shard(h, |shard, room| {
            let now_t = shard.now(now, self.tick_ms);
            let table = &mut shard.table;
            self.maintain(table, now_t, SWEEP_PER_CALL);
            let words = key_words(h);
            let slot = match table.find(h as u32, &words) {
                Some(slot) => slot,
                None => {
                    if !room.claim() && !evict_one(table) {
                        // Full, and nothing in this shard to give up: practically impossible
                        // with shards sized for hundreds of names (see the limiter).
                        return None;
                    }
                    // A zeroed payload is a counting name with no failures yet.
                    table.insert(h as u32, &words, COUNTING)
                }
            };
            let failures = self.policy.failures as usize;
            let p = table.payload_mut(slot);
            if until(p[P_LOCKED_UNTIL], now_t).is_some() {
                return None;
            }
            let head = p[P_HEAD] as usize;
            p[P_RING + head] = stamp(now_t);
            let head = if head + 1 == failures { 0 } else { head + 1 };
            p[P_HEAD] = head as u32;
            // The ring holds the last `failures` failures; all of them are inside the
            // window exactly when the oldest is.
            let all_recent = age(p[P_RING + head], now_t).is_some_and(|a| a < self.window_ticks);
            if !all_recent {
                if p[P_LIST] == COUNTING as u32 {
                    table.move_to_back(slot, COUNTING);
                }
                return None;
            }
            let level = match until(p[P_REMEMBER_UNTIL], now_t) {
                Some(_) => (p[P_LEVEL] + 1).min(MAX_LEVEL),
                None => 0,
            };
            let length = self.lock_length(level);
            let length_ticks = table::to_ticks(table::ceil_millis(length), self.tick_ms);
            p[P_LOCKED_UNTIL] = stamp(now_t + length_ticks);
            p[P_REMEMBER_UNTIL] = stamp(now_t + length_ticks + self.memory_ticks);
            p[P_LEVEL] = level;
            p[P_LIST] = LOCKED as u32;
            p[P_RING..].fill(0);
            p[P_HEAD] = 0;
            table.move_to_back(slot, LOCKED);
            Some(length)
        })
    }

    /// Records a successful verification: the failure window starts afresh; a running lockout
    /// and the escalation memory stay (see the module documentation).
    pub fn record_success(&self, username: &str, now: Instant) {
        let h = self.shards.hash(username);
        self.shards.with_shard(h, |shard, _| {
            let now_t = shard.now(now, self.tick_ms);
            self.maintain(&mut shard.table, now_t, SWEEP_PER_CALL);
            let Some(slot) = shard.table.find(h as u32, &key_words(h)) else {
                return;
            };
            let p = shard.table.payload_mut(slot);
            if p[P_LIST] == COUNTING as u32 {
                // Nothing left worth remembering.
                shard.table.remove(slot);
            } else {
                p[P_RING..].fill(0);
                p[P_HEAD] = 0;
            }
        });
    }

    /// Usernames currently remembered (never more than `max_tracked_users`).
    pub fn tracked_users(&self) -> usize {
        self.shards.tracked()
    }

    /// Drops up to `max_per_shard` forgotten names from each list of each shard, for a
    /// periodic task to call when traffic may have stopped. Returns how many were dropped.
    pub fn purge_expired(&self, now: Instant, max_per_shard: usize) -> usize {
        let mut dropped = 0;
        self.shards.for_each_shard(|shard| {
            let now_t = shard.now(now, self.tick_ms);
            let before = shard.table.len();
            self.maintain(&mut shard.table, now_t, max_per_shard);
            dropped += before - shard.table.len();
        });
        dropped
    }

    /// The policy in force, after the adjustments described at [`UserLockout::new`].
    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    fn lock_length(&self, level: u32) -> Duration {
        let mut length = self.policy.base_lockout;
        for _ in 0..level {
            if length >= self.policy.max_lockout {
                break;
            }
            length = length.saturating_mul(2);
        }
        length.min(self.policy.max_lockout)
    }

    fn failures_expired(&self, p: &[u32], now_t: u32) -> bool {
        let head = p[P_HEAD] as usize;
        let newest = if head == 0 {
            self.policy.failures as usize - 1
        } else {
            head - 1
        };
        age(p[P_RING + newest], now_t).is_none_or(|a| a >= self.window_ticks)
    }

    /// Drops forgotten names from the head of both lists, and moves names whose lockout is
    /// no longer remembered but who have recent failures back to the counting list. Stops
    /// at the first live name of each list: the counting list is in expiry order, and the
    /// lockout list nearly so (lockout lengths differ by at most `max_lockout`).
    fn maintain(&self, table: &mut Table<2, 2>, now_t: u32, budget: usize) {
        for _ in 0..budget {
            match table.front(COUNTING) {
                Some(slot) if self.failures_expired(table.payload(slot), now_t) => {
                    table.remove(slot)
                }
                _ => break,
            }
        }
        for _ in 0..budget {
            let Some(slot) = table.front(LOCKED) else {
                break;
            };
            let p = table.payload_mut(slot);
            if until(p[P_REMEMBER_UNTIL], now_t).is_some() {
                break;
            }
            if self.failures_expired(p, now_t) {
                table.remove(slot);
            } else {
                p[P_LIST] = COUNTING as u32;
                p[P_LOCKED_UNTIL] = 0;
                p[P_REMEMBER_UNTIL] = 0;
                p[P_LEVEL] = 0;
                table.move_to_back(slot, COUNTING);
            }
        }
    }
}

/// Makes room for a new name; false if the shard is empty.
fn evict_one(table: &mut Table<2, 2>) -> bool {
    match table.front(COUNTING).or_else(|| table.front(LOCKED)) {
        Some(slot) => {
            table.remove(slot);
            true
        }
        None => false,
    }
}

fn key_words(h: u64) -> [u32; 2] {
    [h as u32, (h >> 32) as u32]
}

impl fmt::Debug for UserLockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserLockout")
            .field("policy", &self.policy)
            .field("tracked_users", &self.tracked_users())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn lockout() -> UserLockout {
        UserLockout::new(LockoutPolicy::default())
    }

    fn locked(remaining: Duration) -> LockState {
        LockState::Locked { remaining }
    }

    /// `n` failures one second apart starting at `start`; the last one's result.
    fn fail_times(l: &UserLockout, user: &str, start: Instant, n: u64) -> Option<Duration> {
        let mut last = None;
        for i in 0..n {
            last = l.record_failure(user, start + secs(i));
        }
        last
    }

    #[test]
    fn ten_failures_lock_the_username() {
        let l = lockout();
        let t0 = Instant::now();
        for i in 0..9 {
            assert_eq!(l.record_failure("alice", t0 + secs(i)), None);
            assert_eq!(l.check("alice", t0 + secs(i)), LockState::Open);
        }
        assert_eq!(l.record_failure("alice", t0 + secs(9)), Some(secs(900)));
        assert_eq!(l.check("alice", t0 + secs(9)), locked(secs(900)));
        assert_eq!(l.check("alice", t0 + secs(109)), locked(secs(800)));
        assert_eq!(l.check("alice", t0 + ms(908_999)), locked(ms(1)));
        assert_eq!(l.check("alice", t0 + secs(909)), LockState::Open);
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_lock() {
        let l = lockout();
        let t0 = Instant::now();
        // One failure every 100 s: never ten inside 900 s.
        for i in 0..50 {
            assert_eq!(l.record_failure("bob", t0 + secs(100 * i)), None);
        }
        assert_eq!(l.check("bob", t0 + secs(5000)), LockState::Open);
        // Ten inside 900 s (the first at 0, the tenth at 899) do.
        let t1 = t0 + secs(10_000);
        for i in 0..9 {
            assert_eq!(l.record_failure("carol", t1 + secs(100 * i)), None);
        }
        assert_eq!(l.record_failure("carol", t1 + secs(899)), Some(secs(900)));
    }

    #[test]
    fn repeated_lockouts_double_up_to_the_cap() {
        let l = lockout();
        let mut t = Instant::now();
        let expected = [
            900, 1800, 3600, 7200, 14_400, 28_800, 57_600, 86_400, 86_400, 86_400,
        ];
        for want in expected {
            let got = fail_times(&l, "dave", t, 10);
            assert_eq!(got, Some(secs(want)));
            let locked_at = t + secs(9);
            assert_eq!(l.check("dave", locked_at + secs(1)), locked(secs(want - 1)));
            // Failures reported during the lockout neither count nor extend it.
            assert_eq!(fail_times(&l, "dave", locked_at + secs(1), 20), None);
            assert_eq!(
                l.check("dave", locked_at + secs(want) - ms(1)),
                locked(ms(1))
            );
            t = locked_at + secs(want);
            assert_eq!(l.check("dave", t), LockState::Open);
        }
    }

    #[test]
    fn escalation_is_forgotten_after_max_lockout_of_quiet() {
        let l = lockout();
        let t0 = Instant::now();
        assert_eq!(fail_times(&l, "erin", t0, 10), Some(secs(900)));
        let ended = t0 + secs(9 + 900);
        // Just inside the memory: doubled.
        let t1 = ended + secs(86_400) - secs(10);
        assert_eq!(fail_times(&l, "erin", t1, 10), Some(secs(1800)));
        let ended = t1 + secs(9 + 1800);
        // A full max_lockout of quiet after that lockout ended: back to the base.
        let t2 = ended + secs(86_400);
        assert_eq!(fail_times(&l, "erin", t2, 10), Some(secs(900)));
    }

    #[test]
    fn success_resets_the_counter_but_keeps_the_escalation() {
        let l = lockout();
        let t0 = Instant::now();
        assert_eq!(fail_times(&l, "frank", t0, 9), None);
        l.record_success("frank", t0 + secs(9));
        assert_eq!(fail_times(&l, "frank", t0 + secs(10), 9), None);
        assert_eq!(l.check("frank", t0 + secs(19)), LockState::Open);
        assert_eq!(l.record_failure("frank", t0 + secs(19)), Some(secs(900)));

        // A success while locked (a verification that began before the lock) lifts nothing.
        l.record_success("frank", t0 + secs(20));
        assert_eq!(l.check("frank", t0 + secs(20)), locked(secs(899)));

        // After the lock, the real user signs in; the next lockout still doubles.
        let after = t0 + secs(19 + 900);
        l.record_success("frank", after);
        assert_eq!(
            fail_times(&l, "frank", after + secs(1), 10),
            Some(secs(1800))
        );
    }

    #[test]
    fn a_success_with_nothing_to_remember_frees_the_record() {
        let l = lockout();
        let t0 = Instant::now();
        fail_times(&l, "gina", t0, 3);
        assert_eq!(l.tracked_users(), 1);
        l.record_success("gina", t0 + secs(3));
        assert_eq!(l.tracked_users(), 0);
        l.record_success("nobody", t0 + secs(3));
        assert_eq!(l.tracked_users(), 0);
        assert_eq!(l.check("nobody", t0), LockState::Open);
        assert_eq!(l.tracked_users(), 0);
    }

    #[test]
    fn unrelated_users_are_unaffected_and_names_are_exact() {
        let l = lockout();
        let t0 = Instant::now();
        assert_eq!(fail_times(&l, "alice", t0, 10), Some(secs(900)));
        for other in ["Alice", "alice ", "bob", "alic", "alice\n", ""] {
            assert_eq!(l.check(other, t0 + secs(10)), LockState::Open, "{other:?}");
        }
        assert_eq!(fail_times(&l, "bob", t0 + secs(10), 9), None);
        assert_eq!(l.check("bob", t0 + secs(20)), LockState::Open);
        let long = "x".repeat(100_000);
        assert_eq!(fail_times(&l, &long, t0, 10), Some(secs(900)));
        assert_eq!(l.check(&long[1..], t0 + secs(10)), LockState::Open);
        assert_eq!(l.tracked_users(), 3);
    }

    #[test]
    fn the_cap_holds_and_locked_names_outlast_a_flood() {
        let l = UserLockout::new(LockoutPolicy {
            max_tracked_users: 50,
            ..Default::default()
        });
        let t0 = Instant::now();
        assert_eq!(fail_times(&l, "victim", t0, 10), Some(secs(900)));
        for i in 0..20_000u64 {
            l.record_failure(&format!("spray{i}"), t0 + secs(10) + ms(i));
            assert!(l.tracked_users() <= 50);
        }
        assert_eq!(l.check("victim", t0 + secs(100)), locked(secs(809)));
        l.shards.for_each_shard(|s| s.table.check_invariants());

        // With nothing but locked names, the oldest lockout goes first.
        let tiny = UserLockout::new(LockoutPolicy {
            max_tracked_users: 2,
            ..Default::default()
        });
        fail_times(&tiny, "a", t0, 10);
        fail_times(&tiny, "b", t0 + secs(10), 10);
        tiny.record_failure("c", t0 + secs(20));
        assert_eq!(tiny.tracked_users(), 2);
        assert_eq!(tiny.check("a", t0 + secs(21)), LockState::Open);
        assert!(matches!(
            tiny.check("b", t0 + secs(21)),
            LockState::Locked { .. }
        ));
    }

    #[test]
    fn forgotten_names_give_their_memory_back() {
        let l = lockout();
        let t0 = Instant::now();
        for i in 0..5_000u64 {
            l.record_failure(&format!("spray{i}"), t0);
        }
        fail_times(&l, "locked", t0, 10);
        assert_eq!(l.tracked_users(), 5_001);
        assert_eq!(l.purge_expired(t0 + secs(899), usize::MAX), 0);
        assert_eq!(l.purge_expired(t0 + secs(900), usize::MAX), 5_000);
        // The locked name is remembered for its lockout and then max_lockout more.
        assert_eq!(l.purge_expired(t0 + secs(9 + 900 + 86_399), usize::MAX), 0);
        assert_eq!(l.purge_expired(t0 + secs(9 + 900 + 86_400), usize::MAX), 1);
        assert_eq!(l.tracked_users(), 0);
    }

    #[test]
    fn long_uptimes_keep_locks_exact() {
        let l = lockout();
        let mut t = Instant::now();
        // 200 days, past several epoch moves, locking once a day.
        for _ in 0..200 {
            t += secs(86_400 * 2 + 7);
            assert_eq!(fail_times(&l, "henry", t, 10), Some(secs(900)));
            assert_eq!(l.check("henry", t + secs(9 + 450)), locked(secs(450)));
        }
        t += secs(400 * 86_400);
        assert_eq!(l.check("henry", t), LockState::Open);
        assert_eq!(fail_times(&l, "henry", t, 10), Some(secs(900)));
    }

    #[test]
    fn odd_policies_are_brought_into_range() {
        let l = UserLockout::new(LockoutPolicy {
            failures: 0,
            window: Duration::MAX,
            base_lockout: secs(100),
            max_lockout: secs(10),
            max_tracked_users: 0,
        });
        assert_eq!(l.policy().failures, 1);
        assert_eq!(l.policy().base_lockout, secs(10));
        assert_eq!(l.policy().max_lockout, secs(10));
        let t0 = Instant::now();
        assert_eq!(l.record_failure("x", t0), Some(secs(10)));
        // A 366-day window makes the tick 59 ms: the lock is rounded up to whole ticks and
        // "now" down to one, so the answer is late by less than two ticks.
        let LockState::Locked { remaining } = l.check("x", t0 + secs(5)) else {
            panic!("should be locked");
        };
        assert!(
            remaining >= secs(5) && remaining < secs(5) + ms(2 * 59),
            "{remaining:?}"
        );
    }

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<UserLockout>();
        let l = Arc::new(lockout());
        let t0 = Instant::now();
        let locks: usize = (0..4)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|i| l.record_failure(&format!("u{}", i % 50), t0).is_some())
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum();
        // 80 failures per name, one lockout each; the rest arrive while locked.
        assert_eq!(locks, 50);
        assert_eq!(l.tracked_users(), 50);
    }

    /// The obvious implementation, kept per name with full history.
    #[derive(Default)]
    struct Reference {
        users: HashMap<u8, RefUser>,
    }

    #[derive(Default)]
    struct RefUser {
        failures: Vec<u64>,
        locked_until: u64,
        remember_until: u64,
        level: u32,
    }

    const P: LockoutPolicy = LockoutPolicy {
        failures: 3,
        window: Duration::from_millis(1000),
        base_lockout: Duration::from_millis(500),
        max_lockout: Duration::from_millis(3000),
        max_tracked_users: 1000,
    };

    impl Reference {
        fn check(&self, user: u8, now: u64) -> LockState {
            match self.users.get(&user) {
                Some(u) if u.locked_until > now => locked(ms(u.locked_until - now)),
                _ => LockState::Open,
            }
        }

        fn failure(&mut self, user: u8, now: u64) -> Option<Duration> {
            let u = self.users.entry(user).or_default();
            if u.locked_until > now {
                return None;
            }
            u.failures.push(now);
            u.failures.retain(|&t| now - t < 1000);
            if u.failures.len() < 3 {
                return None;
            }
            u.level = if u.remember_until > now {
                u.level + 1
            } else {
                0
            };
            let length = (500u64 << u.level.min(20)).min(3000);
            u.locked_until = now + length;
            u.remember_until = now + length + 3000;
            u.failures.clear();
            Some(ms(length))
        }

        fn success(&mut self, user: u8) {
            if let Some(u) = self.users.get_mut(&user) {
                u.failures.clear();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_the_naive_reference(
            ops in prop::collection::vec(
                (0..3u8, 0..4u8, prop_oneof![8 => 0..400u64, 1 => 0..5_000u64, 1 => 0..(30 * 86_400_000u64)]),
                1..300,
            ),
        ) {
            let l = UserLockout::new(P);
            let mut model = Reference::default();
            let t0 = Instant::now();
            let mut now_ms = 0;
            for (op, user, step) in ops {
                now_ms += step;
                let now = t0 + ms(now_ms);
                let name = format!("user{user}");
                match op {
                    0 => prop_assert_eq!(l.check(&name, now), model.check(user, now_ms)),
                    1 => prop_assert_eq!(l.record_failure(&name, now), model.failure(user, now_ms)),
                    _ => {
                        l.record_success(&name, now);
                        model.success(user);
                    }
                }
            }
            l.shards.for_each_shard(|s| s.table.check_invariants());
        }
    }
}
