//! What a worker does for the workflow around a task once the task is done
//! (docs/wire-protocol.md §3), as plans of [`Action`]s: pure, so every rule has a unit
//! test; the worker carries the plans out.
//!
//! - success: the callbacks (`link`) with the result as first argument, more than one
//!   wrapped in a group; then the next chain step with the rest of the chain;
//! - failure: FAILURE for every remaining chain step, then the old-style errbacks
//!   (`link_error`) with the failed task's id as argument, wrapped in a group;
//! - a chord's completion: its body with the header's results, or FAILURE (`ChordError`)
//!   for the body when a header task failed;
//! - a call that could not be sent: FAILURE for it and for what waits on it.

use serde_json::{Map, Value};

use super::apply::{apply, Action};
use super::dict::{kind, SignatureDict};
use super::error::CanvasError;
use super::node::CanvasNode;
use crate::protocol::ExceptionInfo;

/// The workflow parts a task message carries (its `embed`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embed {
    /// Signatures to call with the result (`link`).
    pub callbacks: Vec<Value>,
    /// Signatures to call with the task id when it fails (`link_error`).
    pub errbacks: Vec<Value>,
    /// The rest of the chain, reversed: the next step is the last element.
    pub chain: Vec<Value>,
    /// The body of the chord this task is a header member of.
    pub chord: Option<Value>,
}

impl Embed {
    /// Reads a message's embed. A part of the wrong shape is dropped, and why is answered
    /// beside the rest.
    pub fn from_value(value: &Value) -> (Embed, Vec<String>) {
        let mut problems = Vec::new();
        let mut embed = Embed::default();
        let object = match value {
            Value::Object(object) => object,
            Value::Null => return (embed, problems),
            other => {
                problems.push(format!("embed must be an object, not {}", kind(other)));
                return (embed, problems);
            }
        };
        let mut list = |field: &str| match object.get(field) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(other) => {
                problems.push(format!("embed.{field} must be a list, not {}", kind(other)));
                Vec::new()
            }
        };
        embed.callbacks = list("callbacks");
        embed.errbacks = list("errbacks");
        embed.chain = list("chain");
        embed.chord = match object.get("chord") {
            None | Some(Value::Null) => None,
            Some(chord @ Value::Object(_)) => Some(chord.clone()),
            Some(other) => {
                problems.push(format!(
                    "embed.chord must be an object, not {}",
                    kind(other)
                ));
                None
            }
        };
        (embed, problems)
    }

    /// Whether there is nothing to do after the task.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
            && self.errbacks.is_empty()
            && self.chain.is_empty()
            && self.chord.is_none()
    }
}

/// The task whose outcome a plan is for.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// Its id.
    pub id: &'a str,
    /// The id of the first task of its workflow (its own id when it has none).
    pub root_id: &'a str,
}

/// What to do, and the workflow parts that could not be read (each with why).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// In order.
    pub actions: Vec<Action>,
    /// Parts dropped, each with the reason.
    pub problems: Vec<String>,
    /// What the worker should say about how it carries the plan out (logged, not errors).
    pub notices: Vec<String>,
}

/// The exception stored for tasks that a workflow part that cannot run leaves waiting.
pub fn canvas_exception(error: &CanvasError) -> ExceptionInfo {
    ExceptionInfo::new("CanvasError", "celeriac", error.to_string())
}

/// Options with the parent and root of calls made after `task`.
fn lineage(task: Finished<'_>) -> Map<String, Value> {
    let mut options = Map::new();
    options.insert("parent_id".into(), Value::String(task.id.to_string()));
    options.insert("root_id".into(), Value::String(task.root_id.to_string()));
    options
}

/// After `task` returned `result`: callbacks, then the next chain step.
pub fn on_success(
    embed: &Embed,
    task: Finished<'_>,
    result: &Value,
    new_id: &mut dyn FnMut() -> String,
) -> Plan {
    let mut plan = Plan::default();
    let args = [result.clone()];
    let options = lineage(task);
    call_all(&embed.callbacks, &args, &options, new_id, &mut plan);

    if let Some((next, rest)) = embed.chain.split_last() {
        let mut options = options.clone();
        if !rest.is_empty() {
            options.insert("chain".into(), Value::Array(rest.to_vec()));
        }
        let called = CanvasNode::from_value(next)
            .and_then(|node| apply(&node, &args, &options, new_id, &mut plan.actions));
        if let Err(error) = called {
            plan.problems.push(format!("next chain step: {error}"));
            plan.actions
                .extend(fail_chain(&embed.chain, &canvas_exception(&error)));
        }
    }
    plan
}

/// After `task` failed with `exception`: FAILURE for the rest of the chain, then the
/// errbacks with the task's id.
pub fn on_failure(
    embed: &Embed,
    task: Finished<'_>,
    exception: &ExceptionInfo,
    new_id: &mut dyn FnMut() -> String,
) -> Plan {
    let mut plan = Plan {
        actions: fail_chain(&embed.chain, exception),
        ..Plan::default()
    };
    call_errbacks(&embed.errbacks, task, new_id, &mut plan);
    plan
}

/// Old-style errbacks: one group of them, called with the failed task's id (Celery's
/// `_call_task_errbacks`).
fn call_errbacks(
    errbacks: &[Value],
    task: Finished<'_>,
    new_id: &mut dyn FnMut() -> String,
    plan: &mut Plan,
) {
    let mut tasks = Vec::new();
    for errback in errbacks {
        match CanvasNode::from_value(errback) {
            Ok(node) => tasks.push(node),
            Err(error) => plan.problems.push(format!("errback: {error}")),
        }
    }
    if tasks.is_empty() {
        return;
    }
    plan.notices
        .push(old_style_errbacks_notice(task.id, &tasks));
    let group = group_of(tasks);
    let args = [Value::String(task.id.to_string())];
    if let Err(error) = apply(&group, &args, &lineage(task), new_id, &mut plan.actions) {
        plan.problems.push(format!("errbacks: {error}"));
    }
}

/// What a worker says when it calls errbacks: old-style, with the failed task's id as their
/// only argument. Celery's worker calls an errback new-style, with `(request, exc,
/// traceback)`, when the errback is registered in its own app and takes them; celeriac
/// cannot know a Python task's parameters, so such an errback fails with a `TypeError`.
pub fn old_style_errbacks_notice(task_id: &str, errbacks: &[CanvasNode]) -> String {
    let names: Vec<&str> = errbacks
        .iter()
        .map(|errback| errback.signature().task.as_str())
        .collect();
    format!(
        "errbacks {} are called old-style, with the failed task's id {task_id} as their only \
         argument; Python errbacks expecting (request, exc, traceback) will fail",
        names.join(", ")
    )
}

/// Callbacks: one alone is called as it is; several are called as one group (groups
/// among them on their own), as Celery's worker does.
fn call_all(
    signatures: &[Value],
    args: &[Value],
    options: &Map<String, Value>,
    new_id: &mut dyn FnMut() -> String,
    plan: &mut Plan,
) {
    let mut nodes = Vec::new();
    for signature in signatures {
        match CanvasNode::from_value(signature) {
            Ok(node) => nodes.push(node),
            Err(error) => plan.problems.push(format!("callback: {error}")),
        }
    }
    let mut calls = Vec::new();
    if nodes.len() == 1 {
        calls = nodes;
    } else if !nodes.is_empty() {
        let (groups, tasks): (Vec<_>, Vec<_>) = nodes
            .into_iter()
            .partition(|node| matches!(node, CanvasNode::Group { .. }));
        calls = groups;
        if !tasks.is_empty() {
            calls.push(group_of(tasks));
        }
    }
    for node in &calls {
        if let Err(error) = apply(node, args, options, new_id, &mut plan.actions) {
            plan.problems
                .push(format!("callback {}: {error}", node.signature().task));
        }
    }
}

/// A group (with a new id) of `tasks`.
fn group_of(tasks: Vec<CanvasNode>) -> CanvasNode {
    let mut signature = SignatureDict::new("celery.group", Vec::new(), Map::new());
    signature.subtask_type = Some("group".into());
    CanvasNode::Group { signature, tasks }
}

/// FAILURE for every chain step that has a task id, descending into chord bodies (Celery's
/// `_fail_chain`), so that the client waiting on the last one hears of it. A step that is a
/// chord header member (a chain in a chord's header: its last step carries `chord`) is also
/// counted, failed, in its chord, so that the chord's body fails instead of waiting for it.
pub fn fail_chain(chain: &[Value], exception: &ExceptionInfo) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut pending: std::collections::VecDeque<Value> = chain.iter().cloned().collect();
    // Each element is visited once, and chord bodies only add what they hold: bounded by
    // the size of the message.
    while let Some(element) = pending.pop_front() {
        let Ok(signature) = SignatureDict::from_value(&element) else {
            continue;
        };
        if let Some(task_id) = signature.task_id() {
            actions.push(Action::Fail {
                task_id: task_id.to_string(),
                reply_to: signature.option_str("reply_to").map(str::to_string),
                group_id: signature.option_str("group_id").map(str::to_string),
                exception: exception.clone(),
            });
            if let (Some(body @ Value::Object(_)), Some(group_id)) = (
                signature.options.get("chord"),
                signature.option_str("group_id"),
            ) {
                actions.push(Action::JoinChord {
                    group_id: group_id.to_string(),
                    group_index: signature.options.get("group_index").and_then(Value::as_i64),
                    task_id: task_id.to_string(),
                    body: body.clone(),
                    exception: exception.clone(),
                });
            }
        }
        if signature.subtask_type.as_deref() == Some("chord") {
            if let Some(body) = signature.kwargs.get("body") {
                pending.push_back(body.clone());
            }
        }
    }
    actions
}

/// One header result as a chord keeps it: `[1, task_id, state, result]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChordPart {
    /// The header task.
    pub task_id: String,
    /// Its final state (`SUCCESS`, `FAILURE`, `REVOKED`).
    pub state: String,
    /// Its return value, or its exception.
    pub result: Value,
}

impl ChordPart {
    /// The entry as the chord keeps it: `[1, task_id, state, result]`.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::from(1),
            Value::String(self.task_id.clone()),
            Value::String(self.state.clone()),
            self.result.clone(),
        ])
    }

    /// Reads an entry; `Err` says what is wrong.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Array(items) if items.len() == 4 => {
                let (Some(task_id), Some(state)) = (items[1].as_str(), items[2].as_str()) else {
                    return Err("a chord entry's task id and state must be strings".into());
                };
                Ok(ChordPart {
                    task_id: task_id.to_string(),
                    state: state.to_string(),
                    result: items[3].clone(),
                })
            }
            other => Err(format!(
                "a chord entry must be a list of 4, not {}",
                kind(other)
            )),
        }
    }
}

/// When a chord's header is complete: its body called with the results in header order,
/// or, when one failed, FAILURE (`ChordError`) for the body, its errbacks and the rest of
/// its chain. `parts` is in header order; `Err` entries could not be read.
pub fn on_chord_complete(
    body: &Value,
    parts: &[Result<ChordPart, String>],
    new_id: &mut dyn FnMut() -> String,
) -> Plan {
    let mut plan = Plan::default();
    let body_node = match CanvasNode::from_value(body) {
        Ok(node) => node,
        Err(error) => {
            plan.problems.push(format!("chord body: {error}"));
            if let Ok(signature) = SignatureDict::from_value(body) {
                fail_body(&signature, &canvas_exception(&error), new_id, &mut plan);
            }
            return plan;
        }
    };
    let mut results = Vec::with_capacity(parts.len());
    for part in parts {
        let failure = match part {
            Ok(part) if matches!(part.state.as_str(), "FAILURE" | "REVOKED") => {
                format!(
                    "Dependency {} raised {}",
                    part.task_id,
                    exception_repr(&part.result)
                )
            }
            Ok(part) => {
                results.push(part.result.clone());
                continue;
            }
            Err(reason) => format!("Join error: {reason}"),
        };
        let exception = ExceptionInfo::new("ChordError", "celery.exceptions", failure);
        fail_body(body_node.signature(), &exception, new_id, &mut plan);
        return plan;
    }
    let args = [Value::Array(results)];
    if let Err(error) = apply(&body_node, &args, &Map::new(), new_id, &mut plan.actions) {
        plan.problems.push(format!("chord body: {error}"));
        fail_body(
            body_node.signature(),
            &canvas_exception(&error),
            new_id,
            &mut plan,
        );
    }
    plan
}

/// FAILURE for a chord body (or another call) that will not run, then its errbacks and the
/// rest of its chain (Celery's `chord_error_from_stack`).
fn fail_body(
    body: &SignatureDict,
    exception: &ExceptionInfo,
    new_id: &mut dyn FnMut() -> String,
    plan: &mut Plan,
) {
    let Some(body_id) = body.task_id() else {
        plan.problems
            .push(format!("{} has no task id to fail", body.task));
        return;
    };
    plan.actions.push(Action::Fail {
        task_id: body_id.to_string(),
        reply_to: body.option_str("reply_to").map(str::to_string),
        group_id: body.option_str("group_id").map(str::to_string),
        exception: exception.clone(),
    });
    let errbacks = match body.options.get("link_error") {
        Some(Value::Array(list)) => list.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    };
    let root_id = body.option_str("root_id").unwrap_or(body_id).to_string();
    let task = Finished {
        id: body_id,
        root_id: &root_id,
    };
    call_errbacks(&errbacks, task, new_id, plan);
    if let Some(Value::Array(chain)) = body.options.get("chain") {
        plan.actions.extend(fail_chain(chain, exception));
    }
}

/// After `call`, a task call of a workflow, could not be sent (`reason`): FAILURE for it,
/// then its errbacks and the rest of its chain, so that nobody waits for it for ever. A
/// chord body's failure is `ChordError('Callback error: ...')` (Celery's
/// `chord_error_from_stack`); a chord header member that was not sent also fails its
/// chord's body, which would otherwise wait for it.
pub fn on_unsent(
    call: &SignatureDict,
    reason: &str,
    chord_body: bool,
    new_id: &mut dyn FnMut() -> String,
) -> Plan {
    let mut plan = Plan::default();
    let id = call.task_id().unwrap_or("?");
    let what = format!("could not send {}[{id}]: {reason}", call.task);
    let exception = if chord_body {
        ExceptionInfo::new(
            "ChordError",
            "celery.exceptions",
            format!("Callback error: {what}"),
        )
    } else {
        ExceptionInfo::new("CanvasError", "celeriac", what)
    };
    fail_body(call, &exception, new_id, &mut plan);
    if let Some(body) = call.options.get("chord") {
        match SignatureDict::from_value(body) {
            Ok(body) => {
                let failure = ExceptionInfo::new(
                    "ChordError",
                    "celery.exceptions",
                    format!(
                        "Dependency {id} raised {}",
                        exception_repr(&exception.to_value())
                    ),
                );
                fail_body(&body, &failure, new_id, &mut plan);
            }
            Err(error) => plan.problems.push(format!("chord body: {error}")),
        }
    }
    plan
}

/// Python's `repr` of a stored exception (`ValueError('boom')`), or of a value.
pub fn exception_repr(result: &Value) -> String {
    match ExceptionInfo::from_value(result) {
        Some(exception) => {
            let args = crate::protocol::repr::args_repr(&exception.exc_message);
            // `(x,)` is a tuple's repr; an exception with one argument shows `(x)`.
            let args = if exception.exc_message.len() == 1 {
                format!("{})", args.trim_end_matches(",)"))
            } else {
                args
            };
            format!("{}{args}", exception.exc_type)
        }
        None => crate::protocol::repr::args_repr(std::slice::from_ref(result))
            .trim_start_matches('(')
            .trim_end_matches(",)")
            .to_string(),
    }
}
