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

/// One shard: its table and the clock its stamps are counted on. Which payload words are
/// stamps is the owner's knowledge, so it hands in `lower_stamps` for when the clock rebases.
pub(crate) struct Shard<const KW: usize, const LISTS: usize> {
    pub(crate) table: Table<KW, LISTS>,
    clock: Clock,
    lower_stamps: fn(&mut [u32], u32),
}

impl<const KW: usize, const LISTS: usize> Shard<KW, LISTS> {
    pub(crate) fn new(payload_words: usize, lower_stamps: fn(&mut [u32], u32)) -> Self {
        Self {
            table: Table::new(payload_words),
            clock: Clock::default(),
            lower_stamps,
        }
    }

    /// "Now" in ticks; when the clock rebases, every stored stamp is lowered to match.
    pub(crate) fn now(&mut self, now: Instant, tick_ms: u64) -> u32 {
        let (t, shift) = self.clock.ticks(now, tick_ms);
        if shift > 0 {
            let lower_stamps = self.lower_stamps;
            self.table.for_each_payload_mut(|p| lower_stamps(p, shift));
        }
        t
    }
}

impl<const KW: usize, const LISTS: usize> ShardState for Shard<KW, LISTS> {
    fn len(&self) -> usize {
        self.table.len()
    }
    fn reset(&mut self) {
        self.table.clear();
    }
}

/// Lowers each stamp by `shift`; one that falls to 0 or below is "none".
pub(crate) fn lower(stamps: &mut [u32], shift: u32) {
    for v in stamps {
        *v = v.saturating_sub(shift);
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
            // The moved record's neighbours still point at `last`.
            self.relink(self.neighbours(slot), last, slot, slot);
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
        let (p, n) = self.neighbours(slot);
        self.relink((p, n), slot, n, p);
    }

    fn neighbours(&self, slot: u32) -> (u32, u32) {
        (self.at(slot, PREV), self.at(slot, NEXT))
    }

    /// Points the neighbours `(p, n)` of the record that was at `old` (or the list ends,
    /// where one is NIL) elsewhere: `p` forward to `after_p`, `n` back to `before_n`.
    fn relink(&mut self, (p, n): (u32, u32), old: u32, after_p: u32, before_n: u32) {
        if p == NIL {
            self.replace_front(old, after_p);
        } else {
            self.set(p, NEXT, after_p);
        }
        if n == NIL {
            self.replace_back(old, before_n);
        } else {
            self.set(n, PREV, before_n);
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
    pub(crate) fn with_shard<R>(&self, h: u64, f: impl FnOnce(&mut S, &mut Room<'_>) -> R) -> R {
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
