//! Which results a worker stores, as Celery's worker decides it: nothing without a result
//! backend (whatever `reply_to` says), rpc results to `reply_to`, `ignore_result`, `store_errors_even_if_ignored` and
//! `track_started`; and a Python producer with no backend flooding a worker, which costs
//! no log line per task.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use celeriac::actors::QueueSpec;
use celeriac::protocol::{TaskMessage, TaskState};
use celeriac::task::TaskOptions;
use celeriac::{Config, Producer, Signature, Task, TaskContext, TaskError};

use common::*;

const WAIT: Duration = Duration::from_secs(60);

/// `results.quiet()`: ignores its results but stores its errors.
struct Quiet;

impl Task for Quiet {
    const NAME: &'static str = "results.quiet";
    type Args = (bool,);
    type Output = u32;
    fn options() -> TaskOptions {
        TaskOptions {
            ignore_result: Some(true),
            store_errors_even_if_ignored: Some(true),
            ..TaskOptions::default()
        }
    }
    async fn run(_: TaskContext, (fail,): (bool,)) -> Result<u32, TaskError> {
        if fail {
            Err(TaskError::value_error("quiet but failed"))
        } else {
            Ok(7)
        }
    }
}

/// `results.tracked()`: stores STARTED, then waits for the test's signal.
struct Tracked;

impl Task for Tracked {
    const NAME: &'static str = "results.tracked";
    type Args = ();
    type Output = &'static str;
    fn options() -> TaskOptions {
        TaskOptions {
            track_started: Some(true),
            ..TaskOptions::default()
        }
    }
    async fn run(ctx: TaskContext, (): ()) -> Result<&'static str, TaskError> {
        let gate = ctx.data::<std::sync::Arc<tokio::sync::Semaphore>>()?;
        let _permit = gate
            .acquire()
            .await
            .map_err(|error| TaskError::runtime_error(error.to_string()))?;
        Ok("done")
    }
}

/// Sends `count` `test.add` messages to `queue` whose `reply_to` is `reply_queue` (a
/// queue nobody consumes), as Python Celery sets `reply_to` on every message; answers
/// their ids.
async fn send_with_reply_to(
    broker: &celeriac::BrokerClient,
    queue: &str,
    reply_queue: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let id = uuid::Uuid::new_v4().to_string();
        let mut message =
            TaskMessage::new_json(Add::NAME, &id, vec![n.into(), 1.into()], Default::default());
        message.reply_to = Some(reply_queue.to_string());
        common::publish_task_message(broker, queue, &message).await;
        ids.push(id);
    }
    ids
}

/// Runs `count` tasks with a `reply_to` on a worker with `backend`; answers how many
/// results reached the reply queue. A result is published (and confirmed) before the
/// task's outcome event, so once every outcome is seen the count is final.
async fn results_published(backend: Option<&str>, count: usize) -> u32 {
    let worker_config = Config {
        result_backend: backend.map(str::to_string),
        ..config(2)
    };
    let broker = connect(&worker_config).await;
    let queue = unique_queue("reply-to");
    let reply_queue = unique_queue("reply-queue");
    broker
        .declare_queue(QueueSpec::durable(reply_queue.clone()))
        .await
        .expect("the reply queue is declared");
    let (builder, mut events) = test_worker(&broker, &worker_config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("the worker starts");
    let ids = send_with_reply_to(&broker, &queue, &reply_queue, count).await;
    events
        .wait_count(WAIT, "every task to succeed", ids.len(), succeeded)
        .await;
    worker.stop().await.expect("the worker stops");
    let published = broker
        .count_messages(&reply_queue)
        .await
        .expect("the reply queue is counted");
    delete_queues(&broker, &[&queue, &reply_queue]).await;
    published
}

#[actix_rt::test]
async fn reply_to_is_used_by_the_rpc_backend_only() {
    assert_eq!(
        results_published(None, 20).await,
        0,
        "a worker without a result backend published results"
    );
    assert_eq!(
        results_published(Some("rpc://"), 20).await,
        20,
        "an rpc:// worker did not publish every result"
    );
}

#[actix_rt::test]
async fn ignored_results_store_errors_only_when_asked_and_track_started_stores_started() {
    // One task at a time: results are published in the order the tasks run.
    let config = config(1);
    let broker = connect(&config).await;
    let queue = unique_queue("result-rules");
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (builder, mut events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Quiet>()
        .register::<Tracked>()
        .app_data(gate.clone())
        .start()
        .await
        .expect("the worker starts");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("a reply queue");
    let send = |signature: Signature| {
        let producer = &producer;
        let queue = queue.clone();
        async move {
            producer
                .send_signature_with_result(signature.with_queue(queue))
                .await
                .expect("sent")
        }
    };

    // STARTED is stored while the task runs, then SUCCESS.
    let tracked = send(Signature::new(Tracked::NAME)).await;
    let deadline = Instant::now() + WAIT;
    while tracked.state().await != TaskState::Started {
        assert!(
            Instant::now() < deadline,
            "no STARTED result for a task with track_started"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    gate.add_permits(1);
    assert_eq!(
        tracked.get(WAIT).await.expect("the tracked task's value"),
        serde_json::json!("done")
    );

    // An ignored success stores nothing; its failure is stored
    // (store_errors_even_if_ignored). The success runs first and one task runs at a time,
    // so had its result been published, it would have arrived before the failure's.
    let quiet_ok = send(Signature::new(Quiet::NAME).with_args(vec![false.into()])).await;
    let quiet_failed = send(Signature::new(Quiet::NAME).with_args(vec![true.into()])).await;
    let failure = quiet_failed
        .get(WAIT)
        .await
        .expect_err("the failure is stored");
    assert!(
        failure.to_string().contains("quiet but failed"),
        "{failure}"
    );
    events
        .wait_for(WAIT, "the ignored success to run", |event| {
            event.task_id.as_deref() == Some(quiet_ok.id()) && succeeded(event)
        })
        .await;
    assert_eq!(quiet_ok.state().await, TaskState::Pending);

    worker.stop().await.expect("the worker stops");
    delete_queues(&broker, &[&queue]).await;
}

/// The worker's log lines that mention results.
fn result_warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect()
}

/// Runs a Python producer with no result backend sending `count` tasks to an interop
/// worker with `backend`; answers the worker's log and how long the run took.
async fn python_flood(count: usize, backend: Option<&str>) -> (String, Duration) {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("python-flood");
    let dir = std::env::temp_dir().join(format!("celeriac-flood-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let log_path = dir.join("worker.log");
    let touched = dir.join("touched");
    let started = Instant::now();
    let mut command = common::example_command("interop");
    command
        .env("CELERIAC_BROKER_URL", amqp_url())
        .env("CELERIAC_QUEUE", &queue)
        .env("CELERIAC_CONCURRENCY", "4")
        .env("RUST_LOG", "warn,celeriac::worker::system=info")
        .env_remove("CELERIAC_RESULT_BACKEND")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("the log file"));
    if let Some(backend) = backend {
        command.env("CELERIAC_RESULT_BACKEND", backend);
    }
    let mut worker = KillOnDrop(command.spawn().expect("the interop worker starts"));
    wait_until("the worker to start", WAIT, || {
        std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains("worker started"))
    })
    .await;
    let output = Command::new("timeout")
        .arg("300")
        .arg(python())
        .arg(python_dir().join("send_many.py"))
        .arg(count.to_string())
        .arg(&touched)
        .env("CELERIAC_TEST_AMQP_URL", amqp_url())
        .env("CELERIAC_QUEUE", &queue)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the Python producer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = || {
        std::fs::read_to_string(&touched)
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    wait_until(
        &format!("{count} tasks to run"),
        Duration::from_secs(180),
        || lines() >= count,
    )
    .await;
    let elapsed = started.elapsed();
    let exit = worker.terminate(WAIT).await;
    assert!(exit.success(), "the worker exited with {exit}");
    let log = std::fs::read_to_string(&log_path).expect("the log");
    let _ = std::fs::remove_dir_all(&dir);
    delete_queues(&broker, &[&queue]).await;
    (log, elapsed)
}

#[actix_rt::test]
async fn a_python_producer_without_backend_costs_a_worker_without_backend_no_log_line() {
    let (log, _) = python_flood(5_000, None).await;
    let warnings = result_warnings(&log);
    assert!(
        warnings.is_empty(),
        "{} warnings, the first: {:?}",
        warnings.len(),
        warnings.first()
    );
}

#[actix_rt::test]
async fn an_rpc_worker_logs_an_unroutable_reply_queue_once_a_minute() {
    let (log, elapsed) = python_flood(2_000, Some("rpc://")).await;
    let warnings = result_warnings(&log);
    // One reply queue (the Python app's) is probed once per started minute: the probe is
    // returned (lapin logs it, one line) and the worker logs it once (one line); every
    // other result for it is dropped without a publish.
    let minutes = 1 + (elapsed.as_secs() / 60) as usize;
    let ours: Vec<_> = warnings
        .iter()
        .filter(|line| line.contains("cannot be delivered"))
        .collect();
    assert!(
        !ours.is_empty() && ours.len() <= minutes,
        "{} 'cannot be delivered' lines for one missing reply queue in {elapsed:?} (bound \
         {minutes}): {:?}",
        ours.len(),
        ours.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        warnings.len() <= 2 * minutes,
        "{} warnings in {elapsed:?} (bound {}): {:?}",
        warnings.len(),
        2 * minutes,
        warnings.iter().take(3).collect::<Vec<_>>()
    );
}
