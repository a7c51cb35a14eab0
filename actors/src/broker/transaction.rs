//! [`PublishTransaction`]: several publishes that take effect together or not at all.
//!
//! On RabbitMQ they go out in one AMQP transaction (`tx.select`, the `basic.publish`es,
//! `tx.commit`) on a channel of their own: if the client dies, or its connection does,
//! before the commit, the broker discards them all. Beat publishes a run and its new state
//! this way, so that a leader killed in between neither loses nor doubles the run.
//!
//! A transaction is not retried: when the connection goes away during the commit, the
//! caller cannot know whether it took effect, and must read back what it depends on
//! (Beat reads its stored state again) rather than publish again.

use actix::Message;

use crate::delivery::OutboundMessage;
use crate::error::BrokerError;

/// Publishes `messages` atomically, in order; answers once the broker committed them.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct PublishTransaction {
    /// What to publish (persistent or not, as each message's properties say). Every
    /// target queue should exist: RabbitMQ routes at the commit, so a message no queue
    /// takes is reported (`BrokerError::Unroutable`) only after the others were committed.
    pub messages: Vec<OutboundMessage>,
}
