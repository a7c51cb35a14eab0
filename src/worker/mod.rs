//! The worker: `WorkerSystem` wires the actors of `celeriac-actors` into a running worker,
//! the dispatcher turns deliveries into task runs, and `TaskEvent`s report what happened.

pub(crate) mod control;
mod dispatcher;
mod eta;
mod events;
mod limited_set;
mod pipeline;
mod rate_limit;
mod result_rules;
mod results;
mod retry;
mod state;
mod state_db;
mod system;
mod window;
mod workflow;

use derive_more::{Display, Error, From};

pub use events::{task_event_channel, ReceivedInfo, TaskEvent, TaskEventKind};
pub use system::{WorkerBuilder, WorkerSystem};

use crate::actors::BrokerError;

/// Why a worker could not start or had to stop.
#[derive(Debug, Display, Error, From)]
pub enum WorkerError {
    /// The broker failed.
    #[display("{_0}")]
    Broker(BrokerError),
    /// A consumer failed more often than its restart policy allows.
    #[display("gave up on the consumer of queue \"{queue}\": {reason}")]
    #[from(ignore)]
    ConsumerGaveUp {
        /// The queue.
        queue: String,
        /// Its last failure.
        reason: String,
    },
    /// `result_backend` names a backend the worker cannot store to.
    #[display("unsupported result backend {backend:?}: use rpc://, redis:// or leave it unset")]
    #[from(ignore)]
    UnsupportedResultBackend {
        /// The backend, password masked.
        backend: String,
    },
    /// The Redis result backend cannot be used (address, password, URL).
    #[display("result backend: {_0}")]
    ResultBackend(crate::backend::redis::RedisBackendError),
    /// Another live worker uses this node name (the broker refused its pidbox queue with
    /// 405 RESOURCE_LOCKED).
    #[display("node name {hostname:?} is in use by another live worker: give each worker a unique name (CELERIAC_HOSTNAME)")]
    #[from(ignore)]
    NodeNameInUse {
        /// The node name.
        hostname: String,
    },
    /// The worker has no task registered.
    #[display("no task is registered: register tasks before starting the worker")]
    NoTasks,
    /// Signal handlers could not be installed.
    #[display("cannot listen for signals: {_0}")]
    #[from(ignore)]
    Signal(#[error(not(source))] String),
}

impl From<actix::MailboxError> for WorkerError {
    fn from(error: actix::MailboxError) -> Self {
        WorkerError::Broker(BrokerError::from(error))
    }
}
