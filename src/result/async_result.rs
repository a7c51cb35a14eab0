//! `AsyncResult`: a handle on the result of one sent task, from the `rpc://` reply queue
//! or from the Redis backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use tokio::sync::oneshot;

use crate::protocol::{ExceptionInfo, ExtendedMeta, ResultMessage, TaskState};

use crate::backend::redis::RedisAsyncResult;

use super::collector::{AwaitReady, ForgetWaiters, Latest, ResultCollector};
use super::ResultError;

/// The result of one task, from whichever backend holds it.
///
/// Cheap to clone. With `rpc://` ([`AsyncResult::new`]) the result arrives on the
/// producer's reply queue and, as with Celery's `rpc://` backend, is handed over once:
/// after a `get` returned it, this handle (and its clones) remember it, but a new handle for
/// the same id would see `PENDING`. With Redis ([`AsyncResult::from`] a
/// [`RedisAsyncResult`], or [`RedisResults::async_result`](crate::RedisResults::async_result))
/// any handle, in any process, reads the stored result until it expires or is forgotten.
#[derive(Clone)]
pub struct AsyncResult {
    /// The task id.
    id: Arc<str>,
    /// Where the result comes from.
    source: Source,
}

/// The backend behind an [`AsyncResult`].
#[derive(Clone)]
enum Source {
    /// `rpc://`: the reply queue's collector.
    Rpc {
        /// The collector of the reply queue the result arrives on.
        collector: Addr<ResultCollector>,
        /// The ready result once a `get` received it (the collector then forgets it).
        received: Arc<Mutex<Option<ResultMessage>>>,
    },
    /// Redis: the stored `celery-task-meta-<id>` document (boxed: it holds the backend's
    /// config, much larger than the `rpc://` variant).
    Redis(Box<RedisAsyncResult>),
}

impl From<RedisAsyncResult> for AsyncResult {
    fn from(result: RedisAsyncResult) -> Self {
        AsyncResult {
            id: Arc::from(result.id()),
            source: Source::Redis(Box::new(result)),
        }
    }
}

impl AsyncResult {
    /// A handle on the result of task `id` stored in `config.result_backend`, from any
    /// process (it need not have sent the task): for `redis://` it starts a Redis
    /// connection of its own (keep a [`RedisResults`](crate::RedisResults) and call its
    /// `async_result` to share one). `rpc://` results can only be read by the producer
    /// that sent the task, and no backend means no results: both are
    /// [`ResultError::Backend`]. Must run inside an actix system.
    pub fn from_id(id: impl Into<String>, config: &crate::Config) -> Result<Self, ResultError> {
        let id = id.into();
        let refuse = |reason: String| ResultError::Backend {
            task_id: id.clone(),
            reason,
        };
        match config.result_backend.as_deref().map(str::trim) {
            Some(url) if crate::backend::redis::config::is_redis_url(url) => {
                let backend = crate::RedisBackendConfig::from_config(config)
                    .and_then(crate::RedisResults::start)
                    .map_err(|error| refuse(error.to_string()))?;
                Ok(backend.async_result(id))
            }
            Some(super::RPC_BACKEND) => Err(refuse(
                "rpc:// results reach only the producer that sent the task: use a redis:// \
                 result backend to read results from any process"
                    .to_string(),
            )),
            None | Some("") => Err(refuse(
                "no result backend is configured (CELERIAC_RESULT_BACKEND)".to_string(),
            )),
            Some(other) => Err(refuse(format!(
                "unsupported result backend {}",
                crate::actors::broker::amqp::redact_url(other)
            ))),
        }
    }

    /// A handle on the result of task `id`, arriving through `collector` (`rpc://`).
    pub fn new(id: impl Into<String>, collector: Addr<ResultCollector>) -> Self {
        AsyncResult {
            id: Arc::from(id.into()),
            source: Source::Rpc {
                collector,
                received: Arc::default(),
            },
        }
    }

    /// The Redis handle behind this one, when the result is in Redis: its `state`,
    /// `ready` and `latest` answer backend errors instead of logging them.
    pub fn as_redis(&self) -> Option<&RedisAsyncResult> {
        match &self.source {
            Source::Redis(result) => Some(result),
            Source::Rpc { .. } => None,
        }
    }

    /// Forgets the result: with Redis it is deleted (Celery's `forget()`, state PENDING
    /// afterwards); with `rpc://` this handle drops the copy a `get` received.
    pub async fn forget(&self) -> Result<(), ResultError> {
        match &self.source {
            Source::Redis(result) => result.forget().await,
            Source::Rpc { received, .. } => {
                if let Ok(mut received) = received.lock() {
                    *received = None;
                }
                Ok(())
            }
        }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Revokes the task on every worker, through `producer` (see
    /// [`Producer::revoke`](crate::Producer::revoke)).
    pub async fn revoke(
        &self,
        producer: &crate::Producer,
        terminate: bool,
    ) -> Result<(), crate::SendError> {
        producer.revoke(&[&self.id], terminate).await
    }

    /// Waits up to `timeout` for the task to finish. SUCCESS answers the return value;
    /// FAILURE and REVOKED answer the exception the worker reported.
    pub async fn get(&self, timeout: Duration) -> Result<serde_json::Value, ResultError> {
        let (collector, received) = match &self.source {
            Source::Redis(result) => return result.get(timeout).await,
            Source::Rpc {
                collector,
                received,
            } => (collector, received),
        };
        if let Some(message) = self.received() {
            return self.outcome(message);
        }
        let (reply, ready) = oneshot::channel();
        let waiting = async {
            collector
                .send(AwaitReady {
                    task_id: self.id.to_string(),
                    reply,
                })
                .await
                .map_err(|error| format!("the result collector stopped: {error}"))?;
            ready
                .await
                .map_err(|_| "the result collector stopped".to_string())?
        };
        match tokio::time::timeout(timeout, waiting).await {
            Ok(Ok(message)) => {
                if let Ok(mut received) = received.lock() {
                    *received = Some(message.clone());
                }
                self.outcome(message)
            }
            Ok(Err(reason)) => Err(ResultError::Unavailable {
                task_id: self.id.to_string(),
                reason,
            }),
            Err(_) => {
                collector.do_send(ForgetWaiters(self.id.to_string()));
                Err(ResultError::Timeout {
                    task_id: self.id.to_string(),
                    waited: timeout,
                })
            }
        }
    }

    /// The task's latest known state: PENDING until a result arrives, then STARTED, RETRY,
    /// SUCCESS... as the worker reports them.
    pub async fn state(&self) -> TaskState {
        self.latest()
            .await
            .map_or(TaskState::Pending, |message| message.status)
    }

    /// Whether the task finished (SUCCESS, FAILURE or REVOKED).
    pub async fn ready(&self) -> bool {
        self.state().await.is_ready()
    }

    /// The latest result document received (or stored) for the task, if any (for STARTED,
    /// its `result` holds the worker's `pid` and `hostname`). A backend that cannot be read
    /// is logged and answers `None` (see [`as_redis`](Self::as_redis) for the error).
    pub async fn latest(&self) -> Option<ResultMessage> {
        let collector = match &self.source {
            Source::Redis(result) => {
                return match result.latest().await {
                    Ok(document) => document,
                    Err(error) => {
                        log::warn!("the state of task {} is unknown: {error}", self.id);
                        None
                    }
                };
            }
            Source::Rpc { collector, .. } => collector,
        };
        if let Some(message) = self.received() {
            return Some(message);
        }
        match collector.send(Latest(self.id.to_string())).await {
            Ok(latest) => latest,
            Err(error) => {
                log::warn!(
                    "the state of task {} is unknown: the result collector stopped ({error})",
                    self.id
                );
                None
            }
        }
    }

    /// The task's request as its latest result document tells it, when the worker stored
    /// it with `result_extended` (Celery's `AsyncResult.name`, `.args`, `.kwargs`,
    /// `.worker`, `.retries`, `.queue`); `None` before a result arrives or without it.
    pub async fn extended(&self) -> Option<ExtendedMeta> {
        self.latest().await.and_then(|message| message.extended)
    }

    /// The ready result a `get` received (`rpc://` only).
    fn received(&self) -> Option<ResultMessage> {
        match &self.source {
            Source::Rpc { received, .. } => {
                received.lock().ok().and_then(|received| received.clone())
            }
            Source::Redis(_) => None,
        }
    }

    /// A ready result as `get` answers it.
    fn outcome(&self, message: ResultMessage) -> Result<serde_json::Value, ResultError> {
        outcome(&self.id, message)
    }
}

/// A ready result as `get` answers it (any backend): SUCCESS gives the value, FAILURE and
/// REVOKED the exception.
pub fn outcome(task_id: &str, message: ResultMessage) -> Result<serde_json::Value, ResultError> {
    match message.status {
        TaskState::Revoked => Err(ResultError::Revoked {
            task_id: task_id.to_string(),
            exception: exception_of(&message),
        }),
        TaskState::Failure => Err(ResultError::Failed {
            task_id: task_id.to_string(),
            exception: exception_of(&message),
            traceback: message.traceback,
        }),
        _ => Ok(message.result),
    }
}

/// The exception of a FAILURE/REVOKED result; a `result` that is not an exception
/// document is kept as the message of a generic `Exception`.
fn exception_of(message: &ResultMessage) -> ExceptionInfo {
    message.exception_info().unwrap_or_else(|| ExceptionInfo {
        exc_type: "Exception".into(),
        exc_message: vec![message.result.clone()],
        exc_module: String::new(),
    })
}

impl std::fmt::Debug for AsyncResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("id", &self.id).finish()
    }
}
