use celeriac::{task, TaskError};

#[task(name = "tasks.repeat")]
async fn repeat(text: String, #[default = 3.5] times: u8) -> Result<String, TaskError> {
    Ok(text.repeat(times.into()))
}

fn main() {}
