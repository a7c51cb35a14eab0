//! Example tasks shared by the examples (included with `#[path]`; each example uses some).
#![allow(dead_code)]

use std::time::Duration;

use celeriac::{task, TaskError};

/// `tasks.add(x, y)`: adds two integers.
#[task(name = "tasks.add")]
pub async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
    x.checked_add(y)
        .ok_or_else(|| TaskError::value_error("integer overflow"))
}

/// `tasks.greet(name)`: returns a greeting.
#[task(name = "tasks.greet")]
pub async fn greet(name: String) -> Result<String, TaskError> {
    Ok(format!("Hello, {name}!"))
}

/// `tasks.sleep(seconds)`: waits, without blocking the worker, then returns the seconds.
#[task(name = "tasks.sleep")]
pub async fn sleep(seconds: f64) -> Result<f64, TaskError> {
    let wait = Duration::try_from_secs_f64(seconds)
        .map_err(|error| TaskError::value_error(format!("seconds: {error}")))?;
    actix_rt::time::sleep(wait).await;
    Ok(seconds)
}
