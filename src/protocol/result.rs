//! Result documents (docs/wire-protocol.md §2.1), as published to the rpc:// reply queue.

use std::fmt;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ProtocolError;
use super::exception::ExceptionInfo;
use super::json_cost::check_parsed_size;
use super::message::{DEFAULT_MAX_BODY_SIZE, PARSED_SIZE_FACTOR};
use super::time::format_datetime;

/// The state of a task, as stored in results (`"SUCCESS"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Unknown task / no result yet (never stored).
    Pending,
    /// Received by a worker (an event-only state, never stored).
    Received,
    /// Started by a worker (only with `task_track_started`).
    Started,
    /// Finished; `result` is the return value.
    Success,
    /// Raised; `result` is the exception.
    Failure,
    /// Will be retried; `result` is the exception.
    Retry,
    /// Revoked (or expired); `result` is the exception.
    Revoked,
    /// Rejected (internal state).
    Rejected,
    /// Ignored (internal state).
    Ignored,
}

impl TaskState {
    /// The state as written on the wire, e.g. `"SUCCESS"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Received => "RECEIVED",
            TaskState::Started => "STARTED",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Retry => "RETRY",
            TaskState::Revoked => "REVOKED",
            TaskState::Rejected => "REJECTED",
            TaskState::Ignored => "IGNORED",
        }
    }

    /// Whether the task is finished: SUCCESS, FAILURE or REVOKED (Celery's READY_STATES).
    pub fn is_ready(&self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }

    /// Whether `result` holds an exception: RETRY, FAILURE or REVOKED (EXCEPTION_STATES).
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            TaskState::Retry | TaskState::Failure | TaskState::Revoked
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result document of docs/wire-protocol.md §2.1:
/// `{"status", "result", "traceback", "children", "date_done", "task_id"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMessage {
    /// The task's state.
    pub status: TaskState,
    /// SUCCESS: the return value; FAILURE/RETRY/REVOKED: the exception
    /// (see [`ExceptionInfo`]); STARTED: `{"pid", "hostname"}`.
    #[serde(default)]
    pub result: Value,
    /// Traceback text, or null.
    #[serde(default)]
    pub traceback: Option<String>,
    /// Result tuples of child tasks (`[[id, parent], group]`), usually empty. Read as
    /// empty when `null` (what Python's `backend.store_result` writes without a request).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub children: Vec<Value>,
    /// ISO 8601 completion time with `+00:00`, only for ready states.
    #[serde(default)]
    pub date_done: Option<String>,
    /// The task id (the Python client matches replies on it).
    pub task_id: String,
}

/// A list, with `null` read as an empty one.
fn null_as_empty<'de, D>(deserializer: D) -> Result<Vec<Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<Vec<Value>>::deserialize(deserializer)?.unwrap_or_default())
}

impl ResultMessage {
    /// A result in `status` with `result`; `date_done` is now for ready states.
    pub fn new(task_id: impl Into<String>, status: TaskState, result: Value) -> Self {
        Self {
            status,
            result,
            traceback: None,
            children: Vec::new(),
            date_done: status.is_ready().then(|| format_datetime(&Utc::now())),
            task_id: task_id.into(),
        }
    }

    /// A SUCCESS result holding the task's return value.
    pub fn success(task_id: impl Into<String>, result: Value) -> Self {
        Self::new(task_id, TaskState::Success, result)
    }

    /// A result in an exception state (FAILURE, RETRY, REVOKED) with its traceback.
    pub fn exception(
        task_id: impl Into<String>,
        status: TaskState,
        exception: &ExceptionInfo,
        traceback: Option<String>,
    ) -> Self {
        let mut message = Self::new(task_id, status, exception.to_value());
        message.traceback = traceback;
        message
    }

    /// A STARTED result: `{"pid": pid, "hostname": hostname}`.
    pub fn started(task_id: impl Into<String>, pid: u32, hostname: &str) -> Self {
        Self::new(
            task_id,
            TaskState::Started,
            serde_json::json!({"pid": pid, "hostname": hostname}),
        )
    }

    /// The exception of an exception state, `None` otherwise.
    pub fn exception_info(&self) -> Option<ExceptionInfo> {
        if self.status.is_exception() {
            ExceptionInfo::from_value(&self.result)
        } else {
            None
        }
    }

    /// Serialize as JSON bytes (the rpc:// message body).
    pub fn to_json(&self) -> Result<Vec<u8>, ProtocolError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Parse JSON bytes (an rpc:// message body).
    pub fn from_json(body: &[u8]) -> Result<Self, ProtocolError> {
        // Anyone who can publish to a reply queue or write a Redis key can send anything:
        // bound what parsing costs, as for task messages.
        if body.len() > DEFAULT_MAX_BODY_SIZE {
            return Err(ProtocolError::TooLarge {
                size: body.len(),
                limit: DEFAULT_MAX_BODY_SIZE,
            });
        }
        check_parsed_size(
            body,
            DEFAULT_MAX_BODY_SIZE.saturating_mul(PARSED_SIZE_FACTOR),
        )?;
        serde_json::from_slice(body).map_err(|e| ProtocolError::InvalidJson {
            reason: e.to_string(),
        })
    }
}
