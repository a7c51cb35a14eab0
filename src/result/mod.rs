//! Task results over Celery's `rpc://` backend (docs/wire-protocol.md §2.2).
//!
//! A producer with results declares a reply queue of its own (a UUID name, durable,
//! auto-delete, `x-expires` one day, as Celery's client declares it), sends every task with
//! `reply_to` = that queue, and consumes it under a `ConsumerSupervisor`. Workers publish
//! each result document (2.1) to the queue; the [`ResultCollector`] matches it to its task
//! by the body's `task_id` (else the AMQP `correlation_id`), and an [`AsyncResult`] reads it.
//!
//! - [`async_result`] holds [`AsyncResult`], the handle returned for a sent task;
//! - [`collector`] holds [`ResultCollector`], the actor that receives the reply queue;
//! - [`error`] holds [`ResultError`], why `get` gave no value;
//! - [`group`] holds [`GroupResult`], the results of a group's members.

pub mod async_result;
pub mod collector;
pub mod error;
pub mod group;

use actix::prelude::*;

use crate::actors::amqp::{AMQPValue, FieldTable};
use crate::actors::supervisor::{StopConsumers, SubscribeSupervisor, Supervise};
use crate::actors::{
    BrokerClient, BrokerError, ConsumerSpec, ConsumerSupervisor, QueueSpec, RestartPolicy,
};

pub use async_result::AsyncResult;
pub use collector::ResultCollector;
pub use error::ResultError;
pub use group::GroupResult;

/// The `rpc://` result backend, as written in `result_backend` (for Redis, see
/// [`crate::backend::redis`]).
pub const RPC_BACKEND: &str = "rpc://";

/// How long an unused reply queue lives (Celery's `result_expires`: one day), in ms.
pub const REPLY_QUEUE_EXPIRES_MS: i32 = 86_400_000;

/// Unsettled result messages the reply-queue consumer may hold at once.
const REPLY_PREFETCH: u16 = 100;

/// A reply queue declared as Celery's client declares it: durable, auto-delete, not
/// exclusive, `{"x-expires": 86400000}` as an AMQP long int (`I`, 32 bits: the type py-amqp
/// gives a Python int in that range), so that both clients' declarations are equivalent.
pub fn reply_queue_spec(name: impl Into<String>) -> QueueSpec {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-expires".into(),
        AMQPValue::LongInt(REPLY_QUEUE_EXPIRES_MS),
    );
    QueueSpec {
        name: name.into(),
        durable: true,
        exclusive: false,
        auto_delete: true,
        arguments,
        bindings: Vec::new(),
    }
}

/// A producer's `rpc://` results: its reply queue, consumed under supervision, and the
/// collector that receives it. Cheap to clone.
#[derive(Clone)]
pub struct RpcResults {
    /// The reply queue's name: what task messages carry as `reply_to`.
    reply_queue: String,
    /// Receives and keeps the results.
    collector: Addr<ResultCollector>,
    /// Consumes the reply queue, redeclaring it on each restart.
    supervisor: Addr<ConsumerSupervisor>,
}

impl RpcResults {
    /// Declares a new reply queue on `broker` and starts consuming it. Must run inside an
    /// actix system.
    pub async fn start(broker: &BrokerClient) -> Result<Self, BrokerError> {
        let reply_queue = uuid::Uuid::new_v4().to_string();
        let spec = reply_queue_spec(&reply_queue);
        // Declared before any task is sent, so no result can be routed nowhere.
        broker.declare_queue(spec.clone()).await?;
        let collector = ResultCollector::new(&reply_queue, collector::DEFAULT_CAPACITY).start();
        let supervisor = ConsumerSupervisor::new(
            broker.clone(),
            collector.clone().recipient(),
            RestartPolicy::default(),
        )
        .start();
        supervisor
            .send(SubscribeSupervisor(collector.clone().recipient()))
            .await?;
        supervisor
            .send(Supervise(ConsumerSpec {
                queue: reply_queue.clone(),
                prefetch: REPLY_PREFETCH,
                declare: Some(spec),
                global_qos: false,
            }))
            .await?;
        log::info!("rpc:// results arrive on reply queue \"{reply_queue}\"");
        Ok(RpcResults {
            reply_queue,
            collector,
            supervisor,
        })
    }

    /// The reply queue's name.
    pub fn reply_queue(&self) -> &str {
        &self.reply_queue
    }

    /// A handle on the result of task `task_id`.
    pub fn async_result(&self, task_id: impl Into<String>) -> AsyncResult {
        AsyncResult::new(task_id, self.collector.clone())
    }

    /// Stops consuming the reply queue (RabbitMQ then deletes it: it is auto-delete).
    /// Waiting `get`s fail with [`ResultError::Unavailable`].
    pub async fn stop(&self) -> Result<(), BrokerError> {
        self.supervisor.send(StopConsumers).await?;
        Ok(())
    }
}

impl std::fmt::Debug for RpcResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcResults")
            .field("reply_queue", &self.reply_queue)
            .finish()
    }
}

#[cfg(test)]
mod tests;
