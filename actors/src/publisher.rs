//! `PublisherActor`: the producer side's single way out. It keeps many publishes in flight
//! (each answer waits for its own broker confirm, none waits for another) and counts them.

use actix::prelude::*;

use crate::broker::BrokerClient;
use crate::delivery::OutboundMessage;
use crate::error::BrokerError;

/// Publishes a message; answers once the broker confirmed it.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Publish(pub OutboundMessage);

/// Publishes through a broker actor with pipelined confirms.
pub struct PublisherActor {
    broker: BrokerClient,
}

impl PublisherActor {
    /// A publisher that publishes through `broker`.
    pub fn new(broker: BrokerClient) -> Self {
        PublisherActor { broker }
    }
}

impl Actor for PublisherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Senders wait (backpressure) once this many publishes are queued here.
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Publish> for PublisherActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, Publish(message): Publish, _: &mut Context<Self>) -> Self::Result {
        let broker = self.broker.clone();
        Box::pin(async move { broker.publish(message).await })
    }
}
