//! Message bodies (docs/wire-protocol.md §1.4 and §1.6): content types, the v2
//! `[args, kwargs, embed]` array and the v1 task object.

use serde_json::{Map, Value};

use super::error::ProtocolError;

/// Content types celeriac reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContentType {
    /// `application/json`: what Celery sends by default (the only type a
    /// default Python worker accepts).
    #[default]
    Json,
    /// `application/x-bincode`: a celeriac-only body holding the bincode
    /// encoding of the task's typed argument value (Rust to Rust only).
    Bincode,
}

impl ContentType {
    /// The MIME type written in the `content_type` property.
    pub fn mime(&self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Bincode => "application/x-bincode",
        }
    }

    /// The content type for a `content_type` property, `None` when celeriac
    /// cannot read it. Parameters such as `; charset=utf-8` are ignored.
    pub fn from_mime(s: &str) -> Option<Self> {
        let essence = s.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Some(ContentType::Json)
        } else if essence.eq_ignore_ascii_case("application/x-bincode") {
            Some(ContentType::Bincode)
        } else {
            None
        }
    }

    /// The content type a configuration names: Celery's serializer names (`json`,
    /// `bincode`) or a MIME type (`application/json`, `application/x-bincode`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "json" => Some(ContentType::Json),
            "bincode" => Some(ContentType::Bincode),
            other => Self::from_mime(other),
        }
    }

    /// The `content_encoding` property celeriac writes: `utf-8` for JSON,
    /// `binary` for bincode.
    pub fn encoding(&self) -> &'static str {
        match self {
            ContentType::Json => "utf-8",
            ContentType::Bincode => "binary",
        }
    }
}

/// What a task's arguments look like on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskPayload {
    /// JSON (and protocol v1): positional args, kwargs, and the embed object
    /// (`callbacks`, `errbacks`, `chain`, `chord`) kept as a JSON value
    /// (`Null` when absent).
    Json {
        /// Positional arguments.
        args: Vec<Value>,
        /// Keyword arguments.
        kwargs: Map<String, Value>,
        /// The embed object (docs/wire-protocol.md §1.4), or `Null`.
        embed: Value,
    },
    /// bincode body: the bincode encoding of the task's typed argument value
    /// (Rust to Rust only).
    Bincode(Vec<u8>),
}

/// The embed object Python sends when there is no canvas:
/// `{"callbacks": null, "errbacks": null, "chain": null, "chord": null}`.
pub fn empty_embed() -> Value {
    let mut embed = Map::new();
    for key in ["callbacks", "errbacks", "chain", "chord"] {
        embed.insert(key.to_owned(), Value::Null);
    }
    Value::Object(embed)
}

/// A short description of a JSON value's type, for error messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a JSON boolean".to_owned(),
        Value::Number(_) => "a JSON number".to_owned(),
        Value::String(_) => "a JSON string".to_owned(),
        Value::Array(items) => format!("a JSON array of {} elements", items.len()),
        Value::Object(_) => "a JSON object".to_owned(),
    }
}

fn malformed(reason: impl Into<String>) -> ProtocolError {
    ProtocolError::MalformedBody {
        reason: reason.into(),
    }
}

/// Parse JSON bytes, with an [`ProtocolError::InvalidJson`] error.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ProtocolError> {
    serde_json::from_slice(body).map_err(|e| ProtocolError::InvalidJson {
        reason: e.to_string(),
    })
}

/// Split a protocol v2 JSON body `[args, kwargs, embed]` into its parts.
/// `args` must be an array, `kwargs` an object, `embed` an object or null.
pub fn parse_v2_json_body(body: &[u8]) -> Result<TaskPayload, ProtocolError> {
    let value = parse_json(body)?;
    let Value::Array(items) = value else {
        return Err(malformed(format!(
            "body is {}, expected a 3-element array [args, kwargs, embed]",
            describe(&value)
        )));
    };
    let len = items.len();
    let Ok([args, kwargs, embed]) = <[Value; 3]>::try_from(items) else {
        return Err(malformed(format!(
            "body is a JSON array of {len} elements, expected 3 [args, kwargs, embed]"
        )));
    };
    let Value::Array(args) = args else {
        return Err(malformed(format!(
            "args (body[0]) is {}, expected an array",
            describe(&args)
        )));
    };
    let Value::Object(kwargs) = kwargs else {
        return Err(malformed(format!(
            "kwargs (body[1]) is {}, expected an object",
            describe(&kwargs)
        )));
    };
    // An embed that is not an object is the workflow's problem, not the task's: the worker
    // runs the task and logs the embed as dropped (see the canvas module).
    Ok(TaskPayload::Json {
        args,
        kwargs,
        embed,
    })
}

/// Serialize a JSON payload as the 3-element v2 body `[args, kwargs, embed]`.
pub fn encode_v2_json_body(
    args: &[Value],
    kwargs: &Map<String, Value>,
    embed: &Value,
) -> Result<Vec<u8>, ProtocolError> {
    Ok(serde_json::to_vec(&(args, kwargs, embed))?)
}
