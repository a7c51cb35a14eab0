//! The consumer supervisor: starts one `ConsumerActor` per queue and restarts a consumer
//! whose channel or stream failed, within a restart limit (N restarts in a window). Past
//! the limit it gives up loudly: its listeners get `SupervisorEvent::GaveUp`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::backoff::{Backoff, Jitter};
use crate::broker::BrokerClient;
use crate::consumer::{
    AdjustPrefetch, ConsumerActor, ConsumerExited, ConsumerReady, ConsumerSpec, Deliver,
    SetBaseWindow, StopConsuming,
};
#[cfg(feature = "fault-injection")]
use crate::error::BrokerError;

/// When and how often a failed consumer is restarted.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`; one more and the supervisor gives up.
    pub max_restarts: usize,
    /// The window restarts are counted in.
    pub window: Duration,
    /// Delay before the first restart; doubled for each recent restart, up to `max_delay`
    /// (each with half jitter, see [`RestartPolicy::backoff`]).
    pub initial_delay: Duration,
    /// Upper bound of the restart delay.
    pub max_delay: Duration,
}

impl RestartPolicy {
    /// The restart delays as a [`Backoff`]: doubling from `initial_delay` up to
    /// `max_delay`, with half jitter so that the consumers of many workers that failed
    /// together (a broker restart) do not come back in step.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            min: self.initial_delay,
            max: self.max_delay,
            jitter: Jitter::Half,
        }
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 10,
            window: Duration::from_secs(60),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// What happened to the consumers: sent to listeners, in order.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum SupervisorEvent {
    /// A consumer for the queue is open and receiving (first start or restart).
    Started {
        /// The queue.
        queue: String,
    },
    /// A consumer failed and will be restarted.
    Restarting {
        /// The queue.
        queue: String,
        /// Why it failed.
        reason: String,
        /// How many restarts are in the current window, this one included.
        restarts_in_window: usize,
    },
    /// A consumer failed too often: it is not restarted.
    GaveUp {
        /// The queue.
        queue: String,
        /// The last failure.
        reason: String,
    },
    /// A consumer stopped because it was asked to.
    Stopped {
        /// The queue.
        queue: String,
    },
}

/// Starts consuming a queue under supervision.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Supervise(pub ConsumerSpec);

/// Subscribes to the supervisor's events.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SubscribeSupervisor(pub Recipient<SupervisorEvent>);

/// Stops every consumer; answers once each has cancelled its consumer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopConsumers;

/// Stops consuming one queue for good (the remote `cancel_consumer`); answers once its
/// consumer cancelled. Unknown queues are ignored.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopConsumer {
    /// The queue.
    pub queue: String,
}

/// Widens or narrows the prefetch window of the consumer with this tag, if it is still
/// the queue's current consumer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AdjustConsumerPrefetch {
    /// The queue.
    pub queue: String,
    /// The consumer the adjustment is about (a restarted consumer starts afresh).
    pub consumer_tag: String,
    /// By how much.
    pub delta: i32,
}

/// Sets the base prefetch window of every supervised consumer, now and after restarts
/// (the worker's adaptive window; consumers without `global_qos` keep theirs).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetConsumersWindow(pub u16);

/// Fault injection: closes the channel of the queue's current consumer with a channel error.
///
/// Only with the `fault-injection` feature: test-only, not part of the default API.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct BreakConsumer {
    /// The queue whose consumer's channel is broken.
    pub queue: String,
}

/// One supervised consumer.
struct Supervised {
    spec: ConsumerSpec,
    /// The running consumer, if any.
    current: Option<(String, Addr<ConsumerActor>)>,
    /// When recent restarts happened, oldest first.
    restarts: VecDeque<Instant>,
}

/// Supervises the consumers of a worker.
pub struct ConsumerSupervisor {
    broker: BrokerClient,
    /// Where consumers send deliveries.
    deliver_to: Recipient<Deliver>,
    policy: RestartPolicy,
    consumers: HashMap<String, Supervised>,
    listeners: Vec<Recipient<SupervisorEvent>>,
    /// Set by `StopConsumers`: exits are then expected and not restarted.
    stopping: bool,
}

impl ConsumerSupervisor {
    /// A supervisor with no consumers yet.
    pub fn new(
        broker: BrokerClient,
        deliver_to: Recipient<Deliver>,
        policy: RestartPolicy,
    ) -> Self {
        ConsumerSupervisor {
            broker,
            deliver_to,
            policy,
            consumers: HashMap::new(),
            listeners: Vec::new(),
            stopping: false,
        }
    }

    fn emit(&self, event: SupervisorEvent) {
        for listener in &self.listeners {
            listener.do_send(event.clone());
        }
    }

    fn start_consumer(&mut self, queue: &str, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let Some(entry) = self.consumers.get_mut(queue) else {
            return;
        };
        let tag = format!("celeriac.{}.{}", queue, uuid::Uuid::new_v4().simple());
        let consumer = ConsumerActor::new(
            entry.spec.clone(),
            tag.clone(),
            self.broker.clone(),
            self.deliver_to.clone(),
            ctx.address().recipient(),
            ctx.address().recipient(),
        )
        .start();
        entry.current = Some((tag, consumer));
    }
}

impl Actor for ConsumerSupervisor {
    type Context = Context<Self>;
}

impl Handler<Supervise> for ConsumerSupervisor {
    type Result = ();

    fn handle(&mut self, Supervise(spec): Supervise, ctx: &mut Context<Self>) {
        let queue = spec.queue.clone();
        self.consumers.insert(
            queue.clone(),
            Supervised {
                spec,
                current: None,
                restarts: VecDeque::new(),
            },
        );
        self.start_consumer(&queue, ctx);
    }
}

impl Handler<SubscribeSupervisor> for ConsumerSupervisor {
    type Result = ();

    fn handle(
        &mut self,
        SubscribeSupervisor(listener): SubscribeSupervisor,
        _: &mut Context<Self>,
    ) {
        self.listeners.push(listener);
    }
}

impl Handler<ConsumerReady> for ConsumerSupervisor {
    type Result = ();

    fn handle(&mut self, ready: ConsumerReady, _: &mut Context<Self>) {
        let current = self
            .consumers
            .get(&ready.queue)
            .and_then(|entry| entry.current.as_ref().map(|(tag, _)| tag));
        if current == Some(&ready.consumer_tag) {
            self.emit(SupervisorEvent::Started { queue: ready.queue });
        }
    }
}

impl Handler<ConsumerExited> for ConsumerSupervisor {
    type Result = ();

    fn handle(&mut self, exited: ConsumerExited, ctx: &mut Context<Self>) {
        let Some(entry) = self.consumers.get_mut(&exited.queue) else {
            return;
        };
        // A late report from a consumer that was already replaced changes nothing.
        if entry.current.as_ref().map(|(tag, _)| tag) != Some(&exited.consumer_tag) {
            return;
        }
        entry.current = None;
        let reason = match exited.failure {
            None => {
                self.emit(SupervisorEvent::Stopped {
                    queue: exited.queue,
                });
                return;
            }
            Some(_) if self.stopping => {
                self.emit(SupervisorEvent::Stopped {
                    queue: exited.queue,
                });
                return;
            }
            Some(reason) => reason,
        };
        if exited.connection_lost {
            let restarts_in_window = entry.restarts.len();
            log::warn!(
                "consumer of queue \"{}\" lost its connection ({reason}); restarting it once the broker is back",
                exited.queue
            );
            self.emit(SupervisorEvent::Restarting {
                queue: exited.queue.clone(),
                reason,
                restarts_in_window,
            });
            let queue = exited.queue;
            ctx.run_later(self.policy.initial_delay, move |actor, ctx| {
                actor.start_consumer(&queue, ctx)
            });
            return;
        }
        let now = Instant::now();
        while entry
            .restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.policy.window)
        {
            entry.restarts.pop_front();
        }
        if entry.restarts.len() >= self.policy.max_restarts {
            log::error!(
                "consumer of queue \"{}\" failed {} times within {:?}; giving up: {reason}",
                exited.queue,
                entry.restarts.len() + 1,
                self.policy.window
            );
            self.emit(SupervisorEvent::GaveUp {
                queue: exited.queue,
                reason,
            });
            return;
        }
        entry.restarts.push_back(now);
        let restarts_in_window = entry.restarts.len();
        let attempt = u32::try_from(restarts_in_window.saturating_sub(1)).unwrap_or(u32::MAX);
        let delay = self.policy.backoff().delay(attempt);
        log::warn!(
            "consumer of queue \"{}\" failed ({reason}); restarting in {delay:?} ({restarts_in_window} restarts within {:?})",
            exited.queue,
            self.policy.window
        );
        self.emit(SupervisorEvent::Restarting {
            queue: exited.queue.clone(),
            reason,
            restarts_in_window,
        });
        let queue = exited.queue;
        ctx.run_later(delay, move |actor, ctx| actor.start_consumer(&queue, ctx));
    }
}

impl Handler<StopConsumers> for ConsumerSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopConsumers, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let consumers: Vec<_> = self
            .consumers
            .values()
            .filter_map(|entry| entry.current.as_ref().map(|(_, addr)| addr.clone()))
            .collect();
        Box::pin(async move {
            let stops = consumers
                .iter()
                .map(|consumer| consumer.send(StopConsuming));
            // A consumer that already stopped answers with an error: nothing left to cancel.
            futures::future::join_all(stops).await;
        })
    }
}

impl Handler<StopConsumer> for ConsumerSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, stop: StopConsumer, _: &mut Context<Self>) -> Self::Result {
        // Forgotten first, so that its exit is not taken for a failure to restart.
        let current = self
            .consumers
            .remove(&stop.queue)
            .and_then(|entry| entry.current.map(|(_, addr)| addr));
        self.emit(SupervisorEvent::Stopped { queue: stop.queue });
        Box::pin(async move {
            if let Some(consumer) = current {
                let _ = consumer.send(StopConsuming).await;
            }
        })
    }
}

impl Handler<AdjustConsumerPrefetch> for ConsumerSupervisor {
    type Result = ();

    fn handle(&mut self, adjust: AdjustConsumerPrefetch, _: &mut Context<Self>) {
        let current = self
            .consumers
            .get(&adjust.queue)
            .and_then(|entry| entry.current.as_ref());
        if let Some((tag, consumer)) = current {
            if *tag == adjust.consumer_tag {
                consumer.do_send(AdjustPrefetch(adjust.delta));
            }
        }
    }
}

impl Handler<SetConsumersWindow> for ConsumerSupervisor {
    type Result = ();

    fn handle(&mut self, SetConsumersWindow(window): SetConsumersWindow, _: &mut Context<Self>) {
        for entry in self.consumers.values_mut() {
            if !entry.spec.global_qos {
                continue;
            }
            // A restarted consumer opens with it.
            entry.spec.prefetch = window;
            if let Some((_, consumer)) = entry.current.as_ref() {
                consumer.do_send(SetBaseWindow(window));
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<BreakConsumer> for ConsumerSupervisor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, request: BreakConsumer, _: &mut Context<Self>) -> Self::Result {
        let tag = self
            .consumers
            .get(&request.queue)
            .and_then(|entry| entry.current.as_ref().map(|(tag, _)| tag.clone()));
        let broker = self.broker.clone();
        Box::pin(async move {
            let consumer_tag = tag.ok_or_else(|| BrokerError::Amqp {
                operation: "breaking a consumer".into(),
                reason: format!("no running consumer for queue \"{}\"", request.queue),
            })?;
            broker
                .break_channel
                .send(crate::broker::BreakConsumerChannel { consumer_tag })
                .await?
        })
    }
}
