//! `mail.send` is a job (plugins/mail.py `send`, `@job`): the call answers a job id at once,
//! and the mail is sent inside the job. `core.get_jobs [[["id","=",ID]]]` tells how it ended
//! (`core.job_wait` would itself be a job, so polling is the plain way).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::NasError;

/// Between two looks at the job: an SMTP exchange takes a fraction of a second to seconds.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The `mail.send` message: plain text to one address, never queued for a later retry (a
/// reset link that arrives an hour late has expired), with TrueNAS' SMTP timeout matched to
/// ours.
pub fn message(to: &str, subject: &str, text: &str, timeout: Duration) -> Value {
    json!([{
        "subject": subject,
        "text": text,
        "to": [to],
        "queue": false,
        "timeout": timeout.as_secs().max(1),
    }])
}

/// What one `core.get_jobs` entry says: `None` while it runs.
pub fn outcome(jobs: &Value, id: i64) -> Result<Option<Result<(), NasError>>, NasError> {
    let job = jobs
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|j| j.get("id").and_then(Value::as_i64) == Some(id))
        })
        .ok_or_else(|| NasError::Protocol(format!("core.get_jobs does not know job {id}")))?;
    let state = job.get("state").and_then(Value::as_str).unwrap_or_default();
    Ok(match state {
        "SUCCESS" => Some(Ok(())),
        "FAILED" | "ABORTED" => {
            let reason = job
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or(state)
                .trim()
                .to_string();
            Some(Err(NasError::Call {
                method: String::from("mail.send"),
                errname: errname_of(&reason),
                reason,
            }))
        }
        _ => None,
    })
}

/// `[EFAULT] You must provide …` → `EFAULT` (`CallError.__str__`).
fn errname_of(reason: &str) -> String {
    reason
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| String::from("EFAULT"))
}

/// Runs `mail.send` through `call` and waits for its job, up to `timeout` plus a little for
/// TrueNAS' own bookkeeping.
pub async fn send_and_wait<F, Fut>(
    call: F,
    to: &str,
    subject: &str,
    text: &str,
    timeout: Duration,
) -> Result<(), NasError>
where
    F: Fn(&'static str, Value) -> Fut,
    Fut: std::future::Future<Output = Result<Value, NasError>>,
{
    let id = call("mail.send", message(to, subject, text, timeout)).await?;
    let id = id
        .as_i64()
        .ok_or_else(|| NasError::Protocol(String::from("mail.send did not answer a job id")))?;
    let deadline = Instant::now() + timeout + Duration::from_secs(5);
    loop {
        let jobs = call("core.get_jobs", json!([[["id", "=", id]]])).await?;
        if let Some(result) = outcome(&jobs, id)? {
            return result;
        }
        if Instant::now() >= deadline {
            return Err(NasError::Unavailable(format!(
                "mail.send job {id} still running after {} s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_job_carries_truenas_reason() {
        let jobs = json!([{"id": 7, "state": "FAILED",
            "error": "[EFAULT] You must provide an outgoing mailserver and mail server port when sending mail"}]);
        match outcome(&jobs, 7) {
            Ok(Some(Err(NasError::Call {
                errname, reason, ..
            }))) => {
                assert_eq!(errname, "EFAULT");
                assert!(reason.contains("outgoing mailserver"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn running_and_success() {
        assert!(matches!(
            outcome(&json!([{"id": 1, "state": "RUNNING"}]), 1),
            Ok(None)
        ));
        assert!(matches!(
            outcome(&json!([{"id": 1, "state": "SUCCESS"}]), 1),
            Ok(Some(Ok(())))
        ));
        assert!(outcome(&json!([]), 1).is_err());
    }

    #[test]
    fn the_message_is_never_queued() {
        let m = message("a@example.org", "s", "t", Duration::from_secs(30));
        assert_eq!(m[0]["queue"], json!(false));
        assert_eq!(m[0]["to"], json!(["a@example.org"]));
    }
}
