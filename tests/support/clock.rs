//! Wall-clock time as the audit store keeps it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the unit of the audit rows' timestamps.
pub fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Waits out the last second of a 30 s step, so a code computed now is checked in the same
/// step by the server (the requests that follow take milliseconds).
pub async fn clear_of_step_edge() {
    if unix_now() % 30 >= 28 {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The code `steps` steps away from now, from oathtool.
pub async fn oath(secret: &str, steps: i64) -> String {
    clear_of_step_edge().await;
    let at = unix_now() as i64 + steps * 30;
    let output = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "-N", &format!("@{at}"), secret])
        .output()
        .expect("oathtool is needed (scripts/test installs it)");
    assert!(output.status.success(), "oathtool failed: {output:?}");
    String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}
