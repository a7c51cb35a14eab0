//! ETA tasks. A task due within the horizon is held in the worker, unacked, without
//! blocking anything, and the consumer's prefetch window is widened by one while it is
//! held (as Celery does), so held tasks do not starve the others. A task due further
//! ahead, or beyond the held-task limits (a count and a number of bytes), is not held: it
//! is moved to a wait queue whose messages all carry the same TTL (the horizon) and
//! dead-letter back to the task's queue, so they come back in order and are looked at
//! again. RabbitMQ would otherwise close the channel of a delivery unacked for longer
//! than its `consumer_timeout`.

mod held;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use actix::Addr;
use chrono::{DateTime, Utc};

use crate::actors::amqp::{AMQPValue, FieldTable};
use crate::actors::supervisor::AdjustConsumerPrefetch;
use crate::actors::{
    BrokerClient, BrokerError, ConsumerSupervisor, Delivery, OutboundMessage, QueueSpec,
};

pub(crate) use held::HoldLimits;
use held::{held_size, place, Held, HeldLoad, LogGate, Placement};

/// Hold in the worker, or move to the wait queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EtaDecision {
    /// Hold it until its ETA.
    Hold,
    /// Move it to the wait queue.
    Defer,
}

/// Decides where ETA tasks wait, and keeps count of the held ones and of their bytes.
#[derive(Clone)]
pub(crate) struct EtaScheduler {
    broker: BrokerClient,
    supervisor: Addr<ConsumerSupervisor>,
    /// The horizon and the held-task limits.
    limits: HoldLimits,
    /// Tasks held now, and their bytes.
    held: Arc<HeldLoad>,
    /// Rate-limits the line logged when a limit defers tasks.
    log_gate: Arc<LogGate>,
    /// Wait queues declared by this worker.
    declared: Arc<Mutex<HashSet<String>>>,
}

impl EtaScheduler {
    pub(crate) fn new(
        broker: BrokerClient,
        supervisor: Addr<ConsumerSupervisor>,
        limits: HoldLimits,
    ) -> Self {
        EtaScheduler {
            broker,
            supervisor,
            limits,
            held: Arc::default(),
            log_gate: Arc::default(),
            declared: Arc::default(),
        }
    }

    /// Where `delivery`, due at `eta`, waits. Called in the same poll as the
    /// [`hold_until`] that follows a `Hold` (no await between them, on the dispatcher's
    /// one thread), so no other delivery is placed in between.
    pub(crate) fn decide(&self, eta: DateTime<Utc>, delivery: &Delivery) -> EtaDecision {
        let ahead = (eta - Utc::now()).to_std().unwrap_or_default();
        let load = self.held.now();
        match place(ahead, held_size(delivery), load, &self.limits) {
            Placement::Hold => EtaDecision::Hold,
            Placement::BeyondHorizon => EtaDecision::Defer,
            Placement::AtLimit(limit) => {
                if self.log_gate.open(std::time::Instant::now()) {
                    log::warn!(
                        "holding {} ETA tasks ({} bytes) in the worker: {}; further ETA \
                         tasks wait in the broker's wait queue meanwhile (logged at most \
                         once every {} s)",
                        load.count,
                        load.bytes,
                        limit.describe(&self.limits),
                        held::LOG_EVERY.as_secs()
                    );
                }
                EtaDecision::Defer
            }
        }
    }

    /// The wait queue of `queue`: named after its TTL, so that a worker configured with
    /// another horizon declares another queue rather than a conflicting one.
    fn wait_queue(&self, queue: &str) -> QueueSpec {
        let ttl_ms = i32::try_from(self.limits.horizon.as_millis().max(1)).unwrap_or(i32::MAX);
        let mut arguments = FieldTable::default();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(ttl_ms));
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.into()),
        );
        QueueSpec {
            arguments,
            bindings: Vec::new(),
            ..QueueSpec::durable(format!("{queue}.celeriac.wait.{ttl_ms}ms"))
        }
    }

    /// Copies the delivery to the wait queue of its queue (confirmed); the caller then
    /// acks the original. Answers the wait queue's name.
    pub(crate) async fn defer(
        &self,
        delivery: &Delivery,
        eta: DateTime<Utc>,
    ) -> Result<String, BrokerError> {
        let spec = self.wait_queue(&delivery.queue);
        let name = spec.name.clone();
        let known = self
            .declared
            .lock()
            .map(|declared| declared.contains(&name))
            .unwrap_or(false);
        if !known {
            self.broker.declare_queue(spec).await?;
            if let Ok(mut declared) = self.declared.lock() {
                declared.insert(name.clone());
            }
        }
        self.broker
            .publish(OutboundMessage {
                exchange: String::new(),
                routing_key: name.clone(),
                properties: delivery.properties.clone(),
                body: delivery.body.clone(),
            })
            .await?;
        log::info!(
            "message for {eta} from queue \"{}\" waits in \"{name}\"",
            delivery.queue
        );
        Ok(name)
    }

    fn adjust(&self, delivery: &Delivery, delta: i32) {
        self.supervisor.do_send(AdjustConsumerPrefetch {
            queue: delivery.queue.clone(),
            consumer_tag: delivery.consumer_tag.clone(),
            delta,
        });
    }
}

/// Gives the consumer's window back its one when dropped (however the hold ends).
struct Widened<'a> {
    scheduler: &'a EtaScheduler,
    delivery: &'a Delivery,
}

impl Drop for Widened<'_> {
    fn drop(&mut self) {
        self.scheduler.adjust(self.delivery, -1);
    }
}

/// Holds `delivery` until `eta`, with the consumer's window widened by one meanwhile and
/// the delivery counted (and its bytes) against the held-task limits until the hold ends
/// however it ends: due, revoked, worker stopping, or the wait dropped.
/// False when the worker started stopping first (the caller requeues the message).
///
/// `revoked` resolving ends the wait early (true: the caller then finds it revoked).
pub(crate) async fn hold_until(
    scheduler: &EtaScheduler,
    delivery: &Delivery,
    eta: DateTime<Utc>,
    mut draining: tokio::sync::watch::Receiver<bool>,
    revoked: impl std::future::Future<Output = ()>,
) -> bool {
    let Ok(wait) = (eta - Utc::now()).to_std() else {
        return true;
    };
    let _held = Held::take(&scheduler.held, held_size(delivery));
    scheduler.adjust(delivery, 1);
    let _widened = Widened {
        scheduler,
        delivery,
    };
    tokio::select! {
        () = actix_rt::time::sleep(wait) => true,
        () = revoked => true,
        _ = draining.wait_for(|draining| *draining) => false,
    }
}
