//! `PublisherActor`: the producer side's single way out. Many publishes are in flight at
//! once (each answer waits for its own broker confirm, none waits for another), up to a
//! bounded outbox: beyond it, senders wait (backpressure). While the broker is away, a
//! publish waits and is retried by the broker actor up to its send timeout, then fails
//! with a clear error; a publish that was answered `Ok` was confirmed by the broker.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::Semaphore;

use crate::broker::BrokerClient;
use crate::delivery::OutboundMessage;
use crate::error::BrokerError;

/// Publishes a message; answers once the broker confirmed it.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Publish(pub OutboundMessage);

/// How many publishes may be unconfirmed at once by default.
pub const DEFAULT_OUTBOX: usize = 4096;

/// Publishes through a broker actor with pipelined confirms and a bounded outbox.
pub struct PublisherActor {
    broker: BrokerClient,
    /// One permit per publish in flight.
    outbox: Arc<Semaphore>,
}

impl PublisherActor {
    /// A publisher that publishes through `broker` with the default outbox.
    pub fn new(broker: BrokerClient) -> Self {
        Self::with_outbox(broker, DEFAULT_OUTBOX)
    }

    /// A publisher with at most `outbox` publishes in flight.
    pub fn with_outbox(broker: BrokerClient, outbox: usize) -> Self {
        PublisherActor {
            broker,
            outbox: Arc::new(Semaphore::new(outbox.max(1))),
        }
    }
}

impl Actor for PublisherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Publish> for PublisherActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, Publish(message): Publish, _: &mut Context<Self>) -> Self::Result {
        let broker = self.broker.clone();
        let outbox = self.outbox.clone();
        Box::pin(async move {
            let _slot = outbox
                .acquire_owned()
                .await
                .map_err(|_| BrokerError::Closed)?;
            broker.publish(message).await
        })
    }
}
