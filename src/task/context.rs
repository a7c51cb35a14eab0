//! `TaskContext`: what a running task knows about its request.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::TaskError;
use crate::app::{Producer, SendError, Signature};
use crate::protocol::amqp::amqp_to_json;
use crate::protocol::TaskHeaders;

/// Application state shared with every task, by type, like actix-web's `Data<T>`: a
/// database pool, an HTTP client. Registered on the worker with
/// `WorkerBuilder::app_data`, read in a task with `TaskContext::data`.
#[derive(Clone, Default)]
pub struct AppState {
    values: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl AppState {
    /// State holding `values`.
    pub(crate) fn new(values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>) -> Self {
        AppState {
            values: Arc::new(values),
        }
    }

    /// The value of type `T`, if one was registered.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|value| value.downcast::<T>().ok())
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppState({} values)", self.values.len())
    }
}

/// The request a task is running for.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task id (a UUID string).
    pub id: String,
    /// The registered task name.
    pub name: String,
    /// How many times this task was retried before this run.
    pub retries: u32,
    /// When the task was scheduled to run, if it had an ETA or countdown.
    pub eta: Option<DateTime<Utc>>,
    /// After this instant the task is not run.
    pub expires: Option<DateTime<Utc>>,
    /// The id of the task that sent this one.
    pub parent_id: Option<String>,
    /// The id of the first task of the workflow.
    pub root_id: Option<String>,
    /// The group (or chord header) the task is a member of (the `group` header).
    pub group_id: Option<String>,
    /// The task's place in its group (`group_index`).
    pub group_index: Option<i64>,
    /// Whether the broker delivered this message before (to a worker that did not settle
    /// it: a crash, a lost connection, a requeue).
    pub redelivered: bool,
    /// The queue the task was consumed from.
    pub queue: String,
    /// The message's AMQP priority, if it had one.
    pub priority: Option<u8>,
    /// Custom headers the producer added (`apply_async(headers={...})` in Python), as JSON.
    pub headers: BTreeMap<String, Value>,
    /// Application state registered on the worker.
    pub state: AppState,
    /// Sends further tasks from inside this one (see `send`); `None` outside a worker.
    pub producer: Option<Arc<Producer>>,
    /// Turns true when the run passes its soft time limit (see `soft_limit_reached`).
    pub soft_limit: Option<tokio::sync::watch::Receiver<bool>>,
}

impl TaskContext {
    /// Resolves when the run passes its soft time limit; never, without one. A task that
    /// waits on it (in a `select!` with its work) can clean up and return its own outcome
    /// before the worker cancels it: after the soft limit the run gets until its hard
    /// limit, or one more second without one, then fails with `SoftTimeLimitExceeded`.
    pub async fn soft_limit_reached(&self) {
        match &self.soft_limit {
            Some(signal) => {
                let mut signal = signal.clone();
                if signal.wait_for(|reached| *reached).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// The application state of type `T`; a `RuntimeError` naming the type when the worker
    /// has none (register it with `WorkerBuilder::app_data`).
    pub fn data<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, TaskError> {
        self.state.get::<T>().ok_or_else(|| {
            TaskError::runtime_error(format!(
                "no app data of type {} is registered on this worker (WorkerBuilder::app_data)",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Sends a task from inside this one: its parent is this task and its root this
    /// task's root. Answers the new task's id once the broker confirmed it.
    pub async fn send(&self, mut signature: Signature) -> Result<String, SendError> {
        let producer = self.producer.as_ref().ok_or(SendError::NoProducer)?;
        signature.parent_id = Some(self.id.clone());
        signature.root_id = Some(self.root_id.clone().unwrap_or_else(|| self.id.clone()));
        producer.send_signature(signature).await
    }
}

impl TaskContext {
    /// The context of a request with these headers, consumed from `queue`.
    pub fn from_headers(headers: &TaskHeaders, queue: &str) -> Self {
        TaskContext {
            id: headers.id.clone(),
            name: headers.task.clone(),
            retries: headers.retries,
            eta: headers.eta,
            expires: headers.expires,
            parent_id: headers.parent_id.clone(),
            root_id: headers.root_id.clone(),
            group_id: headers.group.clone(),
            group_index: headers.group_index,
            redelivered: false,
            queue: queue.to_string(),
            priority: None,
            state: AppState::default(),
            producer: None,
            soft_limit: None,
            headers: headers
                .extra
                .iter()
                .map(|(name, value)| (name.clone(), amqp_to_json(value)))
                .collect(),
        }
    }
}
