//! Tasks: the `Task` trait, the context a run gets, how a task fails, and the registry.
//!
//! Most tasks are functions with the `#[task]` attribute (`celeriac::task`, see its
//! documentation), which writes the impl below for them:
//!
//! ```
//! use celeriac::task::Task;
//! use celeriac::{task, TaskError};
//!
//! /// `add(x, y)`, callable from Python as `app.send_task("tasks.add", args=[2, 3])`.
//! #[task(name = "tasks.add", max_retries = 5)]
//! async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
//!     Ok(x + y)
//! }
//!
//! assert_eq!(<add as Task>::NAME, "tasks.add");
//! assert_eq!(<add as Task>::options().max_retries, Some(5));
//! assert_eq!(add::new(2, 3).args, [serde_json::json!(2), serde_json::json!(3)]);
//! ```
//!
//! By hand:
//!
//! ```
//! use celeriac::task::{Task, TaskContext, TaskError};
//! use serde::{Deserialize, Serialize};
//!
//! /// `add(x, y)`, callable from Python as `app.send_task("tasks.add", args=[2, 3])`.
//! struct Add;
//!
//! #[derive(Serialize, Deserialize)]
//! struct AddArgs {
//!     x: i64,
//!     y: i64,
//! }
//!
//! impl Task for Add {
//!     const NAME: &'static str = "tasks.add";
//!     type Args = AddArgs;
//!     type Output = i64;
//!
//!     async fn run(_ctx: TaskContext, args: AddArgs) -> Result<i64, TaskError> {
//!         Ok(args.x + args.y)
//!     }
//! }
//! ```

pub mod args;
pub(crate) mod bincode_args;
mod blocking;
mod context;
mod error;
#[doc(hidden)]
pub mod macro_support;
mod options;
mod registry;

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use blocking::{Blocking, BlockingTask};
pub use context::{AppState, TaskContext};
pub use error::{ErrorAction, RetryAt, TaskError};
pub use options::{RetryBackoff, TaskOptions, DEFAULT_MAX_RETRIES};
pub use registry::{ErasedTask, TaskRegistry};

/// A task: a name, typed arguments, a typed output and an async run.
///
/// Arguments are decoded from what the producer sent (see [`args::decode_args`]): a struct
/// with named fields accepts positional args (in field order), kwargs (by name) or both, as
/// a Python function does; a tuple accepts positional args.
pub trait Task: Send + Sync + 'static {
    /// The name producers send it by, e.g. `"tasks.add"`.
    const NAME: &'static str;
    /// Whether its run is a blocking-pool thread that cannot be interrupted (set by
    /// `Blocking<T>`): `revoke(terminate=True)` then lets it finish and says so.
    const BLOCKING: bool = false;
    /// The arguments.
    type Args: DeserializeOwned + Serialize + Send + 'static;
    /// What a successful run returns; encoded as JSON in results.
    type Output: Serialize + Send + 'static;

    /// Runs the task. Return `Err(error.retryable())` (or `retry_in`, `retry_at`) to be
    /// run again, `Err(TaskError::reject(..))` or `Err(TaskError::ignore())` to settle the
    /// message without a normal result.
    fn run(
        ctx: TaskContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, TaskError>> + Send + 'static;

    /// Retries, time limits, acknowledgement and default queue of this task.
    fn options() -> TaskOptions {
        TaskOptions::default()
    }

    /// Called after a successful run, before the result is stored.
    fn on_success(_ctx: &TaskContext, _output: &Self::Output) {}

    /// Called when the task failed for good (retries used up included).
    fn on_failure(_ctx: &TaskContext, _error: &TaskError) {}

    /// Called when the task is about to be retried.
    fn on_retry(_ctx: &TaskContext, _error: &TaskError) {}
}
