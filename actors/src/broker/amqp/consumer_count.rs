//! [`CountConsumers`] on RabbitMQ: a `queue.declare` on the topology channel, whose
//! `declare-ok` carries the consumer count.

use std::time::Instant;

use actix::prelude::*;
use lapin::options::QueueDeclareOptions;

use super::operations::retry_until;
use super::AmqpBrokerActor;
use crate::broker::consumers::CountConsumers;
use crate::error::BrokerError;

impl Handler<CountConsumers> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<u32, BrokerError>>;

    fn handle(
        &mut self,
        CountConsumers(spec): CountConsumers,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.topology_channel.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        Box::pin(async move {
            let what = format!("queue.declare \"{}\"", spec.name);
            retry_until(&what, deadline, || async {
                let options = QueueDeclareOptions {
                    passive: false,
                    durable: spec.durable,
                    exclusive: spec.exclusive,
                    auto_delete: spec.auto_delete,
                    nowait: false,
                };
                slot.get(Some(deadline))
                    .await?
                    .queue_declare(spec.name.as_str().into(), options, spec.arguments.clone())
                    .await
                    .map(|queue| queue.consumer_count())
                    .map_err(|error| BrokerError::amqp(what.clone(), &error))
            })
            .await
        })
    }
}
