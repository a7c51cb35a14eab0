//! A worker binary: serves the example tasks on RabbitMQ until SIGINT or SIGTERM.
//!
//! ```text
//! CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example worker
//! ```
//!
//! Queues: `CELERIAC_QUEUE` (comma-separated, default `celery`). Concurrency and prefetch:
//! `CELERIAC_CONCURRENCY`, `CELERIAC_PREFETCH_MULTIPLIER`. Exits non-zero when the broker
//! cannot be reached or a consumer cannot be kept running.

#[path = "shared/tasks.rs"]
mod tasks;

use std::process::ExitCode;

use celeriac::{connect_broker, Config, WorkerSystem};

#[actix::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::from_env();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("worker failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let broker = connect_broker(&config).await?;
    let mut builder = WorkerSystem::builder(broker, &config)
        .register::<tasks::add>()
        .register::<tasks::greet>()
        .register::<tasks::sleep>();
    let queues = std::env::var("CELERIAC_QUEUE").unwrap_or_default();
    for queue in queues.split(',').map(str::trim).filter(|q| !q.is_empty()) {
        builder = builder.queue(queue);
    }
    let worker = builder.start().await?;
    worker.run_until_signal().await?;
    Ok(())
}
