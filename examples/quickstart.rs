//! Quickstart: a producer and a worker in one process.
//!
//! ```text
//! cargo run --example quickstart                                   # embedded broker
//! CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example quickstart
//! ```
//!
//! It sends three tasks, prints each result as the worker reports it, and exits 0.

#[path = "shared/tasks.rs"]
mod tasks;

use std::process::ExitCode;
use std::time::Duration;

use celeriac::{connect_broker, task_event_channel, Config, Producer, TaskEventKind, WorkerSystem};
use futures::StreamExt;
use serde_json::json;

use tasks::{Add, AddArgs, Greet, GreetArgs};

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
        .register::<Add>()
        .register::<Greet>()
        .on_task_event(events)
        .start()
        .await?;
    let producer = Producer::new(broker, &config);

    let mut pending = vec![
        producer.send::<Add>(&AddArgs { x: 2, y: 3 }).await?,
        producer
            .send::<Greet>(&GreetArgs {
                name: "celeriac".into(),
            })
            .await?,
        // By name, with JSON arguments, as for a task defined in Python.
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
            TaskEventKind::Rejected { reason } => {
                return Err(format!("task {id} rejected: {reason}").into())
            }
            _ => {}
        }
    }
    worker.stop().await?;
    println!("all tasks done");
    Ok(())
}
