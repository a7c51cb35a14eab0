//! `Producer`: sends tasks. Cheap to clone; share one in actix-web through `web::Data`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr};
use chrono::Utc;

use crate::actors::{BrokerClient, OutboundMessage, Publish, PublisherActor};
use crate::backend::redis::{RedisBackendConfig, RedisResults};
use crate::canvas::build::{member_ids, result_id, Freezer};
use crate::canvas::message::task_message;
use crate::canvas::{
    apply, Action, Canvas, CanvasError, CanvasNode, Chain, Chord, Group, SignatureDict,
};
use crate::protocol::{TaskMessage, TaskPayload};
use crate::result::{AsyncResult, GroupResult, RpcResults, RPC_BACKEND};
use crate::task::Task;

use super::{Config, SendError, Signature};

/// Sends tasks through a `PublisherActor`, declaring each queue (as Celery does: durable,
/// no arguments) before its first use.
///
/// With `rpc://` results ([`Producer::with_rpc_results`]), every task it sends carries its
/// reply queue as `reply_to`, and [`Producer::send_signature_with_result`] answers an
/// [`AsyncResult`]. With Redis results ([`Producer::with_redis_results`]) the handle reads
/// the result the worker stores in Redis (no `reply_to`).
#[derive(Clone)]
pub struct Producer {
    publisher: Addr<PublisherActor>,
    broker: BrokerClient,
    /// Routes and queue declarations.
    config: Arc<Config>,
    /// Queues already declared by this producer.
    declared: Arc<Mutex<HashSet<String>>>,
    /// The reply queue and its collector, once `rpc://` results are enabled.
    results: Option<RpcResults>,
    /// The Redis result backend, once enabled (it takes precedence over `rpc://`).
    redis_results: Option<RedisResults>,
}

impl Producer {
    /// A producer publishing through `broker`. Must run inside an actix system.
    pub fn new(broker: BrokerClient, config: &Config) -> Self {
        Producer {
            publisher: PublisherActor::new(broker.clone()).start(),
            broker,
            config: Arc::new(config.clone()),
            declared: Arc::default(),
            results: None,
            redis_results: None,
        }
    }

    /// A producer as `config` says: with `rpc://` results when `config.result_backend` is
    /// `Some("rpc://")`, with Redis results (checked with a `PING`) for a `redis://` or
    /// `rediss://` (TLS) URL; any other backend is
    /// [`SendError::UnsupportedResultBackend`].
    pub async fn from_config(broker: BrokerClient, config: &Config) -> Result<Self, SendError> {
        let producer = Producer::new(broker, config);
        match config.result_backend.as_deref().map(str::trim) {
            None | Some("") => Ok(producer),
            Some(RPC_BACKEND) => producer.with_rpc_results().await,
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                let results =
                    RedisResults::connect(RedisBackendConfig::from_config(config)?).await?;
                Ok(producer.with_redis_results(results))
            }
            Some(other) => Err(SendError::UnsupportedResultBackend {
                backend: crate::actors::broker::amqp::redact_url(other),
            }),
        }
    }

    /// Enables `rpc://` results: declares a reply queue of this producer's own (a UUID
    /// name, durable, auto-delete, `x-expires` one day, as Celery's client does) and
    /// consumes it under supervision. From then on every task sent carries it as
    /// `reply_to`. Does nothing when results are already enabled.
    pub async fn with_rpc_results(mut self) -> Result<Self, SendError> {
        if self.results.is_none() {
            self.results = Some(RpcResults::start(&self.broker).await?);
        }
        Ok(self)
    }

    /// Enables Redis results: [`send_signature_with_result`](Self::send_signature_with_result)
    /// answers handles reading `results`, and tasks are sent without `reply_to`.
    pub fn with_redis_results(mut self, results: RedisResults) -> Self {
        self.redis_results = Some(results);
        self
    }

    /// The reply queue results arrive on, when `rpc://` results are enabled.
    pub fn reply_queue(&self) -> Option<&str> {
        self.results.as_ref().map(RpcResults::reply_queue)
    }

    /// A handle on the result of task `id`; `None` without results. With `rpc://` the
    /// result arrives only if the task was sent with this producer's reply queue as
    /// `reply_to`; with Redis, any task's stored result is read.
    pub fn async_result(&self, id: impl Into<String>) -> Option<AsyncResult> {
        if let Some(redis) = &self.redis_results {
            return Some(redis.async_result(id));
        }
        self.results
            .as_ref()
            .map(|results| results.async_result(id))
    }

    /// Stops consuming the reply queue; RabbitMQ then deletes it (it is auto-delete).
    /// Pending `get`s fail. Tasks sent afterwards still carry the queue as `reply_to`, so
    /// call this when done with the producer. Does nothing without `rpc://` results.
    pub async fn close_results(&self) -> Result<(), SendError> {
        if let Some(results) = &self.results {
            results.stop().await?;
        }
        Ok(())
    }

    /// The configuration this producer was made with.
    pub(crate) fn config(&self) -> &Config {
        &self.config
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

    /// Sends a signature and answers a handle on its result, once the broker confirmed the
    /// message. Needs `rpc://` or Redis results ([`SendError::NoResultBackend`] otherwise,
    /// before anything is sent).
    pub async fn send_signature_with_result(
        &self,
        signature: Signature,
    ) -> Result<AsyncResult, SendError> {
        if let Some(redis) = &self.redis_results {
            let id = self.send_signature(signature).await?;
            return Ok(redis.async_result(id));
        }
        let Some(results) = &self.results else {
            return Err(SendError::NoResultBackend {
                task: signature.task,
            });
        };
        let id = self.send_signature(signature).await?;
        Ok(results.async_result(id))
    }

    /// Sends a chain; answers a handle on its last step's result. Needs a result backend
    /// (a chain containing a chord needs Redis). Each step's result is the first argument of
    /// the next; workers (Python or celeriac) send each next step.
    pub async fn send_chain(&self, chain: Chain) -> Result<AsyncResult, SendError> {
        let frozen = self.send_canvas(Canvas::Chain(chain)).await?;
        let id = result_id(&frozen).ok_or(SendError::Canvas(CanvasError::unsupported(
            "a chain whose last step is a group (add a step after it: that makes a chord)",
        )))?;
        self.results_handle(id, &frozen)
    }

    /// Sends a group; answers a handle on its members' results. Needs a result backend.
    pub async fn send_group(&self, group: Group) -> Result<GroupResult, SendError> {
        let frozen = self.send_canvas(Canvas::Group(group)).await?;
        let results = member_ids(&frozen)
            .into_iter()
            .map(|id| self.results_handle(id, &frozen))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GroupResult::new(
            frozen.task_id().unwrap_or_default(),
            results,
        ))
    }

    /// Sends a chord; answers a handle on its body's result. Needs the Redis result
    /// backend (the header's results are counted there).
    pub async fn send_chord(&self, chord: Chord) -> Result<AsyncResult, SendError> {
        let frozen = self.send_canvas(Canvas::Chord(chord)).await?;
        let id = result_id(&frozen).unwrap_or_default();
        self.results_handle(id, &frozen)
    }

    /// A handle on `id`'s result, or why there is none.
    fn results_handle(&self, id: String, frozen: &SignatureDict) -> Result<AsyncResult, SendError> {
        self.async_result(id)
            .ok_or_else(|| SendError::NoResultBackend {
                task: frozen.task.clone(),
            })
    }

    /// Freezes and sends a workflow (what Python's `apply_async` of a canvas does); answers
    /// it frozen: every task with its id. Nothing is sent when it holds a chord and Redis
    /// results are missing.
    pub async fn send_canvas(&self, canvas: Canvas) -> Result<SignatureDict, SendError> {
        let mut new_id = || uuid::Uuid::new_v4().to_string();
        let route =
            |task: &str, default: Option<&str>| self.config.route(task, default).to_string();
        let frozen = Freezer {
            route: &route,
            reply_to: self.reply_queue(),
            new_id: &mut new_id,
        }
        .freeze(&canvas)?;
        let node = CanvasNode::from_value(&frozen.to_value())?;
        let mut actions = Vec::new();
        apply(
            &node,
            &[],
            &serde_json::Map::new(),
            &mut new_id,
            &mut actions,
        )?;
        let needs_redis = actions
            .iter()
            .any(|action| matches!(action, Action::SetChordSize { .. }));
        if needs_redis && self.redis_results.is_none() {
            return Err(SendError::Canvas(CanvasError::unsupported(
                "a chord needs the Redis result backend (rpc:// cannot count its header's results)",
            )));
        }
        for action in actions {
            match action {
                Action::Publish(call) => {
                    let out = task_message(&call, chrono::Utc::now())?;
                    self.send_message(out.message, out.queue).await?;
                }
                Action::SetChordSize { group_id, size, .. } => {
                    if let Some(redis) = &self.redis_results {
                        redis.set_chord_size(&group_id, size).await?;
                    }
                }
                Action::Fail { .. } | Action::JoinChord { .. } => {}
            }
        }
        Ok(frozen)
    }

    /// Publishes an already encoded message through this producer's publisher; answers
    /// once the broker confirmed it. The target queue must exist.
    pub(crate) async fn publish_raw(&self, message: OutboundMessage) -> Result<(), SendError> {
        self.publisher
            .send(Publish(message))
            .await
            .map_err(crate::actors::BrokerError::from)??;
        Ok(())
    }

    /// Sends a signature; answers its task id once the broker confirmed the message.
    pub async fn send_signature(&self, signature: Signature) -> Result<String, SendError> {
        if !signature.link.is_empty() || !signature.link_error.is_empty() {
            // Callbacks travel in the message's embed: the workflow path encodes them.
            let frozen = self.send_canvas(Canvas::from(signature)).await?;
            return Ok(frozen.task_id().unwrap_or_default().to_string());
        }
        let (id, message) = self.prepare_signature(signature).await?;
        self.publish_raw(message).await?;
        Ok(id)
    }

    /// Declares the queue of a signature without callbacks and encodes it, without
    /// publishing: answers its task id and the message (Beat publishes it together with
    /// its state). Callbacks are ignored: they need [`Producer::send_canvas`].
    pub(crate) async fn prepare_signature(
        &self,
        signature: Signature,
    ) -> Result<(String, OutboundMessage), SendError> {
        let queue = signature.queue.clone().unwrap_or_else(|| {
            self.config
                .route(&signature.task, signature.default_queue.as_deref())
                .to_string()
        });
        self.ensure_queue(&queue).await?;
        let id = signature
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let reply_to = signature.reply_to.clone().or_else(|| {
            self.results
                .as_ref()
                .map(|results| results.reply_queue().to_string())
        });
        let (properties, body) = encode_signature(signature, &id, reply_to)?;
        let message = OutboundMessage {
            exchange: String::new(),
            routing_key: queue,
            properties,
            body,
        };
        Ok((id, message))
    }

    /// Publishes an already built message to `queue` (`None`: the queue its task is routed
    /// to), declaring the queue first; answers once the broker confirmed it. A message
    /// without `reply_to` gets this producer's reply queue when it has `rpc://` results.
    pub(crate) async fn send_message(
        &self,
        mut message: TaskMessage,
        queue: Option<String>,
    ) -> Result<(), SendError> {
        let queue =
            queue.unwrap_or_else(|| self.config.route(&message.headers.task, None).to_string());
        self.ensure_queue(&queue).await?;
        if message.reply_to.is_none() {
            message.reply_to = self.reply_queue().map(str::to_string);
        }
        let (properties, body) = message.encode()?;
        self.publisher
            .send(Publish(OutboundMessage {
                exchange: String::new(),
                routing_key: queue,
                properties,
                body,
            }))
            .await
            .map_err(crate::actors::BrokerError::from)??;
        Ok(())
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
        self.broker
            .declare_queue(self.config.queue_spec(queue))
            .await?;
        if let Ok(mut declared) = self.declared.lock() {
            declared.insert(queue.to_string());
        }
        Ok(())
    }
}

/// Encodes a signature as a Celery protocol v2 message.
fn encode_signature(
    signature: Signature,
    id: &str,
    reply_to: Option<String>,
) -> Result<(crate::actors::amqp::BasicProperties, Vec<u8>), SendError> {
    let content_type = signature.content_type();
    let mut message = TaskMessage::new_json(&signature.task, id, signature.args, signature.kwargs);
    if let Some(bytes) = signature.bincode_args {
        message.payload = TaskPayload::Bincode(bytes);
        message.content_type = content_type;
    }
    message.headers.eta = signature.eta;
    message.headers.expires = signature.expires;
    message.headers.parent_id = signature.parent_id;
    if let Some(root_id) = signature.root_id {
        message.headers.root_id = Some(root_id);
    }
    message.headers.timelimit = (
        signature.time_limit.map(|limit| limit.as_secs_f64()),
        signature.soft_time_limit.map(|limit| limit.as_secs_f64()),
    );
    message.priority = signature.priority;
    message.reply_to = reply_to;
    if let Some(expires) = signature.expires {
        let remaining = (expires - Utc::now()).num_milliseconds().max(0);
        message.expiration_ms = Some(remaining as u64);
    }
    Ok(message.encode()?)
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("default_queue", &self.config.default_queue)
            .field("reply_queue", &self.reply_queue())
            .finish()
    }
}
