//! `AmqpBrokerActor`: owns the one lapin connection and mediates every channel operation.
//!
//! lapin runs on a multi-threaded tokio runtime of its own (one per process), not on the
//! actix arbiter that connected: a busy or stopped arbiter then cannot stall or silently
//! hang the connection. lapin's auto-recovery is enabled.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, Event};

use super::{
    BreakConsumerChannel, CancelConsumer, CloseBroker, CloseConsumer, CountMessages, DeclareQueue,
    DeleteQueue, DeliveryStream, OpenConsumer, PublishMessage, SetPrefetch,
};
use crate::delivery::{Acker, Delivery, OutboundMessage};
use crate::error::BrokerError;

/// How to reach RabbitMQ.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (`%2f` is the default vhost).
    pub url: String,
    /// Shown in RabbitMQ's management UI and `rabbitmqctl list_connections`.
    pub connection_name: String,
    /// How long `connect` may take before it gives up with `BrokerError::ConnectTimeout`.
    pub connect_timeout: Duration,
}

impl AmqpConfig {
    /// A config for `url` with a 10-second connect timeout.
    pub fn new(url: impl Into<String>) -> Self {
        AmqpConfig {
            url: url.into(),
            connection_name: "celeriac".into(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The URL with its password masked, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The runtime lapin runs on, shared by every connection of the process.
fn lapin_runtime() -> Result<async_rs::TokioRuntime, BrokerError> {
    static RUNTIME: OnceLock<async_rs::TokioRuntime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.clone());
    }
    let runtime = async_rs::Runtime::tokio().map_err(|error| BrokerError::Amqp {
        operation: "starting lapin's runtime".into(),
        reason: error.to_string(),
    })?;
    Ok(RUNTIME.get_or_init(|| runtime).clone())
}

/// A channel that is opened on first use and opened again after it was closed.
#[derive(Clone)]
struct ChannelSlot {
    /// The connection new channels come from.
    connection: Arc<Connection>,
    /// Whether the channel is put in publisher-confirm mode.
    confirms: bool,
    /// The current channel, if one is open.
    channel: Arc<tokio::sync::Mutex<Option<Channel>>>,
}

impl ChannelSlot {
    fn new(connection: Arc<Connection>, confirms: bool) -> Self {
        ChannelSlot {
            connection,
            confirms,
            channel: Arc::default(),
        }
    }

    /// The open channel, or a new one when the previous one was closed (by a soft error).
    async fn get(&self) -> Result<Channel, BrokerError> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref() {
            let status = channel.status();
            if status.connected() || status.reconnecting() || status.initializing() {
                return Ok(channel.clone());
            }
        }
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|error| BrokerError::amqp("channel.open", &error))?;
        if self.confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|error| BrokerError::amqp("confirm.select", &error))?;
        }
        *slot = Some(channel.clone());
        Ok(channel)
    }
}

/// The actor that owns the RabbitMQ connection. Nothing else holds a `Connection`.
pub struct AmqpBrokerActor {
    /// The connection; shared with the channel slots that open channels on it.
    connection: Arc<Connection>,
    /// The broker URL with the password masked.
    url: String,
    /// The confirm-mode channel every publish goes through.
    publish_channel: ChannelSlot,
    /// The channel for declarations and deletions.
    topology_channel: ChannelSlot,
    /// The channel of each open consumer and a handle on the consumer, by consumer tag.
    consumer_channels: HashMap<String, (Channel, lapin::Consumer)>,
    /// Consumers whose channel failed, kept until the connection closes. lapin 4.12 sends
    /// `basic.cancel` when the last handle on a consumer is dropped; if the channel was
    /// closed by the broker and is already forgotten, that fails with `InvalidChannel`
    /// and lapin then tears down and recovers the whole connection. Keeping one handle
    /// here avoids that; the cost is a few hundred bytes per failed consumer.
    retired_consumers: Vec<lapin::Consumer>,
    /// Set once `CloseBroker` ran: every later request fails with `BrokerError::Closed`.
    closed: bool,
}

impl AmqpBrokerActor {
    /// Connects to RabbitMQ and starts the actor on the current arbiter.
    ///
    /// Fails with `BrokerError::ConnectTimeout` when the broker cannot be reached within
    /// `config.connect_timeout`, and with `BrokerError::Connect` when it refuses us.
    pub async fn connect(config: AmqpConfig) -> Result<Addr<Self>, BrokerError> {
        let url = redact_url(&config.url);
        let runtime = lapin_runtime()?;
        let properties = ConnectionProperties::default()
            .enable_auto_recover()
            .with_connection_name(config.connection_name.clone().into());
        let connecting = Connection::connect_with_runtime(&config.url, properties, runtime);
        let connection = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Err(_) => {
                return Err(BrokerError::ConnectTimeout {
                    url,
                    timeout_ms: config.connect_timeout.as_millis(),
                })
            }
            Ok(Err(error)) => {
                return Err(BrokerError::Connect {
                    url,
                    reason: error.to_string(),
                })
            }
            Ok(Ok(connection)) => Arc::new(connection),
        };
        log::info!("connected to the broker at {url}");
        Ok(AmqpBrokerActor::create(|ctx| {
            ctx.set_mailbox_capacity(1024);
            ctx.add_stream(connection.events_listener());
            AmqpBrokerActor {
                publish_channel: ChannelSlot::new(connection.clone(), true),
                topology_channel: ChannelSlot::new(connection.clone(), false),
                connection,
                url,
                consumer_channels: HashMap::new(),
                retired_consumers: Vec::new(),
                closed: false,
            }
        }))
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }
}

impl Actor for AmqpBrokerActor {
    type Context = Context<Self>;
}

impl StreamHandler<Event> for AmqpBrokerActor {
    fn handle(&mut self, event: Event, _ctx: &mut Context<Self>) {
        match event {
            Event::Connected => log::info!("broker connection to {} is up", self.url),
            Event::ConnectionBlocked(reason) => {
                log::warn!("the broker blocked the connection: {reason}")
            }
            Event::ConnectionUnblocked => log::info!("the broker unblocked the connection"),
            Event::Error(error) => log::warn!("broker connection event: {error}"),
            other => log::debug!("broker connection event: {other:?}"),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The events stream ends with the connection; the actor stays to answer `Closed`.
    }
}

/// Publishes one message on the confirm channel and waits for the broker's verdict.
async fn publish_confirmed(
    slot: &ChannelSlot,
    message: &OutboundMessage,
) -> Result<(), BrokerError> {
    let channel = slot.get().await?;
    let operation = || format!("basic.publish to \"{}\"", message.routing_key);
    let mut attempt = channel
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
        .await;
    if let Err(error) = attempt {
        // During lapin's connection recovery: wait for it, then publish once more.
        channel
            .wait_for_recovery(error)
            .await
            .map_err(|error| BrokerError::amqp(operation(), &error))?;
        attempt = slot
            .get()
            .await?
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
            .await;
    }
    let confirm = attempt.map_err(|error| BrokerError::amqp(operation(), &error))?;
    match confirm.await {
        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Ack(Some(_returned))) => Err(BrokerError::Unroutable {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
        }),
        Ok(Confirmation::Nack(_)) => Err(BrokerError::Nacked {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
        }),
        Err(error) => Err(BrokerError::amqp(operation(), &error)),
    }
}

impl Handler<PublishMessage> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(
        &mut self,
        PublishMessage(message): PublishMessage,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.publish_channel.clone();
        Box::pin(async move { publish_confirmed(&slot, &message).await })
    }
}

impl Handler<DeclareQueue> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, DeclareQueue(spec): DeclareQueue, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.topology_channel.clone();
        Box::pin(async move {
            let channel = slot.get().await?;
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
                .map(|_| ())
                .map_err(|error| {
                    BrokerError::amqp(format!("queue.declare \"{}\"", spec.name), &error)
                })
        })
    }
}

impl Handler<OpenConsumer> for AmqpBrokerActor {
    type Result = ResponseActFuture<Self, Result<DeliveryStream, BrokerError>>;

    fn handle(&mut self, open: OpenConsumer, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(fut::ready(Err(error)));
        }
        let connection = self.connection.clone();
        let queue = open.queue.clone();
        let tag = open.consumer_tag.clone();
        let opening = async move {
            let operation = |what: &str| format!("{what} on queue \"{queue}\"");
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
            let (channel, consumer) = opened?;
            actor
                .consumer_channels
                .insert(tag.clone(), (channel, consumer.clone()));
            let consumer_tag = tag.clone();
            let stream = consumer.map(move |item| match item {
                Ok(delivery) => Ok(Delivery {
                    queue: queue.clone(),
                    consumer_tag: consumer_tag.clone(),
                    exchange: delivery.exchange.to_string(),
                    routing_key: delivery.routing_key.to_string(),
                    redelivered: delivery.redelivered,
                    properties: delivery.properties,
                    body: delivery.data,
                    acker: Acker::Amqp(delivery.acker),
                }),
                Err(error) => Err(BrokerError::amqp(
                    format!("consuming queue \"{queue}\""),
                    &error,
                )),
            });
            Ok(Box::pin(stream) as DeliveryStream)
        }))
    }
}

impl Handler<CancelConsumer> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, cancel: CancelConsumer, _: &mut Context<Self>) -> Self::Result {
        // The channel stays open so that deliveries in progress can still be settled; it
        // closes with the connection.
        let channel = self
            .consumer_channels
            .get(&cancel.consumer_tag)
            .map(|(channel, _)| channel.clone());
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
        let Some((channel, consumer)) = self.consumer_channels.remove(&close.consumer_tag) else {
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
        let channel = self
            .consumer_channels
            .get(&request.consumer_tag)
            .map(|(channel, _)| channel.clone());
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
        let connection = self.connection.clone();
        Box::pin(async move {
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
                Err(error) if error.is_amqp_soft_error() => Err(BrokerError::NoSuchQueue(queue)),
                Err(error) => Err(BrokerError::amqp(
                    format!("queue.declare (passive) \"{queue}\""),
                    &error,
                )),
            }
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
        Box::pin(async move {
            slot.get()
                .await?
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|error| BrokerError::amqp(format!("queue.delete \"{queue}\""), &error))
        })
    }
}

impl Handler<CloseBroker> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, _: CloseBroker, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Box::pin(async { Ok(()) });
        }
        self.closed = true;
        let consumers: Vec<_> = self
            .consumer_channels
            .drain()
            .map(|(_, (_, consumer))| consumer)
            .chain(self.retired_consumers.drain(..))
            .collect();
        let connection = self.connection.clone();
        let url = self.url.clone();
        Box::pin(async move {
            // Dropped once the connection is closed, when lapin no longer sends for them.
            let _consumers = consumers;
            let status = connection.status();
            if status.closed() || status.closing() || status.errored() {
                return Ok(());
            }
            connection
                .close(200, "OK".into())
                .await
                .map_err(|error| BrokerError::amqp("connection.close", &error))?;
            log::info!("closed the broker connection to {url}");
            Ok(())
        })
    }
}

impl Handler<BreakConsumerChannel> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, request: BreakConsumerChannel, _: &mut Context<Self>) -> Self::Result {
        let channel = self
            .consumer_channels
            .get(&request.consumer_tag)
            .map(|(channel, _)| channel.clone());
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

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
    }
}
