//! `celeriac result ID`: prints a task's result from CELERIAC_RESULT_BACKEND (Redis), as
//! `celery result` does; with `--wait S` waits for it up to S seconds.

use celeriac::{AsyncResult, Config};
use clap::Args;

use crate::error::CliError;
use crate::progress;

/// `result`'s command line.
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// The task id.
    id: String,
    /// Wait up to S seconds for the task to finish.
    #[arg(long, value_name = "S")]
    wait: Option<String>,
}

/// Prints the result's value as JSON; a failure, a revoked task, a task not finished
/// (without `--wait`) or no result in time is a failure line.
pub async fn run(args: ResultArgs, config: &Config) -> Result<(), CliError> {
    let wait = args
        .wait
        .as_deref()
        .map(|value| crate::call::seconds("--wait", value))
        .transpose()?;
    let result = AsyncResult::from_id(&args.id, config).map_err(CliError::failed)?;
    let value = match wait {
        Some(wait) => {
            let message = format!(
                "waiting up to {} for the result of task {}...",
                crate::output::duration(wait),
                args.id
            );
            progress::announce_if_slow(&message, result.get(wait)).await
        }
        None => {
            // from_id answers a Redis handle (the only backend it reads).
            let latest = match result.as_redis() {
                Some(redis) => redis.latest().await.map_err(CliError::failed)?,
                None => result.latest().await,
            };
            match latest {
                Some(document) if document.status.is_ready() => {
                    celeriac::result::async_result::outcome(&args.id, document)
                }
                Some(document) => {
                    return Err(CliError::Failed(format!(
                        "task {} is {}: no result yet (--wait S waits for it)",
                        args.id, document.status
                    )))
                }
                None => {
                    return Err(CliError::Failed(format!(
                        "task {} is PENDING: no result stored (unknown, not finished, or \
                         expired; --wait S waits for it)",
                        args.id
                    )))
                }
            }
        }
    };
    let value = value.map_err(CliError::failed)?;
    println!("{value}");
    Ok(())
}
