//! celeriac-actors: the actix actors that move AMQP messages for celeriac. This crate knows
//! AMQP, not Celery: it moves deliveries, confirms and jobs.
//!
//! | module | what it holds |
//! |---|---|
//! | [`broker`] | [`AmqpBrokerActor`] (the one lapin connection), [`MemoryBrokerActor`] (in-process), their messages and [`BrokerClient`] |
//! | [`publisher`] | [`PublisherActor`]: publishes with pipelined confirms |
//! | [`consumer`] | [`ConsumerActor`]: one per queue, forwards deliveries |
//! | [`supervisor`] | [`ConsumerSupervisor`]: restarts failed consumers within a [`RestartPolicy`] |
//! | [`executor`] | [`ExecutorPool`]: bounded concurrency, panics caught, hard time limits |
//! | [`delivery`] | messages in transit: [`OutboundMessage`], [`Delivery`], [`Acker`] (a broker's [`Settle`]), [`Settlement`] |
//! | [`error`] | [`BrokerError`] |
//!
//! # Features
//!
//! - `fault-injection` (off by default): test-only hooks that break things on purpose,
//!   `broker::BreakConsumerChannel` (the broker closes a consumer's channel with a channel
//!   error), `supervisor::BreakConsumer` (the same, by queue) and
//!   `BrokerClient::break_channel`. This crate's tests, and celeriac's through its own
//!   `fault-injection` feature, turn it on; without it these items do not exist.

pub mod backoff;
pub mod broker;
pub mod consumer;
pub mod delivery;
pub mod error;
pub mod executor;
pub mod publisher;
pub mod supervisor;

pub use backoff::{Backoff, Jitter};
pub use broker::amqp::{AmqpBrokerActor, AmqpConfig, ReconnectPolicy, TlsConfig};
pub use broker::memory::MemoryBrokerActor;
pub use broker::{BrokerClient, ExchangeSpec, QueueBinding, QueueSpec};
pub use broker::{ConnectionEvent, SubscribeConnection};
pub use consumer::{ConsumerActor, ConsumerSpec, Deliver};
pub use delivery::{Acker, Delivery, OutboundMessage, Settle, Settlement};
pub use error::BrokerError;
pub use executor::{ExecutionReport, ExecutorPool};
pub use publisher::{Publish, PublisherActor};
pub use supervisor::{ConsumerSupervisor, RestartPolicy, SetConsumersWindow, SupervisorEvent};

/// AMQP types that the layers above use to build messages (re-exported from lapin).
pub mod amqp {
    pub use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
    pub use lapin::BasicProperties;
}
