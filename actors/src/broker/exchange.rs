//! Exchanges and transient publishes: what monitoring traffic (Celery's `celeryev` events)
//! needs beside task messages. A transient publish is not mandatory (nobody may be
//! listening, and that is not an error), is made once (never retried) and is not
//! confirmed: the caller owns buffering and dropping.

use std::time::Duration;

use actix::Message;

use crate::delivery::OutboundMessage;
use crate::error::BrokerError;

/// How an exchange is declared; must match what other clients (Celery) declared, or
/// RabbitMQ answers 406.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// The exchange name.
    pub name: String,
    /// `direct`, `topic`, `fanout` or `headers`.
    pub kind: String,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last binding goes away.
    pub auto_delete: bool,
}

impl ExchangeSpec {
    /// A durable, not auto-deleted exchange: how Celery declares `celeryev` (topic).
    pub fn durable(name: impl Into<String>, kind: impl Into<String>) -> Self {
        ExchangeSpec {
            name: name.into(),
            kind: kind.into(),
            durable: true,
            auto_delete: false,
        }
    }
}

/// Declares an exchange (idempotent), retried while the connection is down up to the
/// broker's send timeout.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct DeclareExchange(pub ExchangeSpec);

/// Publishes once, not mandatory, without a confirm. Waits at most `within` for a usable
/// connection; answers `Ok` once the message was handed to the connection.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct PublishTransient {
    /// The message.
    pub message: OutboundMessage,
    /// How long to wait for the connection when it is down.
    pub within: Duration,
}
