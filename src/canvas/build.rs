//! Workflows built in Rust: [`Chain`] (and the [`chain!`](crate::chain) macro), [`Group`]
//! and [`Chord`] of [`Signature`]s, encoded exactly as Python's canvas encodes them, so
//! that Python and celeriac workers both run them. `Producer::send_chain`,
//! `send_group` and `send_chord` send them.

use serde_json::{Map, Value};

use super::dict::SignatureDict;
use super::error::CanvasError;
use crate::app::Signature;
use crate::protocol::time::format_datetime;

/// One part of a workflow.
#[derive(Debug, Clone)]
pub enum Canvas {
    /// A task call.
    Task(Box<Signature>),
    /// Steps run one after the other.
    Chain(Chain),
    /// Tasks run in parallel.
    Group(Group),
    /// A group, then a call with the group's results.
    Chord(Chord),
}

impl From<Signature> for Canvas {
    fn from(signature: Signature) -> Self {
        Canvas::Task(Box::new(signature))
    }
}

impl From<Chain> for Canvas {
    fn from(chain: Chain) -> Self {
        Canvas::Chain(chain)
    }
}

impl From<Group> for Canvas {
    fn from(group: Group) -> Self {
        Canvas::Group(group)
    }
}

impl From<Chord> for Canvas {
    fn from(chord: Chord) -> Self {
        Canvas::Chord(chord)
    }
}

/// Steps run one after the other, each one's result the first argument of the next (unless
/// the next is [`Signature::immutable`]). A group followed by a step is a chord, as in
/// Celery.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// The steps, first to last.
    pub steps: Vec<Canvas>,
}

impl Chain {
    /// A chain of these steps.
    pub fn of(steps: Vec<Canvas>) -> Self {
        Chain { steps }
    }

    /// The chain with `step` after its last step.
    pub fn then(mut self, step: impl Into<Canvas>) -> Self {
        self.steps.push(step.into());
        self
    }
}

/// `chain![a, b, c]`: a [`Chain`] of signatures (or groups, chords, chains).
#[macro_export]
macro_rules! chain {
    ($($step:expr),+ $(,)?) => {
        $crate::canvas::Chain::of(vec![$($crate::canvas::Canvas::from($step)),+])
    };
}

/// Tasks run in parallel; their results, in order, are the group's result.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// The members.
    pub tasks: Vec<Canvas>,
    /// The group id; a new UUID when not given.
    pub id: Option<String>,
}

impl Group {
    /// A group of these signatures.
    pub fn of(tasks: impl IntoIterator<Item = Signature>) -> Self {
        Group {
            tasks: tasks.into_iter().map(Canvas::from).collect(),
            id: None,
        }
    }
}

/// A group (the header) and a call (the body) that gets the list of the header's results
/// once every header task is done. Needs the Redis result backend.
#[derive(Debug, Clone)]
pub struct Chord {
    /// The header.
    pub header: Group,
    /// The body.
    pub body: Box<Signature>,
}

impl Chord {
    /// `header`, then `body` with the header's results.
    pub fn new(header: Group, body: Signature) -> Self {
        Chord {
            header,
            body: Box::new(body),
        }
    }
}

/// How a producer fills in what a workflow leaves open, before encoding it.
pub struct Freezer<'a> {
    /// The queue a task goes to when its signature names none: (task, task's default).
    pub route: &'a dyn Fn(&str, Option<&str>) -> String,
    /// The reply queue of `rpc://` results, set on every call that has none.
    pub reply_to: Option<&'a str>,
    /// New ids.
    pub new_id: &'a mut dyn FnMut() -> String,
}

impl Freezer<'_> {
    /// The workflow as Celery's signature dict, every task with its id and queue.
    pub fn freeze(&mut self, canvas: &Canvas) -> Result<SignatureDict, CanvasError> {
        match canvas {
            Canvas::Task(signature) => self.task(signature),
            Canvas::Group(group) => self.group(group),
            Canvas::Chord(chord) => self.chord(&chord.header, &Canvas::Task(chord.body.clone())),
            Canvas::Chain(chain) => {
                let mut tasks = Vec::with_capacity(chain.steps.len());
                let mut steps = chain.steps.iter().peekable();
                while let Some(step) = steps.next() {
                    // A group followed by a step is a chord with that step as its body.
                    match (step, steps.peek()) {
                        (Canvas::Group(group), Some(body)) => {
                            tasks.push(self.chord(group, body)?.to_value());
                            steps.next();
                        }
                        _ => tasks.push(self.freeze(step)?.to_value()),
                    }
                }
                let mut kwargs = Map::new();
                kwargs.insert("tasks".into(), Value::Array(tasks));
                let mut dict = SignatureDict::new("celery.chain", Vec::new(), kwargs);
                dict.subtask_type = Some("chain".into());
                Ok(dict)
            }
        }
    }

    fn task(&mut self, signature: &Signature) -> Result<SignatureDict, CanvasError> {
        if signature.bincode_args.is_some() {
            return Err(CanvasError::unsupported(format!(
                "{} with bincode arguments in a workflow (workflows are JSON)",
                signature.task
            )));
        }
        let mut dict = SignatureDict::new(
            &signature.task,
            signature.args.clone(),
            signature.kwargs.clone(),
        );
        dict.immutable = signature.immutable;
        let options = &mut dict.options;
        let id = signature.id.clone().unwrap_or_else(&mut *self.new_id);
        options.insert("task_id".into(), Value::String(id));
        let queue = signature
            .queue
            .clone()
            .unwrap_or_else(|| (self.route)(&signature.task, signature.default_queue.as_deref()));
        options.insert("queue".into(), Value::String(queue));
        let reply_to = signature.reply_to.as_deref().or(self.reply_to);
        if let Some(reply_to) = reply_to {
            options.insert("reply_to".into(), Value::String(reply_to.to_string()));
        }
        if let Some(priority) = signature.priority {
            options.insert("priority".into(), Value::from(priority));
        }
        if let Some(eta) = signature.eta {
            options.insert("eta".into(), Value::String(format_datetime(&eta)));
        }
        if let Some(expires) = signature.expires {
            options.insert("expires".into(), Value::String(format_datetime(&expires)));
        }
        if let Some(limit) = signature.time_limit {
            options.insert("time_limit".into(), Value::from(limit.as_secs_f64()));
        }
        if let Some(limit) = signature.soft_time_limit {
            options.insert("soft_time_limit".into(), Value::from(limit.as_secs_f64()));
        }
        for (key, value) in [
            ("parent_id", &signature.parent_id),
            ("root_id", &signature.root_id),
        ] {
            if let Some(value) = value {
                options.insert(key.into(), Value::String(value.clone()));
            }
        }
        for (key, linked) in [
            ("link", &signature.link),
            ("link_error", &signature.link_error),
        ] {
            if !linked.is_empty() {
                let linked = linked
                    .iter()
                    .map(|signature| self.task(signature).map(|dict| dict.to_value()))
                    .collect::<Result<Vec<_>, _>>()?;
                dict.options.insert(key.into(), Value::Array(linked));
            }
        }
        Ok(dict)
    }

    fn group(&mut self, group: &Group) -> Result<SignatureDict, CanvasError> {
        let tasks = group
            .tasks
            .iter()
            .map(|task| self.freeze(task).map(|dict| dict.to_value()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut kwargs = Map::new();
        kwargs.insert("tasks".into(), Value::Array(tasks));
        let mut dict = SignatureDict::new("celery.group", Vec::new(), kwargs);
        dict.subtask_type = Some("group".into());
        let id = group.id.clone().unwrap_or_else(&mut *self.new_id);
        dict.options.insert("task_id".into(), Value::String(id));
        Ok(dict)
    }

    fn chord(&mut self, header: &Group, body: &Canvas) -> Result<SignatureDict, CanvasError> {
        let header = self.group(header)?;
        let body = self.freeze(body)?;
        let mut kwargs = Map::new();
        kwargs.insert("header".into(), header.to_value());
        let body_id = body.task_id().map(str::to_string);
        kwargs.insert("body".into(), body.to_value());
        kwargs.insert("kwargs".into(), Value::Object(Map::new()));
        let mut dict = SignatureDict::new("celery.chord", Vec::new(), kwargs);
        dict.subtask_type = Some("chord".into());
        if let Some(id) = body_id {
            dict.options.insert("task_id".into(), Value::String(id));
        }
        Ok(dict)
    }
}

/// The id of the task whose result is the workflow's result (a chain's last step, a
/// chord's body); `None` for a group (its result is its members').
pub fn result_id(frozen: &SignatureDict) -> Option<String> {
    match frozen.subtask_type.as_deref() {
        None | Some("chord") => frozen.task_id().map(str::to_string),
        Some("chain") => {
            let last = frozen.kwargs.get("tasks")?.as_array()?.last()?;
            result_id(&SignatureDict::from_value(last).ok()?)
        }
        _ => None,
    }
}

/// The ids of a frozen group's members, in order.
pub fn member_ids(frozen: &SignatureDict) -> Vec<String> {
    frozen
        .kwargs
        .get("tasks")
        .and_then(Value::as_array)
        .map(|tasks| {
            tasks
                .iter()
                .filter_map(|task| SignatureDict::from_value(task).ok())
                .filter_map(|task| result_id(&task))
                .collect()
        })
        .unwrap_or_default()
}
