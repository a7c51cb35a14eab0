//! `DeclareExchange` and `PublishTransient` for the AMQP broker actor. Both use the
//! topology channel (no confirms): a transient publish costs one frame write.

use std::time::Instant;

use actix::prelude::*;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::ExchangeKind;

use super::link::ChannelSlot;
use super::operations::retry_until;
use super::AmqpBrokerActor;
use crate::broker::exchange::{DeclareExchange, ExchangeSpec, PublishTransient};
use crate::error::BrokerError;

/// lapin's name for an exchange type.
fn kind_of(kind: &str) -> ExchangeKind {
    match kind {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "headers" => ExchangeKind::Headers,
        "topic" => ExchangeKind::Topic,
        other => ExchangeKind::Custom(other.to_string()),
    }
}

/// Declares an exchange on the topology channel (also before a queue's bindings).
pub(super) async fn declare(
    slot: &ChannelSlot,
    spec: &ExchangeSpec,
    deadline: Instant,
) -> Result<(), BrokerError> {
    let channel = slot.get(Some(deadline)).await?;
    let options = ExchangeDeclareOptions {
        passive: false,
        durable: spec.durable,
        auto_delete: spec.auto_delete,
        internal: false,
        nowait: false,
    };
    channel
        .exchange_declare(
            spec.name.as_str().into(),
            kind_of(&spec.kind),
            options,
            FieldTable::default(),
        )
        .await
        .map_err(|error| BrokerError::amqp(format!("exchange.declare \"{}\"", spec.name), &error))
}

impl Handler<DeclareExchange> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(
        &mut self,
        DeclareExchange(spec): DeclareExchange,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.topology_channel.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        Box::pin(async move {
            let what = format!("declaring exchange \"{}\"", spec.name);
            let declared = retry_until(&what, deadline, || declare(&slot, &spec, deadline)).await;
            declared.map_err(|error| error.on_node(&slot.node()))
        })
    }
}

impl Handler<PublishTransient> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, publish: PublishTransient, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.topology_channel.clone();
        Box::pin(async move {
            let PublishTransient { message, within } = publish;
            let channel = slot.get(Some(Instant::now() + within)).await?;
            let node = slot.node();
            channel
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: false,
                        immediate: false,
                    },
                    &message.body,
                    message.properties,
                )
                .await
                .map(|_| ())
                .map_err(|error| {
                    let operation = format!("basic.publish to \"{}\"", message.exchange);
                    BrokerError::amqp(operation, &error).on_node(&node)
                })
        })
    }
}
