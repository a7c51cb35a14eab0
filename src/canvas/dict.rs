//! `SignatureDict`: a task call as Celery serializes it inside messages
//! (docs/wire-protocol.md §3): `{"task", "args", "kwargs", "options", "subtask_type",
//! "immutable"}`, with groups, chains and chords as the same shape with
//! `subtask_type` set and their parts in `kwargs`.

use serde_json::{Map, Value};

use super::error::CanvasError;

/// A signature as Celery writes it. Options are kept as the JSON object they came in, so
/// that what celeriac does not interpret still reaches the next worker unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureDict {
    /// The task name (`celery.group`, `celery.chain`, `celery.chord` for canvases).
    pub task: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments (for canvases: their parts, e.g. `tasks`, `header`, `body`).
    pub kwargs: Map<String, Value>,
    /// `apply_async` options: `task_id`, `group_id`, `link`, `chain`, `queue`, ...
    pub options: Map<String, Value>,
    /// `None` for a task; `"group"`, `"chain"` or `"chord"` for canvases.
    pub subtask_type: Option<String>,
    /// Whether a parent's result must not be prepended to `args`.
    pub immutable: bool,
}

/// Option keys a call does not override when the signature has them (Celery's
/// `Signature._IMMUTABLE_OPTIONS`).
const IMMUTABLE_OPTIONS: [&str; 2] = ["group_id", "stamped_headers"];

impl SignatureDict {
    /// A call of `task` with these arguments and no options.
    pub fn new(task: impl Into<String>, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        SignatureDict {
            task: task.into(),
            args,
            kwargs,
            options: Map::new(),
            subtask_type: None,
            immutable: false,
        }
    }

    /// Reads a signature; `Err` names what is wrong. Missing `args`, `kwargs` and
    /// `options` read as empty, as Celery reads them.
    pub fn from_value(value: &Value) -> Result<Self, CanvasError> {
        let Value::Object(object) = value else {
            return Err(CanvasError::malformed(format!(
                "a signature must be a JSON object, not {}",
                kind(value)
            )));
        };
        let task = match object.get("task") {
            Some(Value::String(task)) if !task.is_empty() => task.clone(),
            Some(other) if !other.is_null() => {
                return Err(CanvasError::malformed(format!(
                    "a signature's \"task\" must be a string, not {}",
                    kind(other)
                )))
            }
            _ => return Err(CanvasError::malformed("a signature without a task name")),
        };
        let args = match object.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(args)) => args.clone(),
            Some(other) => {
                return Err(CanvasError::malformed(format!(
                    "the args of {task} must be a list, not {}",
                    kind(other)
                )))
            }
        };
        let kwargs = object_field(object, "kwargs", &task)?;
        let options = object_field(object, "options", &task)?;
        let subtask_type = match object.get("subtask_type") {
            None | Some(Value::Null) => None,
            Some(Value::String(kind)) => Some(kind.clone()),
            Some(other) => {
                return Err(CanvasError::malformed(format!(
                    "the subtask_type of {task} must be a string, not {}",
                    kind(other)
                )))
            }
        };
        let immutable = object
            .get("immutable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(SignatureDict {
            task,
            args,
            kwargs,
            options,
            subtask_type,
            immutable,
        })
    }

    /// The signature as Celery writes it (keys in Celery's order).
    pub fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("task".into(), Value::String(self.task.clone()));
        object.insert("args".into(), Value::Array(self.args.clone()));
        object.insert("kwargs".into(), Value::Object(self.kwargs.clone()));
        object.insert("options".into(), Value::Object(self.options.clone()));
        object.insert(
            "subtask_type".into(),
            self.subtask_type.clone().map_or(Value::Null, Value::String),
        );
        object.insert("immutable".into(), Value::Bool(self.immutable));
        Value::Object(object)
    }

    /// A string option, when set (and a string).
    pub fn option_str(&self, key: &str) -> Option<&str> {
        self.options.get(key).and_then(Value::as_str)
    }

    /// The id the signature was given (`options.task_id`).
    pub fn task_id(&self) -> Option<&str> {
        self.option_str("task_id")
    }

    /// This signature called with `args` before its own (unless it is immutable) and with
    /// `options` over its own, as Celery's `Signature._merge`: options set to null are
    /// ignored, and `group_id` is not replaced when the signature has one.
    pub fn merged(&self, args: &[Value], options: &Map<String, Value>) -> SignatureDict {
        let mut merged = self.clone();
        if !self.immutable && !args.is_empty() {
            merged.args = args.iter().chain(self.args.iter()).cloned().collect();
        }
        for (key, value) in options {
            if value.is_null()
                || (IMMUTABLE_OPTIONS.contains(&key.as_str()) && self.options.contains_key(key))
            {
                continue;
            }
            merged.options.insert(key.clone(), value.clone());
        }
        merged
    }
}

/// An optional object field of a signature (`kwargs`, `options`); null reads as empty.
fn object_field(
    object: &Map<String, Value>,
    field: &str,
    task: &str,
) -> Result<Map<String, Value>, CanvasError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(other) => Err(CanvasError::malformed(format!(
            "the {field} of {task} must be an object, not {}",
            kind(other)
        ))),
    }
}

/// A JSON value's kind, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
