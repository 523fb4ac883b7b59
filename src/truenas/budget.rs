//! The portal's own allowance of unauthenticated TrueNAS calls.
//!
//! middlewared counts calls to methods that need no authentication (`auth.login_ex`,
//! `auth.login_with_api_key`, `auth.mechanism_choices`, …) per (method, client address) while
//! the connection is not logged in: 20 in a fixed window of 60 s, then it sleeps 1–10 s and
//! answers "Rate Limit Exceeded" (truenas/middleware `utils/rate_limit/cache.py`, `main.py`
//! `authorize_method_call`). Behind TrueNAS' nginx every call of the portal has the portal's
//! address, so the admin logins and reconnects of the whole process share those 20.
//!
//! Password checks no longer spend them (they run on connections already logged in with the
//! API key, which middlewared exempts), so what is left is logins of passgate's own
//! connections. This budget keeps them at 12 of TrueNAS' 20 in any 60 s, measured as a
//! sliding window: any window of TrueNAS' then holds at most as many, whatever its phase, and
//! 8 are left for an admin's own scripts from the same address. 12 is what a cold start with
//! SCRAM (two calls per login: the admin connection and three verification connections) plus
//! one middlewared restart in the same minute needs (see `pool.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Calls per method in any [`WINDOW`]; TrueNAS allows 20.
pub const CALLS_PER_WINDOW: usize = 12;
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct UnauthBudget {
    spent: Mutex<HashMap<&'static str, VecDeque<Instant>>>,
}

impl UnauthBudget {
    /// Takes `calls` calls of `method` if all fit, keeping `reserve` of the window free for
    /// callers that must not be starved (the admin connection's reconnect). On refusal,
    /// returns how long until enough calls are free again.
    pub fn take(&self, method: &'static str, calls: usize, reserve: usize) -> Result<(), Duration> {
        self.take_at(method, calls, reserve, Instant::now())
    }

    fn take_at(
        &self,
        method: &'static str,
        calls: usize,
        reserve: usize,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        let times = spent.entry(method).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        let limit = CALLS_PER_WINDOW.saturating_sub(reserve);
        if times.len() + calls <= limit {
            times.extend(std::iter::repeat_n(now, calls));
            return Ok(());
        }
        // The oldest calls leave the window first; enough of them must leave for `calls`.
        let must_leave = (times.len() + calls).saturating_sub(limit);
        let wait = times
            .get(must_leave.saturating_sub(1))
            .map(|t| WINDOW.saturating_sub(now.duration_since(*t)))
            .unwrap_or(WINDOW);
        Err(wait)
    }

    /// Calls of `method` spent in the current window (for check-config and tests).
    pub fn spent(&self, method: &'static str) -> usize {
        let now = Instant::now();
        let spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        spent
            .get(method)
            .map(|t| {
                t.iter()
                    .filter(|t| now.duration_since(**t) < WINDOW)
                    .count()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_budget_in_any_window() {
        let budget = UnauthBudget::default();
        let start = Instant::now();
        let mut taken = Vec::new();
        // One attempt every 100 ms for five minutes.
        for step in 0..3000u64 {
            let at = start + Duration::from_millis(step * 100);
            if budget.take_at("auth.login_ex", 1, 0, at).is_ok() {
                taken.push(at);
            }
        }
        for (i, t) in taken.iter().enumerate() {
            let in_window = taken[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < WINDOW)
                .count();
            assert!(
                in_window <= CALLS_PER_WINDOW,
                "{in_window} calls within 60 s"
            );
        }
        assert!(taken.len() >= 5 * CALLS_PER_WINDOW, "the budget refills");
    }

    #[test]
    fn reserve_and_multi_call_takes() {
        let budget = UnauthBudget::default();
        let now = Instant::now();
        for _ in 0..CALLS_PER_WINDOW - 2 {
            budget.take_at("auth.login_ex", 1, 2, now).expect("fits");
        }
        let wait = budget
            .take_at("auth.login_ex", 1, 2, now)
            .expect_err("the reserve is kept");
        assert!(wait <= WINDOW && wait > Duration::from_secs(59));
        budget
            .take_at("auth.login_ex", 2, 0, now)
            .expect("the reserve is usable by the privileged caller");
        assert!(budget.take_at("auth.login_ex", 1, 0, now).is_err());
        // Methods are counted apart, as TrueNAS keys them.
        budget
            .take_at("auth.mechanism_choices", 1, 0, now)
            .expect("other method");
        budget
            .take_at("auth.login_ex", 1, 0, now + WINDOW)
            .expect("window passed");
    }
}
