//! Task events switched at run time (`WorkerSystem::task_events`), watched from a plain
//! AMQP consumer bound to `celeryev` as monitors bind: off by default, on after `enable()`,
//! off again after `disable()`, while heartbeats count every task; a heartbeat when the
//! `heartbeat` command asks; worker-offline at `stop()`.

mod common;

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

use common::*;

/// How long any one expected event may take to show up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A monitor: an exclusive queue bound to `celeryev` with `#`, and the events of one node.
struct Monitor {
    _connection: Connection,
    consumer: lapin::Consumer,
    hostname: String,
    events: Vec<Value>,
}

impl Monitor {
    async fn start(hostname: &str) -> Self {
        let runtime = async_rs::Runtime::tokio().expect("a runtime for lapin");
        let connection =
            Connection::connect_with_runtime(&amqp_url(), ConnectionProperties::default(), runtime)
                .await
                .expect("the monitor connects");
        let channel = connection.create_channel().await.expect("a channel");
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                "celeryev".into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .expect("celeryev declared as Celery declares it");
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare("".into(), exclusive, FieldTable::default())
            .await
            .expect("a monitor queue");
        channel
            .queue_bind(
                queue.name().as_str().into(),
                "celeryev".into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bound to celeryev");
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let consumer = channel
            .basic_consume(
                queue.name().as_str().into(),
                "monitor".into(),
                no_ack,
                FieldTable::default(),
            )
            .await
            .expect("consuming events");
        Monitor {
            _connection: connection,
            consumer,
            hostname: hostname.to_string(),
            events: Vec::new(),
        }
    }

    /// Receives events until `condition` holds on this node's events.
    async fn wait_for(&mut self, what: &str, condition: impl Fn(&[Value]) -> bool) {
        while !condition(&self.events) {
            let delivery = match tokio::time::timeout(EVENT_TIMEOUT, self.consumer.next()).await {
                Ok(Some(Ok(delivery))) => delivery,
                other => panic!(
                    "{what} did not happen (last receive: {:?}); events seen: {:?}",
                    other.map(|next| next.map(|result| result.map(|_| ()))),
                    self.kinds()
                ),
            };
            let body: Value = serde_json::from_slice(&delivery.data).expect("an event is JSON");
            let batch = match body {
                Value::Array(events) => events,
                single => vec![single],
            };
            self.events.extend(
                batch
                    .into_iter()
                    .filter(|event| event["hostname"] == self.hostname.as_str()),
            );
        }
    }

    fn kinds(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .map(|e| (e["type"].to_string(), e["uuid"].to_string()))
            .collect()
    }

    fn task_events(&self, id: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|event| event["uuid"] == id)
            .map(|event| event["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Two heartbeats with no task running and at least `processed` started: any task event
/// of those tasks was buffered before the first and published (within 0.1 s) before the
/// second, 2 s later.
fn settled(processed: u64) -> impl Fn(&[Value]) -> bool {
    move |events| {
        events
            .iter()
            .filter(|e| {
                e["type"] == "worker-heartbeat"
                    && e["active"] == 0
                    && e["processed"].as_u64() >= Some(processed)
            })
            .count()
            >= 2
    }
}

#[actix_rt::test]
async fn task_events_follow_the_run_time_switch_and_heartbeats_count_every_task() {
    let mut config = config(2);
    let queue = unique_queue("events-switch");
    config.hostname = format!("{queue}@events-test");
    let broker = connect(&config).await;
    let mut monitor = Monitor::start(&config.hostname).await;
    let (builder, mut outcomes) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("the worker starts");
    let switch = worker.task_events();
    assert!(!switch.enabled(), "task events are off by default");
    monitor
        .wait_for("worker-online", |events| {
            events.iter().any(|e| e["type"] == "worker-online")
        })
        .await;
    let producer = celeriac::Producer::new(broker.clone(), &config);
    let mut run = async |n: i64| {
        let signature = celeriac::Signature::new("test.add")
            .with_args(vec![n.into(), n.into()])
            .with_queue(&queue);
        let id = producer.send_signature(signature).await.expect("sent");
        let outcome = outcomes.outcome(EVENT_TIMEOUT, &id).await;
        assert!(
            matches!(outcome, celeriac::TaskEventKind::Succeeded { .. }),
            "{outcome:?}"
        );
        id
    };

    let off = run(1).await;
    monitor
        .wait_for("heartbeats after task 1", settled(1))
        .await;
    assert_eq!(
        monitor.task_events(&off),
        Vec::<String>::new(),
        "events while off"
    );

    switch.enable();
    let on = run(2).await;
    monitor
        .wait_for("task-succeeded of task 2", |events| {
            events
                .iter()
                .any(|e| e["type"] == "task-succeeded" && e["uuid"] == on.as_str())
        })
        .await;
    assert_eq!(
        monitor.task_events(&on),
        ["task-received", "task-started", "task-succeeded"],
        "events once enabled"
    );

    switch.disable();
    let off_again = run(3).await;
    monitor
        .wait_for("heartbeats after task 3", settled(3))
        .await;
    assert_eq!(
        monitor.task_events(&off_again),
        Vec::<String>::new(),
        "events once disabled"
    );

    // The `heartbeat` remote-control command: one heartbeat at once, with Celery's freq 5.
    producer
        .broadcast("heartbeat", serde_json::Map::new())
        .await
        .expect("the command is sent");
    monitor
        .wait_for("the requested heartbeat (freq 5)", |events| {
            events
                .iter()
                .any(|e| e["type"] == "worker-heartbeat" && e["freq"] == 5)
        })
        .await;

    worker.stop().await.expect("a warm stop");
    monitor
        .wait_for("worker-offline", |events| {
            events
                .iter()
                .any(|e| e["type"] == "worker-offline" && e["processed"] == 3)
        })
        .await;
    delete_queues(&broker, &[&queue]).await;
}
