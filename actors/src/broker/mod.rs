//! Brokers: the actor that owns the RabbitMQ connection and the in-process stand-in that
//! answers the same messages.
//!
//! Everything else talks to a broker through a [`BrokerClient`], a bundle of typed
//! recipients, so the worker and the producer do not care which broker is behind it.

pub mod amqp;
pub mod consumers;
pub mod exchange;
pub mod memory;
pub mod transaction;

use std::pin::Pin;

use actix::{Actor, Addr, Handler, Message, Recipient};
use futures::Stream;
use lapin::types::FieldTable;

pub use self::consumers::CountConsumers;
pub use self::exchange::{DeclareExchange, ExchangeSpec, PublishTransient};
pub use self::transaction::PublishTransaction;
use crate::delivery::{Delivery, OutboundMessage};
use crate::error::BrokerError;

/// How a queue is declared. Declarations are idempotent, and must match what other
/// clients (Python Celery) declared, or RabbitMQ answers 406.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// The queue name.
    pub name: String,
    /// Survives a broker restart (Celery's task queues are durable).
    pub durable: bool,
    /// Only this connection may use it; deleted when the connection closes.
    pub exclusive: bool,
    /// Deleted when its last consumer goes away.
    pub auto_delete: bool,
    /// Queue arguments such as `x-max-priority`, `x-queue-type`, `x-expires`.
    pub arguments: FieldTable,
    /// Exchanges the queue is bound to, each declared (idempotently) before the binding.
    /// Declared again with the queue. The in-process broker ignores them.
    pub bindings: Vec<QueueBinding>,
}

/// A binding of a queue to an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBinding {
    /// The exchange, declared before the binding.
    pub exchange: ExchangeSpec,
    /// The binding key (`""` for a fanout exchange).
    pub routing_key: String,
}

impl QueueSpec {
    /// A durable queue without arguments: how Celery declares its task queues.
    pub fn durable(name: impl Into<String>) -> Self {
        QueueSpec {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
            bindings: Vec::new(),
        }
    }
}

/// The stream of deliveries of one consumer. It ends when the consumer is cancelled, and
/// yields an error (then ends) when its channel or connection fails.
pub type DeliveryStream = Pin<Box<dyn Stream<Item = Result<Delivery, BrokerError>> + Send>>;

/// Declares a queue (idempotent).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct DeclareQueue(pub QueueSpec);

/// Publishes a message; answers once the broker has confirmed it.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct PublishMessage(pub OutboundMessage);

/// Starts consuming a queue on a channel of its own with the given prefetch window.
#[derive(Debug, Message)]
#[rtype(result = "Result<DeliveryStream, BrokerError>")]
pub struct OpenConsumer {
    /// The queue to consume.
    pub queue: String,
    /// How many unsettled deliveries the broker may hand this consumer at once.
    pub prefetch: u16,
    /// A tag unique on this broker connection; `CancelConsumer` uses it.
    pub consumer_tag: String,
    /// Apply the prefetch window to the consumer's channel (`global` QoS, which can be
    /// changed while consuming) rather than to the consumer alone. Quorum queues refuse it.
    pub global_qos: bool,
}

/// Changes the prefetch window of a consumer's channel (needs `global_qos`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct SetPrefetch {
    /// The tag given to `OpenConsumer`.
    pub consumer_tag: String,
    /// The new window.
    pub prefetch: u16,
}

/// Stops a consumer's deliveries. Its unsettled deliveries can still be settled.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct CancelConsumer {
    /// The tag given to `OpenConsumer`.
    pub consumer_tag: String,
}

/// Closes a consumer's channel, if it is still open, and forgets it. Its unsettled
/// deliveries go back to the queue. Used when a consumer failed and is replaced.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseConsumer {
    /// The tag given to `OpenConsumer`.
    pub consumer_tag: String,
}

/// Waits until every settlement handed over so far (acks are batched per consumer) has
/// been sent to the broker.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FlushAcks;

/// Counts the messages ready in a queue (not those delivered and unsettled).
#[derive(Debug, Message)]
#[rtype(result = "Result<u32, BrokerError>")]
pub struct CountMessages(pub String);

/// Deletes a queue and its messages; answers how many messages it held.
#[derive(Debug, Message)]
#[rtype(result = "Result<u32, BrokerError>")]
pub struct DeleteQueue(pub String);

/// Empties a queue (AMQP `queue.purge`): removes its ready messages, not those delivered
/// and unsettled; answers how many it removed. A queue that does not exist is
/// [`BrokerError::NoSuchQueue`].
#[derive(Debug, Message)]
#[rtype(result = "Result<u32, BrokerError>")]
pub struct PurgeQueue(pub String);

/// Closes the broker: channels, then the connection. Unsettled deliveries go back to
/// their queues.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct CloseBroker;

/// Fault injection for tests and drills: makes the broker close the channel of a consumer
/// with a channel error (a passive declare of a queue that does not exist, answered 404).
///
/// Only with the `fault-injection` feature: test-only, not part of the default API.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct BreakConsumerChannel {
    /// The tag given to `OpenConsumer`.
    pub consumer_tag: String,
}

/// The state of the broker connection, for subscribers (`SubscribeConnection`). The in-process broker is never down..
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum ConnectionEvent {
    /// The connection was lost and could not be recovered by lapin: reconnecting.
    Down {
        /// Why.
        reason: String,
    },
    /// Connected again (queues declared through this actor are declared again).
    Up,
    /// Reconnecting gave up (`ReconnectPolicy::max_attempts`): the broker is closed.
    GaveUp {
        /// The last failure.
        reason: String,
    },
}

/// Subscribes to `ConnectionEvent`s.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SubscribeConnection(pub Recipient<ConnectionEvent>);

/// What a broker actor answers for fault injection: [`BreakConsumerChannel`] with the
/// `fault-injection` feature, nothing without it (every actor has it then). A bound of
/// [`BrokerClient::new`], so that the feature adds a message without changing its signature.
#[cfg(feature = "fault-injection")]
pub trait FaultInjection: Actor + Handler<BreakConsumerChannel> {}

#[cfg(feature = "fault-injection")]
impl<A: Actor + Handler<BreakConsumerChannel>> FaultInjection for A {}

/// What a broker actor answers for fault injection: nothing without the `fault-injection`
/// feature (every actor has it). A bound of [`BrokerClient::new`].
#[cfg(not(feature = "fault-injection"))]
pub trait FaultInjection {}

#[cfg(not(feature = "fault-injection"))]
impl<A> FaultInjection for A {}

/// A handle on either broker actor: what producers, consumers and the worker hold.
#[derive(Clone)]
pub struct BrokerClient {
    /// Declares queues.
    pub declare: Recipient<DeclareQueue>,
    /// Declares exchanges.
    pub declare_exchange: Recipient<DeclareExchange>,
    /// Publishes with confirms.
    pub publish: Recipient<PublishMessage>,
    /// Opens consumers.
    pub open_consumer: Recipient<OpenConsumer>,
    /// Cancels consumers.
    pub cancel_consumer: Recipient<CancelConsumer>,
    /// Closes the channels of failed consumers.
    pub close_consumer: Recipient<CloseConsumer>,
    /// Changes prefetch windows.
    pub set_prefetch: Recipient<SetPrefetch>,
    /// Counts ready messages.
    pub count: Recipient<CountMessages>,
    /// Deletes queues.
    pub delete: Recipient<DeleteQueue>,
    /// Purges queues.
    pub purge: Recipient<PurgeQueue>,
    /// Closes the broker.
    pub close: Recipient<CloseBroker>,
    /// Breaks a consumer's channel (fault injection; only with the `fault-injection`
    /// feature).
    #[cfg(feature = "fault-injection")]
    pub break_channel: Recipient<BreakConsumerChannel>,
    /// Subscribes to connection events.
    pub subscribe_connection: Recipient<SubscribeConnection>,
    /// Flushes batched acks.
    pub flush_acks: Recipient<FlushAcks>,
    /// Publishes transient messages (events): once, not mandatory, unconfirmed.
    pub publish_transient: Recipient<PublishTransient>,
    /// Declares a queue and counts its consumers.
    pub count_consumers: Recipient<CountConsumers>,
    /// Publishes several messages atomically (one AMQP transaction).
    pub publish_transaction: Recipient<PublishTransaction>,
}

impl BrokerClient {
    /// A client for any actor that answers every broker message.
    pub fn new<A>(addr: &Addr<A>) -> Self
    where
        A: Actor<Context = actix::Context<A>>
            + Handler<DeclareQueue>
            + Handler<DeclareExchange>
            + Handler<PublishMessage>
            + Handler<OpenConsumer>
            + Handler<CancelConsumer>
            + Handler<CloseConsumer>
            + Handler<SetPrefetch>
            + Handler<CountMessages>
            + Handler<DeleteQueue>
            + Handler<PurgeQueue>
            + Handler<CloseBroker>
            + FaultInjection
            + Handler<SubscribeConnection>
            + Handler<FlushAcks>
            + Handler<PublishTransient>
            + Handler<CountConsumers>
            + Handler<PublishTransaction>,
    {
        BrokerClient {
            declare: addr.clone().recipient(),
            declare_exchange: addr.clone().recipient(),
            publish: addr.clone().recipient(),
            open_consumer: addr.clone().recipient(),
            cancel_consumer: addr.clone().recipient(),
            close_consumer: addr.clone().recipient(),
            set_prefetch: addr.clone().recipient(),
            count: addr.clone().recipient(),
            delete: addr.clone().recipient(),
            purge: addr.clone().recipient(),
            close: addr.clone().recipient(),
            #[cfg(feature = "fault-injection")]
            break_channel: addr.clone().recipient(),
            subscribe_connection: addr.clone().recipient(),
            flush_acks: addr.clone().recipient(),
            publish_transient: addr.clone().recipient(),
            count_consumers: addr.clone().recipient(),
            publish_transaction: addr.clone().recipient(),
        }
    }

    /// Declares a queue.
    pub async fn declare_queue(&self, spec: QueueSpec) -> Result<(), BrokerError> {
        self.declare.send(DeclareQueue(spec)).await?
    }

    /// Declares an exchange.
    pub async fn declare_exchange(&self, spec: ExchangeSpec) -> Result<(), BrokerError> {
        self.declare_exchange.send(DeclareExchange(spec)).await?
    }

    /// Publishes a message and waits for the broker's confirm.
    pub async fn publish(&self, message: OutboundMessage) -> Result<(), BrokerError> {
        self.publish.send(PublishMessage(message)).await?
    }

    /// Publishes `messages` atomically: all of them or, if the client or its connection
    /// dies before the broker committed them, none ([`PublishTransaction`]).
    pub async fn publish_transaction(
        &self,
        messages: Vec<OutboundMessage>,
    ) -> Result<(), BrokerError> {
        self.publish_transaction
            .send(PublishTransaction { messages })
            .await?
    }

    /// Counts the ready messages of a queue.
    pub async fn count_messages(&self, queue: &str) -> Result<u32, BrokerError> {
        self.count.send(CountMessages(queue.to_string())).await?
    }

    /// Declares a queue (idempotently) and answers how many consumers it has.
    pub async fn count_consumers(&self, spec: QueueSpec) -> Result<u32, BrokerError> {
        self.count_consumers.send(CountConsumers(spec)).await?
    }

    /// Deletes a queue.
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, BrokerError> {
        self.delete.send(DeleteQueue(queue.to_string())).await?
    }

    /// Purges a queue: answers how many ready messages it removed.
    pub async fn purge_queue(&self, queue: &str) -> Result<u32, BrokerError> {
        self.purge.send(PurgeQueue(queue.to_string())).await?
    }

    /// Closes the broker connection.
    pub async fn close(&self) -> Result<(), BrokerError> {
        self.close.send(CloseBroker).await?
    }
}

impl std::fmt::Debug for BrokerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerClient")
    }
}
