//! Messages as they travel: what a producer publishes, what a consumer receives, and how a
//! received message is settled (acked or rejected).

use std::sync::Arc;

use futures::future::BoxFuture;
use lapin::BasicProperties;

use crate::error::BrokerError;

/// A message to publish.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// Exchange to publish to; `""` is the default exchange, which routes by queue name.
    pub exchange: String,
    /// Routing key; the queue name when publishing to the default exchange.
    pub routing_key: String,
    /// AMQP properties, headers included.
    pub properties: BasicProperties,
    /// The encoded body.
    pub body: Vec<u8>,
}

/// How a received message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done with it: the broker forgets the message.
    Ack,
    /// Refused: `requeue` puts it back in its queue, otherwise it is dropped or dead-lettered.
    Reject {
        /// Whether the broker puts the message back in the queue.
        requeue: bool,
    },
}

/// What a broker does to settle one of its deliveries. Each broker implements it for its
/// own deliveries (AMQP: through the consumer's ack task; memory: through the broker
/// actor), so that this module knows none of them.
pub trait Settle: std::fmt::Debug + Send + Sync {
    /// Whether the delivery can still be settled: false once its channel has closed (the
    /// broker then redelivers it, so it must not be processed here any more).
    fn is_usable(&self) -> bool;

    /// Settles the delivery. A delivery whose channel has died is not settled (the broker
    /// redelivers it); that is reported as an error, not replayed on another channel.
    fn settle(&self, settlement: Settlement) -> BoxFuture<'static, Result<(), BrokerError>>;
}

/// Settles one delivery with the broker it came from.
#[derive(Clone, Debug)]
pub struct Acker(Arc<dyn Settle>);

impl Acker {
    /// An acker that settles through `settle`.
    pub fn new(settle: impl Settle + 'static) -> Self {
        Acker(Arc::new(settle))
    }

    /// Whether the delivery can still be settled: false once its channel has closed (the
    /// broker then redelivers it, so it must not be processed here any more).
    pub fn is_usable(&self) -> bool {
        self.0.is_usable()
    }

    /// Settles the delivery. A delivery whose channel has died is not settled (the broker
    /// redelivers it); that is reported as an error, not replayed on another channel.
    pub async fn settle(&self, settlement: Settlement) -> Result<(), BrokerError> {
        self.0.settle(settlement).await
    }
}

/// A message received from a queue, to be settled exactly once through its `acker`.
#[derive(Debug)]
pub struct Delivery {
    /// The queue it was consumed from.
    pub queue: String,
    /// The tag of the consumer it was delivered to (consumers change on restart).
    pub consumer_tag: String,
    /// The exchange it was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Whether the broker delivered it before (to a consumer that did not settle it).
    pub redelivered: bool,
    /// AMQP properties, headers included.
    pub properties: BasicProperties,
    /// The raw body.
    pub body: Vec<u8>,
    /// Settles this delivery with its broker.
    pub acker: Acker,
}
