//! Messages as they travel: what a producer publishes, what a consumer receives, and how a
//! received message is settled (acked or rejected).

use actix::Recipient;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::BasicProperties;

use crate::broker::amqp::acks::BatchedAcker;
use crate::broker::memory::SettleMemory;
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

/// Settles one delivery with the broker it came from.
#[derive(Clone)]
pub enum Acker {
    /// A RabbitMQ delivery, settled on the channel it came from, directly.
    Amqp(lapin::Acker),
    /// A RabbitMQ delivery settled through its consumer's ack task, which batches acks.
    Batched(BatchedAcker),
    /// A delivery of the in-process broker.
    Memory {
        /// The memory broker that holds the unacked message.
        broker: Recipient<SettleMemory>,
        /// The queue the message came from.
        queue: String,
        /// The delivery tag within that queue.
        delivery_tag: u64,
    },
}

impl std::fmt::Debug for Acker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acker::Amqp(_) => f.write_str("Acker::Amqp"),
            Acker::Batched(_) => f.write_str("Acker::Batched"),
            Acker::Memory {
                queue,
                delivery_tag,
                ..
            } => {
                write!(f, "Acker::Memory({queue}#{delivery_tag})")
            }
        }
    }
}

impl Acker {
    /// Whether the delivery can still be settled: false once its channel has closed (the
    /// broker then redelivers it, so it must not be processed here any more).
    pub fn is_usable(&self) -> bool {
        match self {
            Acker::Amqp(acker) => acker.usable(),
            Acker::Batched(acker) => acker.is_usable(),
            Acker::Memory { .. } => true,
        }
    }

    /// Settles the delivery. A delivery whose channel has died is not settled (the broker
    /// redelivers it); that is reported as an error, not replayed on another channel.
    pub async fn settle(&self, settlement: Settlement) -> Result<(), BrokerError> {
        match self {
            Acker::Amqp(acker) => {
                let done = match settlement {
                    Settlement::Ack => acker.ack(BasicAckOptions::default()).await,
                    Settlement::Reject { requeue } => {
                        acker.reject(BasicRejectOptions { requeue }).await
                    }
                };
                match done {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(BrokerError::Amqp {
                        operation: "basic.ack/reject".into(),
                        reason: "the delivery's channel is gone; the broker will redeliver it"
                            .into(),
                    }),
                    Err(error) => Err(BrokerError::amqp("basic.ack/reject", &error)),
                }
            }
            Acker::Batched(acker) => acker.settle(settlement),
            Acker::Memory {
                broker,
                queue,
                delivery_tag,
            } => broker
                .send(SettleMemory {
                    queue: queue.clone(),
                    delivery_tag: *delivery_tag,
                    settlement,
                })
                .await
                .map_err(BrokerError::from),
        }
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
