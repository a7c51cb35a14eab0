use celeriac::{task, TaskError};

#[task(name = "tasks.add", max_retries = "5", time_limit = "30s", acks_late = 1)]
async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
    Ok(x + y)
}

#[task(name = tasks::add)]
async fn named_by_path() -> Result<(), TaskError> {
    Ok(())
}

#[task(rate_limit = "10 per minute")]
async fn bad_rate() -> Result<(), TaskError> {
    Ok(())
}

fn main() {}
