//! Quickstart: a producer and a worker in one process.
//!
//! ```text
//! cargo run --example quickstart                                   # embedded broker
//! CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example quickstart
//! ```
//!
//! It sends four tasks, prints each result as the worker reports it, and exits 0.

use std::process::ExitCode;
use std::time::Duration;

use celeriac::{
    connect_broker, task, task_event_channel, Config, Producer, TaskContext, TaskError,
    TaskEventKind, WorkerSystem,
};
use futures::StreamExt;
use serde_json::json;

/// `tasks.add(x, y)`: Python calls it `app.send_task("tasks.add", args=[2, 3])`.
#[task(name = "tasks.add")]
async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
    x.checked_add(y)
        .ok_or_else(|| TaskError::value_error("integer overflow"))
}

/// `tasks.greet(name, greeting="Hello")`: a parameter with a default, and the request
/// context (Celery's `bind=True`).
#[task(name = "tasks.greet", max_retries = 2, time_limit = 10)]
async fn greet(
    ctx: &TaskContext,
    name: String,
    #[default = "Hello"] greeting: String,
) -> Result<String, TaskError> {
    Ok(format!("{greeting}, {name}! (task {})", ctx.id))
}

/// `tasks.word_count(text)`: a plain `fn` runs on the blocking thread pool.
#[task(name = "tasks.word_count")]
fn word_count(text: String) -> Result<usize, TaskError> {
    Ok(text.split_whitespace().count())
}

#[actix::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::from_env();
    // Keep clear of a real `celery` queue when pointed at a shared RabbitMQ.
    config.default_queue = "celeriac.quickstart".to_string();
    // The quickstart runs anywhere: without CELERIAC_BROKER_URL it uses the embedded
    // in-process broker (a library user who sets nothing gets Celery's default RabbitMQ).
    if std::env::var_os("CELERIAC_BROKER_URL").is_none_or(|url| url.is_empty()) {
        config.broker_url = celeriac::app::MEMORY_BROKER_URL.to_string();
        println!(
            "CELERIAC_BROKER_URL is not set: using the embedded in-process broker (memory://)"
        );
    }
    println!(
        "quickstart on {}",
        celeriac::actors::broker::amqp::redact_url(&config.broker_url)
    );

    let broker = connect_broker(&config).await?;
    let (events, mut received) = task_event_channel();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .register::<add>()
        .register::<greet>()
        .register::<word_count>()
        .on_task_event(events)
        .start()
        .await?;
    let producer = Producer::new(broker, &config);

    let mut pending = vec![
        // Typed: `add::new` checks the arguments at compile time.
        producer.send_signature(add::new(2, 3)).await?,
        producer
            .send_signature(greet::new("celeriac".into(), "Hi".into()))
            .await?,
        producer
            .send_signature(word_count::new("one two three".into()))
            .await?,
        // By name, with JSON arguments (positional and keyword), as Python sends them.
        producer
            .send_task(
                "tasks.add",
                vec![json!(40)],
                json!({"y": 2}).as_object().cloned().unwrap_or_default(),
            )
            .await?,
    ];
    println!("sent {} tasks", pending.len());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !pending.is_empty() {
        let event = tokio::time::timeout_at(deadline, received.next())
            .await
            .map_err(|_| format!("no result within 30 s for tasks {pending:?}"))?
            .ok_or("the worker stopped reporting events")?;
        let Some(id) = event.task_id.as_deref() else {
            continue;
        };
        if !pending.iter().any(|p| p == id) {
            continue;
        }
        match event.kind {
            TaskEventKind::Succeeded { result } => {
                println!("{}[{id}] -> {result}", event.task_name.unwrap_or_default());
                pending.retain(|p| p != id);
            }
            TaskEventKind::Failed { error } => {
                return Err(format!("task {id} failed: {error}").into())
            }
            TaskEventKind::Rejected { reason, .. } => {
                return Err(format!("task {id} rejected: {reason}").into())
            }
            _ => {}
        }
    }
    worker.stop().await?;
    println!("all tasks done");
    Ok(())
}
