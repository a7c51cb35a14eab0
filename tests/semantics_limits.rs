//! Time limits on a real RabbitMQ: hard limits from the task, the worker or the message
//! free the slot; a soft limit can be observed by the task or cancels it; blocking tasks
//! run on the blocking pool without stalling the others, and are abandoned past their
//! hard limit.

mod common;

use std::time::{Duration, Instant};

use celeriac::task::{BlockingTask, TaskOptions};
use celeriac::{Producer, Signature, Task, TaskContext, TaskError, TaskEvent, TaskEventKind};
use futures::channel::mpsc::UnboundedReceiver;
use serde_json::json;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// `limit.sleep(ms)`: waits, ignoring limits. Hard limit 300 ms from its options.
struct LimitedSleep;

impl Task for LimitedSleep {
    const NAME: &'static str = "limit.sleep";
    type Args = (u64,);
    type Output = u64;
    async fn run(_: TaskContext, (ms,): (u64,)) -> Result<u64, TaskError> {
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
    fn options() -> TaskOptions {
        TaskOptions {
            time_limit: Some(Duration::from_millis(300)),
            ..TaskOptions::default()
        }
    }
}

/// `limit.plain(ms)`: waits; no limits of its own.
struct PlainSleep;

impl Task for PlainSleep {
    const NAME: &'static str = "limit.plain";
    type Args = (u64,);
    type Output = u64;
    async fn run(_: TaskContext, (ms,): (u64,)) -> Result<u64, TaskError> {
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
}

/// `limit.polite(ms)`: works for `ms` unless its soft limit comes first, then cleans up.
struct Polite;

impl Task for Polite {
    const NAME: &'static str = "limit.polite";
    type Args = (u64,);
    type Output = String;
    async fn run(ctx: TaskContext, (ms,): (u64,)) -> Result<String, TaskError> {
        tokio::select! {
            () = actix_rt::time::sleep(Duration::from_millis(ms)) => Ok("finished".into()),
            () = ctx.soft_limit_reached() => Ok("cleaned up at the soft limit".into()),
        }
    }
}

/// `limit.block(ms)`: a blocking task.
struct Block;

impl BlockingTask for Block {
    const NAME: &'static str = "limit.block";
    type Args = (u64,);
    type Output = u64;
    fn run(_: TaskContext, (ms,): (u64,)) -> Result<u64, TaskError> {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(ms)
    }
}

async fn outcome_of(
    received: &mut UnboundedReceiver<TaskEvent>,
    id: &str,
) -> (TaskEventKind, Instant) {
    let event = wait_for_event(received, WAIT, &format!("the outcome of {id}"), |event| {
        event.task_id.as_deref() == Some(id)
            && matches!(
                event.kind,
                TaskEventKind::Succeeded { .. } | TaskEventKind::Failed { .. }
            )
    })
    .await;
    (event.kind, Instant::now())
}

fn exc_type(kind: &TaskEventKind) -> &str {
    match kind {
        TaskEventKind::Failed { error } => &error.exc_type,
        _ => "no failure",
    }
}

#[actix_rt::test]
async fn hard_limits_from_the_task_the_worker_and_the_message_free_the_slot() {
    let mut config = config(1);
    config.time_limit = Some(Duration::from_millis(400));
    let broker = connect(&config).await;
    let queue = unique_queue("hard-limits");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<LimitedSleep>()
        .register::<PlainSleep>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let send = |signature: Signature| producer.send_signature(signature.with_queue(queue.clone()));

    let started = Instant::now();
    let by_task = send(Signature::new("limit.sleep").with_args(vec![json!(10_000)]))
        .await
        .expect("sent");
    let (kind, at) = outcome_of(&mut received, &by_task).await;
    assert_eq!(exc_type(&kind), "TimeLimitExceeded", "{kind:?}");
    let took = at - started;
    assert!(
        took < Duration::from_secs(3),
        "the task's 300 ms limit took {took:?}"
    );

    let by_worker = send(Signature::new("limit.plain").with_args(vec![json!(10_000)]))
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut received, &by_worker).await;
    assert_eq!(
        exc_type(&kind),
        "TimeLimitExceeded",
        "the worker's 400 ms default applies"
    );

    let by_message = send(
        Signature::new("limit.sleep")
            .with_args(vec![json!(600)])
            .with_time_limit(Duration::from_secs(5)),
    )
    .await
    .expect("sent");
    let (kind, _) = outcome_of(&mut received, &by_message).await;
    assert_eq!(
        kind,
        TaskEventKind::Succeeded { result: json!(600) },
        "the message's limit wins"
    );

    // One slot: it is free again after each limit.
    let after = send(Signature::new("limit.plain").with_args(vec![json!(10)]))
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut received, &after).await;
    assert_eq!(kind, TaskEventKind::Succeeded { result: json!(10) });
    let status = worker.pool_status().await.expect("status");
    assert_eq!((status.running, status.waiting), (0, 0));
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_soft_limit_is_observed_by_the_task_or_cancels_it() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("soft-limits");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Polite>()
        .register::<PlainSleep>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let started = Instant::now();
    let polite = producer
        .send_signature(
            Signature::new("limit.polite")
                .with_args(vec![json!(10_000)])
                .with_soft_time_limit(Duration::from_millis(300))
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    let (kind, at) = outcome_of(&mut received, &polite).await;
    assert_eq!(
        kind,
        TaskEventKind::Succeeded {
            result: json!("cleaned up at the soft limit")
        }
    );
    assert!(at - started >= Duration::from_millis(250) && at - started < Duration::from_secs(3));

    let ignoring = producer
        .send_signature(
            Signature::new("limit.plain")
                .with_args(vec![json!(10_000)])
                .with_soft_time_limit(Duration::from_millis(300))
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut received, &ignoring).await;
    assert_eq!(exc_type(&kind), "SoftTimeLimitExceeded", "{kind:?}");
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn blocking_tasks_do_not_stall_the_others_and_are_abandoned_past_their_hard_limit() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("blocking");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register_blocking::<Block>()
        .register::<PlainSleep>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let send = |signature: Signature| producer.send_signature(signature.with_queue(queue.clone()));

    let blocking = send(Signature::new("limit.block").with_args(vec![json!(1500)]))
        .await
        .expect("sent");
    let mut quick = Vec::new();
    for _ in 0..5 {
        quick.push(
            send(Signature::new("limit.plain").with_args(vec![json!(1)]))
                .await
                .expect("sent"),
        );
    }
    for id in &quick {
        let (kind, _) = outcome_of(&mut received, id).await;
        assert_eq!(kind, TaskEventKind::Succeeded { result: json!(1) });
    }
    let (kind, _) = outcome_of(&mut received, &blocking).await;
    assert_eq!(
        kind,
        TaskEventKind::Succeeded {
            result: json!(1500)
        },
        "the blocking task finished after the quick ones, which ran beside it"
    );

    let started = Instant::now();
    let stuck = send(
        Signature::new("limit.block")
            .with_args(vec![json!(5_000)])
            .with_time_limit(Duration::from_millis(300)),
    )
    .await
    .expect("sent");
    let (kind, at) = outcome_of(&mut received, &stuck).await;
    assert_eq!(exc_type(&kind), "TimeLimitExceeded", "{kind:?}");
    assert!(
        at - started < Duration::from_secs(3),
        "abandoned after {:?}",
        at - started
    );
    let status = worker.pool_status().await.expect("status");
    assert_eq!(status.running, 0, "the abandoned task's slot is free");
    let next = send(Signature::new("limit.plain").with_args(vec![json!(2)]))
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut received, &next).await;
    assert_eq!(kind, TaskEventKind::Succeeded { result: json!(2) });
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}
