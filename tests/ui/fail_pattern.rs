use celeriac::{task, TaskError};

#[task(name = "tasks.add")]
async fn add((x, y): (i64, i64), _: i64) -> Result<i64, TaskError> {
    Ok(x + y)
}

fn main() {}
