//! Acknowledgement on a real RabbitMQ: early ack (Celery's default) and acks_late,
//! failures acked or rejected to a dead-letter queue, Reject with and without requeue,
//! Ignore, and the pool size independent of the prefetch window.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use celeriac::actors::executor::PoolStatus;
use celeriac::task::TaskOptions;
use celeriac::{
    Producer, QueueConfig, ResultError, Signature, Task, TaskContext, TaskError, TaskEventKind,
    WorkerSystem,
};
use serde_json::json;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// `ack.slow(ms, fail)`: waits, then succeeds or fails; acks_late per the worker.
struct Slow;

impl Task for Slow {
    const NAME: &'static str = "ack.slow";
    type Args = (u64, bool);
    type Output = u64;
    async fn run(_: TaskContext, (ms, fail): (u64, bool)) -> Result<u64, TaskError> {
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
        if fail {
            return Err(TaskError::value_error("failed on purpose"));
        }
        Ok(ms)
    }
}

/// Deliveries seen by task id (a requeued message comes back with the same id).
static SEEN: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

/// `ack.outcome(kind)`: ends with Reject (requeue or not, the first time only) or Ignore.
struct Outcome;

impl Task for Outcome {
    const NAME: &'static str = "ack.outcome";
    type Args = (String,);
    type Output = String;
    async fn run(ctx: TaskContext, (kind,): (String,)) -> Result<String, TaskError> {
        let seen = {
            let mut seen = SEEN.lock().expect("seen");
            let count = seen
                .get_or_insert_with(HashMap::new)
                .entry(ctx.id.clone())
                .or_insert(0);
            *count += 1;
            *count
        };
        match (kind.as_str(), seen) {
            ("requeue", 1) => Err(TaskError::reject("try again", true)),
            ("requeue", n) => Ok(format!("delivery {n}")),
            ("drop", _) => Err(TaskError::reject("not for us", false)),
            ("ignore", _) => Err(TaskError::ignore()),
            (other, _) => Err(TaskError::value_error(format!("unknown kind {other}"))),
        }
    }
    fn options() -> TaskOptions {
        TaskOptions {
            acks_late: Some(true),
            ..TaskOptions::default()
        }
    }
}

async fn pool_status(worker: &WorkerSystem) -> PoolStatus {
    worker.pool_status().await.expect("pool status")
}

#[actix_rt::test]
async fn early_ack_settles_at_start_and_acks_late_after_the_run() {
    for acks_late in [false, true] {
        let mut config = config(1);
        config.acks_late = acks_late;
        let broker = connect(&config).await;
        let queue = unique_queue(if acks_late { "acks-late" } else { "acks-early" });
        let (builder, mut events) = test_worker(&broker, &config, &queue);
        let worker = builder.register::<Held>().start().await.expect("worker");
        let producer = Producer::new(broker.clone(), &config);
        // The task runs until the test opens its gate: the counts below are read while it
        // runs, however long rabbitmqctl takes (it runs on a blocking thread, so the
        // worker's thread is never stalled by it).
        producer
            .send_signature(
                Signature::new(Held::NAME)
                    .with_args(vec![json!(queue)])
                    .with_queue(queue.clone()),
            )
            .await
            .expect("sent");
        events
            .wait_for(WAIT, "the task to start", |event| {
                event.kind == TaskEventKind::Started
            })
            .await;
        let expected_while_running = u64::from(acks_late);
        wait_for_counts(
            "the unacked count to settle while the task runs",
            WAIT,
            &[&queue],
            |counts| counts == [(0, expected_while_running)],
        )
        .await;
        assert_eq!(
            pool_status(&worker).await.running,
            1,
            "the task is still running"
        );
        open_gate(&queue);
        events
            .wait_for(WAIT, "the task to succeed", succeeded)
            .await;
        wait_for_counts("nothing left unacked", WAIT, &[&queue], |counts| {
            counts == [(0, 0)]
        })
        .await;
        worker.stop().await.expect("stop");
        delete_queues(&broker, &[&queue]).await;
    }
}

#[actix_rt::test]
async fn with_acks_late_a_failure_is_acked_by_default_or_dead_lettered_when_configured() {
    for acks_on_failure in [true, false] {
        let mut config = config(2);
        config.acks_late = true;
        config.acks_on_failure_or_timeout = acks_on_failure;
        let broker = connect(&config).await;
        let queue = unique_queue("fail-late");
        let dead = format!("{queue}.dead");
        broker
            .declare_queue(celeriac::actors::QueueSpec::durable(&dead))
            .await
            .expect("dead-letter queue");
        let (events, mut received) = task_events();
        let worker = WorkerSystem::builder(broker.clone(), &config)
            .queue_config(QueueConfig::new(&queue).with_dead_letter("", &dead))
            .register::<Slow>()
            .on_task_event(events)
            .close_broker_on_stop(false)
            .start()
            .await
            .expect("worker");
        let mut producer_config = config.clone();
        producer_config
            .queues
            .push(QueueConfig::new(&queue).with_dead_letter("", &dead));
        let producer = Producer::new(broker.clone(), &producer_config);
        producer
            .send_signature(
                Signature::new("ack.slow")
                    .with_args(vec![json!(10), json!(true)])
                    .with_queue(queue.clone()),
            )
            .await
            .expect("sent");
        received
            .wait_for(WAIT, "the failure", |event| {
                matches!(event.kind, TaskEventKind::Failed { .. })
            })
            .await;
        let expected_dead = u64::from(!acks_on_failure);
        wait_for_counts(
            "the failed message to be settled",
            WAIT,
            &[&queue, &dead],
            |counts| counts[0] == (0, 0) && counts[1].0 == expected_dead,
        )
        .await;
        worker.stop().await.expect("stop");
        delete_queues(&broker, &[&queue, &dead]).await;
    }
}

#[actix_rt::test]
async fn reject_requeues_or_dead_letters_and_ignore_stores_nothing() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("reject");
    let dead = format!("{queue}.dead");
    broker
        .declare_queue(celeriac::actors::QueueSpec::durable(&dead))
        .await
        .expect("dead-letter queue");
    let queue_config = QueueConfig::new(&queue).with_dead_letter("", &dead);
    let (events, mut received) = task_events();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue_config(queue_config.clone())
        .register::<Outcome>()
        .on_task_event(events)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker");
    let mut producer_config = config.clone();
    producer_config.queues.push(queue_config);
    let producer = Producer::new(broker.clone(), &producer_config)
        .with_rpc_results()
        .await
        .expect("results");
    let send = |kind: &str| {
        producer.send_signature_with_result(
            Signature::new("ack.outcome")
                .with_args(vec![json!(kind)])
                .with_queue(queue.clone()),
        )
    };

    let requeued = send("requeue").await.expect("sent");
    assert_eq!(
        requeued.get(WAIT).await.expect("second delivery"),
        json!("delivery 2")
    );

    let dropped = send("drop").await.expect("sent");
    match dropped.get(WAIT).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "Reject");
            assert_eq!(
                exception.exc_message,
                vec![json!("not for us"), json!(false)]
            );
        }
        other => panic!("expected a Reject failure, got {other:?}"),
    }
    wait_for_counts(
        "the rejected message in the dead-letter queue",
        WAIT,
        &[&dead],
        |counts| counts[0].0 == 1,
    )
    .await;

    let ignored = send("ignore").await.expect("sent");
    let ignored_id = ignored.id().to_string();
    received
        .wait_for(WAIT, "the ignored task", |event| {
            event.task_id.as_deref() == Some(ignored_id.as_str())
                && event.kind == TaskEventKind::Ignored
        })
        .await;
    // A negative check: no result within 500 ms of the Ignored event. It cannot fail when
    // the worker is right (nothing is ever stored); a slow machine can only hide a defect.
    match ignored.get(Duration::from_millis(500)).await {
        Err(ResultError::Timeout { .. }) => {}
        other => panic!("an ignored task stores no result, got {other:?}"),
    }
    wait_for_counts("everything settled", WAIT, &[&queue], |counts| {
        counts == [(0, 0)]
    })
    .await;
    worker.stop().await.expect("stop");
    producer.close_results().await.expect("close");
    delete_queues(&broker, &[&queue, &dead]).await;
}

#[actix_rt::test]
async fn the_pool_size_is_independent_of_the_prefetch_window() {
    let mut config = config(2);
    config.acks_late = true; // so that the broker's unacked count shows the whole window
    config.prefetch_multiplier = Some(4);
    let broker = connect(&config).await;
    let queue = unique_queue("window");
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Held>()
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    // Every task runs until the gate opens: the state below is where the worker stops,
    // not a moment to catch, whatever the machine's speed.
    for _ in 0..20 {
        producer
            .send_signature(
                Signature::new(Held::NAME)
                    .with_args(vec![json!(queue)])
                    .with_queue(queue.clone()),
            )
            .await
            .expect("sent");
    }
    // 2 running, 6 waiting in the worker, 8 unacked at the broker, the other 12 ready.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = pool_status(&worker).await;
        let counts = queue_counts_async(&queue).await;
        assert!(
            status.running <= 2,
            "more tasks than the pool size run: {status:?}"
        );
        assert!(
            counts.1 <= 8,
            "more unacked than the prefetch window: {counts:?}"
        );
        if status.running == 2 && status.waiting == 6 && counts == (12, 8) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never saw 2 running, 6 waiting, 8 unacked and 12 ready; last: {status:?}, {counts:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    open_gate(&queue);
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}
