//! `ConsumerActor`: one per queue. It opens a consumer through the broker actor, forwards
//! each delivery to the worker's dispatcher, and stops when its stream fails or ends, so
//! that its supervisor can start a fresh one.

use actix::prelude::*;

use crate::broker::{
    BrokerClient, CancelConsumer, CloseConsumer, DeliveryStream, OpenConsumer, QueueSpec,
    SetPrefetch,
};
use crate::delivery::Delivery;
use crate::error::BrokerError;

/// A delivery handed to whoever processes deliveries (the worker's dispatcher).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Delivery);

/// What a consumer consumes.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The queue.
    pub queue: String,
    /// The prefetch window: unsettled deliveries the broker may hand over at once.
    pub prefetch: u16,
    /// Declared before each (re)start, when set: needed for queues the broker deletes
    /// with their last consumer (auto-delete reply queues).
    pub declare: Option<QueueSpec>,
    /// Channel-wide (global) QoS, so the window can be raised while consuming (for held
    /// ETA tasks, as Celery does). Must be false for quorum queues, which refuse it.
    pub global_qos: bool,
}

/// Widens (positive) or narrows (negative) a consumer's prefetch window, e.g. by one for
/// each ETA task held in the worker. Needs `ConsumerSpec::global_qos`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AdjustPrefetch(pub i32);

/// Sets the base of a consumer's prefetch window (the adaptive window of the worker); the
/// `AdjustPrefetch` widening comes on top. Needs `ConsumerSpec::global_qos`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetBaseWindow(pub u16);

/// Sent by a consumer to its supervisor when it stopped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ConsumerExited {
    /// The queue it consumed.
    pub queue: String,
    /// The consumer tag it used.
    pub consumer_tag: String,
    /// Why it stopped; `None` when it was asked to (`StopConsuming`).
    pub failure: Option<String>,
    /// The failure was the connection going away (broker restart, network): the consumer
    /// is restarted without counting against the restart limit, since the broker actor's
    /// own reconnection policy governs that case.
    pub connection_lost: bool,
}

/// Sent by a consumer to its supervisor once the broker is delivering to it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ConsumerReady {
    /// The queue it consumes.
    pub queue: String,
    /// Its consumer tag.
    pub consumer_tag: String,
}

/// Asks a consumer to cancel its consumer and stop. Deliveries already handed over can
/// still be settled.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopConsuming;

/// Consumes one queue.
pub struct ConsumerActor {
    /// Which queue, and the prefetch window.
    spec: ConsumerSpec,
    /// Unique per start, so a restarted consumer never collides with its predecessor.
    consumer_tag: String,
    /// Where consumers are opened and cancelled.
    broker: BrokerClient,
    /// Receives every delivery.
    deliver_to: Recipient<Deliver>,
    /// Told when this actor stops, and why.
    supervisor: Recipient<ConsumerExited>,
    /// Told when the consumer is open.
    ready: Recipient<ConsumerReady>,
    /// Set by `StopConsuming`: the end of the stream is then expected.
    stopping: bool,
    /// The failure that ended the stream, reported to the supervisor.
    failure: Option<BrokerError>,
    /// The base window: `spec.prefetch` until `SetBaseWindow` changes it.
    base: u16,
    /// The sum of the `AdjustPrefetch` deltas (never below zero), on top of `base`.
    widened: i64,
}

impl ConsumerActor {
    /// A consumer for `spec` that has not started yet.
    pub fn new(
        spec: ConsumerSpec,
        consumer_tag: String,
        broker: BrokerClient,
        deliver_to: Recipient<Deliver>,
        supervisor: Recipient<ConsumerExited>,
        ready: Recipient<ConsumerReady>,
    ) -> Self {
        let spec_prefetch = spec.prefetch;
        ConsumerActor {
            spec,
            consumer_tag,
            broker,
            deliver_to,
            supervisor,
            ready,
            stopping: false,
            failure: None,
            base: spec_prefetch,
            widened: 0,
        }
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let broker = self.broker.clone();
        let declare = self.spec.declare.clone();
        let open = OpenConsumer {
            queue: self.spec.queue.clone(),
            prefetch: self.spec.prefetch,
            consumer_tag: self.consumer_tag.clone(),
            global_qos: self.spec.global_qos,
        };
        let opening = async move {
            if let Some(spec) = declare {
                broker.declare_queue(spec).await?;
            }
            broker.open_consumer.send(open).await?
        };
        ctx.wait(opening.into_actor(self).map(
            |opened: Result<DeliveryStream, BrokerError>, actor, ctx| match opened {
                Ok(stream) => {
                    log::info!(
                        "consuming queue \"{}\" (prefetch {}, tag {})",
                        actor.spec.queue,
                        actor.spec.prefetch,
                        actor.consumer_tag
                    );
                    ctx.add_stream(stream);
                    actor.ready.do_send(ConsumerReady {
                        queue: actor.spec.queue.clone(),
                        consumer_tag: actor.consumer_tag.clone(),
                    });
                }
                Err(error) => {
                    actor.failure = Some(error);
                    ctx.stop();
                }
            },
        ));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let connection_lost = self
            .failure
            .as_ref()
            .is_some_and(BrokerError::is_connection_loss);
        let failure = if self.stopping {
            None
        } else {
            Some(self.failure.take().map_or_else(
                || "the broker cancelled the consumer".to_string(),
                |error| error.to_string(),
            ))
        };
        if failure.is_some() {
            // Whatever this consumer still held goes back to the queue with its channel.
            self.broker.close_consumer.do_send(CloseConsumer {
                consumer_tag: self.consumer_tag.clone(),
            });
        }
        self.supervisor.do_send(ConsumerExited {
            queue: self.spec.queue.clone(),
            consumer_tag: self.consumer_tag.clone(),
            failure,
            connection_lost,
        });
    }
}

impl StreamHandler<Result<Delivery, BrokerError>> for ConsumerActor {
    fn handle(&mut self, item: Result<Delivery, BrokerError>, ctx: &mut Context<Self>) {
        match item {
            Ok(delivery) => self.deliver_to.do_send(Deliver(delivery)),
            Err(error) => {
                // lapin does not always end the stream after an error (a channel closed by
                // a soft error stays closed): stop, and let the supervisor start afresh.
                log::warn!("consumer of queue \"{}\" failed: {error}", self.spec.queue);
                self.failure = Some(error);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl ConsumerActor {
    /// Applies the window `base + widened` to the consumer's channel.
    fn apply_window(&mut self, ctx: &mut Context<Self>) {
        let prefetch = u16::try_from(i64::from(self.base) + self.widened).unwrap_or(u16::MAX);
        let set = self.broker.set_prefetch.send(SetPrefetch {
            consumer_tag: self.consumer_tag.clone(),
            prefetch,
        });
        let queue = self.spec.queue.clone();
        ctx.spawn(
            async move {
                match set.await.map_err(BrokerError::from).and_then(|inner| inner) {
                    Ok(()) => log::debug!("prefetch of queue \"{queue}\" is now {prefetch}"),
                    Err(error) => log::warn!("changing the prefetch of queue \"{queue}\": {error}"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<AdjustPrefetch> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, AdjustPrefetch(delta): AdjustPrefetch, ctx: &mut Context<Self>) {
        if !self.spec.global_qos || delta == 0 {
            return;
        }
        self.widened = (self.widened + i64::from(delta)).max(0);
        self.apply_window(ctx);
    }
}

impl Handler<SetBaseWindow> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, SetBaseWindow(base): SetBaseWindow, ctx: &mut Context<Self>) {
        if !self.spec.global_qos || base == self.base {
            return;
        }
        self.base = base;
        self.apply_window(ctx);
    }
}

impl Handler<StopConsuming> for ConsumerActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopConsuming, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let cancel = self.broker.cancel_consumer.send(CancelConsumer {
            consumer_tag: self.consumer_tag.clone(),
        });
        Box::pin(cancel.into_actor(self).map(|cancelled, actor, ctx| {
            if let Err(error) = cancelled.map_err(BrokerError::from).and_then(|inner| inner) {
                log::warn!(
                    "cancelling the consumer of queue \"{}\": {error}",
                    actor.spec.queue
                );
            }
            ctx.stop();
        }))
    }
}
