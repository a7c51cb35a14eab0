use celeriac::{task, TaskError};

struct Calculator;

impl Calculator {
    #[task(name = "tasks.add")]
    async fn add(&self, x: i64) -> Result<i64, TaskError> {
        Ok(x)
    }
}

fn main() {}
