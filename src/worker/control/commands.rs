//! The remote-control commands, as pure functions: a command and a snapshot of the worker
//! in, the reply Celery would give and what the worker must then do out. The pidbox actor
//! does the I/O.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::queues::ActiveQueues;
use crate::protocol::TaskState;
use crate::worker::rate_limit::Rate;
use crate::worker::state::{Phase, Snapshot};

/// What the replies say of the node: fixed at start, except `queues`.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeInfo {
    /// Registered task names with their rate limit option, sorted.
    pub(crate) tasks: BTreeMap<String, Option<String>>,
    /// `active_queues`: kombu's `Queue.as_dict()` of each queue consumed; the pidbox actor
    /// changes it on `add_consumer` / `cancel_consumer`.
    pub(crate) queues: ActiveQueues,
    /// The `broker` object of `stats` (no password).
    pub(crate) broker: Value,
    /// The `pool` object of `stats`.
    pub(crate) pool: Value,
    /// `prefetch_count` of `stats`.
    pub(crate) prefetch_count: u64,
    /// The `conf` reply (no password).
    pub(crate) conf: Value,
    /// The `report` reply: what Celery's `app.bugreport()` says, for this worker (no
    /// password).
    pub(crate) report: String,
    /// This process.
    pub(crate) pid: u32,
    /// The node name (`hello` from this node is not answered).
    pub(crate) hostname: String,
}

/// The task attributes `registered` shows when the request names none (Celery's
/// `DEFAULT_TASK_INFO_ITEMS`).
const DEFAULT_TASK_INFO_ITEMS: [&str; 3] = ["exchange", "routing_key", "rate_limit"];

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
        /// The ids not running here, whose stored result becomes REVOKED when the stored
        /// state allows it ([`marks_revoked`]), before the reply, as Celery 5.7's `revoke`.
        mark: Vec<String>,
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
    let items: Vec<String> = ids
        .iter()
        .map(|id| crate::protocol::repr::value_repr(&Value::String(id.clone())))
        .collect();
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
        "registered" | "dump_tasks" => answer(registered(node, state, arguments)),
        "active" => answer(requests(state, |phase| {
            matches!(phase, Phase::Active { .. })
        })),
        "reserved" => answer(requests(state, |phase| matches!(phase, Phase::Reserved))),
        "scheduled" => answer(scheduled(state)),
        "revoked" => answer(json!(state.revoked)),
        "query_task" => answer(query_task(state, &ids_arg(arguments, "ids"))),
        "active_queues" => answer(node.queues.to_json()),
        "stats" => answer(stats(node, state)),
        "conf" => answer(node.conf.clone()),
        "report" => answer(ok(node.report.clone())),
        "hello" => hello(node, state, arguments),
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

/// Celery's `registered(taskinfoitems=None, builtins=False)`: each task's name, followed by
/// `[item=value ...]` for the asked attributes that are set. celeriac knows `name` and
/// `rate_limit`; other attributes are left out, as Celery leaves out those that are `None`.
fn registered(node: &NodeInfo, state: &Snapshot, arguments: &Map<String, Value>) -> Value {
    let mut items: Vec<String> = Vec::new();
    for item in ids_arg(arguments, "taskinfoitems") {
        if !item.starts_with('_') && !items.contains(&item) {
            items.push(item);
        }
    }
    if items.is_empty() {
        items = DEFAULT_TASK_INFO_ITEMS.map(str::to_string).to_vec();
    }
    let builtins = truthy(arguments.get("builtins"));
    let names = node
        .tasks
        .iter()
        .filter(|(name, _)| builtins || !name.starts_with("celery."))
        .map(|(name, option)| {
            let rate = match state.rate_limits.get(name) {
                Some(set) => set.clone(),
                None => option.clone(),
            };
            let fields: Vec<String> = items
                .iter()
                .filter_map(|item| {
                    let value = match item.as_str() {
                        "name" => Some(name.clone()),
                        "rate_limit" => rate.clone(),
                        _ => None,
                    };
                    value.map(|value| format!("{item}={value}"))
                })
                .collect();
            if fields.is_empty() {
                Value::String(name.clone())
            } else {
                Value::String(format!("{name} [{}]", fields.join(" ")))
            }
        })
        .collect();
    Value::Array(names)
}

/// Celery's `hello` (mingle: a starting worker asks the others for their revoked ids): the
/// ids it sends are revoked here too, and the reply holds this node's revoked ids, oldest
/// first, with its clock. A `hello` from this node itself is not answered (`null`).
fn hello(node: &NodeInfo, state: &Snapshot, arguments: &Map<String, Value>) -> Answer {
    if string_arg(arguments, "from_node").as_deref() == Some(node.hostname.as_str()) {
        return answer(Value::Null);
    }
    // Celery 5.7 sends `{id: [stamp, seq, id]}`, older versions `{id: stamp}` or a list.
    let received: Vec<String> = match arguments.get("revoked") {
        Some(Value::Object(entries)) => entries.keys().cloned().collect(),
        _ => ids_arg(arguments, "revoked"),
    };
    let mut revoked = state.revoked.clone();
    for id in &received {
        if !revoked.contains(id) {
            revoked.push(id.clone());
        }
    }
    let action = if received.is_empty() {
        Action::None
    } else {
        // Celery's merge_revoked only remembers them: nothing stored.
        Action::Revoke {
            ids: received,
            terminate: false,
            mark: Vec::new(),
        }
    };
    Answer {
        reply: json!({ "revoked": revoked, "clock": state.clock }),
        action,
    }
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
            Phase::Scheduled { eta } => Some(json!({
                "eta": eta.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
                // Celery's ETA timer entries all carry priority 6, whatever the message's.
                "priority": 6,
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
    let mark = ids
        .iter()
        .filter(|id| {
            !state
                .held
                .iter()
                .any(|held| &held.info.id == *id && matches!(held.phase, Phase::Active { .. }))
        })
        .cloned()
        .collect();
    let action = Action::Revoke {
        ids: ids.clone(),
        terminate,
        mark,
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

/// Whether a revoke stores a REVOKED result for a task not running here whose stored state
/// is `stored` (`None`: no result yet, PENDING). Celery 5.7's `_revoke`: only from PENDING,
/// RECEIVED, RETRY or REJECTED; a ready result is kept, and a task another worker started
/// (STARTED or a custom state, which celeriac cannot read) is left to that worker.
pub(crate) fn marks_revoked(stored: Option<TaskState>) -> bool {
    matches!(
        stored,
        None | Some(
            TaskState::Pending | TaskState::Received | TaskState::Retry | TaskState::Rejected
        )
    )
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
