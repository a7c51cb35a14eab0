//! The application side: configuration, connecting to the broker, and sending tasks.

mod broker;
mod config;
mod producer;
mod signature;

use derive_more::{Display, Error, From};

pub use broker::connect_broker;
pub use config::Config;
pub use producer::Producer;
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
