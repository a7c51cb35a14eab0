use celeriac::{task, TaskContext, TaskError};

#[task(name = "tasks.greet")]
async fn greet(ctx: &mut TaskContext, name: &str) -> Result<String, TaskError> {
    Ok(format!("{name} {}", ctx.id))
}

fn main() {}
