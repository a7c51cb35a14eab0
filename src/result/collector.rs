//! `ResultCollector`: receives the result messages of the reply queue, keeps the latest
//! state of each task, and hands ready results to whoever waits for them.

use std::collections::{HashMap, HashSet, VecDeque};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::actors::consumer::Deliver;
use crate::actors::{Delivery, Settlement, SupervisorEvent};
use crate::protocol::{ProtocolError, ResultMessage};

/// How many task results a collector keeps by default before it forgets the oldest.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// What a waiter receives: the ready result, or why none can arrive.
pub type ReadyOutcome = Result<ResultMessage, String>;

/// Asks for the latest result received for a task (any state), without consuming it.
#[derive(Debug, Message)]
#[rtype(result = "Option<ResultMessage>")]
pub struct Latest(pub String);

/// Asks to be handed the task's ready result (SUCCESS, FAILURE, REVOKED). When it is
/// already there it is sent at once; either way the collector forgets it once handed over.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AwaitReady {
    /// The task id.
    pub task_id: String,
    /// Receives the result, or why none can arrive.
    pub reply: oneshot::Sender<ReadyOutcome>,
}

/// Tells the collector that waiters for a task gave up (timed out), so it drops them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ForgetWaiters(pub String);

/// Collects the result messages of one reply queue.
pub struct ResultCollector {
    /// The reply queue, for log lines.
    queue: String,
    /// The latest result of each task not yet handed to a `get`.
    results: HashMap<String, ResultMessage>,
    /// Task ids in the order their first result arrived; the oldest are forgotten first.
    order: VecDeque<String>,
    /// How many results are kept at most.
    capacity: usize,
    /// Waiters for ready results, by task id.
    waiters: HashMap<String, Vec<oneshot::Sender<ReadyOutcome>>>,
    /// Tasks whose ready result was handed to a `get` (and forgotten): a late non-ready
    /// message for one of them is dropped instead of kept. Bounded like `results`.
    handed: HashSet<String>,
    /// `handed` in insertion order, oldest first.
    handed_order: VecDeque<String>,
    /// Set when the reply queue's consumer was given up: no result can arrive any more.
    broken: Option<String>,
}

impl ResultCollector {
    /// A collector for the results arriving on `queue`, keeping at most `capacity`
    /// unclaimed results (the oldest are dropped first, with a warning).
    pub fn new(queue: impl Into<String>, capacity: usize) -> Self {
        ResultCollector {
            queue: queue.into(),
            results: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            waiters: HashMap::new(),
            handed: HashSet::new(),
            handed_order: VecDeque::new(),
            broken: None,
        }
    }

    /// Records a decoded result: wakes the waiters of a ready one, else keeps the latest.
    fn record(&mut self, message: ResultMessage) {
        let task_id = message.task_id.clone();
        if !message.status.is_ready() && self.handed.contains(&task_id) {
            log::debug!(
                "ignoring {} for task {task_id}: its ready result was already handed over",
                message.status
            );
            return;
        }
        if let Some(current) = self.results.get(&task_id) {
            if current.status.is_ready() && !message.status.is_ready() {
                log::debug!(
                    "ignoring {} for task {task_id}: it is already {}",
                    message.status,
                    current.status
                );
                return;
            }
        }
        if message.status.is_ready() {
            if let Some(waiters) = self.waiters.remove(&task_id) {
                let mut handed = false;
                for waiter in waiters {
                    handed |= waiter.send(Ok(message.clone())).is_ok();
                }
                if handed {
                    self.results.remove(&task_id);
                    self.mark_handed(task_id);
                    return;
                }
            }
        }
        if self.results.insert(task_id.clone(), message).is_none() {
            self.order.push_back(task_id);
            self.enforce_capacity();
        }
    }

    /// Remembers that the ready result of `task_id` was handed over.
    fn mark_handed(&mut self, task_id: String) {
        if self.handed.insert(task_id.clone()) {
            self.handed_order.push_back(task_id);
        }
        while self.handed.len() > self.capacity {
            match self.handed_order.pop_front() {
                Some(oldest) => self.handed.remove(&oldest),
                None => break,
            };
        }
    }

    /// Drops the oldest results beyond the capacity.
    fn enforce_capacity(&mut self) {
        while self.results.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.results.remove(&oldest).is_some() {
                log::warn!(
                    "reply queue \"{}\": forgetting the unclaimed result of task {oldest} \
                     (more than {} results kept)",
                    self.queue,
                    self.capacity
                );
            }
        }
        // Ids whose result was handed over stay in `order` until they reach its front;
        // compact when they dominate so that `order` stays bounded too.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let results = &self.results;
            self.order.retain(|id| results.contains_key(id));
        }
    }
}

impl Actor for ResultCollector {
    type Context = Context<Self>;
}

/// Reads a result document; a body without `task_id` takes the AMQP correlation id.
fn decode(delivery: &Delivery) -> Result<ResultMessage, ProtocolError> {
    let correlation_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|id| id.to_string());
    match ResultMessage::from_json(&delivery.body) {
        Ok(mut message) => {
            if message.task_id.is_empty() {
                message.task_id = correlation_id.ok_or_else(|| ProtocolError::InvalidJson {
                    reason: "the result has an empty task_id and no correlation_id".into(),
                })?;
            }
            Ok(message)
        }
        // Perhaps only `task_id` is missing: older senders relied on the correlation id. (A
        // body refused for its size or cost is not parsed again.)
        Err(error @ ProtocolError::InvalidJson { .. }) => {
            let Some(correlation_id) = correlation_id else {
                return Err(error);
            };
            let Ok(serde_json::Value::Object(mut document)) =
                serde_json::from_slice::<serde_json::Value>(&delivery.body)
            else {
                return Err(error);
            };
            if document.contains_key("task_id") {
                return Err(error);
            }
            document.insert("task_id".into(), serde_json::Value::String(correlation_id));
            serde_json::from_value(serde_json::Value::Object(document)).map_err(|_| error)
        }
        Err(error) => Err(error),
    }
}

impl Handler<Deliver> for ResultCollector {
    type Result = ();

    fn handle(&mut self, Deliver(delivery): Deliver, ctx: &mut Context<Self>) {
        match decode(&delivery) {
            Ok(message) => {
                log::debug!(
                    "reply queue \"{}\": task {} is {}",
                    self.queue,
                    message.task_id,
                    message.status
                );
                self.record(message);
            }
            Err(error) => {
                let correlation_id = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map_or_else(|| "(none)".to_string(), |id| id.to_string());
                let content_type = delivery
                    .properties
                    .content_type()
                    .as_ref()
                    .map_or_else(|| "(none)".to_string(), |mime| mime.to_string());
                log::warn!(
                    "reply queue \"{}\": dropping a malformed result message \
                     (correlation_id {correlation_id}, content_type {content_type}, {} bytes): {error}",
                    self.queue,
                    delivery.body.len()
                );
            }
        }
        let queue = self.queue.clone();
        let acker = delivery.acker;
        ctx.spawn(
            async move {
                if let Err(error) = acker.settle(Settlement::Ack).await {
                    log::warn!("reply queue \"{queue}\": acking a result message: {error}");
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<Latest> for ResultCollector {
    type Result = Option<ResultMessage>;

    fn handle(&mut self, Latest(task_id): Latest, _: &mut Context<Self>) -> Self::Result {
        self.results.get(&task_id).cloned()
    }
}

impl Handler<AwaitReady> for ResultCollector {
    type Result = ();

    fn handle(&mut self, request: AwaitReady, _: &mut Context<Self>) {
        let ready = self
            .results
            .get(&request.task_id)
            .is_some_and(|message| message.status.is_ready());
        if ready {
            if let Some(message) = self.results.remove(&request.task_id) {
                match request.reply.send(Ok(message)) {
                    Ok(()) => self.mark_handed(request.task_id),
                    // The waiter is gone already: keep the result for the next one.
                    Err(Ok(message)) => {
                        self.results.insert(request.task_id, message);
                    }
                    Err(Err(_)) => {}
                }
            }
            return;
        }
        if let Some(reason) = &self.broken {
            let _ = request.reply.send(Err(reason.clone()));
            return;
        }
        let waiters = self.waiters.entry(request.task_id).or_default();
        waiters.retain(|waiter| !waiter.is_closed());
        waiters.push(request.reply);
    }
}

impl Handler<ForgetWaiters> for ResultCollector {
    type Result = ();

    fn handle(&mut self, ForgetWaiters(task_id): ForgetWaiters, _: &mut Context<Self>) {
        if let Some(waiters) = self.waiters.get_mut(&task_id) {
            waiters.retain(|waiter| !waiter.is_closed());
            if waiters.is_empty() {
                self.waiters.remove(&task_id);
            }
        }
    }
}

impl Handler<SupervisorEvent> for ResultCollector {
    type Result = ();

    fn handle(&mut self, event: SupervisorEvent, _: &mut Context<Self>) {
        let reason = match event {
            SupervisorEvent::GaveUp { queue, reason } => format!(
                "the consumer of reply queue \"{queue}\" failed too often and was given up: {reason}"
            ),
            SupervisorEvent::Stopped { queue } => {
                format!("the reply queue \"{queue}\" is no longer consumed (results were closed)")
            }
            SupervisorEvent::Started { .. } => {
                self.broken = None;
                return;
            }
            SupervisorEvent::Restarting { .. } => return,
        };
        // The supervisor already logged a give-up as an error; a stop was asked for.
        log::debug!("{reason}");
        for (_, waiters) in self.waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(reason.clone()));
            }
        }
        self.broken = Some(reason);
    }
}

#[cfg(test)]
impl ResultCollector {
    /// `record`, for unit tests.
    pub(crate) fn record_for_test(&mut self, message: ResultMessage) {
        self.record(message);
    }

    /// Registers a waiter as `AwaitReady` does, for unit tests (no result is kept yet).
    pub(crate) fn await_for_test(&mut self, task_id: &str, reply: oneshot::Sender<ReadyOutcome>) {
        self.waiters
            .entry(task_id.to_string())
            .or_default()
            .push(reply);
    }

    /// The task ids of the kept results, sorted.
    pub(crate) fn kept_for_test(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.results.keys().cloned().collect();
        ids.sort();
        ids
    }
}
