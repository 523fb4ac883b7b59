//! The cost of one TrueNAS password-hash check (SHA-512 crypt, 656,000 rounds): pwhash,
//! which the `unixhash` verifier uses, against the system's libxcrypt `crypt_rn` called
//! through FFI, on the same hash and machine. Prints verifications per second per core.
//!
//! Run with `cargo bench --bench crypt`.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;

#[link(name = "crypt")]
extern "C" {
    /// libxcrypt: `crypt_rn(phrase, setting, data, size)`; NULL on failure.
    fn crypt_rn(
        phrase: *const c_char,
        setting: *const c_char,
        data: *mut c_void,
        size: c_int,
    ) -> *mut c_char;
}

/// `sizeof(struct crypt_data)` in libxcrypt 4.x is 32768; crypt_rn checks what it gets.
const CRYPT_DATA_SIZE: usize = 32_768;
const PASSWORD: &str = "correct horse battery staple";
const SETTING: &str = "$6$rounds=656000$passgatebenchslt";

// The one unsafe block in the repository: the reference implementation is only reachable
// through FFI, and the bench exists to compare against it.
#[allow(unsafe_code)]
fn libxcrypt(password: &str, setting: &str) -> Option<String> {
    let phrase = CString::new(password).ok()?;
    let setting = CString::new(setting).ok()?;
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: both strings are NUL-terminated and outlive the call; `data` is a writable
    // buffer of the size passed; the result points into `data`, copied before it is freed.
    unsafe {
        let out = crypt_rn(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.as_mut_ptr().cast(),
            CRYPT_DATA_SIZE as c_int,
        );
        if out.is_null() {
            return None;
        }
        CStr::from_ptr(out).to_str().ok().map(str::to_owned)
    }
}

fn libxcrypt_verify(password: &str, hash: &str) -> bool {
    libxcrypt(password, hash).is_some_and(|h| h == hash)
}

fn main() {
    let hash = pwhash::sha512_crypt::hash_with(SETTING, PASSWORD).expect("pwhash");
    // Both implementations must agree before their speed means anything.
    assert_eq!(
        libxcrypt(PASSWORD, SETTING).as_deref(),
        Some(hash.as_str()),
        "libxcrypt and pwhash disagree"
    );
    assert!(pwhash::sha512_crypt::verify(PASSWORD, &hash));
    assert!(!libxcrypt_verify("wrong", &hash));
    // Under `cargo test --all-targets` (no `--bench`), the agreement above is the test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("crypt: pwhash and libxcrypt agree; timings only under `cargo bench`");
        return;
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    let mut group = c.benchmark_group("sha512_crypt_656000");
    group.bench_function("pwhash", |b| {
        b.iter(|| pwhash::sha512_crypt::verify(black_box(PASSWORD), black_box(&hash)))
    });
    group.bench_function("libxcrypt_crypt_rn", |b| {
        b.iter(|| libxcrypt_verify(black_box(PASSWORD), black_box(&hash)))
    });
    group.finish();
    c.final_summary();

    // A plain-timer cross-check that also gives the figure operators ask for.
    for (name, f) in [
        (
            "pwhash",
            &(|| pwhash::sha512_crypt::verify(PASSWORD, &hash)) as &dyn Fn() -> bool,
        ),
        (
            "libxcrypt",
            &(|| libxcrypt_verify(PASSWORD, &hash)) as &dyn Fn() -> bool,
        ),
    ] {
        let mut times: Vec<f64> = (0..7)
            .map(|_| {
                let start = std::time::Instant::now();
                assert!(black_box(f()));
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{name}: median {:.1} ms per check, {:.2} verifications per second per core",
            median * 1000.0,
            1.0 / median
        );
    }
}
