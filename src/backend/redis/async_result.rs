//! `RedisAsyncResult`: a handle on one task's result in the Redis backend, usable from any
//! process that knows the task id.

use std::time::Duration;

use futures::StreamExt;

use crate::protocol::{ResultMessage, TaskState};
use crate::result::async_result::outcome;
use crate::result::ResultError;

use super::document::{self, task_key};
use super::store::error_for;
use super::{RedisBackendError, RedisResults};

/// The result of one task as stored in Redis. Unlike the `rpc://` [`AsyncResult`]
/// (crate::result::AsyncResult), reading does not consume it: any number of handles, in
/// any processes, read the same result until it expires or is forgotten. Answers the same
/// [`ResultError`]s; a backend that cannot be read gives [`ResultError::Backend`].
#[derive(Clone)]
pub struct RedisAsyncResult {
    /// The task id.
    id: String,
    /// The backend.
    backend: RedisResults,
}

impl RedisAsyncResult {
    /// A handle on the result of task `id` in `backend`.
    pub fn new(id: impl Into<String>, backend: RedisResults) -> Self {
        RedisAsyncResult {
            id: id.into(),
            backend,
        }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits up to `timeout` for the task to finish, as Celery's client does: SUBSCRIBE to
    /// the key's channel first, then GET (so that a result stored in between is not missed),
    /// then wait for a ready document on the channel. SUCCESS answers the return value;
    /// FAILURE and REVOKED the exception. A lost pub/sub connection is re-made (with GET
    /// again) until the timeout. A result already stored is answered by one GET, before any
    /// subscription and whatever the timeout (so `get(Duration::ZERO)` reads a finished
    /// task's result instead of timing out).
    pub async fn get(&self, timeout: Duration) -> Result<serde_json::Value, ResultError> {
        // A failure here is not final: the wait below reads again, retrying and logging.
        if let Ok(Some(document)) = self.backend.document(&self.id).await {
            if document.status.is_ready() {
                return outcome(&self.id, document);
            }
        }
        let waiting = async {
            let mut attempt = 0;
            loop {
                match self.wait_once().await {
                    Ok(document) => return Ok(document),
                    Err(error @ RedisBackendError::Malformed { .. })
                    | Err(error @ RedisBackendError::Auth { .. })
                    | Err(error @ RedisBackendError::InvalidUrl { .. })
                    | Err(error @ RedisBackendError::Tls { .. }) => return Err(error),
                    Err(error) => {
                        let delay = self.backend.config().store_retry.delay(attempt);
                        attempt = attempt.saturating_add(1);
                        log::warn!(
                            "waiting for the result of task {}: {error}; again in {delay:?}",
                            self.id
                        );
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, waiting).await {
            Ok(Ok(document)) => outcome(&self.id, document),
            Ok(Err(error)) => Err(self.backend_error(error)),
            Err(_) => Err(ResultError::Timeout {
                task_id: self.id.clone(),
                waited: timeout,
            }),
        }
    }

    /// One subscription: SUBSCRIBE, GET, then the channel until a ready document.
    async fn wait_once(&self) -> Result<ResultMessage, RedisBackendError> {
        let config = self.backend.config();
        let key = task_key(&self.id);
        let operation = format!("waiting for the result of task {}", self.id);
        let fail = |error: redis::RedisError| error_for(config, &operation, &error);
        let mut pubsub = self
            .backend
            .client()
            .get_async_pubsub()
            .await
            .map_err(fail)?;
        pubsub.subscribe(&key).await.map_err(fail)?;
        if let Some(document) = self.backend.document(&self.id).await? {
            if document.status.is_ready() {
                return Ok(document);
            }
        }
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let document = document::decode(&self.id, message.get_payload_bytes())?;
            if document.status.is_ready() {
                return Ok(document);
            }
        }
        Err(RedisBackendError::Command {
            server: config.server(),
            operation,
            reason: "the pub/sub connection closed".into(),
        })
    }

    /// The stored document, if any (for STARTED, its `result` holds `pid` and `hostname`).
    pub async fn latest(&self) -> Result<Option<ResultMessage>, ResultError> {
        self.backend
            .document(&self.id)
            .await
            .map_err(|error| self.backend_error(error))
    }

    /// The task's state: PENDING while nothing is stored (or it expired or was forgotten).
    pub async fn state(&self) -> Result<TaskState, ResultError> {
        Ok(self
            .latest()
            .await?
            .map_or(TaskState::Pending, |document| document.status))
    }

    /// Whether the task finished (SUCCESS, FAILURE or REVOKED).
    pub async fn ready(&self) -> Result<bool, ResultError> {
        Ok(self.state().await?.is_ready())
    }

    /// Deletes the stored result (Celery's `AsyncResult.forget()`); the state is PENDING
    /// afterwards.
    pub async fn forget(&self) -> Result<(), ResultError> {
        self.backend
            .forget(&self.id)
            .await
            .map_err(|error| self.backend_error(error))
    }

    fn backend_error(&self, error: RedisBackendError) -> ResultError {
        ResultError::Backend {
            task_id: self.id.clone(),
            reason: error.to_string(),
        }
    }
}

impl std::fmt::Debug for RedisAsyncResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAsyncResult")
            .field("id", &self.id)
            .finish()
    }
}
