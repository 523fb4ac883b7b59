//! Cost of one login-limiter decision with 1,000, 100,000 and 1,000,000 clients already
//! tracked, and the memory each tracked client really takes.
//!
//! Memory is measured in a child process per size (this binary re-run with
//! `PASSGATE_RSS_PROBE` set), so that pages freed by one measurement cannot be reused by the
//! next and hide its cost: VmRSS before and after filling the table, against the limiter's own
//! `approx_bytes_per_key`.
//!
//! Run with `cargo bench --bench limiter`.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use passgate::auth::lockout::{LockoutPolicy, UserLockout};
use passgate::limiter::{LimitKey, LoginLimiter};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
const WINDOW: Duration = Duration::from_secs(300);
/// Visiting every key once per pass, passes this far apart keep each key's five attempts
/// spread wider than the window: every decision is an allowed one with a full ring.
const PASS: Duration = Duration::from_secs(61);
const PROBE_ENV: &str = "PASSGATE_RSS_PROBE";

fn random_keys(n: usize, seed: u64) -> Vec<LimitKey> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// The keys in a random order, laid out so that the benchmark reads them sequentially: the
/// table is still probed at random (the order differs from insertion, and keys hash randomly),
/// but fetching the next key costs no cache miss of its own.
fn shuffled(keys: &[LimitKey], seed: u64) -> Vec<LimitKey> {
    let mut visit = keys.to_vec();
    visit.shuffle(&mut StdRng::seed_from_u64(seed));
    visit
}

fn vm_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Child side: fill one structure and print what it cost.
fn probe(spec: &str) {
    let (what, n) = spec.split_once(':').unwrap_or((spec, "0"));
    let n: usize = n.parse().unwrap_or(0);
    let t0 = Instant::now();
    match what {
        "limiter" => {
            let keys = random_keys(n, 7);
            let limiter = LoginLimiter::new(5, WINDOW, 1_000_000);
            let before = vm_rss_bytes();
            for &key in &keys {
                limiter.check_and_record(key, t0);
            }
            let after = vm_rss_bytes();
            let approx = limiter.approx_bytes_per_key();
            let purged = limiter.purge_expired(t0 + WINDOW, usize::MAX);
            let end = vm_rss_bytes();
            println!(
                "limiter  {n:>9} keys: VmRSS +{:>6.1} MiB = {:>6.1} B/key measured, approx_bytes_per_key() = {approx} B; \
                 after purge_expired ({purged} dropped, {} left): VmRSS {:+.1} MiB vs filled",
                mib(after.saturating_sub(before)),
                after.saturating_sub(before) as f64 / n as f64,
                limiter.tracked_keys(),
                (end as f64 - after as f64) / 1048576.0,
            );
        }
        "lockout" => {
            let lockout = UserLockout::new(LockoutPolicy::default());
            let before = vm_rss_bytes();
            let mut name = String::new();
            for i in 0..n {
                name.clear();
                name.push_str("user");
                name.push_str(&i.to_string());
                lockout.record_failure(&name, t0);
            }
            let after = vm_rss_bytes();
            println!(
                "lockout  {n:>9} names: VmRSS +{:>6.1} MiB = {:>6.1} B/name measured (10-failure ring)",
                mib(after.saturating_sub(before)),
                after.saturating_sub(before) as f64 / n as f64,
            );
        }
        _ => eprintln!("unknown probe {spec}"),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn report_memory() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    println!("\n== memory per tracked entry (fresh process per size, default settings) ==");
    let probes = SIZES
        .iter()
        .map(|n| format!("limiter:{n}"))
        .chain(std::iter::once("lockout:1000000".to_owned()));
    for spec in probes {
        match Command::new(&exe).env(PROBE_ENV, &spec).output() {
            Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
            Err(e) => println!("{spec}: probe failed: {e}"),
        }
    }
    println!();
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("check_and_record");
    group.sample_size(50);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(5));

    for n in SIZES {
        let keys = random_keys(n, n as u64);
        let visit = shuffled(&keys, 1 + n as u64);
        let t0 = Instant::now();

        // The cap equals the fill, so that new keys keep the table at n by evicting.
        let limiter = LoginLimiter::new(5, WINDOW, n);
        for &key in &keys {
            limiter.check_and_record(key, t0);
        }
        assert_eq!(limiter.tracked_keys(), n);

        let (mut i, mut now) = (0usize, t0 + PASS);
        group.bench_function(BenchmarkId::new("existing_key_allowed", n), |b| {
            b.iter(|| {
                if i == n {
                    i = 0;
                    now += PASS;
                }
                let key = visit[i];
                i += 1;
                black_box(limiter.check_and_record(black_box(key), now))
            })
        });

        // Every key already has its five attempts inside the window.
        let limited = LoginLimiter::new(5, WINDOW, n);
        for _ in 0..5 {
            for &key in &keys {
                limited.check_and_record(key, t0);
            }
        }
        let mut j = 0usize;
        let later = t0 + Duration::from_secs(1);
        group.bench_function(BenchmarkId::new("existing_key_limited", n), |b| {
            b.iter(|| {
                if j == n {
                    j = 0;
                }
                let key = visit[j];
                j += 1;
                let decision = limited.check_and_record(black_box(key), later);
                debug_assert!(!decision.is_allowed());
                black_box(decision)
            })
        });
        drop(limited);

        // Never seen before: the table is full, so each one is an insert plus an eviction.
        let mut fresh: u128 = 0xfeed << 112;
        group.bench_function(BenchmarkId::new("new_key_at_cap", n), |b| {
            b.iter(|| {
                fresh += 1;
                black_box(limiter.check_and_record(black_box(fresh), now))
            })
        });
        assert!(limiter.tracked_keys() <= n);
    }
    group.finish();

    // Two cores on one limiter: the shards should keep them from queueing on one lock.
    let n = 1_000_000;
    let keys = random_keys(n, 11);
    let limiter = Arc::new(LoginLimiter::new(5, WINDOW, n));
    let t0 = Instant::now();
    for &key in &keys {
        limiter.check_and_record(key, t0);
    }
    // Each thread owns half the keys, so that its visits to a key stay a pass apart.
    let halves = Arc::new([shuffled(&keys[..n / 2], 12), shuffled(&keys[n / 2..], 13)]);
    let pass = Arc::new(AtomicU64::new(1));
    let mut group = c.benchmark_group("check_and_record_2_threads");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function(
        BenchmarkId::new("existing_key_allowed_throughput", n),
        |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let handles: Vec<_> = (0..2usize)
                    .map(|half| {
                        let (halves, limiter, pass) =
                            (halves.clone(), limiter.clone(), pass.clone());
                        std::thread::spawn(move || {
                            let visit = &halves[half];
                            let mut p = pass.load(Ordering::Relaxed);
                            let mut k = 0usize;
                            for _ in 0..iters / 2 {
                                if k == visit.len() {
                                    k = 0;
                                    p += 1;
                                }
                                let now = t0 + PASS * p as u32;
                                black_box(limiter.check_and_record(visit[k], now));
                                k += 1;
                            }
                            p
                        })
                    })
                    .collect();
                let last = handles
                    .into_iter()
                    .filter_map(|h| h.join().ok())
                    .max()
                    .unwrap_or(1);
                pass.store(last + 1, Ordering::Relaxed);
                // Wall time for `iters` decisions shared by two threads: the throughput cost.
                start.elapsed()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, decisions);

fn main() {
    if let Ok(spec) = std::env::var(PROBE_ENV) {
        probe(&spec);
        return;
    }
    report_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
