//! Tasks: the `Task` trait, the context a run gets, how a task fails, and the registry.
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
mod context;
mod error;
mod registry;

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use context::TaskContext;
pub use error::TaskError;
pub use registry::{ErasedTask, TaskRegistry};

/// A task: a name, typed arguments, a typed output and an async run.
///
/// Arguments are decoded from what the producer sent (see [`args::decode_args`]): a struct
/// with named fields accepts positional args (in field order), kwargs (by name) or both, as
/// a Python function does; a tuple accepts positional args.
pub trait Task: Send + Sync + 'static {
    /// The name producers send it by, e.g. `"tasks.add"`.
    const NAME: &'static str;
    /// The arguments.
    type Args: DeserializeOwned + Serialize + Send + 'static;
    /// What a successful run returns; encoded as JSON in results.
    type Output: Serialize + Send + 'static;

    /// Runs the task.
    fn run(
        ctx: TaskContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, TaskError>> + Send + 'static;
}
