//! The worker end to end on a real RabbitMQ: exactly-once execution, routing by queue,
//! panics, warm shutdown mid-burst, consumer restarts, bad input, unreachable brokers, a
//! failover list whose first node is dead.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use celeriac::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use celeriac::actors::OutboundMessage;
use celeriac::protocol::ContentType;
use celeriac::{
    connect_broker, Config, Producer, RestartPolicy, Signature, SupervisorEvent, TaskEventKind,
    WorkerError, WorkerSystem,
};
use common::*;

#[actix_rt::test]
async fn a_thousand_tasks_are_each_executed_exactly_once() {
    let config = config(8);
    let broker = connect(&config).await;
    let queue = unique_queue("thousand");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("worker starts");
    let producer = Producer::new(broker.clone(), &config);

    let sends = (0..1000).map(|i| {
        let producer = producer.clone();
        let queue = queue.clone();
        async move {
            let signature = Signature::of::<Add>(&AddArgs { x: i, y: 1 })
                .expect("encodes")
                .with_queue(queue);
            producer.send_signature(signature).await
        }
    });
    let sent: Vec<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|sent| sent.expect("the broker confirms every send"))
        .collect();
    let expected: HashSet<String> = sent.iter().cloned().collect();
    assert_eq!(expected.len(), 1000, "task ids are unique");

    let mut executions: HashMap<String, usize> = HashMap::new();
    let mut successes = 0;
    received
        .wait_each(Duration::from_secs(120), "1,000 successes", |event| {
            if let TaskEventKind::Succeeded { .. } = event.kind {
                *executions
                    .entry(event.task_id.clone().unwrap_or_default())
                    .or_default() += 1;
                successes += 1;
            }
            successes == 1000
        })
        .await;
    worker.stop().await.expect("worker stops");

    let executed: HashSet<String> = executions.keys().cloned().collect();
    assert_eq!(executed, expected, "every sent task was executed");
    let twice: Vec<_> = executions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tasks executed more than once: {twice:?}");
    assert_eq!(
        broker.count_messages(&queue).await.expect("count"),
        0,
        "queue is empty"
    );
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn one_worker_consumes_two_queues_routed_by_name() {
    let config = config(4);
    let broker = connect(&config).await;
    let first = unique_queue("route-a");
    let second = unique_queue("route-b");
    let (events, mut received) = task_events();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&first)
        .queue(&second)
        .register::<Add>()
        .on_task_event(events)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker starts");
    let producer = Producer::new(broker.clone(), &config);

    let mut expected_queue = HashMap::new();
    for (i, queue) in [&first, &second, &first, &second].into_iter().enumerate() {
        let signature = Signature::of::<Add>(&AddArgs { x: i as i64, y: 0 })
            .expect("encodes")
            .with_queue(queue.clone());
        let id = producer.send_signature(signature).await.expect("sent");
        expected_queue.insert(id, queue.clone());
    }
    let mut seen = HashMap::new();
    received
        .wait_each(Duration::from_secs(30), "4 successes", |event| {
            if let TaskEventKind::Succeeded { .. } = event.kind {
                seen.insert(
                    event.task_id.clone().unwrap_or_default(),
                    event.queue.clone(),
                );
            }
            seen.len() == 4
        })
        .await;
    assert_eq!(
        seen, expected_queue,
        "each task ran from the queue it was sent to"
    );
    worker.stop().await.expect("worker stops");
    delete_queues(&broker, &[&first, &second]).await;
}

#[actix_rt::test]
async fn a_panicking_task_fails_and_the_worker_goes_on() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("panic");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .register::<Panic>()
        .start()
        .await
        .expect("worker starts");
    let producer = Producer::new(broker.clone(), &config);

    let mut panicking = HashSet::new();
    for _ in 0..5 {
        let signature = Signature::of::<Panic>(&("boom".to_string(),))
            .expect("encodes")
            .with_queue(queue.clone());
        panicking.insert(producer.send_signature(signature).await.expect("sent"));
    }
    let mut adds = HashSet::new();
    for i in 0..5 {
        let signature = Signature::of::<Add>(&AddArgs { x: i, y: i })
            .expect("encodes")
            .with_queue(queue.clone());
        adds.insert(producer.send_signature(signature).await.expect("sent"));
    }

    let (mut failed, mut succeeded) = (HashSet::new(), HashSet::new());
    received
        .wait_each(
            Duration::from_secs(30),
            "5 failures and 5 successes",
            |event| {
                let id = event.task_id.clone().unwrap_or_default();
                match &event.kind {
                    TaskEventKind::Failed { error } => {
                        assert_eq!(error.exc_type, "TaskPanicked");
                        assert!(
                            error.message.contains("boom"),
                            "the panic message is kept: {error}"
                        );
                        failed.insert(id);
                    }
                    TaskEventKind::Succeeded { .. } => {
                        succeeded.insert(id);
                    }
                    _ => {}
                }
                failed.len() + succeeded.len() == 10
            },
        )
        .await;
    assert_eq!(failed, panicking);
    assert_eq!(succeeded, adds);
    let status = worker.pool_status().await.expect("pool answers");
    assert_eq!(
        (status.capacity, status.running),
        (2, 0),
        "every slot is free again"
    );
    worker.stop().await.expect("worker stops");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_stop_in_the_middle_of_a_burst_loses_no_task() {
    let config = config(4);
    let broker = connect(&config).await;
    let queue = unique_queue("stop-burst");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Slow>()
        .start()
        .await
        .expect("worker starts");
    let producer = Producer::new(broker.clone(), &config);
    let mut sent = HashSet::new();
    for _ in 0..300 {
        let signature = Signature::of::<Slow>(&(20,))
            .expect("encodes")
            .with_queue(queue.clone());
        sent.insert(producer.send_signature(signature).await.expect("sent"));
    }

    let mut executed_before_stop = HashSet::new();
    received
        .wait_each(Duration::from_secs(60), "40 successes", |event| {
            if let TaskEventKind::Succeeded { .. } = event.kind {
                executed_before_stop.insert(event.task_id.clone().unwrap_or_default());
            }
            executed_before_stop.len() == 40
        })
        .await;
    worker.stop().await.expect("warm stop");
    // The tasks the worker held go back to the queue, and its last events reach the
    // channel, a little after the stop returns (the requeues travel on the consumer's
    // channel, the count asks on another, and RabbitMQ orders neither against the other):
    // read both until executed + queued make 300, or more (a task both run and queued,
    // which the assertion below refuses).
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        received.take_ready();
        for event in received.seen() {
            if let TaskEventKind::Succeeded { .. } = event.kind {
                executed_before_stop.insert(event.task_id.clone().unwrap_or_default());
            }
        }
        let left = broker.count_messages(&queue).await.expect("count") as usize;
        if executed_before_stop.len() + left >= 300 || Instant::now() >= deadline {
            break left;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        left > 0,
        "the stop came after the burst ended: the test proves nothing"
    );
    assert_eq!(
        executed_before_stop.len() + left,
        300,
        "executed ({}) + still queued ({left}) must be every task",
        executed_before_stop.len()
    );

    // A second worker executes exactly what the first one left.
    let (events, mut received) = task_events();
    let second = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Slow>()
        .on_task_event(events)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("second worker starts");
    let mut executed_after = HashSet::new();
    received
        .wait_each(Duration::from_secs(60), "the remaining tasks", |event| {
            if let TaskEventKind::Succeeded { .. } = event.kind {
                let id = event.task_id.clone().unwrap_or_default();
                assert!(
                    !executed_before_stop.contains(&id),
                    "task {id} executed twice"
                );
                executed_after.insert(id);
            }
            executed_after.len() == left
        })
        .await;
    second.stop().await.expect("second stop");
    let all: HashSet<String> = executed_before_stop
        .union(&executed_after)
        .cloned()
        .collect();
    assert_eq!(all, sent, "every task executed once across both workers");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_consumer_whose_channel_fails_is_restarted_and_consumes_again() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("restart");
    let (events, mut received) = task_events();
    let (lifecycle, mut lifecycle_events) = collect::<SupervisorEvent>();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Add>()
        .on_task_event(events)
        .on_supervisor_event(lifecycle)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker starts");
    let producer = Producer::new(broker.clone(), &config);
    let send = |i: i64| {
        let producer = producer.clone();
        let queue = queue.clone();
        async move {
            let signature = Signature::of::<Add>(&AddArgs { x: i, y: 1 })
                .expect("encodes")
                .with_queue(queue);
            producer.send_signature(signature).await.expect("sent")
        }
    };

    let before = send(1).await;
    received
        .wait_for(Duration::from_secs(30), "the first task to succeed", |e| {
            e.task_id.as_deref() == Some(&before)
                && matches!(e.kind, TaskEventKind::Succeeded { .. })
        })
        .await;

    worker
        .break_consumer(&queue)
        .await
        .expect("the channel error is injected");
    let restarting = lifecycle_events
        .wait_for(
            Duration::from_secs(30),
            "the supervisor to restart the consumer",
            |event| matches!(event, SupervisorEvent::Restarting { .. }),
        )
        .await;
    if let SupervisorEvent::Restarting { reason, .. } = &restarting {
        assert!(
            reason.contains("NOT_FOUND") || reason.contains("404") || reason.contains("not found"),
            "the failure names the channel error: {reason}"
        );
    }
    // The first start, then the restart.
    lifecycle_events
        .wait_count(
            Duration::from_secs(30),
            "the restarted consumer to start",
            2,
            |event| matches!(event, SupervisorEvent::Started { .. }),
        )
        .await;

    let after = send(2).await;
    let event = received
        .wait_for(Duration::from_secs(30), "a task after the restart", |e| {
            e.task_id.as_deref() == Some(&after)
                && matches!(e.kind, TaskEventKind::Succeeded { .. })
        })
        .await;
    assert_eq!(
        event.kind,
        TaskEventKind::Succeeded {
            result: serde_json::json!(3)
        }
    );
    worker.stop().await.expect("worker stops");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_consumer_failing_past_its_restart_limit_makes_the_worker_exit_with_an_error() {
    let config = config(1);
    let broker = connect(&config).await;
    let queue = unique_queue("give-up");
    let (lifecycle, mut lifecycle_events) = collect::<SupervisorEvent>();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Add>()
        .on_supervisor_event(lifecycle)
        .restart_policy(RestartPolicy {
            max_restarts: 1,
            window: Duration::from_secs(60),
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        })
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker starts");
    for round in 0..2 {
        lifecycle_events
            .wait_count(
                Duration::from_secs(30),
                &format!("consumer start {}", round + 1),
                round + 1,
                |e| matches!(e, SupervisorEvent::Started { .. }),
            )
            .await;
        worker
            .break_consumer(&queue)
            .await
            .unwrap_or_else(|error| panic!("breaking the channel, round {round}: {error}"));
    }
    lifecycle_events
        .wait_for(Duration::from_secs(30), "the supervisor to give up", |e| {
            matches!(e, SupervisorEvent::GaveUp { .. })
        })
        .await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), worker.run_until_signal())
        .await
        .expect("run_until_signal returns once the supervisor gave up");
    match outcome {
        Err(WorkerError::ConsumerGaveUp { queue: failed, .. }) => assert_eq!(failed, queue),
        other => panic!("expected ConsumerGaveUp, got {other:?}"),
    }
    delete_queues(&broker, &[&queue]).await;
}

/// Publishes a raw message with the given headers and body.
async fn publish_raw(
    broker: &celeriac::BrokerClient,
    queue: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert((*key).into(), AMQPValue::LongString((*value).into()));
    }
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(table);
    broker
        .publish(OutboundMessage {
            exchange: String::new(),
            routing_key: queue.to_string(),
            properties,
            body: body.to_vec(),
        })
        .await
        .expect("raw publish confirmed");
}

#[actix_rt::test]
async fn malformed_messages_and_unknown_tasks_are_rejected_and_the_worker_keeps_consuming() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("bad-input");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("worker starts");

    publish_raw(
        &broker,
        &queue,
        &[("task", "test.add"), ("id", "bad-json")],
        b"{not json",
    )
    .await;
    publish_raw(
        &broker,
        &queue,
        &[("task", "test.add"), ("id", "two-elements")],
        b"[[1, 2], {}]",
    )
    .await;
    publish_raw(
        &broker,
        &queue,
        &[("task", "test.add"), ("id", "not-an-array")],
        b"{\"x\": 1}",
    )
    .await;
    publish_raw(
        &broker,
        &queue,
        &[("task", "test.nope"), ("id", "unknown-task")],
        b"[[1, 2], {}, {}]",
    )
    .await;
    publish_raw(
        &broker,
        &queue,
        &[("task", "test.add"), ("id", "good")],
        b"[[1, 2], {}, {}]",
    )
    .await;

    let mut rejected = HashMap::new();
    let mut good = None;
    received
        .wait_each(
            Duration::from_secs(30),
            "4 rejections and 1 success",
            |event| {
                let id = event.task_id.clone().unwrap_or_default();
                match &event.kind {
                    TaskEventKind::Rejected { reason, requeue } => {
                        assert!(!requeue, "{id} is rejected without requeue");
                        rejected.insert(id, reason.clone());
                    }
                    TaskEventKind::Succeeded { result } => good = Some((id, result.clone())),
                    _ => {}
                }
                rejected.len() == 4 && good.is_some()
            },
        )
        .await;
    assert_eq!(good, Some(("good".to_string(), serde_json::json!(3))));
    let reason = |id: &str| {
        rejected
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} was not rejected"))
    };
    assert!(
        reason("bad-json").contains("JSON"),
        "{}",
        reason("bad-json")
    );
    assert!(
        reason("two-elements").contains('2') && reason("two-elements").contains('3'),
        "{}",
        reason("two-elements")
    );
    assert!(
        reason("not-an-array").contains("array"),
        "{}",
        reason("not-an-array")
    );
    assert!(
        reason("unknown-task").contains("test.nope"),
        "{}",
        reason("unknown-task")
    );
    worker.stop().await.expect("worker stops");
    assert_eq!(
        broker.count_messages(&queue).await.expect("count"),
        0,
        "rejected messages are not requeued"
    );
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn an_unreachable_broker_gives_a_clear_error_after_the_connect_timeout() {
    // A port nothing listens on: bind, note the port, close.
    let port = common::free_port();
    let config = Config {
        broker_url: format!("amqp://guest:secret@127.0.0.1:{port}/%2f"),
        connect_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    // Refused at once, or given up at the 2 s connect timeout: either way well within the
    // 20 s allowed here (the bound only catches a hang).
    let outcome = tokio::time::timeout(Duration::from_secs(20), connect_broker(&config))
        .await
        .expect("connect returns instead of hanging");
    let error = match outcome {
        Ok(_) => panic!("connected to a port nothing listens on"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(&format!("127.0.0.1:{port}")),
        "the error names the broker: {error}"
    );
    assert!(
        !error.contains("secret"),
        "the error hides the password: {error}"
    );
}

/// A failover list whose first node is dead (a closed port): startup skips it, connects to
/// the second (the test broker), and a task makes the round trip. Were only the first node
/// tried, connecting would fail.
#[actix_rt::test]
async fn startup_skips_a_dead_first_node_of_a_failover_list() {
    let port = common::free_port();
    let config = Config {
        broker_url: format!("amqp://guest:guest@127.0.0.1:{port}//;{}", amqp_url()),
        ..config(1)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("failover-startup");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("worker starts");
    let producer = Producer::new(broker.clone(), &config);
    let signature = Signature::of::<Add>(&AddArgs { x: 20, y: 22 })
        .expect("encodes")
        .with_queue(&queue);
    let id = producer
        .send_signature(signature)
        .await
        .expect("the send is confirmed through the second node");
    let event = wait_for_event(
        &mut received,
        Duration::from_secs(60),
        "the task sent through the second node to succeed",
        |event| {
            event.task_id.as_deref() == Some(id.as_str())
                && matches!(event.kind, TaskEventKind::Succeeded { .. })
        },
    )
    .await;
    assert!(
        matches!(&event.kind, TaskEventKind::Succeeded { result } if *result == serde_json::json!(42)),
        "{:?}",
        event.kind
    );
    worker.stop().await.expect("worker stops");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn wrong_credentials_give_a_clear_error() {
    let url = amqp_url().replacen("guest:guest", "guest:wrong-password", 1);
    let config = Config {
        broker_url: url,
        connect_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let outcome = tokio::time::timeout(Duration::from_secs(20), connect_broker(&config))
        .await
        .expect("connect returns instead of hanging");
    let error = match outcome {
        Ok(_) => panic!("connected with a wrong password"),
        Err(error) => error.to_string(),
    };
    assert!(
        !error.contains("wrong-password"),
        "the error hides the password: {error}"
    );
    assert!(error.contains("could not connect"), "{error}");
}

#[actix_rt::test]
async fn typed_arguments_sent_as_bincode_run_on_a_rust_worker() {
    // bincode is accepted only when the worker opts in.
    let config = Config {
        accept_content: vec![ContentType::Json, ContentType::Bincode],
        ..config(2)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("bincode");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("worker starts");
    let producer = Producer::new(broker.clone(), &config);
    let signature = Signature::of_bincode::<Add>(&AddArgs { x: 40, y: 2 })
        .expect("encodes")
        .with_queue(queue.clone());
    assert_eq!(signature.content_type().mime(), "application/x-bincode");
    let id = producer.send_signature(signature).await.expect("sent");
    let event = received
        .wait_for(
            Duration::from_secs(30),
            "the bincode task to run",
            |event| {
                event.task_id.as_deref() == Some(id.as_str())
                    && matches!(
                        event.kind,
                        TaskEventKind::Succeeded { .. } | TaskEventKind::Failed { .. }
                    )
            },
        )
        .await;
    assert_eq!(
        event.kind,
        TaskEventKind::Succeeded {
            result: serde_json::json!(42)
        }
    );
    worker.stop().await.expect("worker stops");
    delete_queues(&broker, &[&queue]).await;
}
