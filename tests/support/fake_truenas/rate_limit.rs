//! middlewared's limit on calls made without authentication.
//!
//! Follows src/middlewared/middlewared/utils/rate_limit/cache.py (`RateLimit`), the call site
//! in main.py `authorize_method_call`, and plugins/rate_limit/__init__.py (the table is
//! cleared every 600 s). Quirks kept on purpose:
//! - an entry is added before anything is checked, so the call that brings the table to 100
//!   entries is itself refused, while a call that adds a 101st entry passes (`len == 100`);
//! - `any((max_entries_reached, rate_limit_exceeded(...)))` builds its tuple first, so the
//!   counter is incremented even when the table is full;
//! - the window is fixed: it restarts when 60 s have passed since the last reset, not
//!   since the first call of a burst.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// `RateLimitConfig.max_calls`.
const MAX_CALLS: u32 = 20;
/// `RateLimitConfig.max_cache_entries`.
const MAX_CACHE_ENTRIES: usize = 100;
/// plugins/rate_limit `CLEAR_CACHE_INTERVAL` (a periodic task, not run on start).
const CLEAR_INTERVAL: Duration = Duration::from_secs(600);

struct Entry {
    num_times_called: u32,
    last_reset: Instant,
}

/// The `RL_CACHE` dict: process memory, keyed by (method, client address).
pub(super) struct RateLimitTable {
    window: Duration,
    entries: HashMap<(String, IpAddr), Entry>,
    /// When the periodic clear last ran (or the "process" started).
    cleared_at: Instant,
}

impl RateLimitTable {
    pub fn new(window: Duration) -> Self {
        RateLimitTable {
            window,
            entries: HashMap::new(),
            cleared_at: Instant::now(),
        }
    }

    /// `RateLimitCache.add` then the two checks; `true` means the call is refused.
    pub fn refuse(&mut self, method: &str, ip: IpAddr) -> bool {
        let now = Instant::now();
        // The periodic task, applied lazily: nobody can observe the table in between.
        if now.duration_since(self.cleared_at) >= CLEAR_INTERVAL {
            self.entries.clear();
            self.cleared_at = now;
        }
        let key = (method.to_owned(), ip);
        self.entries.entry(key.clone()).or_insert(Entry {
            num_times_called: 0,
            last_reset: now,
        });
        let max_entries_reached = self.entries.len() == MAX_CACHE_ENTRIES;
        let exceeded = match self.entries.get_mut(&key) {
            Some(entry) => {
                // `max_period - (now - last_reset) <= 0`
                if now.duration_since(entry.last_reset) >= self.window {
                    entry.num_times_called = 0;
                    entry.last_reset = now;
                }
                entry.num_times_called += 1;
                entry.num_times_called > MAX_CALLS
            }
            None => false,
        };
        max_entries_reached || exceeded
    }

    /// A middlewared restart starts with an empty table.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.cleared_at = Instant::now();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
