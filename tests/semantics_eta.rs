//! ETA and countdown on a real RabbitMQ: held tasks do not block the others (the window is
//! widened for each), tasks due beyond the horizon wait in the broker, and that keeps the
//! channel alive when RabbitMQ's consumer_timeout is shorter than the wait (on a node of
//! this test's own with consumer_timeout lowered to 2 s).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use celeriac::{
    connect_broker, task_event_channel, Config, Producer, Signature, SupervisorEvent,
    TaskEventKind, WorkerSystem,
};
use futures::StreamExt;
use serde_json::json;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

#[actix_rt::test]
async fn held_eta_tasks_widen_the_window_so_other_tasks_run_meanwhile() {
    let mut config = config(1);
    config.prefetch_multiplier = 1; // a window of one: without widening, one ETA task blocks all
    let broker = connect(&config).await;
    let queue = unique_queue("eta-window");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder.register::<Add>().start().await.expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let sent_at = Instant::now();
    let mut later = Vec::new();
    for i in 0..3 {
        let signature = Signature::of::<Add>(&AddArgs { x: i, y: 100 })
            .expect("encodes")
            .with_countdown(Duration::from_secs(2))
            .with_queue(queue.clone());
        later.push(producer.send_signature(signature).await.expect("sent"));
    }
    let mut now = Vec::new();
    for i in 0..3 {
        let signature = Signature::of::<Add>(&AddArgs { x: i, y: 0 })
            .expect("encodes")
            .with_queue(queue.clone());
        now.push(producer.send_signature(signature).await.expect("sent"));
    }
    let mut done_now = 0;
    let mut done_later = 0;
    collect_events(&mut received, WAIT, "all six tasks", |event| {
        if let TaskEventKind::Succeeded { .. } = event.kind {
            let id = event.task_id.clone().unwrap_or_default();
            let elapsed = sent_at.elapsed();
            if now.contains(&id) {
                assert!(
                    elapsed < Duration::from_millis(1500),
                    "an immediate task waited {elapsed:?}"
                );
                assert_eq!(done_later, 0, "an ETA task ran before an immediate one");
                done_now += 1;
            } else if later.contains(&id) {
                assert!(
                    elapsed >= Duration::from_millis(1900),
                    "an ETA task ran early: {elapsed:?}"
                );
                done_later += 1;
            }
        }
        done_now + done_later == 6
    })
    .await;
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_task_due_beyond_the_horizon_waits_in_the_broker_not_unacked_in_the_worker() {
    let mut config = config(2);
    config.eta_horizon = Duration::from_millis(1000);
    let broker = connect(&config).await;
    let queue = unique_queue("eta-far");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder.register::<Add>().start().await.expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let sent_at = Instant::now();
    let signature = Signature::of::<Add>(&AddArgs { x: 1, y: 2 })
        .expect("encodes")
        .with_countdown(Duration::from_millis(6000))
        .with_queue(queue.clone());
    let id = producer.send_signature(signature).await.expect("sent");
    let deferred = wait_for_event(&mut received, WAIT, "the task to be deferred", |event| {
        matches!(event.kind, TaskEventKind::Deferred { .. })
    })
    .await;
    let TaskEventKind::Deferred { wait_queue, .. } = deferred.kind else {
        unreachable!("matched above")
    };
    assert_eq!(deferred.task_id.as_deref(), Some(id.as_str()));
    // It waits in the wait queue; nothing is unacked in the task queue.
    wait_until("the message to sit in the wait queue", WAIT, || {
        queue_counts(&wait_queue) == (1, 0) && queue_counts(&queue) == (0, 0)
    })
    .await;
    let done = wait_for_event(&mut received, WAIT, "the task to run at its ETA", |event| {
        matches!(event.kind, TaskEventKind::Succeeded { .. })
    })
    .await;
    assert_eq!(done.task_id.as_deref(), Some(id.as_str()));
    let elapsed = sent_at.elapsed();
    assert!(
        elapsed >= Duration::from_millis(5900),
        "ran before its ETA: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(11), "ran late: {elapsed:?}");
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue, &wait_queue]).await;
}

/// A RabbitMQ node of this test's own, stopped when dropped.
struct PrivateNode {
    dir: PathBuf,
    url: String,
}

impl PrivateNode {
    fn start(consumer_timeout_ms: u32) -> Self {
        let dir =
            std::env::temp_dir().join(format!("celeriac-node-{}", uuid::Uuid::new_v4().simple()));
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq");
        let output = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .env(
                "CELERIAC_RABBIT_CONSUMER_TIMEOUT_MS",
                consumer_timeout_ms.to_string(),
            )
            .output()
            .expect("scripts/rabbitmq runs");
        assert!(
            output.status.success(),
            "could not start a RabbitMQ node with consumer_timeout {consumer_timeout_ms} ms \
             (needs rabbitmq-server; scripts/test installs it): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env = String::from_utf8_lossy(&output.stdout);
        let url = env
            .lines()
            .find_map(|line| line.strip_prefix("CELERIAC_TEST_AMQP_URL="))
            .expect("the node's URL")
            .to_string();
        PrivateNode { dir, url }
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq");
        let _ = Command::new(script).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[actix_rt::test]
async fn the_wait_queue_keeps_the_channel_alive_past_a_short_consumer_timeout() {
    init_logging();
    let node = PrivateNode::start(2000);
    for horizon_ms in [1000, 60_000] {
        let config = Config {
            broker_url: node.url.clone(),
            concurrency: 2,
            eta_horizon: Duration::from_millis(horizon_ms),
            ..Config::default()
        };
        let broker = connect_broker(&config).await.expect("the private node");
        let queue = unique_queue("consumer-timeout");
        let (events, mut received) = task_event_channel();
        let (lifecycle, mut lifecycle_events) = forward::<SupervisorEvent>();
        let worker = WorkerSystem::builder(broker.clone(), &config)
            .queue(&queue)
            .register::<Add>()
            .on_task_event(events)
            .on_supervisor_event(lifecycle)
            .close_broker_on_stop(false)
            .start()
            .await
            .expect("worker");
        let producer = Producer::new(broker.clone(), &config);
        let signature = Signature::of::<Add>(&AddArgs { x: 20, y: 22 })
            .expect("encodes")
            .with_countdown(Duration::from_secs(6))
            .with_queue(queue.clone());
        let id = producer.send_signature(signature).await.expect("sent");
        let done = wait_for_event(&mut received, WAIT, "the ETA task to run", |event| {
            event.task_id.as_deref() == Some(id.as_str())
                && matches!(event.kind, TaskEventKind::Succeeded { .. })
        })
        .await;
        assert_eq!(done.kind, TaskEventKind::Succeeded { result: json!(42) });
        let mut restarts = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(200), lifecycle_events.next()).await
        {
            if let SupervisorEvent::Restarting { reason, .. } = event {
                restarts.push(reason);
            }
        }
        if horizon_ms < 2000 {
            assert!(restarts.is_empty(), "the channel was closed: {restarts:?}");
        } else {
            // The control: held unacked for 6 s, the delivery outlives consumer_timeout.
            assert!(
                restarts.iter().any(|reason| reason.contains("PRECONDITION_FAILED")),
                "expected RabbitMQ to close the channel of a delivery held past consumer_timeout: {restarts:?}"
            );
        }
        worker.stop().await.expect("stop");
        let wait_queues: Vec<String> = [format!("{queue}.celeriac.wait.{horizon_ms}ms")].into();
        for wait_queue in &wait_queues {
            let _ = broker.delete_queue(wait_queue).await;
        }
        delete_queues(&broker, &[&queue]).await;
        broker.close().await.expect("close");
    }
}

#[actix_rt::test]
async fn a_task_that_expires_while_it_waits_is_acked_revoked_and_not_run() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("expires");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder.register::<Add>().start().await.expect("worker");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("results");
    let signature = Signature::of::<Add>(&AddArgs { x: 1, y: 1 })
        .expect("encodes")
        .with_countdown(Duration::from_millis(1500))
        .with_expires(chrono::Utc::now() + chrono::Duration::milliseconds(500))
        .with_queue(queue.clone());
    let result = producer
        .send_signature_with_result(signature)
        .await
        .expect("sent");
    match result.get(WAIT).await {
        Err(celeriac::ResultError::Revoked { exception, .. }) => {
            assert_eq!(exception.exc_type, "TaskRevokedError");
            assert_eq!(exception.exc_message, vec![json!("expired")]);
        }
        other => panic!("expected REVOKED, got {other:?}"),
    }
    let mut ran = false;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), received.next()).await
    {
        ran |= matches!(
            event.kind,
            TaskEventKind::Started | TaskEventKind::Succeeded { .. }
        );
    }
    assert!(!ran, "an expired task ran");
    wait_until("the expired message to be acked", WAIT, || {
        queue_counts(&queue) == (0, 0)
    })
    .await;
    worker.stop().await.expect("stop");
    producer.close_results().await.expect("close");
    delete_queues(&broker, &[&queue]).await;
}
