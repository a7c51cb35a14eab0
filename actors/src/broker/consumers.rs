//! [`CountConsumers`]: declares a queue (idempotently) and answers how many consumers it
//! has, without a channel error either way (a passive declaration of an exclusive queue of
//! another connection would be refused with 405). Beat's followers use it to see whether a
//! leader is alive.

use actix::Message;

use super::QueueSpec;
use crate::error::BrokerError;

/// Declares the queue as `QueueSpec` says and answers its consumer count.
#[derive(Debug, Message)]
#[rtype(result = "Result<u32, BrokerError>")]
pub struct CountConsumers(pub QueueSpec);
