//! Receiving events, as `celery events` does: a queue of our own (exclusive,
//! auto-delete) bound to the `celeryev` topic exchange with `#`, every message taken
//! apart into its events (a task batch is a JSON list, a worker event one object).

use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::actors::amqp::{AMQPValue, FieldTable};
use crate::actors::broker::OpenConsumer;
use crate::actors::{BrokerClient, BrokerError, ExchangeSpec, QueueBinding, QueueSpec, Settlement};

use super::event::EXCHANGE;

/// The events arriving, one JSON object each, in arrival order.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Value, BrokerError>> + Send>>;

/// The events of one message body: the objects of a list, or the one object; nothing for
/// anything else (not JSON, a number, ...).
pub fn events_in(body: &[u8]) -> Vec<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(events)) => events.into_iter().filter(Value::is_object).collect(),
        Ok(event @ Value::Object(_)) => vec![event],
        _ => Vec::new(),
    }
}

/// The receiver's queue: `celeriac.events.<uuid>`, not durable, exclusive, auto-delete,
/// messages kept 5 s (Celery's `event_queue_ttl`), bound to `celeryev` with `#`.
fn event_queue() -> QueueSpec {
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(5_000));
    QueueSpec {
        name: format!("celeriac.events.{}", uuid::Uuid::new_v4()),
        durable: false,
        exclusive: true,
        auto_delete: true,
        arguments,
        bindings: vec![QueueBinding {
            exchange: ExchangeSpec::durable(EXCHANGE, "topic"),
            routing_key: "#".into(),
        }],
    }
}

/// Starts receiving every event published on `broker` from now on. The queue goes when
/// the broker connection closes.
pub async fn receive_events(broker: &BrokerClient) -> Result<EventStream, BrokerError> {
    let queue = event_queue();
    let name = queue.name.clone();
    broker.declare_queue(queue).await?;
    let deliveries = broker
        .open_consumer
        .send(OpenConsumer {
            consumer_tag: format!("{name}-consumer"),
            queue: name,
            prefetch: 100,
            global_qos: false,
        })
        .await??;
    let events = deliveries
        .then(|delivery| async move {
            let delivery = delivery?;
            delivery.acker.settle(Settlement::Ack).await?;
            Ok::<_, BrokerError>(events_in(&delivery.body))
        })
        .flat_map(|events| {
            futures::stream::iter(match events {
                Ok(events) => events.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(error) => vec![Err(error)],
            })
        });
    Ok(Box::pin(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_holds_one_event_or_a_batch() {
        let one = json!({"type": "worker-heartbeat"});
        let batch = json!([{"type": "task-received"}, {"type": "task-started"}, 3]);
        assert_eq!(events_in(one.to_string().as_bytes()), vec![one.clone()]);
        assert_eq!(
            events_in(batch.to_string().as_bytes()),
            vec![
                json!({"type": "task-received"}),
                json!({"type": "task-started"})
            ]
        );
        assert_eq!(events_in(b"not json"), Vec::<Value>::new());
        assert_eq!(events_in(b"42"), Vec::<Value>::new());
    }
}
