//! Remote control with replies, as `celery inspect` / `celery control` do it (kombu's
//! `Mailbox._broadcast`): a reply queue of our own bound to the `reply.celery.pidbox`
//! direct exchange with a fresh routing key, a request carrying that `reply_to` and a
//! `ticket`, then the replies with that ticket until enough nodes answered or the
//! timeout passed.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::actors::amqp::{AMQPValue, FieldTable};
use crate::actors::broker::{CancelConsumer, CloseConsumer, OpenConsumer};
use crate::actors::{QueueBinding, QueueSpec, Settlement};
use crate::worker::control::reply_exchange;

use super::{Producer, SendError};

/// The exchange workers reply to.
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";

/// Celery's default time to wait for replies (`celery inspect --timeout`).
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// A command to send and how to collect its replies.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlCall {
    /// The command (`ping`, `stats`, `revoke`, ...).
    pub method: String,
    /// Its arguments.
    pub arguments: Map<String, Value>,
    /// The nodes it is for; `None`: every node.
    pub destination: Option<Vec<String>>,
    /// How long to wait for replies.
    pub timeout: Duration,
    /// Stop after this many replies; `None`: as many as `destination` names, or wait for
    /// the whole timeout when it names none.
    pub limit: Option<usize>,
}

impl ControlCall {
    /// `method` with no arguments, to every node, waiting [`DEFAULT_REPLY_TIMEOUT`].
    pub fn new(method: impl Into<String>) -> Self {
        ControlCall {
            method: method.into(),
            arguments: Map::new(),
            destination: None,
            timeout: DEFAULT_REPLY_TIMEOUT,
            limit: None,
        }
    }

    /// How many replies end the wait early, if any (Celery: the number of destinations).
    pub fn reply_limit(&self) -> Option<usize> {
        self.limit.or_else(|| {
            self.destination
                .as_ref()
                .filter(|nodes| !nodes.is_empty())
                .map(Vec::len)
        })
    }
}

/// One node's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlReply {
    /// The node name (`worker@host`).
    pub node: String,
    /// What it answered (`{"ok": "pong"}`, a list, a dict of stats, ...).
    pub reply: Value,
}

/// The request body, as kombu's `Mailbox._broadcast` writes it.
pub(crate) fn request_body(call: &ControlCall, ticket: &str, reply_key: &str) -> Value {
    json!({
        "method": call.method,
        "arguments": call.arguments,
        "destination": call.destination,
        "pattern": null,
        "matcher": null,
        "ticket": ticket,
        "reply_to": {"exchange": REPLY_EXCHANGE, "routing_key": reply_key},
    })
}

/// The replies in a reply message: `{node: reply, ...}` whose `ticket` header is
/// `ticket`; nothing for another ticket (a late reply to an earlier request) or a body
/// that is not a JSON object.
pub(crate) fn replies_in(
    body: &[u8],
    headers: Option<&FieldTable>,
    ticket: &str,
) -> Vec<ControlReply> {
    let reply_ticket = headers.and_then(|headers| match headers.inner().get("ticket") {
        Some(AMQPValue::LongString(value)) => Some(value.to_string()),
        Some(AMQPValue::ShortString(value)) => Some(value.to_string()),
        _ => None,
    });
    if reply_ticket.as_deref() != Some(ticket) {
        return Vec::new();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(nodes)) => nodes
            .into_iter()
            .map(|(node, reply)| ControlReply { node, reply })
            .collect(),
        _ => Vec::new(),
    }
}

/// The reply queue: not durable, exclusive, auto-delete, bound with `reply_key`.
fn reply_queue(reply_key: &str) -> QueueSpec {
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(10_000));
    arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(300_000));
    QueueSpec {
        name: format!("{reply_key}.{REPLY_EXCHANGE}"),
        durable: false,
        exclusive: true,
        auto_delete: true,
        arguments,
        bindings: vec![QueueBinding {
            exchange: reply_exchange(REPLY_EXCHANGE),
            routing_key: reply_key.to_string(),
        }],
    }
}

impl Producer {
    /// Sends a remote-control command and collects the replies (Celery's
    /// `app.control.broadcast(..., reply=True)`): answers them in arrival order once
    /// [`ControlCall::reply_limit`] nodes answered, or when `call.timeout` passed.
    pub async fn control(&self, call: &ControlCall) -> Result<Vec<ControlReply>, SendError> {
        let broker = self.broker();
        let reply_key = uuid::Uuid::new_v4().to_string();
        let ticket = uuid::Uuid::new_v4().to_string();
        let queue = reply_queue(&reply_key);
        let queue_name = queue.name.clone();
        broker.declare_queue(queue).await?;
        let consumer_tag = format!("celeriac-control-{reply_key}");
        let mut deliveries = broker
            .open_consumer
            .send(OpenConsumer {
                queue: queue_name,
                prefetch: 100,
                consumer_tag: consumer_tag.clone(),
                global_qos: false,
            })
            .await
            .map_err(crate::actors::BrokerError::from)??;
        let deadline = tokio::time::Instant::now() + call.timeout;
        self.publish_control(&request_body(call, &ticket, &reply_key))
            .await?;
        let limit = call.reply_limit();
        let mut replies = Vec::new();
        while limit.is_none_or(|limit| replies.len() < limit) {
            let delivery = match tokio::time::timeout_at(deadline, deliveries.next()).await {
                Ok(Some(Ok(delivery))) => delivery,
                Ok(Some(Err(error))) => return Err(error.into()),
                Ok(None) | Err(_) => break,
            };
            if let Err(error) = delivery.acker.settle(Settlement::Ack).await {
                log::debug!("control reply not acked: {error}");
            }
            replies.extend(replies_in(
                &delivery.body,
                delivery.properties.headers().as_ref(),
                &ticket,
            ));
        }
        // The queue is auto-delete: it goes with its consumer.
        let _ = broker
            .cancel_consumer
            .send(CancelConsumer {
                consumer_tag: consumer_tag.clone(),
            })
            .await;
        let _ = broker
            .close_consumer
            .send(CloseConsumer { consumer_tag })
            .await;
        Ok(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_kombus() {
        let mut call = ControlCall::new("ping");
        call.destination = Some(vec!["w1@h".into()]);
        assert_eq!(
            request_body(&call, "t1", "k1"),
            json!({"method": "ping", "arguments": {}, "destination": ["w1@h"],
                   "pattern": null, "matcher": null, "ticket": "t1",
                   "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "k1"}})
        );
    }

    #[test]
    fn how_many_replies_end_the_wait() {
        let mut call = ControlCall::new("ping");
        assert_eq!(call.reply_limit(), None);
        call.destination = Some(vec![]);
        assert_eq!(call.reply_limit(), None);
        call.destination = Some(vec!["a@h".into(), "b@h".into()]);
        assert_eq!(call.reply_limit(), Some(2));
        call.limit = Some(1);
        assert_eq!(call.reply_limit(), Some(1));
    }

    #[test]
    fn replies_are_taken_by_ticket() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/pidbox/reply_ping.json"))
                .expect("fixture");
        let body = serde_json::to_vec(&fixture["body"]).expect("body");
        let ticket = fixture["headers"]["ticket"].as_str().expect("ticket");
        let mut headers = FieldTable::default();
        headers.insert("ticket".into(), AMQPValue::LongString(ticket.into()));
        assert_eq!(
            replies_in(&body, Some(&headers), ticket),
            vec![ControlReply {
                node: "probe_worker@vm".into(),
                reply: json!({"ok": "pong"})
            }]
        );
        assert_eq!(replies_in(&body, Some(&headers), "another"), vec![]);
        assert_eq!(replies_in(&body, None, ticket), vec![]);
        assert_eq!(replies_in(b"[1]", Some(&headers), ticket), vec![]);
    }
}
