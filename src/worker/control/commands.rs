//! The remote-control commands, as pure functions: a command and a snapshot of the worker
//! in, the reply Celery would give and what the worker must then do out. The pidbox actor
//! does the I/O.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::worker::rate_limit::Rate;
use crate::worker::state::{Phase, Snapshot};

/// What does not change while the worker runs, for the replies.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeInfo {
    /// Registered task names with their rate limit option, sorted.
    pub(crate) tasks: BTreeMap<String, Option<String>>,
    /// `active_queues`: kombu's `Queue.as_dict()` of each queue consumed.
    pub(crate) queues: Vec<Value>,
    /// The `broker` object of `stats` (no password).
    pub(crate) broker: Value,
    /// The `pool` object of `stats`.
    pub(crate) pool: Value,
    /// `prefetch_count` of `stats`.
    pub(crate) prefetch_count: u64,
    /// The `conf` reply (no password).
    pub(crate) conf: Value,
    /// This process.
    pub(crate) pid: u32,
}

/// What the worker does after replying.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Nothing.
    None,
    /// Revoke `ids`; with `terminate`, stop those running (async ones only).
    Revoke {
        /// Task ids.
        ids: Vec<String>,
        /// Also stop running ones.
        terminate: bool,
    },
    /// Set (or turn off, `None`) task `task`'s rate limit.
    RateLimit {
        /// Task name.
        task: String,
        /// The rate string and its value.
        rate: Option<(String, Rate)>,
    },
    /// Turn task events on or off.
    TaskEvents(bool),
    /// Send a `worker-heartbeat` event now (the events layer's business).
    Heartbeat,
    /// Start consuming `queue`.
    AddConsumer(String),
    /// Stop consuming `queue`.
    CancelConsumer(String),
    /// Warm shutdown.
    Shutdown,
}

/// A reply (`None`: the command replies nothing, as `heartbeat`) and the action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    /// The value under the node name in the reply body.
    pub(crate) reply: Value,
    /// What to do next.
    pub(crate) action: Action,
}

fn ok(text: impl Into<String>) -> Value {
    json!({ "ok": text.into() })
}

fn nok(text: impl Into<String>) -> Value {
    json!({ "error": text.into() })
}

fn answer(reply: Value) -> Answer {
    Answer {
        reply,
        action: Action::None,
    }
}

/// A string argument.
fn string_arg(arguments: &Map<String, Value>, name: &str) -> Option<String> {
    match arguments.get(name)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A list-or-single string argument (Celery's `maybe_list`).
fn ids_arg(arguments: &Map<String, Value>, name: &str) -> Vec<String> {
    match arguments.get(name) {
        Some(Value::String(id)) => vec![id.clone()],
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(|id| id.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::Number(number)) => number.as_f64().is_some_and(|n| n != 0.0),
        Some(Value::String(text)) => !text.is_empty(),
        _ => false,
    }
}

/// Python's repr of a set of strings: `{'a', 'b'}` (`set()` when empty).
fn python_set(ids: &[String]) -> String {
    if ids.is_empty() {
        return "set()".into();
    }
    let items: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!("{{{}}}", items.join(", "))
}

/// The reply to `method` with `arguments`, given the node and a snapshot of its state.
/// An unknown method answers as Celery does: `{"error": "KeyError('<method>')"}`.
pub(crate) fn answer_to(
    method: &str,
    arguments: &Map<String, Value>,
    node: &NodeInfo,
    state: &Snapshot,
) -> Answer {
    match method {
        "ping" => answer(ok("pong")),
        "clock" => answer(json!({ "clock": state.clock })),
        "registered" | "dump_tasks" => answer(registered(node, state)),
        "active" => answer(requests(state, |phase| {
            matches!(phase, Phase::Active { .. })
        })),
        "reserved" => answer(requests(state, |phase| matches!(phase, Phase::Reserved))),
        "scheduled" => answer(scheduled(state)),
        "revoked" => answer(json!(state.revoked)),
        "query_task" => answer(query_task(state, &ids_arg(arguments, "ids"))),
        "active_queues" => answer(Value::Array(node.queues.clone())),
        "stats" => answer(stats(node, state)),
        "conf" => answer(node.conf.clone()),
        "revoke" => revoke(state, arguments),
        "terminate" => {
            let mut arguments = arguments.clone();
            arguments.insert("terminate".into(), Value::Bool(true));
            revoke(state, &arguments)
        }
        "rate_limit" => rate_limit(node, arguments),
        "enable_events" => Answer {
            reply: ok(if state.task_events {
                "task events already enabled"
            } else {
                "task events enabled"
            }),
            action: Action::TaskEvents(true),
        },
        "disable_events" => Answer {
            reply: ok(if state.task_events {
                "task events disabled"
            } else {
                "task events already disabled"
            }),
            action: Action::TaskEvents(false),
        },
        "heartbeat" => Answer {
            reply: Value::Null,
            action: Action::Heartbeat,
        },
        "add_consumer" => match string_arg(arguments, "queue") {
            Some(queue) => Answer {
                reply: ok(format!("add consumer {queue}")),
                action: Action::AddConsumer(queue),
            },
            None => answer(nok(
                "TypeError(\"add_consumer() missing argument: 'queue'\")",
            )),
        },
        "cancel_consumer" => match string_arg(arguments, "queue") {
            Some(queue) => Answer {
                reply: ok(format!("no longer consuming from {queue}")),
                action: Action::CancelConsumer(queue),
            },
            None => answer(nok(
                "TypeError(\"cancel_consumer() missing argument: 'queue'\")",
            )),
        },
        "shutdown" => Answer {
            // Celery's worker raises WorkerShutdown and so sends no reply; replying lets a
            // caller that waits for one see that it was taken.
            reply: ok("shutting down"),
            action: Action::Shutdown,
        },
        other => answer(nok(format!("KeyError('{other}')"))),
    }
}

fn registered(node: &NodeInfo, state: &Snapshot) -> Value {
    let names = node
        .tasks
        .iter()
        .filter(|(name, _)| !name.starts_with("celery."))
        .map(|(name, option)| {
            let rate = match state.rate_limits.get(name) {
                Some(set) => set.clone(),
                None => option.clone(),
            };
            match rate {
                Some(rate) => Value::String(format!("{name} [rate_limit={rate}]")),
                None => Value::String(name.clone()),
            }
        })
        .collect();
    Value::Array(names)
}

fn requests(state: &Snapshot, wanted: impl Fn(&Phase) -> bool) -> Value {
    state
        .held
        .iter()
        .filter(|held| wanted(&held.phase))
        .map(|held| held.info.to_json())
        .collect()
}

fn scheduled(state: &Snapshot) -> Value {
    state
        .held
        .iter()
        .filter_map(|held| match &held.phase {
            Phase::Scheduled { eta, priority } => Some(json!({
                "eta": eta.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
                // Celery's timer entries carry priority 6 unless the message set one.
                "priority": priority.map_or(6, u64::from),
                "request": held.info.to_json(),
            })),
            _ => None,
        })
        .collect()
}

fn query_task(state: &Snapshot, ids: &[String]) -> Value {
    let mut found = Map::new();
    for held in &state.held {
        if !ids.contains(&held.info.id) {
            continue;
        }
        let phase = match held.phase {
            Phase::Active { .. } => "active",
            Phase::Reserved => "reserved",
            Phase::Scheduled { .. } => "scheduled",
        };
        found.insert(held.info.id.clone(), json!([phase, held.info.to_json()]));
    }
    Value::Object(found)
}

fn stats(node: &NodeInfo, state: &Snapshot) -> Value {
    json!({
        "total": state.total,
        "pid": node.pid,
        "clock": state.clock.to_string(),
        "uptime": state.uptime,
        "pool": node.pool,
        "broker": node.broker,
        "prefetch_count": node.prefetch_count,
    })
}

fn revoke(state: &Snapshot, arguments: &Map<String, Value>) -> Answer {
    let mut ids = ids_arg(arguments, "task_id");
    ids.dedup();
    let terminate = truthy(arguments.get("terminate"));
    let action = Action::Revoke {
        ids: ids.clone(),
        terminate,
    };
    if !terminate {
        return Answer {
            reply: ok(format!("tasks {} flagged as revoked", python_set(&ids))),
            action,
        };
    }
    let mut stopped = Vec::new();
    let mut blocking = Vec::new();
    for held in &state.held {
        if let Phase::Active {
            blocking: is_blocking,
        } = held.phase
        {
            if ids.contains(&held.info.id) {
                if is_blocking {
                    blocking.push(held.info.id.clone());
                } else if !stopped.contains(&held.info.id) {
                    stopped.push(held.info.id.clone());
                }
            }
        }
    }
    let mut text = if stopped.is_empty() && blocking.is_empty() {
        "terminate: tasks unknown".to_string()
    } else {
        format!("terminate: {}", stopped.join(", "))
    };
    if !blocking.is_empty() {
        text.push_str(&format!(
            "{}{} cannot be interrupted (blocking task: it runs to its end, its result is kept)",
            if stopped.is_empty() { "" } else { "; " },
            blocking.join(", ")
        ));
    }
    Answer {
        reply: ok(text),
        action,
    }
}

fn rate_limit(node: &NodeInfo, arguments: &Map<String, Value>) -> Answer {
    let Some(task) = string_arg(arguments, "task_name") else {
        return answer(nok(
            "TypeError(\"rate_limit() missing argument: 'task_name'\")",
        ));
    };
    let text = match arguments.get("rate_limit") {
        None | Some(Value::Null) => String::new(),
        Some(_) => string_arg(arguments, "rate_limit").unwrap_or_default(),
    };
    let rate = match Rate::parse(&text) {
        Ok(rate) => rate,
        Err(error) => return answer(nok(format!("Invalid rate limit string: {error}"))),
    };
    if !node.tasks.contains_key(&task) {
        return answer(nok("unknown task"));
    }
    let reply = if rate.is_some() {
        ok("new rate limit set successfully")
    } else {
        ok("rate limit disabled successfully")
    };
    Answer {
        reply,
        action: Action::RateLimit {
            task,
            rate: rate.map(|rate| (text, rate)),
        },
    }
}

#[cfg(test)]
mod tests;
