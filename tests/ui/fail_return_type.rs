use celeriac::task;

#[task(name = "tasks.add")]
async fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[task(name = "tasks.nothing")]
fn nothing() {}

fn main() {}
