//! `TaskRegistry`: the tasks a worker knows, by name, behind one object-safe interface.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;

use super::args::decode_args;
use super::{Task, TaskContext, TaskError, TaskOptions};
use crate::protocol::TaskPayload;

/// A task with its types erased: decodes its arguments and runs.
pub trait ErasedTask: Send + Sync {
    /// Decodes the arguments (a `TypeError` naming the argument when they do not fit;
    /// kombu's typed values read per type) and returns the run, whose output is already
    /// encoded as JSON. Bincode arguments may claim at most `max_decoded_size` bytes
    /// (rounded up to a power of two), whatever their length prefixes declare.
    fn prepare(
        &self,
        context: TaskContext,
        payload: TaskPayload,
        max_decoded_size: usize,
    ) -> Result<BoxFuture<'static, Result<Value, TaskError>>, TaskError>;

    /// The task's options.
    fn options(&self) -> &TaskOptions;

    /// Whether it runs on a blocking-pool thread (cannot be interrupted).
    fn blocking(&self) -> bool;

    /// Calls the task's `on_failure` hook.
    fn on_failure(&self, context: &TaskContext, error: &TaskError);

    /// Calls the task's `on_retry` hook.
    fn on_retry(&self, context: &TaskContext, error: &TaskError);
}

/// Adapts a `Task` type to `ErasedTask`.
struct Registered<T> {
    /// `T::options()`, read once at registration.
    options: TaskOptions,
    task: std::marker::PhantomData<fn() -> T>,
}

impl<T: Task> ErasedTask for Registered<T> {
    fn prepare(
        &self,
        context: TaskContext,
        payload: TaskPayload,
        max_decoded_size: usize,
    ) -> Result<BoxFuture<'static, Result<Value, TaskError>>, TaskError> {
        let args: T::Args = match payload {
            TaskPayload::Json { args, kwargs, .. } => decode_args(&args, &kwargs)
                .map_err(|error| TaskError::type_error(format!("task {}: {error}", T::NAME)))?,
            TaskPayload::Bincode(bytes) => super::bincode_args::decode(&bytes, max_decoded_size)
                .map_err(|error| {
                    TaskError::type_error(format!(
                        "task {}: bincode arguments do not fit: {error}",
                        T::NAME
                    ))
                })?,
        };
        Ok(async move {
            let hook_context = context.clone();
            let output = T::run(context, args).await?;
            T::on_success(&hook_context, &output);
            serde_json::to_value(output).map_err(|error| {
                TaskError::type_error(format!(
                    "task {}: its result cannot be encoded as JSON: {error}",
                    T::NAME
                ))
            })
        }
        .boxed())
    }

    fn options(&self) -> &TaskOptions {
        &self.options
    }

    fn blocking(&self) -> bool {
        T::BLOCKING
    }

    fn on_failure(&self, context: &TaskContext, error: &TaskError) {
        T::on_failure(context, error);
    }

    fn on_retry(&self, context: &TaskContext, error: &TaskError) {
        T::on_retry(context, error);
    }
}

/// Tasks by name.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    tasks: HashMap<String, Arc<dyn ErasedTask>>,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `T` under `T::NAME` (replacing a task of the same name).
    pub fn register<T: Task>(&mut self) {
        self.tasks.insert(
            T::NAME.to_string(),
            Arc::new(Registered::<T> {
                options: T::options(),
                task: std::marker::PhantomData,
            }),
        );
    }

    /// The task registered under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn ErasedTask>> {
        self.tasks.get(name).cloned()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.tasks.keys().cloned().collect();
        names.sort();
        names
    }
}

impl std::fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRegistry")
            .field("tasks", &self.names())
            .finish()
    }
}
