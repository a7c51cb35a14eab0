//! Consumers: a channel of their own each (with its prefetch window and ack task),
//! opened, cancelled, closed; and, for tests, broken on purpose.

use std::sync::Arc;

use actix::prelude::*;
use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;

use super::{acks, AmqpBrokerActor};
use crate::broker::{CancelConsumer, CloseConsumer, DeliveryStream, OpenConsumer, SetPrefetch};
use crate::delivery::{Acker, Delivery};
use crate::error::BrokerError;
#[cfg(feature = "fault-injection")]
use lapin::options::QueueDeclareOptions;

impl Handler<OpenConsumer> for AmqpBrokerActor {
    type Result = ResponseActFuture<Self, Result<DeliveryStream, BrokerError>>;

    fn handle(&mut self, open: OpenConsumer, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(fut::ready(Err(error)));
        }
        let link = self.link.clone();
        let naming = self.link.clone();
        let queue = open.queue.clone();
        let tag = open.consumer_tag.clone();
        let opening = async move {
            let operation = |what: &str| format!("{what} on queue \"{queue}\"");
            // Waits while the broker is away, as long as the actor keeps reconnecting.
            let connection = link.connection(&operation("basic.consume"), None).await?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| BrokerError::amqp(operation("channel.open"), &error))?;
            channel
                .basic_qos(
                    open.prefetch,
                    BasicQosOptions {
                        global: open.global_qos,
                    },
                )
                .await
                .map_err(|error| BrokerError::amqp(operation("basic.qos"), &error))?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|error| BrokerError::amqp(operation("basic.consume"), &error))?;
            Ok::<_, BrokerError>((channel, consumer))
        };
        let queue = open.queue;
        let tag = open.consumer_tag;
        Box::pin(opening.into_actor(self).map(move |opened, actor, _| {
            let (channel, consumer) = naming.named(opened)?;
            // The node of this channel: what its errors and ack log lines name.
            let node = actor.url.borrow().clone();
            let acks = acks::spawn_ack_task(queue.clone(), node.clone());
            actor
                .consumer_channels
                .insert(tag.clone(), (channel, consumer.clone(), acks.clone()));
            let consumer_tag = tag.clone();
            let opened_generation = *actor.generation.borrow();
            let mut generations = actor.generation.subscribe();
            let given_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = given_up.clone();
            let connection_given_up = async move {
                let _ = generations.wait_for(|now| *now != opened_generation).await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            };
            let lost_queue = queue.clone();
            let lost_node = node.clone();
            let stream = consumer.map(move |item| match item {
                Ok(delivery) => {
                    let tag = delivery.delivery_tag;
                    // Known to the ack task before anyone can settle it.
                    let _ = acks.send(acks::AckCommand::Delivered {
                        tag,
                        acker: delivery.acker.clone(),
                    });
                    Ok(Delivery {
                        queue: queue.clone(),
                        consumer_tag: consumer_tag.clone(),
                        exchange: delivery.exchange.to_string(),
                        routing_key: delivery.routing_key.to_string(),
                        redelivered: delivery.redelivered,
                        properties: delivery.properties,
                        body: delivery.data,
                        acker: Acker::new(acks::BatchedAcker::new(
                            tag,
                            delivery.acker,
                            acks.clone(),
                        )),
                    })
                }
                Err(error) => Err(BrokerError::amqp(
                    format!("consuming queue \"{queue}\""),
                    &error,
                )
                .on_node(&node)),
            });
            let stream = stream.take_until(connection_given_up).chain(
                futures::stream::once(async move {
                    given_up.load(std::sync::atomic::Ordering::SeqCst).then(|| {
                        Err(BrokerError::ConnectionLost {
                            operation: format!("consuming queue \"{lost_queue}\""),
                            reason: "the connection was given up and replaced".into(),
                        }
                        .on_node(&lost_node))
                    })
                })
                .filter_map(futures::future::ready),
            );
            Ok(Box::pin(stream) as DeliveryStream)
        }))
    }
}

impl Handler<CancelConsumer> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, cancel: CancelConsumer, _: &mut Context<Self>) -> Self::Result {
        // The channel stays open so that deliveries in progress can still be settled; it
        // closes with the connection.
        let channel = self.consumer_channel(&cancel.consumer_tag);
        Box::pin(async move {
            let Some(channel) = channel else {
                return Ok(());
            };
            if !channel.status().connected() {
                return Ok(());
            }
            channel
                .basic_cancel(
                    cancel.consumer_tag.as_str().into(),
                    BasicCancelOptions::default(),
                )
                .await
                .map_err(|error| {
                    BrokerError::amqp(format!("basic.cancel \"{}\"", cancel.consumer_tag), &error)
                })
        })
    }
}

impl Handler<CloseConsumer> for AmqpBrokerActor {
    type Result = ();

    fn handle(&mut self, close: CloseConsumer, ctx: &mut Context<Self>) {
        let Some((channel, consumer, _)) = self.consumer_channels.remove(&close.consumer_tag)
        else {
            return;
        };
        self.retired_consumers.push(consumer);
        if channel.status().connected() {
            ctx.spawn(
                async move {
                    if let Err(error) = channel.close(200, "consumer replaced".into()).await {
                        log::debug!("closing the channel of a failed consumer: {error}");
                    }
                }
                .into_actor(self),
            );
        }
    }
}

impl Handler<SetPrefetch> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, request: SetPrefetch, _: &mut Context<Self>) -> Self::Result {
        let channel = self.consumer_channel(&request.consumer_tag);
        Box::pin(async move {
            let Some(channel) = channel else {
                // The consumer is gone: its successor starts with its own window.
                return Ok(());
            };
            channel
                .basic_qos(request.prefetch, BasicQosOptions { global: true })
                .await
                .map_err(|error| BrokerError::amqp("basic.qos", &error))
        })
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::broker::BreakConsumerChannel> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(
        &mut self,
        request: crate::broker::BreakConsumerChannel,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let channel = self.consumer_channel(&request.consumer_tag);
        Box::pin(async move {
            let channel = channel.ok_or_else(|| BrokerError::Amqp {
                operation: "breaking a consumer channel".into(),
                reason: format!("no consumer with tag \"{}\"", request.consumer_tag),
            })?;
            let missing = format!("celeriac.fault-injection.{}", uuid::Uuid::new_v4());
            let declared = channel
                .queue_declare(
                    missing.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Err(error) if error.is_amqp_soft_error() => Ok(()),
                Err(error) => Err(BrokerError::amqp("breaking a consumer channel", &error)),
                Ok(_) => Err(BrokerError::Amqp {
                    operation: "breaking a consumer channel".into(),
                    reason: format!("queue {missing} unexpectedly exists"),
                }),
            }
        })
    }
}
