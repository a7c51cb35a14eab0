//! Exceptions as they travel in result documents (docs/wire-protocol.md §2.3).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A task error in Celery's form:
/// `{"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}`.
///
/// The Python client looks up `exc_module` in `sys.modules` and the class
/// `exc_type` in it, and raises `exc_type(*exc_message)`; an unknown class
/// becomes a synthetic class of that name. Always send `exc_module`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    /// The exception class name (`__qualname__`), e.g. `"ValueError"`.
    pub exc_type: String,
    /// The exception's `args`. A plain string on the wire becomes one element.
    #[serde(default, deserialize_with = "deserialize_exc_message")]
    pub exc_message: Vec<Value>,
    /// The module of the class, e.g. `"builtins"` or `"celery.exceptions"`
    /// (empty when the sender omitted it).
    #[serde(default)]
    pub exc_module: String,
}

impl ExceptionInfo {
    /// An exception of class `exc_type` in module `exc_module` with one message argument.
    pub fn new(
        exc_type: impl Into<String>,
        exc_module: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            exc_type: exc_type.into(),
            exc_message: vec![Value::String(message.into())],
            exc_module: exc_module.into(),
        }
    }

    /// `TaskRevokedError([reason])` from `celery.exceptions`, stored for revoked tasks
    /// (`"revoked"`, `"terminated"`).
    pub fn revoked(reason: &str) -> Self {
        Self::new("TaskRevokedError", "celery.exceptions", reason)
    }

    /// `TaskRevokedError(["expired"])` from `celery.exceptions`, stored for expired tasks.
    pub fn revoked_expired() -> Self {
        Self::new("TaskRevokedError", "celery.exceptions", "expired")
    }

    /// `NotRegistered([task_name])` from `celery.exceptions`, for unknown task names.
    pub fn not_registered(task_name: &str) -> Self {
        Self::new("NotRegistered", "celery.exceptions", task_name)
    }

    /// Read an exception from a result document's `result` value, `None` if
    /// it does not look like one (no `exc_type`).
    pub fn from_value(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    /// The exception as a JSON value (for a result document's `result`).
    pub fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("exc_type".to_owned(), Value::String(self.exc_type.clone()));
        map.insert(
            "exc_message".to_owned(),
            Value::Array(self.exc_message.clone()),
        );
        map.insert(
            "exc_module".to_owned(),
            Value::String(self.exc_module.clone()),
        );
        Value::Object(map)
    }
}

impl fmt::Display for ExceptionInfo {
    /// `ValueError: boom`, or `ProbeError: 42, detail` (Python's `str(exc)` style).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.exc_type)?;
        let parts: Vec<String> = self
            .exc_message
            .iter()
            .map(|part| match part {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect();
        if !parts.is_empty() {
            write!(f, ": {}", parts.join(", "))?;
        }
        Ok(())
    }
}

fn deserialize_exc_message<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Value>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    })
}
