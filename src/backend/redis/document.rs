//! Result keys and documents as Celery 5.7's Redis backend writes them.
//!
//! Celery serializes with kombu's `json.dumps`: `", "` and `": "` separators and
//! `ensure_ascii` (every non-ASCII character as `\uXXXX`, surrogate pairs above U+FFFF).
//! [`encode`] writes the same bytes for the same document, so Python and Rust writers are
//! indistinguishable to readers (floats aside: Rust and Python may spell some differently).

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

use crate::protocol::ResultMessage;

use super::error::RedisBackendError;

/// The prefix of result keys (and of their pub/sub channels).
pub const TASK_KEY_PREFIX: &str = "celery-task-meta-";

/// The key (and channel) of task `task_id`'s result: `celery-task-meta-<task_id>`.
pub fn task_key(task_id: &str) -> String {
    format!("{TASK_KEY_PREFIX}{task_id}")
}

/// The document as Celery writes it: keys in the order `status`, `result`, `traceback`,
/// `children`, `date_done`, `task_id`, Python's separators and ASCII escapes.
pub fn encode(document: &ResultMessage) -> Result<String, RedisBackendError> {
    let mut bytes = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, PythonFormatter);
    document
        .serialize(&mut serializer)
        .map_err(|error| RedisBackendError::Malformed {
            task_id: document.task_id.clone(),
            reason: format!("cannot encode it: {error}"),
        })?;
    // Only ASCII is written.
    String::from_utf8(bytes).map_err(|error| RedisBackendError::Malformed {
        task_id: document.task_id.clone(),
        reason: format!("cannot encode it: {error}"),
    })
}

/// Any JSON value as Python's `json.dumps` writes it (the chord entries of
/// [`super::chord`]).
pub fn encode_value(value: &serde_json::Value) -> String {
    let mut bytes = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, PythonFormatter);
    // Writing a Value to a Vec cannot fail, and only ASCII is written.
    if value.serialize(&mut serializer).is_err() {
        return value.to_string();
    }
    String::from_utf8(bytes).unwrap_or_else(|_| value.to_string())
}

/// Reads a stored (or published) document of task `task_id`.
pub fn decode(task_id: &str, bytes: &[u8]) -> Result<ResultMessage, RedisBackendError> {
    let malformed = |reason: String| RedisBackendError::Malformed {
        task_id: task_id.to_string(),
        reason,
    };
    let mut document =
        ResultMessage::from_json(bytes).map_err(|error| malformed(error.to_string()))?;
    if document.task_id.is_empty() {
        document.task_id = task_id.to_string();
    }
    Ok(document)
}

/// serde_json output spelled as Python's `json.dumps` (default arguments) spells it.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for chunk in fragment.split_inclusive(|c: char| !c.is_ascii()) {
            let mut chars = chunk.chars();
            match chars.next_back() {
                Some(last) if !last.is_ascii() => {
                    writer.write_all(chars.as_str().as_bytes())?;
                    let mut units = [0u16; 2];
                    for unit in last.encode_utf16(&mut units) {
                        write!(writer, "\\u{unit:04x}")?;
                    }
                }
                _ => writer.write_all(chunk.as_bytes())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
