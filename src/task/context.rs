//! `TaskContext`: what a running task knows about its request.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::protocol::amqp::amqp_to_json;
use crate::protocol::TaskHeaders;

/// The request a task is running for.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task id (a UUID string).
    pub id: String,
    /// The registered task name.
    pub name: String,
    /// How many times this task was retried before this run.
    pub retries: u32,
    /// When the task was scheduled to run, if it had an ETA or countdown.
    pub eta: Option<DateTime<Utc>>,
    /// After this instant the task is not run.
    pub expires: Option<DateTime<Utc>>,
    /// The id of the task that sent this one.
    pub parent_id: Option<String>,
    /// The id of the first task of the workflow.
    pub root_id: Option<String>,
    /// The queue the task was consumed from.
    pub queue: String,
    /// The message's AMQP priority, if it had one.
    pub priority: Option<u8>,
    /// Custom headers the producer added (`apply_async(headers={...})` in Python), as JSON.
    pub headers: BTreeMap<String, Value>,
}

impl TaskContext {
    /// The context of a request with these headers, consumed from `queue`.
    pub fn from_headers(headers: &TaskHeaders, queue: &str) -> Self {
        TaskContext {
            id: headers.id.clone(),
            name: headers.task.clone(),
            retries: headers.retries,
            eta: headers.eta,
            expires: headers.expires,
            parent_id: headers.parent_id.clone(),
            root_id: headers.root_id.clone(),
            queue: queue.to_string(),
            priority: None,
            headers: headers
                .extra
                .iter()
                .map(|(name, value)| (name.clone(), amqp_to_json(value)))
                .collect(),
        }
    }
}
