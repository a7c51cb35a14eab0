//! Storing results the way Celery's `rpc://` backend does (PROTOCOL.md 2.2): a result
//! document published to the default exchange with the task message's `reply_to` as
//! routing key and its `correlation_id`, transient, JSON, no headers.

use crate::actors::amqp::BasicProperties;
use crate::actors::{BrokerClient, OutboundMessage};
use crate::protocol::{ExceptionInfo, ResultMessage, TaskMessage, TaskState};
use crate::task::TaskError;

/// Where the result of one task goes.
#[derive(Debug, Clone)]
pub(crate) struct ReplyAddress {
    /// The reply queue (the message's `reply_to`).
    reply_to: String,
    /// The message's `correlation_id`, or the task id.
    correlation_id: String,
    /// The task id.
    task_id: String,
}

impl ReplyAddress {
    /// Where `message` wants its result; `None` when it has no `reply_to` or asked for no
    /// result (`ignore_result`).
    pub(crate) fn of(message: &TaskMessage) -> Option<Self> {
        let reply_to = message.reply_to.clone().filter(|to| !to.is_empty())?;
        if message.headers.ignore_result == Some(true) {
            return None;
        }
        Some(ReplyAddress {
            reply_to,
            correlation_id: message
                .correlation_id
                .clone()
                .unwrap_or_else(|| message.headers.id.clone()),
            task_id: message.headers.id.clone(),
        })
    }
}

/// The exception Python sees for a `TaskError`.
pub(crate) fn exception_of(error: &TaskError) -> ExceptionInfo {
    ExceptionInfo::new(&error.exc_type, &error.exc_module, &error.message)
}

/// Publishes result documents through the broker.
#[derive(Clone)]
pub(crate) struct ResultStore {
    broker: BrokerClient,
}

impl ResultStore {
    pub(crate) fn new(broker: BrokerClient) -> Self {
        ResultStore { broker }
    }

    /// Stores a SUCCESS result.
    pub(crate) async fn success(&self, to: &ReplyAddress, value: serde_json::Value) {
        self.store(to, ResultMessage::success(&to.task_id, value))
            .await;
    }

    /// Stores an exception result (FAILURE, REVOKED, RETRY).
    pub(crate) async fn exception(
        &self,
        to: &ReplyAddress,
        state: TaskState,
        exception: &ExceptionInfo,
    ) {
        self.store(
            to,
            ResultMessage::exception(&to.task_id, state, exception, None),
        )
        .await;
    }

    async fn store(&self, to: &ReplyAddress, result: ResultMessage) {
        let body = match result.to_json() {
            Ok(body) => body,
            Err(error) => {
                log::error!("cannot encode the result of task {}: {error}", to.task_id);
                return;
            }
        };
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_correlation_id(to.correlation_id.as_str().into())
            .with_delivery_mode(1)
            .with_priority(0);
        let published = self
            .broker
            .publish(OutboundMessage {
                exchange: String::new(),
                routing_key: to.reply_to.clone(),
                properties,
                body,
            })
            .await;
        if let Err(error) = published {
            log::warn!(
                "could not store the {} result of task {} in reply queue \"{}\": {error}",
                result.status.as_str(),
                to.task_id,
                to.reply_to
            );
        }
    }
}
