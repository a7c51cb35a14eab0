//! A task call ([`SignatureDict`] with its options) as the protocol v2 message that
//! publishes it: Celery's `apply_async` options mapped to headers, properties and `embed`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::dict::SignatureDict;
use super::error::CanvasError;
use crate::protocol::{time::parse_datetime, TaskMessage, TaskPayload};

/// A message to publish and the queue its call names (`None`: route it).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The message.
    pub message: TaskMessage,
    /// `options.queue` (or a `routing_key` on the default exchange).
    pub queue: Option<String>,
}

/// The message for `call` (a task, not a group or chain: those are expanded first), with
/// `countdown` and relative `expires` counted from `now`.
pub fn task_message(call: &SignatureDict, now: DateTime<Utc>) -> Result<Outgoing, CanvasError> {
    if let Some(kind) = &call.subtask_type {
        return Err(CanvasError::malformed(format!(
            "a {kind} is not one message (task {})",
            call.task
        )));
    }
    let options = &call.options;
    let id = call
        .task_id()
        .map(str::to_string)
        .ok_or_else(|| CanvasError::malformed(format!("{} has no task id", call.task)))?;
    let mut message =
        TaskMessage::new_json(&call.task, &id, call.args.clone(), call.kwargs.clone());
    let headers = &mut message.headers;
    headers.group = call.option_str("group_id").map(str::to_string);
    headers.group_index = options.get("group_index").and_then(Value::as_i64);
    headers.parent_id = call.option_str("parent_id").map(str::to_string);
    if let Some(root_id) = call.option_str("root_id") {
        headers.root_id = Some(root_id.to_string());
    }
    headers.shadow = call.option_str("shadow").map(str::to_string);
    // Celery's `apply_async` sends 0 for a task that replaced none.
    headers.replaced_task_nesting = Some(
        options
            .get("replaced_task_nesting")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    );
    if let Some(ignore) = options.get("ignore_result").and_then(Value::as_bool) {
        headers.ignore_result = Some(ignore);
    }
    headers.timelimit = (
        options.get("time_limit").and_then(Value::as_f64),
        options.get("soft_time_limit").and_then(Value::as_f64),
    );
    headers.eta = match (options.get("countdown"), options.get("eta")) {
        (Some(countdown), _) if countdown.is_number() => {
            let seconds = countdown.as_f64().unwrap_or(0.0);
            Some(now + seconds_delta(seconds))
        }
        (_, Some(Value::String(eta))) => Some(parse_time(eta, "eta", &call.task)?),
        _ => None,
    };
    headers.expires = match options.get("expires") {
        Some(Value::String(expires)) => Some(parse_time(expires, "expires", &call.task)?),
        Some(seconds) if seconds.is_number() => {
            Some(now + seconds_delta(seconds.as_f64().unwrap_or(0.0)))
        }
        _ => None,
    };
    if let Some(expires) = headers.expires {
        message.expiration_ms = Some((expires - now).num_milliseconds().max(0) as u64);
    }
    message.priority = options
        .get("priority")
        .and_then(Value::as_u64)
        .map(|priority| priority.min(255) as u8);
    message.reply_to = call.option_str("reply_to").map(str::to_string);
    if let TaskPayload::Json { embed, .. } = &mut message.payload {
        *embed = embed_of(options);
    }
    Ok(Outgoing {
        message,
        queue: queue_of(options),
    })
}

/// A time option (ISO 8601), or why not.
fn parse_time(text: &str, option: &str, task: &str) -> Result<DateTime<Utc>, CanvasError> {
    parse_datetime(text).ok_or_else(|| {
        CanvasError::malformed(format!("the {option} of {task} is not a time: {text:?}"))
    })
}

/// Seconds (negative or huge ones bounded) as a chrono duration.
fn seconds_delta(seconds: f64) -> chrono::Duration {
    let millis = (seconds.clamp(0.0, 10.0 * 365.0 * 86_400.0) * 1000.0) as i64;
    chrono::Duration::milliseconds(millis)
}

/// `{"callbacks", "errbacks", "chain", "chord"}` from the call's `link`, `link_error`,
/// `chain` and `chord` options.
fn embed_of(options: &Map<String, Value>) -> Value {
    let list = |key: &str| match options.get(key) {
        Some(Value::Array(items)) if !items.is_empty() => Value::Array(items.clone()),
        Some(single @ Value::Object(_)) => Value::Array(vec![single.clone()]),
        _ => Value::Null,
    };
    let mut embed = Map::new();
    embed.insert("callbacks".into(), list("link"));
    embed.insert("errbacks".into(), list("link_error"));
    embed.insert("chain".into(), list("chain"));
    embed.insert(
        "chord".into(),
        match options.get("chord") {
            Some(chord @ Value::Object(_)) => chord.clone(),
            _ => Value::Null,
        },
    );
    Value::Object(embed)
}

/// The queue a call names: `queue` (a name, or a queue object with a `name`), else a
/// `routing_key` for the default exchange.
fn queue_of(options: &Map<String, Value>) -> Option<String> {
    match options.get("queue") {
        Some(Value::String(queue)) if !queue.is_empty() => return Some(queue.clone()),
        Some(Value::Object(queue)) => {
            if let Some(name) = queue.get("name").and_then(Value::as_str) {
                return Some(name.to_string());
            }
        }
        _ => {}
    }
    let default_exchange = options
        .get("exchange")
        .is_none_or(|exchange| exchange.as_str().is_some_and(str::is_empty) || exchange.is_null());
    match options.get("routing_key") {
        Some(Value::String(key)) if default_exchange && !key.is_empty() => Some(key.clone()),
        _ => None,
    }
}
