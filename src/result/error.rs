//! `ResultError`: why waiting for a task's result did not give its value.

use std::time::Duration;

use derive_more::{Display, Error};

use crate::protocol::ExceptionInfo;

/// Why [`AsyncResult::get`](super::AsyncResult::get) did not answer the task's return value.
#[derive(Debug, Clone, Display, Error)]
pub enum ResultError {
    /// The task raised: the result is FAILURE.
    #[display("task {task_id} failed: {}", describe(exception))]
    Failed {
        /// The task id.
        task_id: String,
        /// The exception as the worker reported it (type, module, arguments).
        #[error(not(source))]
        exception: ExceptionInfo,
        /// The worker's traceback, when it sent one.
        #[error(not(source))]
        traceback: Option<String>,
    },
    /// The task was revoked, or expired before it ran: the result is REVOKED.
    #[display("task {task_id} was revoked: {}", describe(exception))]
    Revoked {
        /// The task id.
        task_id: String,
        /// The exception the worker stored, usually `TaskRevokedError` from `celery.exceptions`.
        #[error(not(source))]
        exception: ExceptionInfo,
    },
    /// No ready result arrived in time.
    #[display(
        "no result for task {task_id} within {waited:?} (is a worker consuming the task's queue, \
         and did the task message carry this producer's reply queue?)"
    )]
    Timeout {
        /// The task id.
        task_id: String,
        /// How long `get` waited.
        waited: Duration,
    },
    /// The stored result cannot be read: the backend is unreachable, or the document
    /// stored for the task is not a result document (Redis backend).
    #[display("the result of task {task_id} cannot be read: {reason}")]
    Backend {
        /// The task id.
        task_id: String,
        /// What went wrong, password masked.
        reason: String,
    },
    /// The reply queue is no longer consumed (the broker connection closed, or its consumer
    /// failed more often than its restart policy allows), so no result can arrive.
    #[display("the result of task {task_id} cannot arrive: {reason}")]
    Unavailable {
        /// The task id.
        task_id: String,
        /// Why the reply queue is not consumed.
        reason: String,
    },
}

impl ResultError {
    /// The exception of a failed or revoked task.
    pub fn exception(&self) -> Option<&ExceptionInfo> {
        match self {
            ResultError::Failed { exception, .. } | ResultError::Revoked { exception, .. } => {
                Some(exception)
            }
            ResultError::Timeout { .. }
            | ResultError::Unavailable { .. }
            | ResultError::Backend { .. } => None,
        }
    }

    /// The id of the task this error is about.
    pub fn task_id(&self) -> &str {
        match self {
            ResultError::Failed { task_id, .. }
            | ResultError::Revoked { task_id, .. }
            | ResultError::Timeout { task_id, .. }
            | ResultError::Unavailable { task_id, .. }
            | ResultError::Backend { task_id, .. } => task_id,
        }
    }
}

/// `ValueError: boom (builtins)`; the module is left out when the sender omitted it.
fn describe(exception: &ExceptionInfo) -> String {
    if exception.exc_module.is_empty() {
        exception.to_string()
    } else {
        format!("{exception} ({})", exception.exc_module)
    }
}
