//! `EventPublisher`: the actor that owns a worker's event traffic. It declares the
//! `celeryev` exchange, sends `worker-online` at start, `worker-heartbeat` every 2 s and
//! `worker-offline` at a warm stop (always, as Celery does), and, while task events are
//! on, turns the worker's `TaskEvent`s into Celery task events.
//!
//! Task events never wait for the broker: they are buffered and published as one JSON
//! list on `task.multi` every [`FLUSH_EVERY`] or every [`BATCH_MAX`] events, one publish at
//! a time. While the broker is away the buffer keeps the newest [`BUFFER_MAX`] events,
//! drops the oldest and says how many it dropped once the broker is back. Worker events
//! are not buffered: the next heartbeat replaces a lost one.
//!
//! `active` and `processed` are counted from the worker's own `TaskEvent`s (a task started
//! and not yet ended; tasks started so far), as Celery counts accepted requests.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use serde_json::Value;

use super::clock::LamportClock;
use super::event::{
    properties, routing_key, sends_event, task_event, worker_event, Origin, Stamp, WorkerCounters,
    WorkerEventType, EXCHANGE, HEARTBEAT_FREQ, TASK_BATCH_ROUTING_KEY,
};
use super::host;
use super::switch::TaskEvents;
use crate::actors::amqp::BasicProperties;
use crate::actors::broker::{ExchangeSpec, PublishTransient};
use crate::actors::{BrokerClient, BrokerError, OutboundMessage};
use crate::worker::{TaskEvent, TaskEventKind};

/// How often buffered task events are published.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// At most this many task events per message; a full batch is published at once.
pub const BATCH_MAX: usize = 100;

/// At most this many task events wait for the broker; beyond, the oldest are dropped.
pub const BUFFER_MAX: usize = 10_000;

/// How long one publish waits for a connection that is down.
const PUBLISH_WAIT: Duration = Duration::from_secs(1);

/// Publishes what is buffered, then `worker-offline`; answered when done (each publish
/// waits at most about a second for the broker).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct StopEvents;

/// Sends one `worker-heartbeat` now, as the `heartbeat` remote-control command asks.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct SendHeartbeat;

/// The worker's event publisher.
pub(crate) struct EventPublisher {
    broker: BrokerClient,
    origin: Origin,
    /// The properties of every event (the `hostname` header).
    properties: BasicProperties,
    switch: TaskEvents,
    /// The worker's Lamport clock (shared with the pidbox replies): +1 per event sent.
    clock: LamportClock,
    /// Hours west of UTC, read again at every heartbeat (daylight saving time).
    utcoffset: f64,
    /// Tasks started and not ended, with when they started.
    running: HashMap<String, Instant>,
    /// Tasks started since the worker started.
    processed: u64,
    /// Task events waiting to be published, oldest first.
    buffer: VecDeque<Value>,
    /// Task events dropped since the broker went away.
    dropped: u64,
    /// Whether a batch is being published.
    flushing: bool,
    /// Whether the last batch could not be published (logged once).
    away: bool,
    /// Whether `celeryev` was declared on this broker (again after any failure).
    exchange_ready: bool,
}

impl EventPublisher {
    /// A publisher for the node `hostname`, publishing through `broker`, stamping events
    /// with the worker's `clock`.
    pub(crate) fn new(
        broker: BrokerClient,
        hostname: &str,
        switch: TaskEvents,
        clock: LamportClock,
    ) -> Self {
        EventPublisher {
            broker,
            origin: Origin {
                hostname: hostname.to_string(),
                pid: std::process::id(),
            },
            properties: properties(hostname),
            switch,
            clock,
            utcoffset: host::utcoffset(),
            running: HashMap::new(),
            processed: 0,
            buffer: VecDeque::new(),
            dropped: 0,
            flushing: false,
            away: false,
            exchange_ready: false,
        }
    }

    /// The next clock value and the time now.
    fn stamp(&mut self) -> Stamp {
        let clock = self.clock.forward();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        Stamp {
            clock,
            timestamp,
            utcoffset: self.utcoffset,
        }
    }

    /// Publishes one event message; declares the exchange first when needed.
    fn publish(
        &self,
        routing_key: String,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), BrokerError>> + 'static {
        let broker = self.broker.clone();
        let declare = !self.exchange_ready;
        let message = OutboundMessage {
            exchange: EXCHANGE.to_string(),
            routing_key,
            properties: self.properties.clone(),
            body,
        };
        async move {
            if declare {
                broker
                    .declare_exchange(ExchangeSpec::durable(EXCHANGE, "topic"))
                    .await?;
            }
            broker
                .publish_transient
                .send(PublishTransient {
                    message,
                    within: PUBLISH_WAIT,
                })
                .await?
        }
    }

    /// A worker event, ready to publish.
    fn worker_message(&mut self, event_type: WorkerEventType) -> (String, Vec<u8>) {
        let counters = WorkerCounters {
            active: self.running.len(),
            processed: self.processed,
            loadavg: host::load_average(),
        };
        let stamp = self.stamp();
        let event = worker_event(event_type, &self.origin, stamp, counters);
        (
            routing_key(event_type.name()),
            serde_json::to_vec(&event).unwrap_or_default(),
        )
    }

    /// Sends a worker event without waiting for it.
    fn send_worker_event(&mut self, event_type: WorkerEventType, ctx: &mut Context<Self>) {
        let (key, body) = self.worker_message(event_type);
        let publishing = self.publish(key, body);
        ctx.spawn(
            publishing
                .into_actor(self)
                .map(move |outcome, actor, _| match outcome {
                    Ok(()) => actor.exchange_ready = true,
                    Err(error) => {
                        actor.exchange_ready = false;
                        log::debug!("{} not sent: {error}", event_type.name());
                    }
                }),
        );
    }

    /// Keeps `event` for the next batch, dropping the oldest when the buffer is full.
    fn buffer(&mut self, event: Value) {
        if self.buffer.len() >= BUFFER_MAX {
            self.buffer.pop_front();
            self.dropped += 1;
        }
        self.buffer.push_back(event);
    }

    /// Publishes the oldest batch of buffered task events, unless one is in flight.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.buffer.is_empty() {
            return;
        }
        let count = self.buffer.len().min(BATCH_MAX);
        let batch: Vec<Value> = self.buffer.drain(..count).collect();
        let body = serde_json::to_vec(&batch).unwrap_or_default();
        self.flushing = true;
        let publishing = self.publish(TASK_BATCH_ROUTING_KEY.to_string(), body);
        ctx.spawn(
            publishing
                .into_actor(self)
                .map(move |outcome, actor, ctx| {
                    actor.flushing = false;
                    match outcome {
                        Ok(()) => {
                            actor.exchange_ready = true;
                            if actor.away {
                                log::warn!(
                                    "task events: the broker is back; {} event(s) were dropped while it was away",
                                    actor.dropped
                                );
                                actor.away = false;
                                actor.dropped = 0;
                            }
                            if actor.buffer.len() >= BATCH_MAX {
                                actor.flush(ctx);
                            }
                        }
                        Err(error) => {
                            actor.exchange_ready = false;
                            if !actor.away {
                                log::warn!(
                                    "task events: cannot publish ({error}); keeping the newest {BUFFER_MAX} until the broker is back"
                                );
                                actor.away = true;
                            }
                            for event in batch.into_iter().rev() {
                                actor.buffer.push_front(event);
                            }
                            while actor.buffer.len() > BUFFER_MAX {
                                actor.buffer.pop_front();
                                actor.dropped += 1;
                            }
                        }
                    }
                }),
        );
    }

    /// Sends a heartbeat [`HEARTBEAT_FREQ`] seconds from now, then schedules the next: a
    /// late timer delays the following beats rather than bunching them.
    fn schedule_heartbeat(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(Duration::from_secs_f64(HEARTBEAT_FREQ), |actor, ctx| {
            actor.utcoffset = host::utcoffset();
            actor.send_worker_event(WorkerEventType::Heartbeat, ctx);
            actor.schedule_heartbeat(ctx);
        });
    }

    /// Counts the task in `active`/`processed`; answers its runtime when it ended.
    fn count(&mut self, id: &str, kind: &TaskEventKind) -> Option<f64> {
        match kind {
            TaskEventKind::Received(_) | TaskEventKind::Deferred { .. } => None,
            TaskEventKind::Started => {
                self.processed += 1;
                self.running.insert(id.to_string(), Instant::now());
                None
            }
            _ => self
                .running
                .remove(id)
                .map(|started| started.elapsed().as_secs_f64()),
        }
    }
}

impl Actor for EventPublisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.send_worker_event(WorkerEventType::Online, ctx);
        self.schedule_heartbeat(ctx);
        ctx.run_interval(FLUSH_EVERY, |actor, ctx| actor.flush(ctx));
    }
}

impl Handler<TaskEvent> for EventPublisher {
    type Result = ();

    fn handle(&mut self, event: TaskEvent, ctx: &mut Context<Self>) {
        let Some(id) = event.task_id.as_deref() else {
            return;
        };
        let runtime = self.count(id, &event.kind);
        // No event for it: the clock does not move.
        if !self.switch.enabled() || !sends_event(&event.kind) {
            return;
        }
        let stamp = self.stamp();
        if let Some(fields) = task_event(&event, runtime, &self.origin, stamp) {
            self.buffer(Value::Object(fields));
            if self.buffer.len() >= BATCH_MAX {
                self.flush(ctx);
            }
        }
    }
}

impl Handler<SendHeartbeat> for EventPublisher {
    type Result = ();

    fn handle(&mut self, _: SendHeartbeat, ctx: &mut Context<Self>) {
        let stamp = self.stamp();
        let event = super::event::requested_heartbeat(&self.origin, stamp);
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let publishing = self.publish(routing_key(WorkerEventType::Heartbeat.name()), body);
        ctx.spawn(publishing.into_actor(self).map(|outcome, _, _| {
            if let Err(error) = outcome {
                log::debug!("the requested worker-heartbeat was not sent: {error}");
            }
        }));
    }
}

impl Handler<StopEvents> for EventPublisher {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopEvents, _: &mut Context<Self>) -> Self::Result {
        let batches: Vec<Vec<u8>> = self
            .buffer
            .drain(..)
            .collect::<Vec<_>>()
            .chunks(BATCH_MAX)
            .map(|batch| serde_json::to_vec(batch).unwrap_or_default())
            .collect();
        let mut sends: Vec<_> = batches
            .into_iter()
            .map(|body| self.publish(TASK_BATCH_ROUTING_KEY.to_string(), body))
            .collect();
        let (key, body) = self.worker_message(WorkerEventType::Offline);
        sends.push(self.publish(key, body));
        if self.dropped > 0 {
            log::warn!(
                "task events: {} event(s) were dropped while the broker was away",
                self.dropped
            );
        }
        Box::pin(
            async move {
                for send in sends {
                    if let Err(error) = send.await {
                        log::warn!("events at shutdown not sent: {error}");
                        break;
                    }
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}
