//! State shared by every connection of one fake.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::watch;

use super::jobs::Job;
use super::options::{FakeOptions, MailSettings, SentMail};
use super::rate_limit::RateLimitTable;
use super::users::StoredUser;
use super::Flavour;

pub(super) struct Shared {
    pub flavour: Flavour,
    pub api_user: String,
    pub api_key: String,
    pub failure_delay: Duration,
    pub rate_limit_sleep: (Duration, Duration),
    pub scram_iterations: u32,
    pub scram_wrong_signature: bool,
    /// Derived on first use: 500,000 PBKDF2 rounds are too slow to pay at every fake's start.
    scram: tokio::sync::OnceCell<super::scram::ScramCredentials>,
    /// Highest number of calls running at once on one connection, over all connections.
    pub max_running: AtomicUsize,
    /// Whether the fake plays "unreachable"; every connection watches it.
    availability: watch::Sender<Availability>,
    inner: Mutex<Inner>,
    /// Every "dataset" of this fake: homes on a dataset live under it.
    pub datasets: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug, Default)]
struct Availability {
    down: bool,
    /// How many times the fake went down. A connection dies when this moves past the value
    /// it saw when accepted, so even a quick down/up toggle kills it.
    outages: u64,
}

/// Mutable state. Guarded by a std mutex that is never held across an `.await`.
pub(super) struct Inner {
    pub users: Vec<StoredUser>,
    pub key_revoked: bool,
    pub fail_next: Option<Vec<String>>,
    /// The next password change is applied and its answer never sent.
    pub lose_next_answer: bool,
    pub calls: Vec<String>,
    /// Process memory of middlewared: emptied by a restart.
    pub rate_limit: RateLimitTable,
    /// "Rate Limit Exceeded" answers sent.
    pub rate_limited: usize,
    /// Calls the rate limiter counted (unauthenticated calls of rate-limited methods).
    pub unauthenticated_calls: usize,
    /// `system.security` `max_password_age`.
    pub max_password_age: Option<u32>,
    pub mail: Option<MailSettings>,
    pub sent_mail: Vec<SentMail>,
    /// Jobs are process memory too (`middleware.jobs`).
    pub jobs: Vec<Job>,
    /// What middlewared would have logged as a warning (e.g. a private method called).
    pub warnings: Vec<String>,
}

impl Shared {
    pub fn new(options: &FakeOptions, api_user: &str, mut users: Vec<StoredUser>) -> Shared {
        let datasets = tempfile::tempdir().expect("the fake's datasets");
        for user in &mut users {
            user.home = super::ssh_keys::home_for(
                datasets.path(),
                &user.profile.username,
                user.profile.home,
            );
        }
        // Real keys are `<id>-<64 chars>`; the id lets the server find the key row.
        let api_key = format!("1-{}", Alphanumeric.sample_string(&mut rand::rng(), 64));
        Shared {
            flavour: options.flavour,
            api_user: api_user.to_owned(),
            api_key,
            failure_delay: options.failure_delay,
            rate_limit_sleep: options.rate_limit_sleep,
            scram_iterations: options.scram_iterations,
            scram_wrong_signature: options.scram_wrong_signature,
            scram: tokio::sync::OnceCell::new(),
            max_running: AtomicUsize::new(0),
            availability: watch::Sender::new(Availability::default()),
            datasets,
            inner: Mutex::new(Inner {
                users,
                key_revoked: false,
                fail_next: None,
                lose_next_answer: false,
                calls: Vec::new(),
                rate_limit: RateLimitTable::new(options.rate_limit_window),
                rate_limited: 0,
                unauthenticated_calls: 0,
                max_password_age: options.max_password_age,
                mail: options.mail.clone(),
                sent_mail: Vec::new(),
                jobs: Vec::new(),
                warnings: Vec::new(),
            }),
        }
    }

    /// The API key's SCRAM credentials (secret: the part after `ID-`), as the key row holds.
    pub async fn scram_credentials(&self) -> super::scram::ScramCredentials {
        self.scram
            .get_or_init(|| async {
                let secret = self
                    .api_key
                    .split_once('-')
                    .map(|(_, k)| k.to_owned())
                    .unwrap_or_default();
                let iterations = self.scram_iterations;
                tokio::task::spawn_blocking(move || {
                    super::scram::scram_credentials(&secret, &super::scram::new_salt(), iterations)
                })
                .await
                .expect("SCRAM derivation finished")
            })
            .await
            .clone()
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread may poison the lock; the data is still usable for the rest.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record(&self, call: String) {
        self.lock().calls.push(call);
    }

    /// Is `key` the (unrevoked) key of `username`?
    pub fn key_matches(&self, username: &str, key: &str) -> bool {
        username == self.api_user && key == self.api_key && !self.lock().key_revoked
    }

    /// Same check for callers that only have the key (REST bearer, `login_with_api_key`).
    pub fn key_valid(&self, key: &str) -> bool {
        key == self.api_key && !self.lock().key_revoked
    }

    pub fn set_down(&self, down: bool) {
        self.availability.send_modify(|a| {
            if down && !a.down {
                a.outages += 1;
            }
            a.down = down;
        });
    }

    /// Kills every open connection without going down (a restart closes the listeners
    /// itself).
    pub fn drop_connections(&self) {
        self.availability.send_modify(|a| a.outages += 1);
    }

    /// A failed login's delay: uniform(d, 2d), which is AAL1's uniform(1, 2) s for d = 1 s.
    pub async fn failure_sleep(&self) {
        tokio::time::sleep(uniform(self.failure_delay, self.failure_delay * 2)).await;
    }

    pub fn note_running(&self, running: usize) {
        self.max_running.fetch_max(running, Ordering::Relaxed);
    }

    /// `None` while down; otherwise the outage count to pass to [`Shared::outage_after`].
    pub fn epoch_if_up(&self) -> Option<u64> {
        let availability = *self.availability.borrow();
        (!availability.down).then_some(availability.outages)
    }

    /// Resolves once an outage begins after `epoch` (or the fake is dropped).
    pub fn outage_after(&self, epoch: u64) -> impl Future<Output = ()> + Send + 'static {
        let mut availability = self.availability.subscribe();
        async move {
            // An error means the sender is gone: the fake was dropped, which is "down" too.
            let _ = availability
                .wait_for(|a| a.down || a.outages != epoch)
                .await;
        }
    }
}

impl Inner {
    pub fn user_by_name(&self, username: &str) -> Option<&StoredUser> {
        self.users.iter().find(|u| u.profile.username == username)
    }

    pub fn user_by_name_mut(&mut self, username: &str) -> Option<&mut StoredUser> {
        self.users
            .iter_mut()
            .find(|u| u.profile.username == username)
    }
}

/// A uniformly random duration in `[low, high]` (`low` when the range is empty).
pub(super) fn uniform(low: Duration, high: Duration) -> Duration {
    use rand::Rng;
    if high <= low {
        return low;
    }
    let spread = (high - low).as_secs_f64();
    low + Duration::from_secs_f64(rand::rng().random_range(0.0..=spread))
}
