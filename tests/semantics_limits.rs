//! Time limits, on a real RabbitMQ and on the in-process broker (`memory://`: limits need
//! no broker feature): hard limits from the task, the worker or the message free the slot;
//! a soft limit can be observed by the task or cancels it; blocking tasks run on the
//! blocking pool without stalling the others, and are abandoned past their hard limit.

mod common;

use std::time::{Duration, Instant};

use celeriac::task::{BlockingTask, TaskOptions};
use celeriac::{Producer, Signature, Task, TaskContext, TaskError, TaskEventKind};
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

/// `limit.block(gate)`: a blocking task that blocks its thread until the test opens gate
/// `gate` (`open_gate`), then answers the gate's name.
struct Block;

impl BlockingTask for Block {
    const NAME: &'static str = "limit.block";
    type Args = (String,);
    type Output = String;
    fn run(_: TaskContext, (gate,): (String,)) -> Result<String, TaskError> {
        futures::executor::block_on(gate_opened(&gate));
        Ok(gate)
    }
}

/// The outcome of task `id`, and when the test saw it.
async fn outcome_of(events: &mut Events, id: &str) -> (TaskEventKind, Instant) {
    let kind = events.outcome(WAIT, id).await;
    (kind, Instant::now())
}

/// The broker a scenario runs on.
#[derive(Debug, Clone, Copy)]
enum On {
    /// The test RabbitMQ.
    RabbitMq,
    /// The in-process broker.
    Memory,
}

impl On {
    /// The test config of `concurrency` slots, pointed at this broker.
    fn config(self, concurrency: usize) -> celeriac::Config {
        match self {
            On::RabbitMq => config(concurrency),
            On::Memory => config_on(celeriac::app::MEMORY_BROKER_URL.into(), concurrency),
        }
    }
}

fn exc_type(kind: &TaskEventKind) -> &str {
    match kind {
        TaskEventKind::Failed { error } => &error.exc_type,
        _ => "no failure",
    }
}

#[actix_rt::test]
async fn hard_limits_from_the_task_the_worker_and_the_message_free_the_slot() {
    hard_limits_from_the_task_the_worker_and_the_message_free_the_slot_on(On::RabbitMq).await;
}

#[actix_rt::test]
async fn hard_limits_from_the_task_the_worker_and_the_message_free_the_slot_in_process() {
    hard_limits_from_the_task_the_worker_and_the_message_free_the_slot_on(On::Memory).await;
}

async fn hard_limits_from_the_task_the_worker_and_the_message_free_the_slot_on(on: On) {
    let mut config = on.config(1);
    config.time_limit = Some(Duration::from_millis(400));
    let broker = connect(&config).await;
    let queue = unique_queue("hard-limits");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<LimitedSleep>()
        .register::<PlainSleep>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let send = |signature: Signature| producer.send_signature(signature.with_queue(queue.clone()));

    // A 10 s run that fails with TimeLimitExceeded was stopped by its limit before its
    // own completion (which would have been a success): no wall-clock bound needed.
    let by_task = send(Signature::new("limit.sleep").with_args(vec![json!(10_000)]))
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut events, &by_task).await;
    assert_eq!(exc_type(&kind), "TimeLimitExceeded", "{kind:?}");

    let by_worker = send(Signature::new("limit.plain").with_args(vec![json!(10_000)]))
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut events, &by_worker).await;
    assert_eq!(
        exc_type(&kind),
        "TimeLimitExceeded",
        "the worker's 400 ms default applies"
    );

    // 600 ms of sleep: past the task's own 300 ms limit, far within the message's 30 s.
    let by_message = send(
        Signature::new("limit.sleep")
            .with_args(vec![json!(600)])
            .with_time_limit(Duration::from_secs(30)),
    )
    .await
    .expect("sent");
    let (kind, _) = outcome_of(&mut events, &by_message).await;
    assert_eq!(
        kind,
        TaskEventKind::Succeeded { result: json!(600) },
        "the message's limit wins"
    );

    // One slot: it is free again after each limit.
    let after = send(Signature::new("limit.plain").with_args(vec![json!(10)]))
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut events, &after).await;
    assert_eq!(kind, TaskEventKind::Succeeded { result: json!(10) });
    let status = worker.pool_status().await.expect("status");
    assert_eq!((status.running, status.waiting), (0, 0));
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_soft_limit_is_observed_by_the_task_or_cancels_it() {
    a_soft_limit_is_observed_by_the_task_or_cancels_it_on(On::RabbitMq).await;
}

#[actix_rt::test]
async fn a_soft_limit_is_observed_by_the_task_or_cancels_it_in_process() {
    a_soft_limit_is_observed_by_the_task_or_cancels_it_on(On::Memory).await;
}

async fn a_soft_limit_is_observed_by_the_task_or_cancels_it_on(on: On) {
    let config = on.config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("soft-limits");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
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
    let (kind, at) = outcome_of(&mut events, &polite).await;
    assert_eq!(
        kind,
        TaskEventKind::Succeeded {
            result: json!("cleaned up at the soft limit")
        }
    );
    // Its answer says the soft limit came first (its own end is 10 s away); the limit
    // runs from the task's start, which came after `started`: at least 300 ms passed.
    assert!(
        at - started >= Duration::from_millis(300),
        "the soft limit of 300 ms fired after {:?}",
        at - started
    );

    let ignoring = producer
        .send_signature(
            Signature::new("limit.plain")
                .with_args(vec![json!(10_000)])
                .with_soft_time_limit(Duration::from_millis(300))
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut events, &ignoring).await;
    assert_eq!(exc_type(&kind), "SoftTimeLimitExceeded", "{kind:?}");
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn blocking_tasks_do_not_stall_the_others_and_are_abandoned_past_their_hard_limit() {
    blocking_tasks_do_not_stall_the_others_and_are_abandoned_past_their_hard_limit_on(On::RabbitMq)
        .await;
}

#[actix_rt::test]
async fn blocking_tasks_do_not_stall_the_others_and_are_abandoned_past_their_hard_limit_in_process()
{
    blocking_tasks_do_not_stall_the_others_and_are_abandoned_past_their_hard_limit_on(On::Memory)
        .await;
}

async fn blocking_tasks_do_not_stall_the_others_and_are_abandoned_past_their_hard_limit_on(on: On) {
    let config = on.config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("blocking");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register_blocking::<Block>()
        .register::<PlainSleep>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let send = |signature: Signature| producer.send_signature(signature.with_queue(queue.clone()));

    // The blocking task holds its thread until the quick ones are done: they can only
    // finish while it blocks, beside it, in the other slot.
    let beside = format!("{queue}.beside");
    let blocking = send(Signature::new("limit.block").with_args(vec![json!(beside)]))
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
        let (kind, _) = outcome_of(&mut events, id).await;
        assert_eq!(kind, TaskEventKind::Succeeded { result: json!(1) });
    }
    assert!(
        events.of_task(&blocking, is_outcome).is_none(),
        "the blocking task ended before its gate opened"
    );
    open_gate(&beside);
    let (kind, _) = outcome_of(&mut events, &blocking).await;
    assert_eq!(
        kind,
        TaskEventKind::Succeeded {
            result: json!(beside)
        },
        "the blocking task finished once let go"
    );

    // Blocked until the test lets it go, past its 300 ms limit: abandoned (the failure
    // and the free slot come while its thread still blocks, so not from its end).
    let stuck_gate = format!("{queue}.stuck");
    let stuck = send(
        Signature::new("limit.block")
            .with_args(vec![json!(stuck_gate)])
            .with_time_limit(Duration::from_millis(300)),
    )
    .await
    .expect("sent");
    let (kind, _) = outcome_of(&mut events, &stuck).await;
    assert_eq!(exc_type(&kind), "TimeLimitExceeded", "{kind:?}");
    let status = worker.pool_status().await.expect("status");
    assert_eq!(status.running, 0, "the abandoned task's slot is free");
    let next = send(Signature::new("limit.plain").with_args(vec![json!(2)]))
        .await
        .expect("sent");
    let (kind, _) = outcome_of(&mut events, &next).await;
    assert_eq!(kind, TaskEventKind::Succeeded { result: json!(2) });
    // Let the abandoned thread end (its result is discarded).
    open_gate(&stuck_gate);
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}
