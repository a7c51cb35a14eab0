//! `queue.purge` for [`AmqpBrokerActor`] (a file of its own: the actor's module is being
//! split).

use std::time::Instant;

use actix::prelude::*;
use lapin::options::QueuePurgeOptions;

use super::AmqpBrokerActor;
use crate::broker::PurgeQueue;
use crate::error::BrokerError;

impl Handler<PurgeQueue> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<u32, BrokerError>>;

    fn handle(&mut self, PurgeQueue(queue): PurgeQueue, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let link = self.link.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        Box::pin(async move {
            let connection = link.connection("queue.purge", Some(deadline)).await?;
            let named = |error: BrokerError| error.on_node(&link.node());
            // Purging a missing queue closes its channel (404): use a channel of its own.
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| named(BrokerError::amqp("channel.open", &error)))?;
            let purged = channel
                .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                .await;
            match purged {
                Ok(count) => {
                    let _ = channel.close(200, "OK".into()).await;
                    Ok(count)
                }
                Err(error) if error.is_amqp_soft_error() => Err(BrokerError::NoSuchQueue(queue)),
                Err(error) => Err(named(BrokerError::amqp(
                    format!("queue.purge \"{queue}\""),
                    &error,
                ))),
            }
        })
    }
}
