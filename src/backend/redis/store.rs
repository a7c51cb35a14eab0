//! `RedisStore`: the actor that owns the Redis connection and stores, reads and deletes
//! result documents.
//!
//! The connection is a redis-rs `ConnectionManager`, made on first use. A command that fails
//! for a connection reason drops it, so the next attempt connects afresh; a store is retried
//! that way with the backoff of [`RedisBackendConfig::store_retry`], and its final failure
//! is logged with the task id as well as answered. Each request runs on its own, so a store
//! waiting for Redis to come back does not hold up the others.

use std::sync::Arc;

use actix::prelude::*;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::Mutex;

use crate::actors::broker::amqp::scrub_password;
use crate::protocol::ResultMessage;

use super::config::RedisBackendConfig;
use super::document::{self, task_key};
use super::error::RedisBackendError;

/// Stores a result document (SETEX + PUBLISH in one MULTI), retried while Redis is away.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RedisBackendError>")]
pub struct StoreResult(pub ResultMessage);

/// Reads the stored document of a task (`GET`); `None` when there is none.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<ResultMessage>, RedisBackendError>")]
pub struct GetDocument(pub String);

/// Deletes the stored document of a task (`DEL`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RedisBackendError>")]
pub struct Forget(pub String);

/// Checks that Redis answers (`PING`), with the configured credentials.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RedisBackendError>")]
pub struct Ping;

/// The connection, shared by the requests in flight; `None` until made, or after it failed.
type Slot = Arc<Mutex<Option<ConnectionManager>>>;

/// Owns the connection to one Redis. Restartable under an actix `Supervisor`: a restart
/// drops the connection.
pub struct RedisStore {
    /// Opens connections.
    client: redis::Client,
    /// URL, TTL, timeouts, retry policy.
    config: RedisBackendConfig,
    /// The current connection.
    connection: Slot,
}

impl RedisStore {
    /// An actor for the Redis `client` was made from, configured by `config`.
    pub fn new(client: redis::Client, config: RedisBackendConfig) -> Self {
        RedisStore {
            client,
            config,
            connection: Slot::default(),
        }
    }

    /// What a request needs, detached from the actor.
    pub(super) fn link(&self) -> Link {
        Link {
            client: self.client.clone(),
            config: self.config.clone(),
            connection: self.connection.clone(),
        }
    }
}

impl Actor for RedisStore {
    type Context = Context<Self>;
}

impl Supervised for RedisStore {
    fn restarting(&mut self, _: &mut Context<Self>) {
        log::warn!("Redis result backend {}: restarting", self.config.server());
        self.connection = Slot::default();
    }
}

impl Handler<StoreResult> for RedisStore {
    type Result = ResponseFuture<Result<(), RedisBackendError>>;

    fn handle(
        &mut self,
        StoreResult(document): StoreResult,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let link = self.link();
        Box::pin(async move { link.store(document).await })
    }
}

impl Handler<GetDocument> for RedisStore {
    type Result = ResponseFuture<Result<Option<ResultMessage>, RedisBackendError>>;

    fn handle(&mut self, GetDocument(task_id): GetDocument, _: &mut Context<Self>) -> Self::Result {
        let link = self.link();
        Box::pin(async move {
            let operation = format!("reading the result of task {task_id}");
            let mut connection = link.connection(&operation).await?;
            let key = task_key(&task_id);
            let stored: Option<Vec<u8>> = link.run(&operation, connection.get(&key)).await?;
            stored
                .map(|bytes| document::decode(&task_id, &bytes))
                .transpose()
        })
    }
}

impl Handler<Forget> for RedisStore {
    type Result = ResponseFuture<Result<(), RedisBackendError>>;

    fn handle(&mut self, Forget(task_id): Forget, _: &mut Context<Self>) -> Self::Result {
        let link = self.link();
        Box::pin(async move {
            let operation = format!("forgetting the result of task {task_id}");
            let mut connection = link.connection(&operation).await?;
            let _: i64 = link
                .run(&operation, connection.del(task_key(&task_id)))
                .await?;
            Ok(())
        })
    }
}

impl Handler<Ping> for RedisStore {
    type Result = ResponseFuture<Result<(), RedisBackendError>>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        let link = self.link();
        Box::pin(async move {
            let operation = "PING";
            let mut connection = link.connection(operation).await?;
            let _: String = link
                .run(operation, redis::cmd("PING").query_async(&mut connection))
                .await?;
            Ok(())
        })
    }
}

/// A request's access to the connection.
pub(super) struct Link {
    client: redis::Client,
    /// URL, TTL, timeouts, retry policy.
    pub(super) config: RedisBackendConfig,
    connection: Slot,
}

impl Link {
    /// The current connection, made when there is none.
    pub(super) async fn connection(
        &self,
        operation: &str,
    ) -> Result<ConnectionManager, RedisBackendError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        // Our own retry loop paces reconnection; the manager tries once per attempt.
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.response_timeout))
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_with_config(self.client.clone(), settings)
            .await
            .map_err(|error| self.error(operation, &error))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Awaits a command; a failure for a connection reason drops the connection.
    pub(super) async fn run<T>(
        &self,
        operation: &str,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisBackendError> {
        match command.await {
            Ok(value) => Ok(value),
            Err(error) => {
                if is_connection_error(&error) {
                    *self.connection.lock().await = None;
                }
                Err(self.error(operation, &error))
            }
        }
    }

    /// Stores `document`, retrying with backoff; logs the final failure with the task id.
    async fn store(&self, document: ResultMessage) -> Result<(), RedisBackendError> {
        let task_id = document.task_id.clone();
        let json = document::encode(&document)?;
        let key = task_key(&task_id);
        let operation = format!("storing the result of task {task_id}");
        let attempts = self.config.store_retry.max_attempts.unwrap_or(1).max(1);
        let mut attempt = 0;
        loop {
            let outcome = async {
                let mut connection = self.connection(&operation).await?;
                // As Celery's RedisBackend._set: a redis-py pipeline (MULTI/EXEC) of SETEX
                // (SET when results never expire) then PUBLISH, on a channel named like the
                // key.
                let mut pipeline = redis::pipe();
                pipeline.atomic();
                match self.config.expires_seconds() {
                    Some(seconds) => pipeline.set_ex(&key, &json, seconds),
                    None => pipeline.set(&key, &json),
                };
                pipeline.ignore().publish(&key, &json).ignore();
                self.run::<()>(&operation, pipeline.query_async(&mut connection))
                    .await
            }
            .await;
            match outcome {
                Ok(()) => {
                    if attempt > 0 {
                        log::info!(
                            "Redis result backend {}: stored the result of task {task_id} \
                             after {} attempts",
                            self.config.server(),
                            attempt + 1
                        );
                    }
                    return Ok(());
                }
                Err(error) => {
                    attempt += 1;
                    let permanent = matches!(
                        error,
                        RedisBackendError::Auth { .. }
                            | RedisBackendError::InvalidUrl { .. }
                            | RedisBackendError::Tls { .. }
                    );
                    if permanent || attempt >= attempts {
                        log::error!(
                            "the {} result of task {task_id} was NOT stored in Redis after \
                             {attempt} attempt(s): {error}",
                            document.status
                        );
                        return Err(error);
                    }
                    let delay = self.config.store_retry.delay(attempt - 1);
                    log::warn!("{error}; retrying in {delay:?} (attempt {attempt} of {attempts})");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// A backend error for a redis-rs error, password scrubbed.
    fn error(&self, operation: &str, error: &redis::RedisError) -> RedisBackendError {
        error_for(&self.config, operation, error)
    }
}

/// A backend error for a redis-rs error during `operation`: [`RedisBackendError::Tls`] for
/// a TLS failure (a certificate refused: permanent), [`RedisBackendError::Auth`] when Redis
/// refused the credentials, else [`RedisBackendError::Command`].
pub(crate) fn error_for(
    config: &RedisBackendConfig,
    operation: &str,
    error: &redis::RedisError,
) -> RedisBackendError {
    if let Some(meaning) = super::tls::failure(error) {
        return RedisBackendError::Tls {
            server: config.server(),
            reason: scrub_password(&format!("{operation} failed: {meaning}"), &config.url),
        };
    }
    let reason = describe(error, &config.url);
    let code = error.code().unwrap_or_default();
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, "WRONGPASS" | "NOAUTH")
    {
        RedisBackendError::Auth {
            server: config.server(),
            reason,
        }
    } else {
        RedisBackendError::Command {
            server: config.server(),
            operation: operation.to_string(),
            reason,
        }
    }
}

/// The error's text with any password of `url` masked.
pub(crate) fn describe(error: &redis::RedisError, url: &str) -> String {
    scrub_password(&error.to_string(), url)
}

/// Whether `error` means the connection is unusable (so a new one should be made).
fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}
