//! Publishing a retry the way Celery's `Task.retry` does (docs/wire-protocol.md §1.7): the same
//! message again, same id, with `retries` + 1, the new `eta` and `parent_id` = the task's
//! own id, to the queue it came from.

use chrono::{DateTime, Utc};

use crate::actors::amqp::AMQPValue;
use crate::actors::{Delivery, OutboundMessage};
use crate::app::{Producer, SendError};
use crate::protocol::time::format_datetime;
use crate::protocol::TaskMessage;

/// Publishes the retry of `delivery` and waits for the broker's confirm. A protocol v1
/// message (no headers to update) is re-encoded as v2 from `v1_copy`.
pub(crate) async fn republish_for_retry(
    producer: &Producer,
    delivery: &Delivery,
    task_id: &str,
    eta: DateTime<Utc>,
    v1_copy: Option<TaskMessage>,
) -> Result<(), SendError> {
    let (properties, body) = match v1_copy {
        Some(mut message) => {
            message.headers.retries += 1;
            message.headers.eta = Some(eta);
            message.headers.parent_id = Some(task_id.to_string());
            message.encode()?
        }
        None => {
            let mut headers = delivery.properties.headers().clone().unwrap_or_default();
            let retries = match headers.inner().get("retries") {
                Some(AMQPValue::LongInt(n)) => i64::from(*n),
                Some(AMQPValue::LongLongInt(n)) => *n,
                Some(AMQPValue::ShortInt(n)) => i64::from(*n),
                Some(AMQPValue::ShortShortInt(n)) => i64::from(*n),
                _ => 0,
            };
            headers.insert(
                "retries".into(),
                AMQPValue::LongInt(i32::try_from(retries + 1).unwrap_or(i32::MAX)),
            );
            headers.insert(
                "eta".into(),
                AMQPValue::LongString(format_datetime(&eta).into()),
            );
            headers.insert("parent_id".into(), AMQPValue::LongString(task_id.into()));
            (
                delivery.properties.clone().with_headers(headers),
                delivery.body.clone(),
            )
        }
    };
    producer
        .publish_raw(OutboundMessage {
            exchange: String::new(),
            routing_key: delivery.queue.clone(),
            properties,
            body,
        })
        .await
}
