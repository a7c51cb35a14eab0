//! ETA tasks. A task due within the horizon is held in the worker, unacked, without
//! blocking anything, and the consumer's prefetch window is widened by one while it is
//! held (as Celery does), so held tasks do not starve the others. A task due further
//! ahead, or beyond the held-task limit, is not held: it is moved to a wait queue whose
//! messages all carry the same TTL (the horizon) and dead-letter back to the task's
//! queue, so they come back in order and are looked at again. RabbitMQ would otherwise
//! close the channel of a delivery unacked for longer than its `consumer_timeout`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use chrono::{DateTime, Utc};

use crate::actors::amqp::{AMQPValue, FieldTable};
use crate::actors::supervisor::AdjustConsumerPrefetch;
use crate::actors::{
    BrokerClient, BrokerError, ConsumerSupervisor, Delivery, OutboundMessage, QueueSpec,
};

/// Hold in the worker, or move to the wait queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EtaDecision {
    /// Hold it until its ETA.
    Hold,
    /// Move it to the wait queue.
    Defer,
}

/// Decides where ETA tasks wait, and keeps count of the held ones.
#[derive(Clone)]
pub(crate) struct EtaScheduler {
    broker: BrokerClient,
    supervisor: Addr<ConsumerSupervisor>,
    /// Further ahead than this, a task goes to the wait queue.
    horizon: Duration,
    /// At most this many tasks are held.
    limit: usize,
    /// Tasks held now.
    held: Arc<AtomicUsize>,
    /// Wait queues declared by this worker.
    declared: Arc<Mutex<HashSet<String>>>,
}

impl EtaScheduler {
    pub(crate) fn new(
        broker: BrokerClient,
        supervisor: Addr<ConsumerSupervisor>,
        horizon: Duration,
        limit: usize,
    ) -> Self {
        EtaScheduler {
            broker,
            supervisor,
            horizon,
            limit,
            held: Arc::default(),
            declared: Arc::default(),
        }
    }

    /// Where a delivery due at `eta` waits.
    pub(crate) fn decide(&self, eta: DateTime<Utc>) -> EtaDecision {
        let ahead = (eta - Utc::now()).to_std().unwrap_or_default();
        if ahead > self.horizon || self.held.load(Ordering::Relaxed) >= self.limit {
            EtaDecision::Defer
        } else {
            EtaDecision::Hold
        }
    }

    /// The wait queue of `queue`: named after its TTL, so that a worker configured with
    /// another horizon declares another queue rather than a conflicting one.
    fn wait_queue(&self, queue: &str) -> QueueSpec {
        let ttl_ms = i32::try_from(self.horizon.as_millis().max(1)).unwrap_or(i32::MAX);
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

/// Holds `delivery` until `eta`, with the consumer's window widened by one meanwhile.
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
    scheduler.held.fetch_add(1, Ordering::Relaxed);
    scheduler.adjust(delivery, 1);
    let due = tokio::select! {
        () = actix_rt::time::sleep(wait) => true,
        () = revoked => true,
        _ = draining.wait_for(|draining| *draining) => false,
    };
    scheduler.held.fetch_sub(1, Ordering::Relaxed);
    scheduler.adjust(delivery, -1);
    due
}
