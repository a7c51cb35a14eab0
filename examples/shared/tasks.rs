//! Example tasks shared by the examples (included with `#[path]`; each example uses some).
#![allow(dead_code)]

use std::time::Duration;

use celeriac::{Task, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

/// `tasks.add(x, y)`: adds two integers.
pub struct Add;

/// Arguments of `tasks.add`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddArgs {
    /// First addend.
    pub x: i64,
    /// Second addend.
    pub y: i64,
}

impl Task for Add {
    const NAME: &'static str = "tasks.add";
    type Args = AddArgs;
    type Output = i64;

    async fn run(_ctx: TaskContext, args: AddArgs) -> Result<i64, TaskError> {
        args.x
            .checked_add(args.y)
            .ok_or_else(|| TaskError::value_error("integer overflow"))
    }
}

/// `tasks.greet(name)`: returns a greeting.
pub struct Greet;

/// Arguments of `tasks.greet`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GreetArgs {
    /// Who to greet.
    pub name: String,
}

impl Task for Greet {
    const NAME: &'static str = "tasks.greet";
    type Args = GreetArgs;
    type Output = String;

    async fn run(_ctx: TaskContext, args: GreetArgs) -> Result<String, TaskError> {
        Ok(format!("Hello, {}!", args.name))
    }
}

/// `tasks.sleep(seconds)`: waits, without blocking the worker, then returns the seconds.
pub struct Sleep;

/// Arguments of `tasks.sleep`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SleepArgs {
    /// How long to wait.
    pub seconds: f64,
}

impl Task for Sleep {
    const NAME: &'static str = "tasks.sleep";
    type Args = SleepArgs;
    type Output = f64;

    async fn run(_ctx: TaskContext, args: SleepArgs) -> Result<f64, TaskError> {
        let wait = Duration::try_from_secs_f64(args.seconds)
            .map_err(|error| TaskError::value_error(format!("seconds: {error}")))?;
        actix_rt::time::sleep(wait).await;
        Ok(args.seconds)
    }
}
