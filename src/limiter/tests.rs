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
