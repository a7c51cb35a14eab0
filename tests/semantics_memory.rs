//! The task semantics that need no RabbitMQ feature, on the in-process broker
//! (`memory://`, `MemoryBrokerActor`): acknowledgement outcomes (Reject with and without
//! requeue, Ignore, failures with late acks), retries up to `max_retries`, and the results
//! policy (`ignore_result`, `store_errors_even_if_ignored`). They run in seconds and need
//! no broker; the RabbitMQ versions are in semantics_acks, semantics_retries and
//! results_policy.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use celeriac::actors::BrokerClient;
use celeriac::task::TaskOptions;
use celeriac::{
    Config, Producer, ResultError, Signature, Task, TaskContext, TaskError, TaskEventKind,
    WorkerSystem,
};
use serde_json::{json, Value};

use common::*;

/// Generous: on the in-process broker nothing waits on the network.
const WAIT: Duration = Duration::from_secs(30);

/// Runs of each task id (a requeued or retried message comes back with the same id).
static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn run_number(id: &str) -> u32 {
    let mut runs = RUNS.lock().expect("runs");
    let count = runs
        .get_or_insert_with(HashMap::new)
        .entry(id.to_string())
        .or_insert(0);
    *count += 1;
    *count
}

fn runs(id: &str) -> u32 {
    RUNS.lock()
        .expect("runs")
        .as_ref()
        .and_then(|runs| runs.get(id).copied())
        .unwrap_or(0)
}

/// `mem.outcome(kind)`: ends as `kind` says; acks late.
struct Outcome;

impl Task for Outcome {
    const NAME: &'static str = "mem.outcome";
    type Args = (String,);
    type Output = String;
    async fn run(ctx: TaskContext, (kind,): (String,)) -> Result<String, TaskError> {
        let run = run_number(&ctx.id);
        match (kind.as_str(), run) {
            ("requeue", 1) => Err(TaskError::reject("try again", true)),
            ("requeue", n) => Ok(format!("run {n}")),
            ("drop", _) => Err(TaskError::reject("not for us", false)),
            ("ignore", _) => Err(TaskError::ignore()),
            ("fail", _) => Err(TaskError::value_error("failed on purpose")),
            ("retry", _) => {
                Err(TaskError::runtime_error(format!("run {run}"))
                    .retry_in(Duration::from_millis(1)))
            }
            (other, _) => Ok(other.to_string()),
        }
    }
    fn options() -> TaskOptions {
        TaskOptions {
            acks_late: Some(true),
            max_retries: Some(2),
            ..TaskOptions::default()
        }
    }
}

/// `mem.quiet(fail)`: ignores its results but stores its errors.
struct Quiet;

impl Task for Quiet {
    const NAME: &'static str = "mem.quiet";
    type Args = (bool,);
    type Output = u32;
    async fn run(_: TaskContext, (fail,): (bool,)) -> Result<u32, TaskError> {
        if fail {
            return Err(TaskError::value_error("quiet failure"));
        }
        Ok(7)
    }
    fn options() -> TaskOptions {
        TaskOptions {
            ignore_result: Some(true),
            store_errors_even_if_ignored: Some(true),
            ..TaskOptions::default()
        }
    }
}

/// A worker and a producer with rpc results on one in-process broker.
async fn memory_worker(queue: &str) -> (WorkerSystem, Producer, Events, BrokerClient) {
    init_logging();
    let config = Config {
        broker_url: celeriac::app::MEMORY_BROKER_URL.into(),
        ..config_without_broker(2)
    };
    let broker = celeriac::app::connect_broker(&config)
        .await
        .expect("the in-process broker");
    let (builder, events) = test_worker(&broker, &config, queue);
    let worker = builder
        .register::<Outcome>()
        .register::<Quiet>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("rpc results");
    (worker, producer, events, broker)
}

/// The test config, pointed at no broker yet.
fn config_without_broker(concurrency: usize) -> Config {
    Config {
        result_backend: Some("rpc://".into()),
        concurrency,
        hostname: format!("mem-{}@celeriac-test", uuid::Uuid::new_v4().simple()),
        ..Config::default()
    }
}

async fn send(
    producer: &Producer,
    queue: &str,
    name: &str,
    args: Vec<Value>,
) -> celeriac::AsyncResult {
    producer
        .send_signature_with_result(Signature::new(name).with_args(args).with_queue(queue))
        .await
        .expect("sent")
}

fn failure_type(outcome: Result<Value, ResultError>) -> String {
    match outcome {
        Err(ResultError::Failed { exception, .. }) => exception.exc_type,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[actix_rt::test]
async fn reject_ignore_and_late_failures_on_the_memory_broker() {
    let queue = unique_queue("mem-acks");
    let (worker, producer, mut events, broker) = memory_worker(&queue).await;

    // Reject with requeue: the message comes back and the second run succeeds.
    let requeued = send(&producer, &queue, "mem.outcome", vec![json!("requeue")]).await;
    assert_eq!(
        requeued.get(WAIT).await.expect("second run"),
        json!("run 2")
    );
    assert_eq!(
        runs(requeued.id()),
        2,
        "ran twice: rejected with requeue, then again"
    );

    // Reject without requeue: dropped, with a FAILURE `Reject` result; not run again.
    let dropped = send(&producer, &queue, "mem.outcome", vec![json!("drop")]).await;
    assert_eq!(failure_type(dropped.get(WAIT).await), "Reject");

    // A failure with late acks: FAILURE, acked (not redelivered).
    let failed = send(&producer, &queue, "mem.outcome", vec![json!("fail")]).await;
    assert_eq!(failure_type(failed.get(WAIT).await), "ValueError");

    // Ignore: acked, no result; the Ignored event says it ended.
    let ignored = send(&producer, &queue, "mem.outcome", vec![json!("ignore")]).await;
    let id = ignored.id().to_string();
    wait_for_event(
        &mut events,
        WAIT,
        "the ignored task's Ignored event",
        |event| {
            event.task_id.as_deref() == Some(id.as_str())
                && matches!(event.kind, TaskEventKind::Ignored)
        },
    )
    .await;

    // Every message settled: nothing left in the queue, and each ran as often as said.
    let count = broker.count_messages(&queue).await.expect("count");
    assert_eq!(count, 0, "the queue is empty once every message is settled");
    assert_eq!(runs(dropped.id()), 1, "a dropped message is not run again");
    assert_eq!(
        runs(failed.id()),
        1,
        "a failure acked late is not run again"
    );
    worker.stop().await.expect("stop");
}

#[actix_rt::test]
async fn retries_up_to_max_retries_then_fail_on_the_memory_broker() {
    let queue = unique_queue("mem-retries");
    let (worker, producer, mut events, _broker) = memory_worker(&queue).await;
    let retried = send(&producer, &queue, "mem.outcome", vec![json!("retry")]).await;
    let id = retried.id().to_string();
    let outcome = retried.get(WAIT).await;
    match outcome {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "RuntimeError");
            assert_eq!(
                exception.exc_message,
                vec![json!("run 3")],
                "fails with the last run's error"
            );
        }
        other => panic!("expected the last retry's failure, got {other:?}"),
    }
    assert_eq!(runs(&id), 3, "one run and max_retries (2) retries");
    let mut retries = 0;
    while retries < 2 {
        wait_for_event(&mut events, WAIT, "a Retried event per retry", |event| {
            event.task_id.as_deref() == Some(id.as_str())
                && matches!(event.kind, TaskEventKind::Retried { .. })
        })
        .await;
        retries += 1;
    }
    worker.stop().await.expect("stop");
}

#[actix_rt::test]
async fn ignored_results_store_only_errors_when_asked_on_the_memory_broker() {
    let queue = unique_queue("mem-results");
    let (worker, producer, mut events, _broker) = memory_worker(&queue).await;
    let quiet = send(&producer, &queue, "mem.quiet", vec![json!(false)]).await;
    let id = quiet.id().to_string();
    // Its Succeeded event is sent after whatever it stores was published.
    wait_for_event(&mut events, WAIT, "the quiet task's success", |event| {
        event.task_id.as_deref() == Some(id.as_str())
            && matches!(event.kind, TaskEventKind::Succeeded { .. })
    })
    .await;
    // The error is stored (store_errors_even_if_ignored)...
    let loud = send(&producer, &queue, "mem.quiet", vec![json!(true)]).await;
    assert_eq!(failure_type(loud.get(WAIT).await), "ValueError");
    // ...the success is not: a result published for it would have come through the same
    // reply queue before the error did, so it would be here already.
    match quiet.get(Duration::from_millis(1)).await {
        Err(ResultError::Timeout { .. }) => {}
        other => panic!("an ignored success stored a result: {other:?}"),
    }
    worker.stop().await.expect("stop");
}
