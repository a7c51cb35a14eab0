//! Storing results where the worker's result backend says, as Celery's worker does: no
//! backend (nothing stored); `rpc://` (a result document published to the default
//! exchange with the task message's `reply_to` as routing key and its `correlation_id`,
//! transient, JSON, no headers); or `redis://` (`celery-task-meta-<id>` with its TTL, and
//! a PUBLISH, through the `RedisStore` actor). The message's `reply_to` is used by the rpc
//! backend only: Python Celery sets it on every message, whatever backend its client uses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::actors::amqp::BasicProperties;
use crate::actors::{BrokerClient, BrokerError, OutboundMessage};
use crate::backend::redis::RedisResults;
use crate::protocol::{ExceptionInfo, ResultMessage, TaskMessage, TaskState};
use crate::result::RPC_BACKEND;
use crate::task::TaskError;

use super::result_rules::{request_meta, Received, RequestMeta};

/// Where the results of one task go.
#[derive(Debug, Clone)]
pub(crate) struct ResultAddress {
    /// The task id.
    task_id: String,
    /// The reply queue (the message's `reply_to`), for the rpc backend.
    reply_to: Option<String>,
    /// The message's `correlation_id`, or the task id.
    correlation_id: String,
    /// What every result document of the task says of its request.
    meta: RequestMeta,
}

impl ResultAddress {
    /// The address of the results of task `task_id`, which is not the message at hand (a
    /// chain step, a chord body): rpc results go to `reply_to` with the task id as
    /// correlation id; the document carries `group_id` when the task has one.
    pub(crate) fn for_task(
        task_id: &str,
        reply_to: Option<String>,
        group_id: Option<String>,
    ) -> Self {
        ResultAddress {
            task_id: task_id.to_string(),
            reply_to: reply_to.filter(|to| !to.is_empty()),
            correlation_id: task_id.to_string(),
            meta: RequestMeta {
                group_id,
                ..RequestMeta::default()
            },
        }
    }

    /// The result document `result` as stored for this task: with its request's fields.
    fn document(&self, mut result: ResultMessage) -> ResultMessage {
        result.group_id.clone_from(&self.meta.group_id);
        result.parent_id.clone_from(&self.meta.parent_id);
        result.extended.clone_from(&self.meta.extended);
        result
    }
}

/// The exception Python sees for a `TaskError`.
pub(crate) fn exception_of(error: &TaskError) -> ExceptionInfo {
    ExceptionInfo::new(&error.exc_type, &error.exc_module, &error.message)
}

/// The result backends a worker can store to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendKind {
    /// No results are stored.
    Disabled,
    /// `rpc://`: results go to the message's reply queue.
    Rpc,
    /// `redis://`: results go to Redis, readable by task id from any process.
    Redis,
}

impl BackendKind {
    /// The backend `result_backend` names; `Err` names (password masked) what is not
    /// supported.
    pub(crate) fn parse(result_backend: Option<&str>) -> Result<Self, String> {
        match result_backend.map(str::trim) {
            None | Some("") => Ok(BackendKind::Disabled),
            Some(RPC_BACKEND) => Ok(BackendKind::Rpc),
            // rediss:// too: Redis over TLS (its certificates in the URL's ssl_* parameters).
            Some(url) if crate::backend::redis::config::is_redis_url(url) => Ok(BackendKind::Redis),
            Some(other) => Err(crate::actors::broker::amqp::redact_url(other)),
        }
    }
}

/// How long what is known of a reply queue (whether it exists) is trusted, and how often a
/// missing one is logged.
const REPLY_QUEUE_RECHECK: Duration = Duration::from_secs(60);

/// Reply queues beyond which the oldest knowledge is forgotten.
const REPLY_QUEUE_MEMORY: usize = 1024;

/// What to do with a result for a reply queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyDecision {
    /// The queue exists: publish.
    Publish,
    /// The queue was missing a moment ago: drop the result without publishing (lapin logs
    /// every returned message with its whole body, so an unroutable publish per task would
    /// cost a log line per task).
    Skip,
    /// Nothing recent is known: publish this result as the probe that tells (one probe at
    /// a time per queue).
    Check,
}

/// The decision for a reply queue known to exist (or not) since `known`.
fn reply_decision(known: Option<(bool, Instant)>, now: Instant) -> ReplyDecision {
    match known {
        Some((exists, since)) if now.duration_since(since) < REPLY_QUEUE_RECHECK => {
            if exists {
                ReplyDecision::Publish
            } else {
                ReplyDecision::Skip
            }
        }
        _ => ReplyDecision::Check,
    }
}

/// Whether a missing reply queue last logged at `last` is logged again at `now`.
fn log_again(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.duration_since(last) >= REPLY_QUEUE_RECHECK)
}

/// What is known of one reply queue.
#[derive(Debug, Clone, Copy)]
struct KnownQueue {
    /// Whether it exists, and since when that is known.
    state: (bool, Instant),
    /// When its absence was last logged.
    logged: Option<Instant>,
}

/// What the worker knows of the reply queues it stores rpc results to: Python Celery sets
/// `reply_to` on every message, so a client without the rpc backend (or gone) names a
/// queue that does not exist. Such a queue costs one probe publish a minute (lapin logs the
/// returned message once) and one log line of ours, not a publish and log lines per task.
#[derive(Clone, Default)]
struct ReplyQueues {
    known: Arc<Mutex<HashMap<String, KnownQueue>>>,
    /// One probe at a time per queue: results that find nothing known wait for it.
    probing: Arc<tokio::sync::Mutex<()>>,
}

impl ReplyQueues {
    fn decide(&self, queue: &str) -> ReplyDecision {
        let known = self
            .known
            .lock()
            .ok()
            .and_then(|known| known.get(queue).map(|queue| queue.state));
        reply_decision(known, Instant::now())
    }

    /// Records whether `queue` exists; answers whether its absence should be logged now.
    fn record(&self, queue: &str, exists: bool) -> bool {
        let now = Instant::now();
        let Ok(mut known) = self.known.lock() else {
            return !exists;
        };
        if known.len() >= REPLY_QUEUE_MEMORY && !known.contains_key(queue) {
            known.retain(|_, queue| now.duration_since(queue.state.1) < REPLY_QUEUE_RECHECK);
            if known.len() >= REPLY_QUEUE_MEMORY {
                known.clear();
            }
        }
        let entry = known.entry(queue.to_string()).or_insert(KnownQueue {
            state: (exists, now),
            logged: None,
        });
        entry.state = (exists, now);
        if exists || !log_again(entry.logged, now) {
            return false;
        }
        entry.logged = Some(now);
        true
    }
}

/// Where a worker's results go.
#[derive(Clone)]
pub(crate) enum Destination {
    /// Nowhere.
    Disabled,
    /// The message's reply queue (`rpc://`).
    Rpc,
    /// Redis, through its connected backend.
    Redis(Box<RedisResults>),
}

/// Stores result documents in the worker's result backend.
#[derive(Clone)]
pub(crate) struct ResultStore {
    destination: Destination,
    /// Publishes rpc results.
    broker: BrokerClient,
    reply_queues: ReplyQueues,
    /// The worker's node name: the `hostname` of STARTED results and the `worker` of
    /// extended ones.
    hostname: Arc<str>,
    /// Documents carry the request's fields (`result_extended`).
    extended: bool,
}

impl ResultStore {
    /// A store for `destination`; rpc results are published through `broker`; STARTED
    /// results name the worker `hostname` (its node name); with `extended`
    /// (`result_extended`), documents carry the request's fields.
    pub(crate) fn new(
        destination: Destination,
        broker: BrokerClient,
        hostname: &str,
        extended: bool,
    ) -> Self {
        ResultStore {
            destination,
            broker,
            reply_queues: ReplyQueues::default(),
            hostname: Arc::from(hostname),
            extended,
        }
    }

    /// The address of the results of `message`, delivered with `routing_key`, of a task
    /// this worker has (`registered`) or not.
    pub(crate) fn address(
        &self,
        message: &TaskMessage,
        routing_key: &str,
        registered: bool,
    ) -> ResultAddress {
        let received = Received {
            routing_key,
            worker: &self.hostname,
            registered,
            extended: self.extended,
        };
        ResultAddress {
            task_id: message.headers.id.clone(),
            reply_to: message.reply_to.clone().filter(|to| !to.is_empty()),
            correlation_id: message
                .correlation_id
                .clone()
                .unwrap_or_else(|| message.headers.id.clone()),
            meta: request_meta(message, received),
        }
    }

    /// The Redis backend, when results go there (chords need it).
    pub(crate) fn redis(&self) -> Option<&RedisResults> {
        match &self.destination {
            Destination::Redis(redis) => Some(redis),
            _ => None,
        }
    }

    /// Whether results are stored at all.
    pub(crate) fn enabled(&self) -> bool {
        !matches!(self.destination, Destination::Disabled)
    }

    /// Stores a SUCCESS result.
    pub(crate) async fn success(&self, to: &ResultAddress, value: serde_json::Value) {
        self.store(to, ResultMessage::success(&to.task_id, value))
            .await;
    }

    /// Stores STARTED with this worker's process id and host name, as Celery does.
    pub(crate) async fn started(&self, to: &ResultAddress) {
        let started = ResultMessage::started(&to.task_id, std::process::id(), &self.hostname);
        self.store(to, started).await;
    }

    /// Stores an exception result (FAILURE, REVOKED, RETRY).
    pub(crate) async fn exception(
        &self,
        to: &ResultAddress,
        state: TaskState,
        exception: &ExceptionInfo,
    ) {
        self.store(
            to,
            ResultMessage::exception(&to.task_id, state, exception, None),
        )
        .await;
    }

    async fn store(&self, to: &ResultAddress, result: ResultMessage) {
        if !self.enabled() {
            return;
        }
        let result = to.document(result);
        match &self.destination {
            Destination::Disabled => {}
            Destination::Rpc => self.publish_rpc(to, result).await,
            // Retried with backoff while Redis is away; a final failure is logged with the
            // task id by the store itself.
            Destination::Redis(redis) => {
                let _ = redis.store(result).await;
            }
        }
    }

    /// Logs, at most once a minute per queue, that results for `reply_to` are dropped.
    fn missing(&self, reply_to: &str, result: &ResultMessage, task_id: &str) {
        if self.reply_queues.record(reply_to, false) {
            log::warn!(
                "results for reply queue \"{reply_to}\" cannot be delivered: the queue does \
                 not exist (its client is gone, or uses another result backend); the {} \
                 result of task {task_id} and those that follow are dropped, and this is \
                 logged at most once a minute per reply queue",
                result.status.as_str(),
            );
        }
    }

    /// Publishes the document to the message's reply queue (nothing without one, nor when
    /// the queue is known to be missing).
    async fn publish_rpc(&self, to: &ResultAddress, result: ResultMessage) {
        let Some(reply_to) = &to.reply_to else {
            return;
        };
        // Nothing recent known: one probe at a time (the lock is shared by all queues, and
        // held for one publish once a minute per queue).
        let probe = match self.reply_queues.decide(reply_to) {
            ReplyDecision::Publish => None,
            ReplyDecision::Skip => return,
            ReplyDecision::Check => {
                let probe = self.reply_queues.probing.clone().lock_owned().await;
                match self.reply_queues.decide(reply_to) {
                    ReplyDecision::Publish => None,
                    ReplyDecision::Skip => return,
                    ReplyDecision::Check => Some(probe),
                }
            }
        };
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
                routing_key: reply_to.clone(),
                properties,
                body,
            })
            .await;
        match published {
            Ok(()) => {
                if probe.is_some() {
                    self.reply_queues.record(reply_to, true);
                }
            }
            Err(BrokerError::Unroutable { .. }) => self.missing(reply_to, &result, &to.task_id),
            Err(error) => log::warn!(
                "could not store the {} result of task {} in reply queue \"{reply_to}\": {error}",
                result.status.as_str(),
                to.task_id,
            ),
        }
    }
}

#[cfg(test)]
mod extended_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_name() {
        assert_eq!(BackendKind::parse(None), Ok(BackendKind::Disabled));
        assert_eq!(BackendKind::parse(Some(" ")), Ok(BackendKind::Disabled));
        assert_eq!(BackendKind::parse(Some("rpc://")), Ok(BackendKind::Rpc));
        assert_eq!(
            BackendKind::parse(Some("redis://:pw@127.0.0.1:6379/0")),
            Ok(BackendKind::Redis)
        );
        assert_eq!(
            BackendKind::parse(Some("rediss://127.0.0.1:6380/0?ssl_cert_reqs=required")),
            Ok(BackendKind::Redis)
        );
        assert_eq!(
            BackendKind::parse(Some("db+postgresql://u:secret@h/db")),
            Err("db+postgresql://u:***@h/db".to_string())
        );
    }

    #[test]
    fn reply_queues_are_checked_once_a_minute_and_skipped_while_missing() {
        let now = Instant::now();
        let later = now + Duration::from_secs(59);
        let stale = now + REPLY_QUEUE_RECHECK;
        let rows = [
            (None, now, ReplyDecision::Check),
            (Some((true, now)), later, ReplyDecision::Publish),
            (Some((false, now)), later, ReplyDecision::Skip),
            (Some((true, now)), stale, ReplyDecision::Check),
            (Some((false, now)), stale, ReplyDecision::Check),
        ];
        for (known, at, expected) in rows {
            assert_eq!(reply_decision(known, at), expected, "{known:?}");
        }
        assert!(log_again(None, now));
        assert!(!log_again(Some(now), later));
        assert!(log_again(Some(now), stale));
    }

    #[test]
    fn a_missing_reply_queue_is_logged_once_and_memory_is_bounded() {
        let queues = ReplyQueues::default();
        assert!(queues.record("q1", false), "the first absence is logged");
        assert!(!queues.record("q1", false), "not again within a minute");
        assert_eq!(queues.decide("q1"), ReplyDecision::Skip);
        assert!(!queues.record("q2", true));
        assert_eq!(queues.decide("q2"), ReplyDecision::Publish);
        assert_eq!(queues.decide("q3"), ReplyDecision::Check);
        for n in 0..(2 * REPLY_QUEUE_MEMORY) {
            queues.record(&format!("many-{n}"), false);
        }
        let remembered = queues.known.lock().unwrap().len();
        assert!(remembered <= REPLY_QUEUE_MEMORY, "{remembered}");
    }
}
