//! `Producer`: sends tasks. Cheap to clone; share one in actix-web through `web::Data`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr};
use chrono::Utc;

use crate::actors::{BrokerClient, OutboundMessage, Publish, PublisherActor, QueueSpec};
use crate::protocol::{TaskMessage, TaskPayload};
use crate::task::Task;

use super::{Config, SendError, Signature};

/// Sends tasks through a `PublisherActor`, declaring each queue (as Celery does: durable,
/// no arguments) before its first use.
#[derive(Clone)]
pub struct Producer {
    publisher: Addr<PublisherActor>,
    broker: BrokerClient,
    default_queue: String,
    /// Queues already declared by this producer.
    declared: Arc<Mutex<HashSet<String>>>,
}

impl Producer {
    /// A producer publishing through `broker`. Must run inside an actix system.
    pub fn new(broker: BrokerClient, config: &Config) -> Self {
        Producer {
            publisher: PublisherActor::new(broker.clone()).start(),
            broker,
            default_queue: config.default_queue.clone(),
            declared: Arc::default(),
        }
    }

    /// The broker this producer publishes to.
    pub fn broker(&self) -> &BrokerClient {
        &self.broker
    }

    /// Sends `T` with typed arguments to its queue; answers the task id once the broker
    /// confirmed the message.
    pub async fn send<T: Task>(&self, args: &T::Args) -> Result<String, SendError> {
        self.send_signature(Signature::of::<T>(args)?).await
    }

    /// Sends a task by name with JSON positional and keyword arguments (for tasks defined
    /// elsewhere, in Python for instance).
    pub async fn send_task(
        &self,
        name: &str,
        args: Vec<serde_json::Value>,
        kwargs: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, SendError> {
        self.send_signature(Signature::new(name).with_args(args).with_kwargs(kwargs))
            .await
    }

    /// Sends a signature; answers its task id once the broker confirmed the message.
    pub async fn send_signature(&self, signature: Signature) -> Result<String, SendError> {
        let queue = signature
            .queue
            .clone()
            .unwrap_or_else(|| self.default_queue.clone());
        self.ensure_queue(&queue).await?;
        let id = signature
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let message = encode_signature(&signature, &id)?;
        self.publisher
            .send(Publish(OutboundMessage {
                exchange: String::new(),
                routing_key: queue,
                properties: message.0,
                body: message.1,
            }))
            .await
            .map_err(crate::actors::BrokerError::from)??;
        Ok(id)
    }

    async fn ensure_queue(&self, queue: &str) -> Result<(), SendError> {
        let known = self
            .declared
            .lock()
            .map(|declared| declared.contains(queue))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        self.broker.declare_queue(QueueSpec::durable(queue)).await?;
        if let Ok(mut declared) = self.declared.lock() {
            declared.insert(queue.to_string());
        }
        Ok(())
    }
}

/// Encodes a signature as a Celery protocol v2 message.
fn encode_signature(
    signature: &Signature,
    id: &str,
) -> Result<(crate::actors::amqp::BasicProperties, Vec<u8>), SendError> {
    let mut message = TaskMessage::new_json(
        &signature.task,
        id,
        signature.args.clone(),
        signature.kwargs.clone(),
    );
    if let Some(bytes) = &signature.bincode_args {
        message.payload = TaskPayload::Bincode(bytes.clone());
        message.content_type = signature.content_type();
    }
    message.headers.eta = signature.eta;
    message.headers.expires = signature.expires;
    message.priority = signature.priority;
    if let Some(expires) = signature.expires {
        let remaining = (expires - Utc::now()).num_milliseconds().max(0);
        message.expiration_ms = Some(remaining as u64);
    }
    Ok(message.encode()?)
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("default_queue", &self.default_queue)
            .finish()
    }
}
