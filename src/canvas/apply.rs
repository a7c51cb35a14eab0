//! What calling a workflow part amounts to, as a list of [`Action`]s: the messages to
//! publish (and, for a chord, the size to record first). Pure: no I/O, no clock; ids are
//! drawn from the `new_id` function given.
//!
//! The rules are Celery 5.7's `apply_async` of each canvas type:
//! - a task: the parent's result before its own args (unless immutable), the call's
//!   options over its own (but a `group_id` it has);
//! - a group: every member with the group's options, `group_id` = the group's id and
//!   `group_index` = its position;
//! - a chain: its first step, carrying the rest (reversed: the next step is the last
//!   element) in `chain`, every step with a task id;
//! - a chord: its size recorded under the header's group id, then every header member with
//!   `chord` = the body (which holds the rest of an enclosing chain).

use serde_json::{Map, Value};

use super::dict::SignatureDict;
use super::error::CanvasError;
use super::node::CanvasNode;
use crate::protocol::ExceptionInfo;

/// One thing to do to call a workflow part.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Record a chord's size (before its header is published): the number of header
    /// results that complete it.
    SetChordSize {
        /// The header's group id.
        group_id: String,
        /// How many header results there are.
        size: usize,
        /// The body, which fails if the size cannot be recorded.
        body: SignatureDict,
    },
    /// Publish this task call (`options.task_id` is always set).
    Publish(SignatureDict),
    /// Store a failure for a task that will not run (a chain step after a failed one, a
    /// chord body whose header failed), so that whoever waits on it does not wait for ever.
    Fail {
        /// The task that will not run.
        task_id: String,
        /// Its reply queue (for rpc:// results).
        reply_to: Option<String>,
        /// Its group, when it has one.
        group_id: Option<String>,
        /// The failure.
        exception: ExceptionInfo,
    },
    /// Count a task that will not run (a chain step after a failed one) as failed in the
    /// chord it is a header member of (Celery's `_fail_chain` returns its chord part), so
    /// that the chord's body fails instead of waiting for it.
    JoinChord {
        /// The chord header's group id.
        group_id: String,
        /// The task's place in the header.
        group_index: Option<i64>,
        /// The task that will not run.
        task_id: String,
        /// The chord's body (the task's `chord` option).
        body: Value,
        /// The failure.
        exception: ExceptionInfo,
    },
}

/// Calls `node` with `args` before its own and `options` over its own; appends what that
/// takes to `actions`.
pub fn apply(
    node: &CanvasNode,
    args: &[Value],
    options: &Map<String, Value>,
    new_id: &mut dyn FnMut() -> String,
    actions: &mut Vec<Action>,
) -> Result<(), CanvasError> {
    match node {
        CanvasNode::Task(signature) => {
            let mut call = signature.merged(args, options);
            if call.task_id().is_none() {
                call.options
                    .insert("task_id".into(), Value::String(new_id()));
            }
            actions.push(Action::Publish(call));
            Ok(())
        }
        CanvasNode::Group { signature, tasks } => {
            let mut group_options = signature.merged(&[], options).options;
            let group_id = match group_options.remove("task_id") {
                Some(Value::String(id)) => id,
                _ => new_id(),
            };
            let args: Vec<Value> = if signature.immutable {
                signature.args.clone()
            } else {
                args.iter().chain(signature.args.iter()).cloned().collect()
            };
            for (index, member) in tasks.iter().enumerate() {
                let mut member_options = group_options.clone();
                member_options.insert("group_id".into(), Value::String(group_id.clone()));
                member_options.insert("group_index".into(), Value::from(index));
                apply(member, &args, &member_options, new_id, actions)?;
            }
            Ok(())
        }
        CanvasNode::Chain { signature, tasks } => {
            let mut chain_options = signature.merged(&[], options).options;
            chain_options.remove("task_id");
            // The chain's errbacks go to every step (Celery's `_chain.clone_tasks`), so that
            // whichever step fails calls them.
            let errbacks = chain_options.remove("link_error");
            let Some((first, rest)) = tasks.split_first() else {
                return Ok(());
            };
            // The steps after the first, reversed, after what remains of an enclosing chain.
            let mut chain = match chain_options.remove("chain") {
                Some(Value::Array(outer)) => outer,
                _ => Vec::new(),
            };
            for step in rest.iter().rev() {
                let mut step = with_id(step.signature(), new_id);
                add_errbacks(&mut step.options, errbacks.as_ref());
                chain.push(step.to_value());
            }
            if !chain.is_empty() {
                chain_options.insert("chain".into(), Value::Array(chain));
            }
            let args: Vec<Value> = if signature.immutable {
                signature.args.clone()
            } else {
                args.iter().chain(signature.args.iter()).cloned().collect()
            };
            let mut first = first.clone();
            add_errbacks(&mut first.signature_mut().options, errbacks.as_ref());
            apply(&first, &args, &chain_options, new_id, actions)
        }
        CanvasNode::Chord {
            signature,
            header_id,
            header,
            body,
        } => apply_chord(
            signature, header_id, header, body, args, options, new_id, actions,
        ),
    }
}

/// Appends `errbacks` (a list or one signature) to the `link_error` list in `options`,
/// each once (Celery's `append_to_list_option` skips one already there).
fn add_errbacks(options: &mut Map<String, Value>, errbacks: Option<&Value>) {
    let Some(errbacks) = errbacks.filter(|value| !value.is_null()) else {
        return;
    };
    let own = options
        .entry("link_error".to_string())
        .or_insert(Value::Array(vec![]));
    if !own.is_array() {
        *own = Value::Array(vec![own.clone()]);
    }
    if let Value::Array(list) = own {
        let more = match errbacks {
            Value::Array(more) => more.as_slice(),
            single => std::slice::from_ref(single),
        };
        for errback in more {
            if !list.contains(errback) {
                list.push(errback.clone());
            }
        }
    }
}

/// A signature with a task id: its own, else a new one.
fn with_id(signature: &SignatureDict, new_id: &mut dyn FnMut() -> String) -> SignatureDict {
    let mut signature = signature.clone();
    if signature.task_id().is_none() {
        signature
            .options
            .insert("task_id".into(), Value::String(new_id()));
    }
    signature
}

/// Celery's `chord.apply_async` then `chord.run`.
#[allow(clippy::too_many_arguments)]
fn apply_chord(
    signature: &SignatureDict,
    header_id: &Option<String>,
    header: &[CanvasNode],
    body: &CanvasNode,
    args: &[Value],
    options: &Map<String, Value>,
    new_id: &mut dyn FnMut() -> String,
    actions: &mut Vec<Action>,
) -> Result<(), CanvasError> {
    let CanvasNode::Task(body) = body else {
        return Err(CanvasError::unsupported(
            "a chord whose body is a group, chain or chord",
        ));
    };
    let mut chord_options = signature.merged(&[], options).options;
    let group_id = header_id.clone().unwrap_or_else(&mut *new_id);
    let chord_id = match chord_options.remove("task_id") {
        Some(Value::String(id)) => Some(id),
        _ => None,
    };
    // The body: the chord's options but the parent (the header task that completes the
    // chord is its parent), its own id first, the header's group id.
    let mut body = body.clone();
    let body_id = body
        .task_id()
        .map(str::to_string)
        .or(chord_id)
        .unwrap_or_else(&mut *new_id);
    for (key, value) in &chord_options {
        if matches!(key.as_str(), "parent_id" | "countdown" | "eta") || value.is_null() {
            continue;
        }
        if matches!(key.as_str(), "link" | "link_error") {
            let own = body
                .options
                .entry(key.clone())
                .or_insert(Value::Array(vec![]));
            if let Value::Array(list) = own {
                match value {
                    Value::Array(more) => list.extend(more.iter().cloned()),
                    single => list.push(single.clone()),
                }
            }
            continue;
        }
        body.options.insert(key.clone(), value.clone());
    }
    body.options
        .insert("task_id".into(), Value::String(body_id.clone()));
    body.options
        .entry("group_id".to_string())
        .or_insert_with(|| Value::String(group_id.clone()));

    if header.is_empty() {
        actions.push(Action::Publish(
            body.merged(&[Value::Array(vec![])], &Map::new()),
        ));
        return Ok(());
    }
    if let Some(member) = header
        .iter()
        .find(|member| !matches!(member, CanvasNode::Task(_)))
    {
        return Err(CanvasError::unsupported(format!(
            "a chord header member that is a group, chain or chord ({})",
            member.signature().task
        )));
    }
    actions.push(Action::SetChordSize {
        group_id: group_id.clone(),
        size: header.len(),
        body: body.clone(),
    });
    // The header: the chord's options without what belongs to the body.
    let mut member_options = Map::new();
    for (key, value) in &chord_options {
        if !matches!(
            key.as_str(),
            "chain" | "chord" | "link" | "link_error" | "task_id"
        ) {
            member_options.insert(key.clone(), value.clone());
        }
    }
    member_options.insert("chord".into(), body.to_value());
    let args: Vec<Value> = if signature.immutable {
        signature.args.clone()
    } else {
        args.iter().chain(signature.args.iter()).cloned().collect()
    };
    for (index, member) in header.iter().enumerate() {
        let mut options = member_options.clone();
        options.insert("group_id".into(), Value::String(group_id.clone()));
        options.insert("group_index".into(), Value::from(index));
        apply(member, &args, &options, new_id, actions)?;
    }
    Ok(())
}
