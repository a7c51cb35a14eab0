//! `TaskEvent`: what happened to each message a worker received, for metrics, logs and
//! tests that need to observe the worker.

use actix::{Message, Recipient};
use serde_json::Value;

use crate::task::TaskError;

/// What Celery's `task-received` event says about a task, from its message.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedInfo {
    /// `repr` of the positional arguments (the `argsrepr` header when sent).
    pub args: String,
    /// `repr` of the keyword arguments (the `kwargsrepr` header when sent).
    pub kwargs: String,
    /// The workflow's first task.
    pub root_id: Option<String>,
    /// The task that sent this one.
    pub parent_id: Option<String>,
    /// How often it was retried so far.
    pub retries: u32,
    /// When it is due.
    pub eta: Option<chrono::DateTime<chrono::Utc>>,
    /// When it expires.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

impl ReceivedInfo {
    /// What `message` says, with Python reprs computed when its headers lack them.
    pub(crate) fn of(message: &crate::protocol::TaskMessage) -> Self {
        use crate::protocol::repr::{args_repr, kwargs_repr};
        let headers = &message.headers;
        let (args, kwargs) = match &message.payload {
            crate::protocol::TaskPayload::Json { args, kwargs, .. } => (
                headers.argsrepr.clone().unwrap_or_else(|| args_repr(args)),
                headers
                    .kwargsrepr
                    .clone()
                    .unwrap_or_else(|| kwargs_repr(kwargs)),
            ),
            crate::protocol::TaskPayload::Bincode(_) => (
                headers.argsrepr.clone().unwrap_or_else(|| "(...)".into()),
                headers.kwargsrepr.clone().unwrap_or_else(|| "{}".into()),
            ),
        };
        ReceivedInfo {
            args,
            kwargs,
            root_id: headers.root_id.clone(),
            parent_id: headers.parent_id.clone(),
            retries: headers.retries,
            eta: headers.eta,
            expires: headers.expires,
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEventKind {
    /// The task was received (emitted only while task events are on: see
    /// `WorkerSystem::task_events`).
    Received(Box<ReceivedInfo>),
    /// The task got an execution slot (and, with early acknowledgement, was acked).
    Started,
    /// The task returned this result.
    Succeeded {
        /// The result, as JSON.
        result: Value,
    },
    /// The task failed: its error, a panic, a time limit, or arguments that do not fit.
    Failed {
        /// The failure as Python would see it.
        error: TaskError,
    },
    /// The message was rejected: malformed or of an unknown task (without requeue), or its
    /// task raised `TaskError::reject` (with or without requeue).
    Rejected {
        /// Why, as logged.
        reason: String,
        /// Whether the message went back to its queue (Celery's `requeue` field of
        /// `task-rejected`): false too when the task asked for requeue but its message was
        /// acknowledged when it started (early ack).
        requeue: bool,
    },
    /// The task was revoked: not run (revoked or expired; acked), or stopped while running
    /// by `revoke(terminate=True)`.
    Revoked {
        /// Why: `revoked`, `expired` or `terminated`.
        reason: String,
        /// The number of the signal that terminated the run (Celery's `signum`, 15 for
        /// SIGTERM, its default); `None` when the task never ran.
        signum: Option<i32>,
    },
    /// The message went back to its queue unexecuted (the worker was shutting down).
    Requeued,
    /// The task asked to be retried: it was published again for `eta`.
    Retried {
        /// When it runs again.
        eta: chrono::DateTime<chrono::Utc>,
        /// The error it was retried for.
        error: TaskError,
    },
    /// The task is due too far ahead to be held: it waits in a wait queue of the broker.
    Deferred {
        /// When it is due.
        eta: chrono::DateTime<chrono::Utc>,
        /// The wait queue.
        wait_queue: String,
    },
    /// The task ended with `TaskError::ignore()`: acked, no result.
    Ignored,
}

/// An event about one message.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct TaskEvent {
    /// The task id, when the message had a readable one.
    pub task_id: Option<String>,
    /// The task name, when the message had a readable one.
    pub task_name: Option<String>,
    /// The queue the message came from.
    pub queue: String,
    /// What happened.
    pub kind: TaskEventKind,
}

/// Sends events to every subscriber.
#[derive(Clone, Default)]
pub(crate) struct EventSink {
    listeners: Vec<Recipient<TaskEvent>>,
    /// Whether task events are on: `Received` events are built only then.
    switch: crate::monitor::TaskEvents,
}

impl EventSink {
    pub(crate) fn new(
        listeners: Vec<Recipient<TaskEvent>>,
        switch: crate::monitor::TaskEvents,
    ) -> Self {
        EventSink { listeners, switch }
    }

    /// Whether `Received` events are wanted (they cost a repr of the arguments).
    pub(crate) fn wants_received(&self) -> bool {
        !self.listeners.is_empty() && self.switch.enabled()
    }

    pub(crate) fn emit(
        &self,
        task_id: Option<&str>,
        task_name: Option<&str>,
        queue: &str,
        kind: TaskEventKind,
    ) {
        if self.listeners.is_empty() {
            return;
        }
        let event = TaskEvent {
            task_id: task_id.map(str::to_string),
            task_name: task_name.map(str::to_string),
            queue: queue.to_string(),
            kind,
        };
        for listener in &self.listeners {
            listener.do_send(event.clone());
        }
    }
}

/// Forwards task events into a channel.
struct EventForwarder {
    sender: futures::channel::mpsc::UnboundedSender<TaskEvent>,
}

impl actix::Actor for EventForwarder {
    type Context = actix::Context<Self>;
}

impl actix::Handler<TaskEvent> for EventForwarder {
    type Result = ();

    fn handle(&mut self, event: TaskEvent, _: &mut actix::Context<Self>) {
        let _ = self.sender.unbounded_send(event);
    }
}

/// A recipient to give `WorkerBuilder::on_task_event`, and the stream of events it
/// receives. Must run inside an actix system.
pub fn task_event_channel() -> (
    Recipient<TaskEvent>,
    futures::channel::mpsc::UnboundedReceiver<TaskEvent>,
) {
    use actix::Actor;
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    (EventForwarder { sender }.start().recipient(), receiver)
}
