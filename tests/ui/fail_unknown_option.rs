use celeriac::{task, TaskError};

#[task(name = "tasks.add", max_retry = 5)]
async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
    Ok(x + y)
}

fn main() {}
