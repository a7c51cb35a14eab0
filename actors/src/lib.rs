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
//! # The flow of one task
//!
//! ```text
//!  producer side                                   worker side
//!  ─────────────                                   ───────────
//!  Producer ──Publish──▶ PublisherActor            ConsumerSupervisor
//!                          │ (confirms pipelined)    │ starts one per queue, restarts it
//!                          ▼                         ▼ (RestartPolicy, Backoff)
//!                   AmqpBrokerActor ◀OpenConsumer─ ConsumerActor
//!                   (the one lapin connection;       │ Deliver(Delivery), one per message
//!                    a channel per consumer,         ▼
//!                    each with its ack task)       Dispatcher (celeriac::worker)
//!                          ▲                         │ spawns the pipeline of each delivery
//!                          │                         ▼
//!                          │                       pipeline::process: decode, look up,
//!                          │                       revoked / expired, ETA, rate limit,
//!                          │                       take a slot ──Execute──▶ ExecutorPool
//!                          │                       (early ack), run, disposition, apply
//!                          │                         │ Acker::settle(Ack | Reject)
//!                          └── per-channel ack task ◀┘ (an mpsc send: no actor hop)
//!                              basic.ack multiple=true for each contiguous settled run
//! ```
//!
//! - **Broker**: [`AmqpBrokerActor`] owns the connection and every channel; everything else
//!   talks to it through a [`BrokerClient`] (typed recipients), which the in-process
//!   [`MemoryBrokerActor`] also answers. It reconnects with [`Backoff`] and tells its
//!   subscribers ([`ConnectionEvent`]).
//! - **Consumers**: a [`ConsumerActor`] per queue, started and restarted by the
//!   [`ConsumerSupervisor`], which also applies a new prefetch window to every consumer
//!   ([`SetConsumersWindow`]: the worker's adaptive window, or one more per held ETA task).
//!   The broker opens each consumer on a channel of its own with its own ack task.
//! - **Dispatcher and pipeline** (in `celeriac::worker`): the dispatcher counts deliveries in
//!   flight (so a stop can wait until all are settled) and runs each delivery's pipeline as a
//!   future on the worker's thread; the pipeline decides what to do with pure functions and
//!   does the I/O in one place.
//! - **Pool**: [`ExecutorPool`] gives at most `concurrency` slots; async tasks run on the
//!   worker's runtime, blocking ones on threads; panics are caught, hard time limits enforced.
//! - **Settling**: a [`Delivery`] carries an [`Acker`], a handle on its broker's [`Settle`]
//!   implementation. For AMQP that is an unbounded channel to the consumer channel's ack task
//!   (`broker::amqp::acks`), which batches acks; the settle future answers once the ack task
//!   took it, and [`broker::FlushAcks`] (a warm stop) answers once every batched ack is written.
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
