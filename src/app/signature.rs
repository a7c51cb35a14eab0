//! `Signature`: one task call to send, by name, with its options (Celery's
//! `apply_async` options).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::time::Duration;

use crate::protocol::ContentType;
use crate::task::args::encode_args;
use crate::task::Task;

use super::SendError;

/// A task call: name, arguments and options.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The registered task name.
    pub task: String,
    /// Positional arguments (JSON).
    pub args: Vec<Value>,
    /// Keyword arguments (JSON).
    pub kwargs: Map<String, Value>,
    /// Bincode-encoded typed arguments; replaces args/kwargs for Rust-to-Rust sends.
    pub bincode_args: Option<Vec<u8>>,
    /// The task id; a new UUID v4 when not given.
    pub id: Option<String>,
    /// The queue; the producer's default queue when not given.
    pub queue: Option<String>,
    /// Do not run before this instant.
    pub eta: Option<DateTime<Utc>>,
    /// Do not run after this instant.
    pub expires: Option<DateTime<Utc>>,
    /// AMQP priority (0-255; RabbitMQ honours it on queues with `x-max-priority`).
    pub priority: Option<u8>,
    /// Where the worker publishes the result (AMQP `reply_to`); when not given, the
    /// producer's reply queue if it has `rpc://` results, else none.
    pub reply_to: Option<String>,
    /// The task that sends this one (set by `TaskContext::send`).
    pub parent_id: Option<String>,
    /// The first task of the workflow; the task's own id when not given.
    pub root_id: Option<String>,
    /// Hard time limit for this call (the `timelimit` header), overriding the task's.
    pub time_limit: Option<Duration>,
    /// Soft time limit for this call (the `timelimit` header), overriding the task's.
    pub soft_time_limit: Option<Duration>,
    /// Default queue of the task type (`TaskOptions::queue`), used when neither the call
    /// nor a route names one.
    pub default_queue: Option<String>,
    /// Called with this task's result when it succeeds (Celery's `link`).
    pub link: Vec<Signature>,
    /// Called with this task's id when it fails (Celery's `link_error`, old-style errbacks).
    pub link_error: Vec<Signature>,
    /// When called by a workflow (a callback, a chain step, a chord body), do not put the
    /// parent's result before the arguments (Celery's `si()`).
    pub immutable: bool,
}

impl Signature {
    /// A call of the task named `task` with no arguments.
    pub fn new(task: impl Into<String>) -> Self {
        Signature {
            task: task.into(),
            args: Vec::new(),
            kwargs: Map::new(),
            bincode_args: None,
            id: None,
            queue: None,
            eta: None,
            expires: None,
            priority: None,
            reply_to: None,
            parent_id: None,
            root_id: None,
            time_limit: None,
            soft_time_limit: None,
            default_queue: None,
            link: Vec::new(),
            link_error: Vec::new(),
            immutable: false,
        }
    }

    /// Calls `callback` with this task's result (first argument) when it succeeds.
    pub fn with_link(mut self, callback: Signature) -> Self {
        self.link.push(callback);
        self
    }

    /// Calls `errback` with this task's id when it fails.
    pub fn with_link_error(mut self, errback: Signature) -> Self {
        self.link_error.push(errback);
        self
    }

    /// Makes the call immutable: a workflow calls it with its own arguments only, without
    /// the parent's result (Celery's `si()`).
    pub fn immutable(mut self) -> Self {
        self.immutable = true;
        self
    }

    /// Sets the hard time limit of this call.
    pub fn with_time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Sets the soft time limit of this call.
    pub fn with_soft_time_limit(mut self, limit: Duration) -> Self {
        self.soft_time_limit = Some(limit);
        self
    }

    /// A call of `T` with typed arguments, sent as positional JSON args.
    pub fn of<T: Task>(args: &T::Args) -> Result<Self, SendError> {
        let (args, kwargs) = encode_args(args).map_err(|error| SendError::Arguments {
            task: T::NAME.to_string(),
            reason: error.to_string(),
        })?;
        let mut signature = Signature::new(T::NAME).with_args(args).with_kwargs(kwargs);
        signature.default_queue = T::options().queue;
        Ok(signature)
    }

    /// A call of `T` with typed arguments sent as `application/x-bincode` (Rust workers only).
    pub fn of_bincode<T: Task>(args: &T::Args) -> Result<Self, SendError> {
        let bytes =
            bincode::serde::encode_to_vec(args, bincode::config::standard()).map_err(|error| {
                SendError::Arguments {
                    task: T::NAME.to_string(),
                    reason: error.to_string(),
                }
            })?;
        let mut signature = Signature::new(T::NAME);
        signature.default_queue = T::options().queue;
        signature.bincode_args = Some(bytes);
        Ok(signature)
    }

    /// Sets the positional arguments.
    pub fn with_args(mut self, args: Vec<Value>) -> Self {
        self.args = args;
        self
    }

    /// Sets the keyword arguments.
    pub fn with_kwargs(mut self, kwargs: Map<String, Value>) -> Self {
        self.kwargs = kwargs;
        self
    }

    /// Sets the task id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sends to this queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Runs no earlier than `eta`.
    pub fn with_eta(mut self, eta: DateTime<Utc>) -> Self {
        self.eta = Some(eta);
        self
    }

    /// Runs no earlier than `countdown` from now (Celery turns a countdown into an eta).
    pub fn with_countdown(self, countdown: Duration) -> Self {
        let eta = Utc::now() + chrono::Duration::from_std(countdown).unwrap_or_default();
        self.with_eta(eta)
    }

    /// Is not run after `expires`.
    pub fn with_expires(mut self, expires: DateTime<Utc>) -> Self {
        self.expires = Some(expires);
        self
    }

    /// Is not run after `expires_in` from now (Celery's `expires` given in seconds).
    pub fn with_expires_in(self, expires_in: Duration) -> Self {
        let expires = chrono::Duration::from_std(expires_in)
            .ok()
            .and_then(|delta| Utc::now().checked_add_signed(delta))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.with_expires(expires)
    }

    /// Has the worker publish the result to `queue` instead of the producer's reply queue.
    pub fn with_reply_to(mut self, queue: impl Into<String>) -> Self {
        self.reply_to = Some(queue.into());
        self
    }

    /// Sets the AMQP priority.
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The content type this call is encoded with.
    pub fn content_type(&self) -> ContentType {
        if self.bincode_args.is_some() {
            ContentType::Bincode
        } else {
            ContentType::Json
        }
    }
}
