//! `TaskError`: how a task fails, in terms Python Celery understands (an exception class
//! and its module, docs/wire-protocol.md §2.3).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// What the worker does with a task that ended in a `TaskError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorAction {
    /// The task failed: FAILURE result, `on_failure`.
    #[default]
    Fail,
    /// Run it again later (same id, retries + 1), within the task's `max_retries`.
    Retry(RetryAt),
    /// Reject the message: requeued, or dropped / dead-lettered (Celery's `Reject`).
    Reject {
        /// Put the message back in its queue.
        requeue: bool,
    },
    /// Ack the message and store nothing (Celery's `Ignore`).
    Ignore,
}

/// When a retried task runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAt {
    /// After the task's backoff delay for this attempt.
    Backoff,
    /// After this delay (Celery's `countdown`).
    After(Duration),
    /// At this instant (Celery's `eta`).
    Eta(DateTime<Utc>),
}

/// A task's failure. `exc_type` and `exc_module` say which Python exception a Python
/// client raises for it: builtins such as `ValueError` map to the real class; any other
/// module gives a synthetic class of that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// The exception class name, e.g. `ValueError`.
    pub exc_type: String,
    /// The module of the class, e.g. `builtins`, `celery.exceptions`, `rust`.
    pub exc_module: String,
    /// The error message (the exception's single argument).
    pub message: String,
    /// What the worker does next: fail (default), retry, reject or ignore.
    pub action: ErrorAction,
}

impl TaskError {
    /// An error of the given Python class.
    pub fn new(
        exc_type: impl Into<String>,
        exc_module: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        TaskError {
            exc_type: exc_type.into(),
            exc_module: exc_module.into(),
            message: message.into(),
            action: ErrorAction::Fail,
        }
    }

    /// Marks the error retryable: the task runs again after its backoff delay, unless it
    /// has used up its `max_retries` (then it fails with this error).
    pub fn retryable(mut self) -> Self {
        self.action = ErrorAction::Retry(RetryAt::Backoff);
        self
    }

    /// Retries the task after `countdown` (Celery's `self.retry(countdown=...)`).
    pub fn retry_in(mut self, countdown: Duration) -> Self {
        self.action = ErrorAction::Retry(RetryAt::After(countdown));
        self
    }

    /// Retries the task at `eta` (Celery's `self.retry(eta=...)`).
    pub fn retry_at(mut self, eta: DateTime<Utc>) -> Self {
        self.action = ErrorAction::Retry(RetryAt::Eta(eta));
        self
    }

    /// Celery's `Reject(reason, requeue)`: the message is rejected; without requeue it is
    /// dropped or dead-lettered and the task gets a FAILURE `Reject` result.
    pub fn reject(reason: impl Into<String>, requeue: bool) -> Self {
        let mut error = Self::new("Reject", "celery.exceptions", reason);
        error.action = ErrorAction::Reject { requeue };
        error
    }

    /// Celery's `Ignore()`: the message is acked and no result is stored.
    pub fn ignore() -> Self {
        let mut error = Self::new("Ignore", "celery.exceptions", "ignored");
        error.action = ErrorAction::Ignore;
        error
    }

    /// Python's `ValueError(message)`.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::new("ValueError", "builtins", message)
    }

    /// Python's `TypeError(message)`: what wrong arguments give.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", "builtins", message)
    }

    /// Python's `RuntimeError(message)`: a generic failure.
    pub fn runtime_error(message: impl Into<String>) -> Self {
        Self::new("RuntimeError", "builtins", message)
    }

    /// Celery's `NotRegistered(name)`: no task of that name on this worker.
    pub fn not_registered(name: impl Into<String>) -> Self {
        Self::new("NotRegistered", "celery.exceptions", name)
    }

    /// A task that panicked; Python sees `rust.TaskPanicked(message)`.
    pub fn panicked(message: impl Into<String>) -> Self {
        Self::new("TaskPanicked", "rust", message)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.exc_type, self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        TaskError::runtime_error(message)
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> Self {
        TaskError::runtime_error(message)
    }
}
