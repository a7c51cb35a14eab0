//! The operations on the connection: publish (with confirms), declare, count and delete
//! queues, flush acknowledgements; each waits out a reconnection up to its deadline.

use std::time::{Duration, Instant};

use actix::prelude::*;
use lapin::options::{
    BasicPublishOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::Confirmation;

use super::exchange;
use super::link::ChannelSlot;
use super::{acks, AmqpBrokerActor};
use crate::broker::{
    CountMessages, DeclareQueue, DeleteQueue, FlushAcks, PublishMessage, QueueSpec,
};
use crate::delivery::OutboundMessage;
use crate::error::BrokerError;

/// One `queue.declare` of `spec` (no bindings) on the channel of `slot`; answers the
/// broker's `declare-ok` (message and consumer counts).
pub(super) async fn declare_queue(
    slot: &ChannelSlot,
    spec: &QueueSpec,
    deadline: Instant,
) -> Result<lapin::Queue, BrokerError> {
    let channel = slot.get(Some(deadline)).await?;
    let options = QueueDeclareOptions {
        passive: false,
        durable: spec.durable,
        exclusive: spec.exclusive,
        auto_delete: spec.auto_delete,
        nowait: false,
    };
    channel
        .queue_declare(spec.name.as_str().into(), options, spec.arguments.clone())
        .await
        .map_err(|error| BrokerError::amqp(format!("queue.declare \"{}\"", spec.name), &error))
}

/// Declares a queue on the topology channel, with its bindings.
pub(super) async fn declare(
    slot: &ChannelSlot,
    spec: &QueueSpec,
    deadline: Instant,
) -> Result<(), BrokerError> {
    declare_queue(slot, spec, deadline).await?;
    for binding in &spec.bindings {
        exchange::declare(slot, &binding.exchange, deadline).await?;
        let channel = slot.get(Some(deadline)).await?;
        channel
            .queue_bind(
                spec.name.as_str().into(),
                binding.exchange.name.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| {
                let what = format!(
                    "queue.bind \"{}\" to \"{}\"",
                    spec.name, binding.exchange.name
                );
                BrokerError::amqp(what, &error)
            })?;
    }
    Ok(())
}

/// Runs `operation` until it succeeds, fails for another reason than a lost connection, or
/// `deadline` passes (then `BrokerError::Unavailable` with the last failure).
pub(super) async fn retry_until<T, F, Fut>(
    what: &str,
    deadline: Instant,
    mut operation: F,
) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BrokerError>>,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        // An attempt can hang while lapin recovers the connection (a confirm that never
        // comes): each is bounded by what is left of the deadline.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempted = tokio::time::timeout(remaining, operation()).await;
        let failure = match attempted {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(
                error @ (BrokerError::ConnectionLost { .. }
                | BrokerError::Nacked { .. }
                | BrokerError::Unavailable { .. }),
            )) => error,
            Ok(Err(other)) => return Err(other),
            Err(_) => BrokerError::ConnectionLost {
                operation: what.to_string(),
                reason: "no answer from the broker".to_string(),
            },
        };
        attempt += 1;
        let now = Instant::now();
        if now >= deadline {
            let reason = match failure {
                BrokerError::Unavailable { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(BrokerError::Unavailable {
                operation: what.to_string(),
                waited_ms: now.duration_since(started).as_millis(),
                reason,
            });
        }
        log::debug!("{what}: attempt {attempt} failed ({failure}); retrying");
        let pause = Duration::from_millis(50u64.saturating_mul(u64::from(attempt)))
            .min(Duration::from_secs(1))
            .min(deadline - now);
        actix_rt::time::sleep(pause).await;
    }
}

/// Publishes one message on the confirm channel and waits for the broker's verdict. Fails
/// with `ConnectionLost` as soon as the broker actor gives the connection up (it then
/// publishes again on the next one): lapin may keep a given-up connection recovering, and
/// the confirm it owes pending, for good.
pub(super) async fn publish_once(
    slot: &ChannelSlot,
    message: &OutboundMessage,
    deadline: Instant,
) -> Result<(), BrokerError> {
    let (connection, channel) = slot.get_owned(Some(deadline)).await?;
    let operation = || format!("basic.publish to \"{}\"", message.routing_key);
    tokio::select! {
        published = publish_on(&channel, slot, message) => published,
        () = slot.replaced(&connection) => Err(BrokerError::ConnectionLost {
            operation: operation(),
            reason: "the connection was given up before the broker confirmed the publish".into(),
        }),
    }
}

/// `basic.publish` of `message` on `channel`, `mandatory` (a message no queue takes comes
/// back); answers the publisher confirm to wait for (on a channel in confirm mode).
pub(super) async fn publish_mandatory(
    channel: &lapin::Channel,
    message: &OutboundMessage,
) -> Result<lapin::PublisherConfirm, BrokerError> {
    channel
        .basic_publish(
            message.exchange.as_str().into(),
            message.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            &message.body,
            message.properties.clone(),
        )
        .await
        .map_err(|error| {
            BrokerError::amqp(
                format!("basic.publish to \"{}\"", message.routing_key),
                &error,
            )
        })
}

/// `basic.publish` of `message` on `channel`, and the broker's confirm.
async fn publish_on(
    channel: &lapin::Channel,
    slot: &ChannelSlot,
    message: &OutboundMessage,
) -> Result<(), BrokerError> {
    let confirm = publish_mandatory(channel, message).await?;
    match confirm.await {
        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Ack(Some(_returned))) => Err(BrokerError::Unroutable {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
            node: slot.node(),
        }),
        Ok(Confirmation::Nack(_)) => Err(BrokerError::Nacked {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
            node: slot.node(),
        }),
        Err(error) => Err(BrokerError::amqp(
            format!("basic.publish to \"{}\"", message.routing_key),
            &error,
        )),
    }
}

impl Handler<PublishMessage> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    /// Publishes and waits for the confirm. A publish that fails because the connection
    /// went away, or that the broker nacks, is published again once the broker is back
    /// (at-least-once), until `send_timeout` has passed.
    fn handle(
        &mut self,
        PublishMessage(message): PublishMessage,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.publish_channel.clone();
        let link = self.link.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        Box::pin(async move {
            let what = format!("publishing to \"{}\"", message.routing_key);
            link.named(
                retry_until(&what, deadline, || publish_once(&slot, &message, deadline)).await,
            )
        })
    }
}

impl Handler<DeclareQueue> for AmqpBrokerActor {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, DeclareQueue(spec): DeclareQueue, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(fut::ready(Err(error)));
        }
        let slot = self.topology_channel.clone();
        let link = self.link.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        let declaring = async move {
            let what = format!("declaring queue \"{}\"", spec.name);
            link.named(retry_until(&what, deadline, || declare(&slot, &spec, deadline)).await)
                .map(|()| spec)
        };
        Box::pin(declaring.into_actor(self).map(|declared, actor, _| {
            let spec = declared?;
            actor.declared.insert(spec.name.clone(), spec);
            Ok(())
        }))
    }
}

impl Handler<CountMessages> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<u32, BrokerError>>;

    fn handle(
        &mut self,
        CountMessages(queue): CountMessages,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let link = self.link.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        Box::pin(async move {
            let counting = async {
                let connection = link
                    .connection("queue.declare (passive)", Some(deadline))
                    .await?;
                // A passive declare of a missing queue closes its channel: use a channel of its own.
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|error| BrokerError::amqp("channel.open", &error))?;
                let declared = channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await;
                match declared {
                    Ok(found) => {
                        let _ = channel.close(200, "OK".into()).await;
                        Ok(found.message_count())
                    }
                    Err(error) if error.is_amqp_soft_error() => {
                        Err(BrokerError::NoSuchQueue(queue))
                    }
                    Err(error) => Err(BrokerError::amqp(
                        format!("queue.declare (passive) \"{queue}\""),
                        &error,
                    )),
                }
            };
            link.named(counting.await)
        })
    }
}

impl Handler<DeleteQueue> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<u32, BrokerError>>;

    fn handle(&mut self, DeleteQueue(queue): DeleteQueue, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.topology_channel.clone();
        let link = self.link.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        self.declared.remove(&queue);
        Box::pin(async move {
            let what = format!("queue.delete \"{queue}\"");
            let deleted = retry_until(&what, deadline, || async {
                slot.get(Some(deadline))
                    .await?
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|error| BrokerError::amqp(what.clone(), &error))
            })
            .await;
            link.named(deleted)
        })
    }
}

/// Sends `Flush` to each ack task and waits for them.
pub(super) async fn flush_ack_tasks(ack_tasks: Vec<acks::AckSender>) {
    for acks in ack_tasks {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if acks.send(acks::AckCommand::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

impl Handler<FlushAcks> for AmqpBrokerActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: FlushAcks, _: &mut Context<Self>) -> Self::Result {
        let ack_tasks: Vec<_> = self
            .consumer_channels
            .values()
            .map(|(_, _, acks)| acks.clone())
            .collect();
        Box::pin(flush_ack_tasks(ack_tasks))
    }
}
