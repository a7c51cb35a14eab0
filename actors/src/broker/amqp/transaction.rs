//! [`PublishTransaction`] on RabbitMQ: a channel of its own in transaction mode (the
//! publish channel is in confirm mode, and a channel cannot be both), the publishes, the
//! commit, and the channel closed. Not retried (see [`PublishTransaction`]). Published
//! `mandatory`: a message no queue took is reported after the commit.

use std::time::Instant;

use actix::prelude::*;
use lapin::Channel;

use super::operations::publish_mandatory;
use super::AmqpBrokerActor;
use crate::broker::transaction::PublishTransaction;
use crate::delivery::OutboundMessage;
use crate::error::BrokerError;

impl Handler<PublishTransaction> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(
        &mut self,
        PublishTransaction { messages }: PublishTransaction,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let link = self.link.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        Box::pin(async move {
            let node = link.node();
            let committed = async {
                let connection = link.connection("tx.select", Some(deadline)).await?;
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|error| BrokerError::amqp("channel.open", &error))?;
                let remaining = deadline.saturating_duration_since(Instant::now());
                let committed =
                    tokio::time::timeout(remaining, commit(&channel, &messages, &node)).await;
                let _ = channel.close(200, "OK".into()).await;
                committed.unwrap_or_else(|_| {
                    Err(BrokerError::ConnectionLost {
                        operation: "tx.commit".into(),
                        reason: "no answer from the broker".into(),
                    })
                })
            };
            link.named(committed.await)
        })
    }
}

/// `tx.select`, one `basic.publish` per message, `tx.commit`, on `channel` (a channel of
/// `node`, named in an unroutable message's error).
async fn commit(
    channel: &Channel,
    messages: &[OutboundMessage],
    node: &str,
) -> Result<(), BrokerError> {
    channel
        .tx_select()
        .await
        .map_err(|error| BrokerError::amqp("tx.select", &error))?;
    for message in messages {
        // Not in confirm mode: nothing to wait for per message; returns come after commit.
        publish_mandatory(channel, message).await?;
    }
    channel
        .tx_commit()
        .await
        .map_err(|error| BrokerError::amqp("tx.commit", &error))?;
    // RabbitMQ routes at the commit and returns what no queue took before `commit-ok`;
    // without publisher confirms lapin keeps the returns until asked.
    let returned = channel
        .wait_for_confirms()
        .await
        .map_err(|error| BrokerError::amqp("tx.commit", &error))?;
    match returned.first() {
        None => Ok(()),
        Some(message) => Err(BrokerError::Unroutable {
            exchange: message.delivery.exchange.to_string(),
            routing_key: message.delivery.routing_key.to_string(),
            node: node.to_string(),
        }),
    }
}
