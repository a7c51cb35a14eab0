//! Remote control from Rust: commands broadcast to every worker, Python or celeriac, as
//! Celery's `app.control` sends them (to the `celery.pidbox` fanout exchange; no reply is
//! waited for).

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use crate::actors::broker::PublishTransient;
use crate::actors::OutboundMessage;
use crate::worker::control::{pidbox_exchange, PIDBOX_EXCHANGE};

use super::{Producer, SendError};

/// How long a broadcast command stays valid (Celery's default `timeout` of a broadcast: a
/// worker ignores the request after it).
const COMMAND_LIFETIME: Duration = Duration::from_secs(10);

/// The body of a command for every node: `{"method", "arguments", "destination": null,
/// "pattern": null, "matcher": null}` (no `reply_to`: a cast).
pub(crate) fn broadcast_body(method: &str, arguments: Map<String, Value>) -> Value {
    json!({
        "method": method,
        "arguments": arguments,
        "destination": null,
        "pattern": null,
        "matcher": null,
    })
}

/// `revoke`'s arguments, as `app.control.revoke(task_id, terminate=..., signal="SIGTERM")`.
pub(crate) fn revoke_arguments(task_ids: &[&str], terminate: bool) -> Map<String, Value> {
    let task_id = match task_ids {
        [one] => json!(one),
        many => json!(many),
    };
    let mut arguments = Map::new();
    arguments.insert("task_id".into(), task_id);
    arguments.insert("terminate".into(), json!(terminate));
    arguments.insert("signal".into(), json!("SIGTERM"));
    arguments
}

impl Producer {
    /// Revokes tasks on every worker that gets the command (Celery's
    /// `app.control.revoke`): a revoked task that has not run is acked and not run, REVOKED
    /// is stored for it; with `terminate`, a running async task is cancelled (a blocking
    /// one runs to its end). Workers remember revoked ids (3 hours by default), so a task
    /// whose message arrives later is revoked too. Answers once the command is handed to
    /// the broker; no worker replies.
    pub async fn revoke(&self, task_ids: &[&str], terminate: bool) -> Result<(), SendError> {
        self.broadcast("revoke", revoke_arguments(task_ids, terminate))
            .await
    }

    /// Sends a remote-control command to every worker, without waiting for replies.
    pub async fn broadcast(
        &self,
        method: &str,
        arguments: Map<String, Value>,
    ) -> Result<(), SendError> {
        self.publish_control(&broadcast_body(method, arguments))
            .await
    }

    /// Publishes a request `body` to the `celery.pidbox` exchange (declared first), valid
    /// for [`COMMAND_LIFETIME`].
    pub(crate) async fn publish_control(&self, body: &Value) -> Result<(), SendError> {
        let broker = self.broker();
        broker.declare_exchange(pidbox_exchange()).await?;
        let body = serde_json::to_vec(body).map_err(crate::protocol::ProtocolError::from)?;
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + COMMAND_LIFETIME;
        let mut headers = FieldTable::default();
        headers.insert("clock".into(), AMQPValue::LongLongInt(0));
        headers.insert("expires".into(), AMQPValue::Double(expires.as_secs_f64()));
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(2)
            .with_priority(0)
            .with_headers(headers);
        broker
            .publish_transient
            .send(PublishTransient {
                message: OutboundMessage {
                    exchange: PIDBOX_EXCHANGE.to_string(),
                    routing_key: String::new(),
                    properties,
                    body,
                },
                within: self.config().send_timeout,
            })
            .await
            .map_err(crate::actors::BrokerError::from)??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_is_sent_as_celerys_app_control_sends_it() {
        assert_eq!(
            broadcast_body("revoke", revoke_arguments(&["a"], false)),
            json!({"method": "revoke", "arguments": {"task_id": "a", "terminate": false, "signal": "SIGTERM"},
                   "destination": null, "pattern": null, "matcher": null})
        );
        assert_eq!(
            revoke_arguments(&["a", "b"], true)["task_id"],
            json!(["a", "b"])
        );
    }
}
