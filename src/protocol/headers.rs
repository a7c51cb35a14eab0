//! Celery protocol v2 headers (docs/wire-protocol.md §1.3).

use std::collections::BTreeMap;

use celeriac_actors::amqp::{AMQPValue, FieldArray, FieldTable};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::amqp::{
    amqp_to_json, as_opt_bool, as_opt_f64, as_opt_int, as_opt_string, float_value, int_value,
    json_map_to_table, short_string, string_value, table_to_json, wrong_type,
};
use super::error::ProtocolError;
use super::time::{format_datetime, parse_datetime};

/// The `compression` header (consumed while decoding, never kept in `extra`).
pub(crate) const COMPRESSION_HEADER: &str = "compression";

/// Header names modeled by [`TaskHeaders`]; everything else goes to `extra`. The code
/// asks [`is_known`]; this list is what its test checks it against.
#[cfg(test)]
const KNOWN_HEADERS: [&str; 20] = [
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
    COMPRESSION_HEADER,
];

/// Celery protocol v2 headers (docs/wire-protocol.md §1.3): everything about a task
/// message except its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskHeaders {
    /// Language of the producer: `"py"` from Celery, `"rust"` from celeriac. Ignored by workers.
    pub lang: String,
    /// Registered task name, e.g. `"probe.add"`. Its presence marks protocol v2.
    pub task: String,
    /// Task id (a UUID string).
    pub id: String,
    /// Name to use in logs instead of `task` (`apply_async(shadow=...)`).
    pub shadow: Option<String>,
    /// Do not run before this time (`countdown` is turned into `eta` by the producer).
    pub eta: Option<DateTime<Utc>>,
    /// Do not run after this time: the worker acks it and stores `REVOKED`.
    pub expires: Option<DateTime<Utc>>,
    /// Id of the group (or chord header) this task belongs to.
    pub group: Option<String>,
    /// Position of this task in its group (0-based), used to order chord results.
    pub group_index: Option<i64>,
    /// How many times this task has been retried.
    pub retries: u32,
    /// `(hard, soft)` time limits in seconds; on the wire the array `[hard, soft]`.
    pub timelimit: (Option<f64>, Option<f64>),
    /// Id of the first task of the workflow (defaults to the task's own id).
    pub root_id: Option<String>,
    /// Id of the task that published this one.
    pub parent_id: Option<String>,
    /// Python `repr(args)`, for logs and events only.
    pub argsrepr: Option<String>,
    /// Python `repr(kwargs)`, for logs and events only.
    pub kwargsrepr: Option<String>,
    /// Node name of the producer, e.g. `gen1234@host`.
    pub origin: Option<String>,
    /// Whether the result should not be stored (`None` from Python's `send_task`).
    pub ignore_result: Option<bool>,
    /// How many times the task was replaced (`Task.replace`).
    pub replaced_task_nesting: Option<i64>,
    /// Names of the stamps applied to this task (`None` when not stamped).
    pub stamped_headers: Option<Vec<String>>,
    /// Stamp values by name (`{}` when not stamped).
    pub stamps: Map<String, Value>,
    /// Headers celeriac does not model (custom headers from
    /// `apply_async(headers=...)`): kept as AMQP values and re-sent as is.
    pub extra: BTreeMap<String, AMQPValue>,
}

impl TaskHeaders {
    /// Headers for a new task: `lang` "rust", `retries` 0, `root_id` = `id`,
    /// everything else empty.
    pub fn new(task: impl Into<String>, id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            lang: "rust".to_owned(),
            task: task.into(),
            root_id: Some(id.clone()),
            id,
            shadow: None,
            eta: None,
            expires: None,
            group: None,
            group_index: None,
            retries: 0,
            timelimit: (None, None),
            parent_id: None,
            argsrepr: None,
            kwargsrepr: None,
            origin: None,
            ignore_result: None,
            replaced_task_nesting: None,
            stamped_headers: None,
            stamps: Map::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Encode as an AMQP header table with the type codes Python sends
    /// (docs/wire-protocol.md §1.3). `extra` headers are written first, so they can
    /// never override a modeled header.
    pub fn to_field_table(&self) -> Result<FieldTable, ProtocolError> {
        let mut table = FieldTable::default();
        for (name, value) in &self.extra {
            if !is_known(name) {
                table.insert(short_string(name, name)?, value.clone());
            }
        }
        let opt_str =
            |value: &Option<String>| value.as_deref().map_or(AMQPValue::Void, string_value);
        let opt_time = |value: &Option<DateTime<Utc>>| {
            value
                .as_ref()
                .map_or(AMQPValue::Void, |time| string_value(&format_datetime(time)))
        };
        let opt_f64 = |value: Option<f64>| value.map_or(AMQPValue::Void, float_value);
        let mut put = |name: &str, value: AMQPValue| {
            table.insert(name.into(), value);
        };
        put("lang", string_value(&self.lang));
        put("task", string_value(&self.task));
        put("id", string_value(&self.id));
        put("shadow", opt_str(&self.shadow));
        put("eta", opt_time(&self.eta));
        put("expires", opt_time(&self.expires));
        put("group", opt_str(&self.group));
        put(
            "group_index",
            self.group_index.map_or(AMQPValue::Void, int_value),
        );
        put("retries", int_value(i64::from(self.retries)));
        put(
            "timelimit",
            AMQPValue::FieldArray(FieldArray::from(vec![
                opt_f64(self.timelimit.0),
                opt_f64(self.timelimit.1),
            ])),
        );
        put("root_id", opt_str(&self.root_id));
        put("parent_id", opt_str(&self.parent_id));
        if let Some(text) = &self.argsrepr {
            put("argsrepr", string_value(text));
        }
        if let Some(text) = &self.kwargsrepr {
            put("kwargsrepr", string_value(text));
        }
        if let Some(text) = &self.origin {
            put("origin", string_value(text));
        }
        put(
            "ignore_result",
            self.ignore_result
                .map_or(AMQPValue::Void, AMQPValue::Boolean),
        );
        if let Some(nesting) = self.replaced_task_nesting {
            put("replaced_task_nesting", int_value(nesting));
        }
        put(
            "stamped_headers",
            self.stamped_headers
                .as_ref()
                .map_or(AMQPValue::Void, |names| {
                    AMQPValue::FieldArray(FieldArray::from(
                        names
                            .iter()
                            .map(|name| string_value(name))
                            .collect::<Vec<_>>(),
                    ))
                }),
        );
        let stamps = json_map_to_table("stamps", &self.stamps)?;
        put("stamps", AMQPValue::FieldTable(stamps));
        Ok(table)
    }

    /// Decode protocol v2 headers. `task` and `id` are required; every other
    /// header is optional. Unknown headers are kept in `extra`; the
    /// `compression` header is left out (the body is decompressed by the caller).
    pub fn from_field_table(table: &FieldTable) -> Result<Self, ProtocolError> {
        let headers = table.inner();
        let get = |name: &str| headers.get(name).filter(|v| !matches!(v, AMQPValue::Void));
        let string = |name: &str| match get(name) {
            Some(value) => as_opt_string(name, value),
            None => Ok(None),
        };
        let required = |name: &str| {
            string(name)?.ok_or_else(|| ProtocolError::MissingHeader {
                name: name.to_owned(),
            })
        };
        let int = |name: &str| match get(name) {
            Some(value) => as_opt_int(name, value),
            None => Ok(None),
        };
        let datetime =
            |name: &str| -> Result<Option<DateTime<Utc>>, ProtocolError> {
                match string(name)? {
                    Some(text) => parse_datetime(&text).map(Some).ok_or_else(|| {
                        ProtocolError::InvalidDatetime {
                            field: name.to_owned(),
                            value: text,
                        }
                    }),
                    None => Ok(None),
                }
            };

        // Built field by field (not `Self::new`, whose defaults would be thrown away), in
        // this order, which is the order the headers are checked in.
        let task = required("task")?;
        let id = required("id")?;
        let lang = string("lang")?.unwrap_or_default();
        Ok(Self {
            lang,
            task,
            id,
            shadow: string("shadow")?,
            eta: datetime("eta")?,
            expires: datetime("expires")?,
            group: string("group")?,
            group_index: int("group_index")?,
            retries: match int("retries")? {
                Some(retries) => {
                    u32::try_from(retries).map_err(|_| ProtocolError::InvalidHeader {
                        name: "retries".to_owned(),
                        reason: format!("{retries} is not a valid retry count"),
                    })?
                }
                None => 0,
            },
            timelimit: match get("timelimit") {
                Some(value) => parse_timelimit(value)?,
                None => (None, None),
            },
            root_id: string("root_id")?,
            parent_id: string("parent_id")?,
            argsrepr: string("argsrepr")?,
            kwargsrepr: string("kwargsrepr")?,
            origin: string("origin")?,
            ignore_result: match get("ignore_result") {
                Some(value) => as_opt_bool("ignore_result", value)?,
                None => None,
            },
            replaced_task_nesting: int("replaced_task_nesting")?,
            stamped_headers: match get("stamped_headers") {
                Some(AMQPValue::FieldArray(items)) => Some(
                    items
                        .as_slice()
                        .iter()
                        .map(|item| {
                            as_opt_string("stamped_headers", item).map(Option::unwrap_or_default)
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(other) => return Err(wrong_type("stamped_headers", "an array", other)),
                None => None,
            },
            stamps: match get("stamps") {
                Some(AMQPValue::FieldTable(stamps)) => table_to_json(stamps),
                Some(other) => match amqp_to_json(other) {
                    Value::Object(map) => map,
                    _ => return Err(wrong_type("stamps", "a table", other)),
                },
                None => Map::new(),
            },
            extra: headers
                .iter()
                .filter(|(name, _)| !is_known(name.as_str()))
                .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
                .collect(),
        })
    }
}

/// Whether `name` is a header [`TaskHeaders`] models (everything else goes to `extra`): a
/// `match`, not a scan of a list, as it runs for every header of every message received.
fn is_known(name: &str) -> bool {
    matches!(
        name,
        "lang"
            | "task"
            | "id"
            | "shadow"
            | "eta"
            | "expires"
            | "group"
            | "group_index"
            | "retries"
            | "timelimit"
            | "root_id"
            | "parent_id"
            | "argsrepr"
            | "kwargsrepr"
            | "origin"
            | "ignore_result"
            | "replaced_task_nesting"
            | "stamped_headers"
            | "stamps"
            | COMPRESSION_HEADER
    )
}

/// Parse `timelimit`: an array `[hard, soft]` of numbers or nulls.
fn parse_timelimit(value: &AMQPValue) -> Result<(Option<f64>, Option<f64>), ProtocolError> {
    let AMQPValue::FieldArray(items) = value else {
        return Err(wrong_type("timelimit", "an array [hard, soft]", value));
    };
    let items = items.as_slice();
    let at = |index: usize| match items.get(index) {
        Some(item) => as_opt_f64("timelimit", item),
        None => Ok(None),
    };
    Ok((at(0)?, at(1)?))
}

/// Parse `timelimit` from a JSON value (protocol v1 bodies): `[hard, soft]`.
pub(crate) fn timelimit_from_json(value: Option<&Value>) -> (Option<f64>, Option<f64>) {
    match value {
        Some(Value::Array(items)) => (
            items.first().and_then(Value::as_f64),
            items.get(1).and_then(Value::as_f64),
        ),
        _ => (None, None),
    }
}

#[cfg(test)]
mod known_headers {
    use super::{is_known, KNOWN_HEADERS};

    #[test]
    fn is_known_matches_the_list() {
        for name in KNOWN_HEADERS {
            assert!(
                is_known(name),
                "{name} is in KNOWN_HEADERS but not is_known"
            );
        }
        for name in ["x-custom", "Task", "", "stamp", "ids"] {
            assert!(!is_known(name), "{name:?} is not a modeled header");
        }
    }
}
