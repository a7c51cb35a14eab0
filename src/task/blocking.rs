//! Blocking and CPU-bound tasks: `BlockingTask::run` is a plain function that runs on the
//! runtime's blocking thread pool, so it never stalls the actors or other tasks.
//!
//! Past its hard time limit a blocking run is abandoned: its execution slot is freed and
//! the task fails with `TimeLimitExceeded`, but its thread cannot be interrupted. The
//! thread runs the function to its end and its result is thrown away; until then it
//! occupies one thread of the blocking pool (tokio's default maximum is 512).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Task, TaskContext, TaskError, TaskOptions};

/// A task whose run blocks: file or CPU work, a synchronous client.
pub trait BlockingTask: Send + Sync + 'static {
    /// The name producers send it by.
    const NAME: &'static str;
    /// The arguments.
    type Args: DeserializeOwned + Serialize + Send + 'static;
    /// What a successful run returns.
    type Output: Serialize + Send + 'static;

    /// Runs the task on a blocking-pool thread.
    fn run(ctx: TaskContext, args: Self::Args) -> Result<Self::Output, TaskError>;

    /// Retries, time limits, acknowledgement and default queue of this task.
    fn options() -> TaskOptions {
        TaskOptions::default()
    }
}

/// Adapts a `BlockingTask` to `Task`; register it with `register::<Blocking<T>>()` (or
/// `WorkerBuilder::register_blocking::<T>()`).
pub struct Blocking<T>(PhantomData<fn() -> T>);

impl<T: BlockingTask> Task for Blocking<T> {
    const NAME: &'static str = T::NAME;
    const BLOCKING: bool = true;
    type Args = T::Args;
    type Output = T::Output;

    async fn run(ctx: TaskContext, args: T::Args) -> Result<T::Output, TaskError> {
        match actix_rt::task::spawn_blocking(move || T::run(ctx, args)).await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => Err(TaskError::panicked(
                crate::actors::executor::panic_message(&*error.into_panic()),
            )),
            Err(error) => Err(TaskError::runtime_error(error.to_string())),
        }
    }

    fn options() -> TaskOptions {
        T::options()
    }
}
