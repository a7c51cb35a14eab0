//! Celery's Redis result backend (docs/wire-protocol.md §2.4), byte-compatible with Celery 5.7.
//!
//! A result is the JSON document of docs/wire-protocol.md §2.1, stored as
//! `SETEX celery-task-meta-<id> <result_expires> <json>` (a plain `SET` when
//! `result_expires` is zero: no expiry) then `PUBLISH celery-task-meta-<id> <json>` in one
//! `MULTI`/`EXEC` (as Celery's `RedisBackend._set` does through a redis-py pipeline), so
//! that Python's `AsyncResult(id).get()` wakes up and reads it, and any process
//! can read it later by task id until the key expires.
//!
//! - [`config`] holds [`RedisBackendConfig`]: the URL (validated, password masked), TTL,
//!   timeouts and the store retry policy;
//! - [`document`] holds the key naming and the Python-compatible JSON encoding;
//! - [`store`] holds [`RedisStore`], the actor that owns the connection, reconnects, and
//!   stores, reads and deletes documents;
//! - [`async_result`] holds [`RedisAsyncResult`], a handle on one task's result that waits
//!   by `SUBSCRIBE`;
//! - [`chord`] joins chords as Celery's Redis backend does;
//! - [`tls`] holds [`RedisTls`]: `rediss://`'s certificates as Celery's URL parameters name
//!   them, and what a TLS failure means;
//! - [`error`] holds [`RedisBackendError`].
//!
//! [`RedisResults`] ties them together: a cheap-to-clone handle for workers (to store) and
//! producers or any other process (to read).

pub mod async_result;
pub mod chord;
pub mod config;
pub mod document;
pub mod error;
pub mod store;
pub mod tls;

use actix::prelude::*;

use crate::protocol::ResultMessage;

pub use async_result::RedisAsyncResult;
pub use config::RedisBackendConfig;
pub use error::RedisBackendError;
pub use store::RedisStore;
pub use tls::RedisTls;

/// A Redis result backend: stores results (for workers) and hands out
/// [`RedisAsyncResult`]s (for anyone). Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RedisResults {
    /// The actor owning the connection.
    store: Addr<RedisStore>,
    /// Opens the pub/sub connections `get` waits on.
    client: ::redis::Client,
    /// How to reach Redis and how long results live.
    config: RedisBackendConfig,
}

impl RedisResults {
    /// Starts the backend's actor (under an actix `Supervisor`) without connecting yet:
    /// the first command connects. Fails only for a URL that cannot be used. Must run
    /// inside an actix system.
    pub fn start(config: RedisBackendConfig) -> Result<Self, RedisBackendError> {
        let client = config.client()?;
        let store = {
            let client = client.clone();
            let config = config.clone();
            actix::Supervisor::start(move |_| RedisStore::new(client, config))
        };
        Ok(RedisResults {
            store,
            client,
            config,
        })
    }

    /// [`start`](Self::start), then checks that Redis answers `PING` (with the configured
    /// password), so that a wrong URL or password shows at once.
    pub async fn connect(config: RedisBackendConfig) -> Result<Self, RedisBackendError> {
        let results = Self::start(config)?;
        results.store.send(store::Ping).await??;
        Ok(results)
    }

    /// The configuration, password included (its `Debug` masks it).
    pub fn config(&self) -> &RedisBackendConfig {
        &self.config
    }

    /// Stores `document` under `celery-task-meta-<task_id>` with the configured TTL and
    /// publishes it. Retried with backoff while Redis is unreachable, up to
    /// `config.store_retry.max_attempts`; the final failure is also logged with the task id.
    pub async fn store(&self, document: ResultMessage) -> Result<(), RedisBackendError> {
        self.store.send(store::StoreResult(document)).await?
    }

    /// The stored result document of `task_id`, `None` when there is none (PENDING, expired
    /// or forgotten).
    pub async fn document(
        &self,
        task_id: &str,
    ) -> Result<Option<ResultMessage>, RedisBackendError> {
        self.store
            .send(store::GetDocument(task_id.to_string()))
            .await?
    }

    /// Deletes the stored result of `task_id` (Celery's `AsyncResult.forget`).
    pub async fn forget(&self, task_id: &str) -> Result<(), RedisBackendError> {
        self.store.send(store::Forget(task_id.to_string())).await?
    }

    /// Records a chord's size under its header's group id, before the header is published
    /// (see [`chord`]).
    pub async fn set_chord_size(
        &self,
        group_id: &str,
        size: usize,
    ) -> Result<(), RedisBackendError> {
        self.store
            .send(chord::SetChordSize {
                group_id: group_id.to_string(),
                size,
            })
            .await?
    }

    /// Counts a chord header task's result; answers whether that completed the chord and
    /// this caller is the one to call its body (see [`chord`]).
    pub async fn chord_part_return(
        &self,
        part: chord::ChordPartReturn,
    ) -> Result<chord::ChordJoin, RedisBackendError> {
        self.store.send(part).await?
    }

    /// Deletes a completed chord's data once its body is out, if the claim `token` still
    /// holds; answers whether it did.
    pub async fn finish_chord(
        &self,
        group_id: &str,
        token: &str,
    ) -> Result<bool, RedisBackendError> {
        self.store
            .send(chord::FinishChord {
                group_id: group_id.to_string(),
                token: token.to_string(),
            })
            .await?
    }

    /// A handle on the result of task `task_id`, whoever sent it: the same
    /// [`AsyncResult`](crate::AsyncResult) type as for `rpc://` results.
    pub fn async_result(&self, task_id: impl Into<String>) -> crate::AsyncResult {
        crate::AsyncResult::from(self.redis_async_result(task_id))
    }

    /// A Redis-only handle on the result of task `task_id`, whose `state`, `ready` and
    /// `latest` answer backend errors.
    pub fn redis_async_result(&self, task_id: impl Into<String>) -> RedisAsyncResult {
        RedisAsyncResult::new(task_id, self.clone())
    }

    /// The client that opens pub/sub connections.
    pub(crate) fn client(&self) -> &::redis::Client {
        &self.client
    }
}

impl std::fmt::Debug for RedisResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisResults")
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(test)]
mod tests;
