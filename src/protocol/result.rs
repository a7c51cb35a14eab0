//! Result documents (docs/wire-protocol.md §2.1), as published to the rpc:// reply queue.

use std::fmt;

use chrono::Utc;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

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
/// `{"status", "result", "traceback", "children", "date_done", "task_id"}`, with
/// `group_id` and `parent_id` when the task had them and the request's fields
/// ([`ExtendedMeta`]) with `result_extended`, in Celery's key order.
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
    /// The group the task belongs to (its message's `group` header), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The task that sent this one (its message's `parent_id` header), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// What `result_extended` adds (`name`, `args`, `kwargs`, `worker`, `retries`,
    /// `queue`); `None` when the document has no `name` key (written without it).
    #[serde(flatten)]
    pub extended: Option<ExtendedMeta>,
    /// The task id (the Python client matches replies on it).
    pub task_id: String,
}

/// The task request's fields that Celery's `result_extended` adds to result documents,
/// written in this order between `date_done` (or `parent_id`) and `task_id`. Each may be
/// `null`: Celery writes all six as `null` for a task the worker does not know
/// (`NotRegistered`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ExtendedMeta {
    /// The task's name (Python's `AsyncResult.name`). Its key must be present for the
    /// document to count as extended.
    #[serde(deserialize_with = "nullable")]
    pub name: Option<String>,
    /// Positional arguments as received (`AsyncResult.args`); `null` for arguments that
    /// are not JSON (bincode).
    #[serde(default)]
    pub args: Option<Vec<Value>>,
    /// Keyword arguments as received (`AsyncResult.kwargs`); `null` for bincode.
    #[serde(default)]
    pub kwargs: Option<Map<String, Value>>,
    /// The node name of the worker that ran the task (`AsyncResult.worker`), e.g.
    /// `celeriac@host` or `celery@host`.
    #[serde(default)]
    pub worker: Option<String>,
    /// How many times the task was retried before this run (`AsyncResult.retries`).
    #[serde(default)]
    pub retries: Option<u64>,
    /// The routing key the message was delivered with (`AsyncResult.queue`).
    #[serde(default)]
    pub queue: Option<String>,
    /// The names of the message's stamps, written (with each stamp's value after it) only
    /// when the message has stamps, as Celery does.
    #[serde(default)]
    pub stamped_headers: Option<Vec<String>>,
    /// The stamps' values by name (written after `stamped_headers`; not read back: a
    /// document's other keys cannot be told from stamps).
    #[serde(skip)]
    pub stamps: Map<String, Value>,
}

impl Serialize for ExtendedMeta {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("args", &self.args)?;
        map.serialize_entry("kwargs", &self.kwargs)?;
        map.serialize_entry("worker", &self.worker)?;
        map.serialize_entry("retries", &self.retries)?;
        map.serialize_entry("queue", &self.queue)?;
        if !self.stamps.is_empty() {
            map.serialize_entry("stamped_headers", &self.stamped_headers)?;
            for (stamp, value) in &self.stamps {
                map.serialize_entry(stamp, value)?;
            }
        }
        map.end()
    }
}

/// A value whose key must be present, `null` allowed.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
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
            group_id: None,
            parent_id: None,
            extended: None,
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
