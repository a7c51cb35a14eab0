//! The application side: configuration, connecting to the broker, and sending tasks.

mod broker;
mod config;
mod control;
mod producer;
mod remote;
mod routing;
mod signature;

use derive_more::{Display, Error, From};

pub use broker::connect_broker;
pub use config::{Config, DEFAULT_BROKER_URL, MEMORY_BROKER_URL};
pub use producer::Producer;
pub use remote::{ControlCall, ControlReply, DEFAULT_REPLY_TIMEOUT, REPLY_EXCHANGE};
pub use routing::{QueueConfig, QueueType, TaskRoute};
pub use signature::Signature;

use crate::actors::BrokerError;
use crate::protocol::ProtocolError;

/// Why a task could not be sent.
#[derive(Debug, Display, Error, From)]
pub enum SendError {
    /// The broker refused or lost the message, or could not be reached.
    #[display("sending failed: {_0}")]
    Broker(BrokerError),
    /// The message could not be encoded.
    #[display("encoding the task message failed: {_0}")]
    Protocol(ProtocolError),
    /// The configured result backend is not one celeriac supports.
    #[display(
        "unsupported result backend {backend:?}: only \"rpc://\" and \"redis://...\" are \
         supported (set CELERIAC_RESULT_BACKEND=rpc://, redis://host:port/db, or leave it unset)"
    )]
    #[from(ignore)]
    UnsupportedResultBackend {
        /// The configured value, its password masked (`redis://:***@host`).
        backend: String,
    },
    /// A result was asked of a producer that has no result backend.
    #[display(
        "task {task} was not sent: results need a result backend; build the producer with \
         `with_rpc_results()` or `with_redis_results(..)`, or `Producer::from_config` with \
         result_backend \"rpc://\" or \"redis://...\""
    )]
    #[from(ignore)]
    NoResultBackend {
        /// The task name.
        task: String,
    },
    /// The Redis result backend could not be set up (bad URL, unreachable, wrong password).
    #[display("the result backend is unusable: {_0}")]
    ResultBackend(crate::backend::redis::RedisBackendError),
    /// A task tried to send a task outside a worker (its context has no producer).
    #[display(
        "this task context has no producer: tasks can send tasks only inside a WorkerSystem"
    )]
    NoProducer,
    /// A workflow cannot be sent as it is.
    #[display("workflow not sent: {_0}")]
    Canvas(crate::canvas::CanvasError),
    /// The typed arguments could not be encoded.
    #[display("arguments of task {task} cannot be encoded: {reason}")]
    #[from(ignore)]
    Arguments {
        /// The task name.
        task: String,
        /// What went wrong.
        reason: String,
    },
}
