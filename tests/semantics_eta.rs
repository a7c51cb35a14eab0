//! ETA and countdown on a real RabbitMQ: held tasks do not block the others (the window is
//! widened for each), tasks due beyond the horizon wait in the broker, and that keeps the
//! channel alive when RabbitMQ's consumer_timeout is shorter than the wait (on a node of
//! this test's own with consumer_timeout lowered to 2 s).

mod common;

use std::time::Duration;

use celeriac::{
    connect_broker, Config, Producer, Signature, SupervisorEvent, Task, TaskContext, TaskError,
    TaskEventKind, WorkerSystem,
};
use serde_json::json;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// `eta.probe()`: answers how many milliseconds after its ETA it started (negative: early).
struct Probe;

impl Task for Probe {
    const NAME: &'static str = "eta.probe";
    type Args = ();
    type Output = i64;
    async fn run(ctx: TaskContext, (): ()) -> Result<i64, TaskError> {
        let eta = ctx
            .eta
            .ok_or_else(|| TaskError::value_error("eta.probe needs an eta"))?;
        Ok((chrono::Utc::now() - eta).num_milliseconds())
    }
}

/// How early a task may seem to start against its ETA: none, by the mechanism (the worker
/// sleeps until the ETA read from the message, and timers never fire early); the 5 ms
/// allow for the wall clock being slewed by NTP between the ETA's reading and the task's.
const CLOCK_SLEW_MS: i64 = 5;

/// Asserts that an `eta.probe` outcome is a success that started no earlier than its ETA.
fn assert_not_early(kind: &TaskEventKind) {
    match kind {
        TaskEventKind::Succeeded { result } => {
            let late_ms = result.as_i64().expect("eta.probe answers milliseconds");
            assert!(
                late_ms >= -CLOCK_SLEW_MS,
                "the task started {} ms before its ETA",
                -late_ms
            );
        }
        other => panic!("expected eta.probe to succeed, got {other:?}"),
    }
}

#[actix_rt::test]
async fn held_eta_tasks_widen_the_window_so_other_tasks_run_meanwhile() {
    let mut config = config(1);
    config.prefetch_multiplier = Some(1); // a window of one: without widening, one ETA task blocks all
    let broker = connect(&config).await;
    let queue = unique_queue("eta-window");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .register::<Probe>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    // Due in 10 minutes less a minute (within the horizon: held in the worker). The
    // immediate tasks cannot wait for them: if the window were not widened, they would
    // not be delivered before the ETA tasks ran, and the wait below would time out. No
    // race with the ETA whatever the machine's speed.
    let mut later = Vec::new();
    for _ in 0..3 {
        let signature = Signature::new(Probe::NAME)
            .with_countdown(Duration::from_secs(540))
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
    events
        .wait_until(WAIT, "the three immediate tasks to succeed", |seen| {
            now.iter().all(|id| {
                seen.iter()
                    .any(|event| event.task_id.as_ref() == Some(id) && succeeded(event))
            })
        })
        .await;
    // The three ETA tasks are held by the worker, unacked (the window was widened by
    // three), and none of them started.
    wait_for_counts(
        "the three ETA tasks held unacked by the worker",
        WAIT,
        &[&queue],
        |counts| counts == [(0, 3)],
    )
    .await;
    events.take_ready();
    assert!(
        !events.seen().iter().any(|event| event
            .task_id
            .as_ref()
            .is_some_and(|id| later.contains(id))
            && event.kind == TaskEventKind::Started),
        "an ETA task due in 9 minutes started: {:?}",
        events.seen()
    );
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_task_due_beyond_the_horizon_waits_in_the_broker_not_unacked_in_the_worker() {
    let mut config = config(2);
    // The wait queue's TTL is the horizon: the message waits there 6 s, then it is due
    // within the horizon and held by the worker until its ETA (8 s after the send). The
    // 6 s stay leaves room for several rabbitmqctl readings (0.4 to 1 s each, a few
    // seconds on a loaded machine: three 2 s stays were all missed once under load).
    config.eta_horizon = Duration::from_millis(6000);
    let broker = connect(&config).await;
    let queue = unique_queue("eta-far");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
    let worker = builder.register::<Probe>().start().await.expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let signature = Signature::new(Probe::NAME)
        .with_countdown(Duration::from_millis(8000))
        .with_queue(queue.clone());
    let id = producer.send_signature(signature).await.expect("sent");
    let deferred = events
        .wait_for(WAIT, "the task to be deferred", |event| {
            matches!(event.kind, TaskEventKind::Deferred { .. })
        })
        .await;
    let TaskEventKind::Deferred { wait_queue, .. } = deferred.kind else {
        unreachable!("matched above")
    };
    assert_eq!(deferred.task_id.as_deref(), Some(id.as_str()));
    // It waits in the wait queue; nothing is unacked in the task queue (both read in one
    // rabbitmqctl call).
    wait_for_counts(
        "the message to sit in the wait queue",
        WAIT,
        &[&wait_queue, &queue],
        |counts| counts == [(1, 0), (0, 0)],
    )
    .await;
    let outcome = events.outcome(WAIT, &id).await;
    assert_not_early(&outcome);
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue, &wait_queue]).await;
}

#[actix_rt::test]
async fn the_wait_queue_keeps_the_channel_alive_past_a_short_consumer_timeout() {
    init_logging();
    let node = PrivateNode::with_consumer_timeout(2000);
    // The two horizons at once, each with a connection, queue and worker of its own: the
    // consumer_timeout of one channel does not touch the other's, and each case waits 6 s.
    futures::join!(
        consumer_timeout_case(&node.url, 1000),
        consumer_timeout_case(&node.url, 60_000)
    );
}

/// A 6 s countdown task on a worker of the node at `url` whose ETA horizon is `horizon_ms`:
/// below the node's 2 s consumer_timeout, the channel is never closed; above it, RabbitMQ
/// closes the channel of the held delivery (the control).
async fn consumer_timeout_case(url: &str, horizon_ms: u64) {
    let config = Config {
        broker_url: url.to_string(),
        concurrency: 2,
        eta_horizon: Duration::from_millis(horizon_ms),
        // The two cases run at once: each worker needs a node name of its own.
        hostname: format!(
            "timeout-{horizon_ms}-{}@celeriac-test",
            uuid::Uuid::new_v4().simple()
        ),
        ..Config::default()
    };
    let broker = connect_broker(&config).await.expect("the private node");
    let queue = unique_queue("consumer-timeout");
    let (events, mut received) = task_events();
    let (lifecycle, mut lifecycle_events) = collect::<SupervisorEvent>();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Probe>()
        .on_task_event(events)
        .on_supervisor_event(lifecycle)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let signature = Signature::new(Probe::NAME)
        .with_countdown(Duration::from_secs(6))
        .with_queue(queue.clone());
    let id = producer.send_signature(signature).await.expect("sent");
    let outcome = received.outcome(WAIT, &id).await;
    assert_not_early(&outcome);
    let closed_for_timeout = |event: &SupervisorEvent| {
        matches!(event, SupervisorEvent::Restarting { reason, .. }
            if reason.contains("PRECONDITION_FAILED"))
    };
    if horizon_ms < 2000 {
        // A channel closed by consumer_timeout would be closed while a delivery is held
        // (more than 2 s), so before that delivery could run: the run seen above
        // came from a later delivery, after any such closing. The supervisor reported
        // a closing seconds before the run, so it has reached the collector by now.
        lifecycle_events.take_ready();
        let restarts: Vec<&SupervisorEvent> = lifecycle_events
            .seen()
            .iter()
            .filter(|event| matches!(event, SupervisorEvent::Restarting { .. }))
            .collect();
        assert!(restarts.is_empty(), "the channel was closed: {restarts:?}");
    } else {
        // The control: held unacked for 6 s, the delivery outlives consumer_timeout.
        lifecycle_events
            .wait_for(
                WAIT,
                "RabbitMQ to close the channel of a delivery held past consumer_timeout",
                closed_for_timeout,
            )
            .await;
    }
    worker.stop().await.expect("stop");
    let wait_queue = format!("{queue}.celeriac.wait.{horizon_ms}ms");
    let _ = broker.delete_queue(&wait_queue).await;
    delete_queues(&broker, &[&queue]).await;
    broker.close().await.expect("close");
}

#[actix_rt::test]
async fn a_task_that_expires_while_it_waits_is_acked_revoked_and_not_run() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("expires");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
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
    // The worker reports the revocation; a revoked delivery is acked and gone, so nothing
    // can run it afterwards: what was seen up to the Revoked event is the whole story.
    let id = result.id().to_string();
    events
        .wait_for(WAIT, "the Revoked event", |event| {
            event.task_id.as_deref() == Some(id.as_str())
                && matches!(event.kind, TaskEventKind::Revoked { .. })
        })
        .await;
    let ran: Vec<_> = events
        .seen()
        .iter()
        .filter(|event| {
            matches!(
                event.kind,
                TaskEventKind::Started | TaskEventKind::Succeeded { .. }
            )
        })
        .collect();
    assert!(ran.is_empty(), "an expired task ran: {ran:?}");
    wait_for_counts(
        "the expired message to be acked",
        WAIT,
        &[&queue],
        |counts| counts == [(0, 0)],
    )
    .await;
    worker.stop().await.expect("stop");
    producer.close_results().await.expect("close");
    delete_queues(&broker, &[&queue]).await;
}

/// A task that expires while it waits for an executor slot (the only slot held by another
/// task) is not run when the slot frees: REVOKED ("expired"), as Celery checks expiry
/// before it executes a request.
#[actix_rt::test]
async fn a_task_that_expires_while_it_waits_for_a_slot_is_not_run() {
    // Task events on: the test sees when the task was received (before its expiry).
    let config = celeriac::Config {
        send_events: true,
        ..config(1)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("expires-slot");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .register::<Held>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("results");
    let gate = format!("expires-slot-{}", uuid::Uuid::new_v4());
    let holder = producer
        .send_signature(
            Signature::of::<Held>(&(gate.clone(),))
                .expect("encodes")
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    events
        .wait_for(WAIT, "the holder to start", |event| {
            event.task_id.as_deref() == Some(holder.as_str())
                && event.kind == TaskEventKind::Started
        })
        .await;
    let expires = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let result = producer
        .send_signature_with_result(
            Signature::of::<Add>(&AddArgs { x: 1, y: 1 })
                .expect("encodes")
                .with_expires(expires)
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    let id = result.id().to_string();
    events
        .wait_for(WAIT, "the task to be received", |event| {
            event.task_id.as_deref() == Some(id.as_str())
                && matches!(event.kind, TaskEventKind::Received(_))
        })
        .await;
    wait_until("the task's expiry to pass", WAIT, || {
        chrono::Utc::now() > expires
    })
    .await;
    open_gate(&gate);
    match result.get(WAIT).await {
        Err(celeriac::ResultError::Revoked { exception, .. }) => {
            assert_eq!(exception.exc_message, vec![json!("expired")]);
        }
        other => panic!("expected REVOKED (expired), got {other:?}"),
    }
    assert!(
        !events
            .seen()
            .iter()
            .any(|event| event.task_id.as_deref() == Some(id.as_str())
                && event.kind == TaskEventKind::Started),
        "the expired task ran"
    );
    worker.stop().await.expect("stop");
    producer.close_results().await.expect("close");
    delete_queues(&broker, &[&queue]).await;
}
