//! [`CountConsumers`] on RabbitMQ: a `queue.declare` on the topology channel, whose
//! `declare-ok` carries the consumer count.

use std::time::Instant;

use actix::prelude::*;

use super::operations::{declare_queue, retry_until};
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
                declare_queue(&slot, &spec, deadline)
                    .await
                    .map(|queue| queue.consumer_count())
            })
            .await
        })
    }
}
