//! Jobs: methods that answer with a job id at once and finish in the background.
//!
//! The entry follows src/middlewared/middlewared/job.py `Job.__encode__`; `core.get_jobs`
//! (service/core_service.py) is a filterable query over them: a FULL_ADMIN sees every job,
//! anyone else only the jobs of its own credential (approximated here by the username).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::errors::{errname, TRACE_MARKER};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobState {
    Running,
    Success,
    Failed,
}

impl JobState {
    fn name(self) -> &'static str {
        match self {
            JobState::Running => "RUNNING",
            JobState::Success => "SUCCESS",
            JobState::Failed => "FAILED",
        }
    }
}

/// Why a job failed: the exception class, its errno, and `str(exception)`.
pub(super) struct JobError {
    pub class: &'static str,
    pub errno: i64,
    pub message: String,
    /// `ValidationError` carries `(attribute, message, errno)`.
    pub extra: Value,
}

impl JobError {
    /// `CallError.__str__`: `[ERRNAME] message`.
    pub fn call(errno: i64, message: &str) -> Self {
        JobError {
            class: "CallError",
            errno,
            message: format!("[{}] {message}", errname(errno)),
            extra: Value::Null,
        }
    }

    /// `ValidationError.__str__`: `[ERRNAME] attribute: message`.
    pub fn validation(attribute: &str, message: &str) -> Self {
        JobError {
            class: "ValidationError",
            errno: super::errors::EINVAL,
            message: format!("[EINVAL] {attribute}: {message}"),
            extra: json!([[attribute, message, super::errors::EINVAL]]),
        }
    }

    /// `ValidationErrors.__str__`: one `[ERRNAME] attribute: message` line each.
    pub fn validation_errors(attribute: &str, message: &str) -> Self {
        JobError {
            class: "ValidationErrors",
            errno: super::errors::EINVAL,
            message: format!("[EINVAL] {attribute}: {message}\n"),
            extra: json!([[attribute, message, super::errors::EINVAL]]),
        }
    }
}

pub(super) struct Job {
    pub id: u64,
    pub method: &'static str,
    pub arguments: Value,
    /// Username of the credential that started it.
    pub owner: String,
    /// `API_KEY` or `LOGIN_PASSWORD` (middlewared's credential class names).
    pub credential: &'static str,
    pub state: JobState,
    pub result: Value,
    pub error: Option<JobError>,
    pub time_started: SystemTime,
    pub time_finished: Option<SystemTime>,
}

impl Job {
    pub fn to_json(&self) -> Value {
        let (error, exception, exc_info) = match &self.error {
            None => (Value::Null, Value::Null, Value::Null),
            Some(e) => (
                json!(e.message),
                json!(format!(
                    "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/\
                     middlewared/job.py\", line 515, in run\n{}: {}\n# {TRACE_MARKER}\n",
                    e.class, e.message
                )),
                json!({"repr": format!("{}({:?})", e.class, e.message), "type": e.class,
                       "errno": e.errno, "extra": e.extra}),
            ),
        };
        json!({
            "id": self.id,
            "message_ids": [],
            "method": self.method,
            "arguments": self.arguments,
            "transient": false,
            "description": null,
            "abortable": false,
            "logs_path": null,
            "logs_excerpt": null,
            "progress": {"percent": if self.state == JobState::Running { 0 } else { 100 },
                         "description": "", "extra": null},
            "result": self.result,
            "result_encoding_error": null,
            "error": error,
            "exception": exception,
            "exc_info": exc_info,
            "state": self.state.name(),
            "time_started": date(self.time_started),
            "time_finished": self.time_finished.map(date),
            "credentials": {"type": self.credential, "data": {"username": self.owner}},
        })
    }
}

/// truenas_api_client's JSON encoder writes a datetime as `{"$date": <ms since the epoch>}`
/// (whole seconds: it goes through `calendar.timegm(timetuple())`).
pub(super) fn date(time: SystemTime) -> Value {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({"$date": seconds * 1000})
}
