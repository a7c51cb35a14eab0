//! Routing on a real RabbitMQ: task routes by glob, a task's own default queue, priority
//! queues declared exactly as Python declares them, and quorum queues.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use celeriac::task::TaskOptions;
use celeriac::{
    Producer, QueueConfig, Signature, Task, TaskContext, TaskError, TaskEventKind, TaskRoute,
    WorkerSystem,
};
use serde_json::json;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// `route.echo(n)`: returns n; registered under several names below.
macro_rules! echo_task {
    ($ty:ident, $name:literal, $queue:expr) => {
        struct $ty;
        impl Task for $ty {
            const NAME: &'static str = $name;
            type Args = (i64,);
            type Output = i64;
            async fn run(_: TaskContext, (n,): (i64,)) -> Result<i64, TaskError> {
                Ok(n)
            }
            fn options() -> TaskOptions {
                TaskOptions {
                    queue: $queue,
                    ..TaskOptions::default()
                }
            }
        }
    };
}

echo_task!(Report, "route.report.monthly", None);
/// The default queue of `route.mail` (a task's options are static, so the name is fixed;
/// the private node of scripts/test is fresh for every run).
const MAIL_QUEUE: &str = "celeriac-test.route-mail";

echo_task!(Mail, "route.mail", Some(MAIL_QUEUE.to_string()));
echo_task!(Other, "route.other", None);

#[actix_rt::test]
async fn tasks_go_by_route_then_by_their_own_default_queue_then_to_the_default_queue() {
    let reports = unique_queue("route-reports");
    let mail = MAIL_QUEUE.to_string();
    let fallback = unique_queue("route-default");
    let mut config = config(2);
    config.default_queue = fallback.clone();
    config.task_routes = vec![TaskRoute::new("route.report.*", &reports)];
    let broker = connect(&config).await;
    let (events, mut received) = task_events();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&reports)
        .queue(&mail)
        .queue(&fallback)
        .register::<Report>()
        .register::<Mail>()
        .register::<Other>()
        .on_task_event(events)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let mut expected = HashMap::new();
    let by_route = producer
        .send_signature(Signature::new("route.report.monthly").with_args(vec![json!(1)]))
        .await
        .expect("sent");
    expected.insert(by_route, reports.clone());
    let by_default = producer.send::<Mail>(&(2,)).await.expect("sent");
    expected.insert(by_default, mail.clone());
    let by_config = producer.send::<Other>(&(3,)).await.expect("sent");
    expected.insert(by_config, fallback.clone());
    let explicit = producer
        .send_signature(
            Signature::new("route.report.monthly")
                .with_args(vec![json!(4)])
                .with_queue(fallback.clone()),
        )
        .await
        .expect("sent");
    expected.insert(explicit, fallback.clone());

    received
        .wait_count(WAIT, "four successes", 4, succeeded)
        .await;
    let seen: HashMap<String, String> = received
        .seen()
        .iter()
        .filter(|event| succeeded(event))
        .map(|event| {
            (
                event.task_id.clone().unwrap_or_default(),
                event.queue.clone(),
            )
        })
        .collect();
    assert_eq!(seen, expected);
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&reports, &mail, &fallback]).await;
}

#[actix_rt::test]
async fn a_priority_queue_declared_by_python_is_shared_and_higher_priorities_run_first() {
    let queue = unique_queue("priority");
    // Python (kombu, as Celery with task_queue_max_priority=10) declares the queue first.
    let declared = Command::new(python())
        .arg("-c")
        .arg(
            "import sys\n\
             from kombu import Connection, Exchange, Queue\n\
             with Connection(sys.argv[1]) as conn:\n\
             \x20   Queue(sys.argv[2], Exchange(sys.argv[2]), routing_key=sys.argv[2],\n\
             \x20         max_priority=10)(conn.default_channel).declare()\n",
        )
        .arg(amqp_url())
        .arg(&queue)
        .output()
        .expect("python runs");
    assert!(
        declared.status.success(),
        "Python could not declare the queue: {}",
        String::from_utf8_lossy(&declared.stderr)
    );

    let mut config = config(1);
    config.prefetch_multiplier = Some(1);
    config
        .queues
        .push(QueueConfig::new(&queue).with_max_priority(10));
    let broker = connect(&config).await;
    let producer = Producer::new(broker.clone(), &config);
    let mut high = Vec::new();
    for i in 0..5 {
        let low = Signature::of::<Add>(&AddArgs { x: i, y: 0 })
            .expect("encodes")
            .with_priority(1);
        producer
            .send_signature(low.with_queue(queue.clone()))
            .await
            .expect("the same declaration as Python's is accepted");
    }
    for i in 0..5 {
        let urgent = Signature::of::<Add>(&AddArgs { x: i, y: 100 })
            .expect("encodes")
            .with_priority(9);
        high.push(
            producer
                .send_signature(urgent.with_queue(queue.clone()))
                .await
                .expect("sent"),
        );
    }
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("the worker declares the queue as Python did");
    received
        .wait_count(WAIT, "ten successes", 10, succeeded)
        .await;
    // One slot and a window of one: tasks run one after the other, in delivery order.
    let order: Vec<String> = received
        .seen()
        .iter()
        .filter(|event| succeeded(event))
        .map(|event| event.task_id.clone().unwrap_or_default())
        .collect();
    let first_five: Vec<_> = order[..5].to_vec();
    assert!(
        first_five.iter().all(|id| high.contains(id)),
        "the priority-9 tasks ran first; order: {order:?}, high: {high:?}"
    );
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_quorum_queue_is_consumed_with_per_consumer_qos_and_holds_eta_tasks() {
    let queue = unique_queue("quorum");
    let mut config = config(2);
    config.queues.push(QueueConfig::new(&queue).quorum());
    let broker = connect(&config).await;
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("a quorum queue refuses global QoS: the worker must not ask for it");
    let producer = Producer::new(broker.clone(), &config);
    let now = producer
        .send_signature(
            Signature::of::<Add>(&AddArgs { x: 1, y: 1 })
                .expect("encodes")
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    let later = producer
        .send_signature(
            Signature::of::<Add>(&AddArgs { x: 2, y: 2 })
                .expect("encodes")
                // Due 3 s after the immediate task, which needs milliseconds: the order
                // below holds on a loaded machine too.
                .with_countdown(Duration::from_secs(3))
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    received.wait_count(WAIT, "both tasks", 2, succeeded).await;
    let failed: Vec<_> = received
        .seen()
        .iter()
        .filter(|event| matches!(event.kind, TaskEventKind::Failed { .. }))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let done: Vec<String> = received
        .seen()
        .iter()
        .filter(|event| succeeded(event))
        .map(|event| event.task_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(done, vec![now, later]);
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}
