use celeriac::{task, TaskError};

#[task(name = "tasks.echo")]
async fn echo<T: serde::Serialize>(value: T) -> Result<T, TaskError> {
    Ok(value)
}

fn main() {}
