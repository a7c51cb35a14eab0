//! `TaskError`: how a task fails, in terms Python Celery understands (an exception class
//! and its module, PROTOCOL.md section 2.3).

use std::fmt;

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
        }
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
