//! Sends while the broker is away, and shutdown: a send waits for the broker up to its
//! send timeout and then fails with a clear error; a second signal turns a worker's warm
//! shutdown cold, and the tasks it was running go back to their queue.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use celeriac::{connect_broker, Config, Producer, SendError, Signature};
use serde_json::json;

use common::proxy::Proxy;
use common::*;

#[actix_rt::test]
async fn a_send_waits_for_an_absent_broker_up_to_its_send_timeout_then_fails_clearly() {
    init_logging();
    let proxy = Proxy::for_url(&amqp_url());
    let config = Config {
        broker_url: proxy.url(&amqp_url()),
        send_timeout: Duration::from_millis(1500),
        ..common::config(1)
    };
    let broker = connect_broker(&config)
        .await
        .expect("the broker via the proxy");
    let queue = unique_queue("send-timeout");
    let producer = Producer::new(broker.clone(), &config);
    let signature = || {
        Signature::new("test.add")
            .with_args(vec![json!(1), json!(2)])
            .with_queue(queue.clone())
    };
    producer
        .send_signature(signature())
        .await
        .expect("a send while the broker is there");

    proxy.refuse(true);
    proxy.cut_all();
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        producer.send_signature(signature()),
    )
    .await
    .expect("the send returns instead of hanging");
    let waited = started.elapsed();
    match outcome {
        Err(SendError::Broker(error)) => {
            let text = error.to_string();
            assert!(
                text.contains("unreachable"),
                "the error says the broker is unreachable: {text}"
            );
            assert!(
                text.contains(&queue),
                "the error names what was being sent: {text}"
            );
        }
        other => panic!("expected a send error after the send timeout, got {other:?}"),
    }
    // The send's deadline is set when the broker actor takes it, after `started`: it
    // cannot give up sooner (timers never fire early). No upper bound but the 30 s above,
    // which only catches a hang.
    assert!(
        waited >= Duration::from_millis(1500),
        "the send gave up after {waited:?}; its send timeout is 1.5 s"
    );

    proxy.refuse(false);
    // Back: sends succeed again. A send that failed may still have reached the queue (its
    // frames left before the failure was seen, its confirm was lost: at-least-once), so the
    // queue holds the first message, the one that succeeded after the outage, and at most
    // one per failed send: the one that timed out during the outage and each failed retry.
    let direct = connect(&common::config(1)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failed_attempts = 0;
    loop {
        match producer.send_signature(signature()).await {
            Ok(_) => break,
            Err(error) => {
                failed_attempts += 1;
                assert!(Instant::now() < deadline, "sends did not recover: {error}");
            }
        }
    }
    let queued = direct.count_messages(&queue).await.expect("count");
    assert!(
        (2..=3 + failed_attempts).contains(&queued),
        "{queued} messages queued: expected the first send, the one that succeeded after the \
         outage, and at most {} from failed sends",
        1 + failed_attempts
    );
    delete_queues(&direct, &[&queue]).await;
}

/// Starts an `interop` worker process on `queue` (early acks). Its log lines are copied
/// to this test's stderr and collected in the returned `Collected`, so the test can wait
/// for what the worker says it did.
fn interop_worker(queue: &str) -> (KillOnDrop, Collected<String>) {
    let mut child = common::example_command("interop")
        .env("CELERIAC_RESULT_BACKEND", "rpc://")
        .env("CELERIAC_BROKER_URL", amqp_url())
        .env("CELERIAC_QUEUE", queue)
        .env("CELERIAC_CONCURRENCY", "2")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the interop worker starts");
    let stderr = child.stderr.take().expect("the worker's stderr");
    let (lines, received) = futures::channel::mpsc::unbounded();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            let _ = lines.unbounded_send(line);
        }
    });
    (KillOnDrop(child), Collected::new(received))
}

#[actix_rt::test]
async fn a_second_signal_makes_the_shutdown_cold_and_running_tasks_go_back_to_the_queue() {
    let config = common::config(1);
    let broker = connect(&config).await;
    let queue = unique_queue("cold-shutdown");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("results");
    let (mut first, mut log) = interop_worker(&queue);
    let mut results = Vec::new();
    // 10 s tasks: the two signals below come within a few seconds of their start even on
    // a loaded machine (two rabbitmqctl calls and a log line), so they are still running
    // when the shutdown turns cold. The worker's log says so; the test checks it.
    for _ in 0..2 {
        let sleep = Signature::new("interop.sleep")
            .with_args(vec![json!(10)])
            .with_queue(queue.clone());
        results.push(
            producer
                .send_signature_with_result(sleep)
                .await
                .expect("sent"),
        );
    }
    // Both running: taken from the queue and acked when they started (early ack).
    wait_until_async(
        "both tasks to be running on the first worker",
        Duration::from_secs(30),
        || async {
            queue_counts_async(&queue).await == (0, 0) && queue_consumers_async(&queue).await == 1
        },
    )
    .await;

    // Two signals sent back to back may merge into one: the second is sent once the
    // worker said it handled the first.
    first.signal(libc::SIGTERM);
    log.wait_for(
        Duration::from_secs(30),
        "the worker to log that the first SIGTERM started a warm shutdown",
        |line| line.contains("SIGTERM received: warm shutdown"),
    )
    .await;
    first.signal(libc::SIGTERM);
    let exit = first.wait_exit(Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "the worker exited with {exit} after a cold shutdown"
    );
    // Cold, not warm: the two running tasks were put back (a warm shutdown would have
    // waited for them to finish, and nothing would be back in the queue).
    log.wait_for(
        Duration::from_secs(10),
        "the worker to log that the second signal made the shutdown cold",
        |line| line.contains("second signal: cold shutdown"),
    )
    .await;
    log.wait_for(
        Duration::from_secs(10),
        "the worker to log that it put the 2 running tasks back",
        |line| line.contains("cold shutdown: 2 running task(s) put back in their queues"),
    )
    .await;
    wait_for_counts(
        "the two running tasks back in the queue",
        Duration::from_secs(30),
        &[&queue],
        |counts| counts[0].0 == 2,
    )
    .await;

    let (mut second, _second_log) = interop_worker(&queue);
    for result in &results {
        assert_eq!(
            result
                .get(Duration::from_secs(30))
                .await
                .expect("run by the second worker"),
            json!(10.0)
        );
    }
    let exit = second.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the second worker exited with {exit}");
    producer.close_results().await.expect("close");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_publish_the_broker_keeps_nacking_is_retried_then_reported() {
    use celeriac::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
    use celeriac::actors::{OutboundMessage, QueueSpec};
    let config = Config {
        send_timeout: Duration::from_millis(1500),
        ..common::config(1)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("nacked");
    // A full queue that refuses more: RabbitMQ nacks every publish beyond the first.
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    broker
        .declare_queue(QueueSpec {
            arguments,
            bindings: Vec::new(),
            ..QueueSpec::durable(&queue)
        })
        .await
        .expect("declared");
    let message = || OutboundMessage {
        exchange: String::new(),
        routing_key: queue.clone(),
        properties: BasicProperties::default(),
        body: b"x".to_vec(),
    };
    broker
        .publish(message())
        .await
        .expect("the first publish fits");
    let started = Instant::now();
    let refused = broker
        .publish(message())
        .await
        .expect_err("the second is nacked");
    let waited = started.elapsed();
    let text = refused.to_string();
    assert!(
        text.contains("nacked"),
        "the error reports the nack: {text}"
    );
    assert!(
        waited >= Duration::from_millis(1400),
        "the nacked publish was retried for the send timeout, not given up after {waited:?}"
    );
    assert_eq!(broker.count_messages(&queue).await.expect("count"), 1);
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn subscribers_are_told_when_the_connection_goes_down_and_comes_back() {
    use celeriac::actors::{ConnectionEvent, SubscribeConnection};
    init_logging();
    let proxy = Proxy::for_url(&amqp_url());
    let config = Config {
        broker_url: proxy.url(&amqp_url()),
        ..common::config(1)
    };
    let broker = connect_broker(&config)
        .await
        .expect("the broker via the proxy");
    let (listener, mut events) = collect::<ConnectionEvent>();
    broker
        .subscribe_connection
        .send(SubscribeConnection(listener))
        .await
        .expect("subscribed");

    proxy.refuse(true);
    proxy.cut_all();
    let down = events
        .wait_for(Duration::from_secs(30), "a Down event", |event| {
            matches!(event, ConnectionEvent::Down { .. })
        })
        .await;
    let ConnectionEvent::Down { reason } = down else {
        unreachable!("matched above")
    };
    assert!(!reason.is_empty(), "Down says why");
    proxy.refuse(false);
    events
        .wait_for(
            Duration::from_secs(30),
            "an Up event once the broker is reachable again",
            |event| *event == ConnectionEvent::Up,
        )
        .await;
    // Up came after Down (a collector keeps the order of arrival).
    let order: Vec<&ConnectionEvent> = events.seen().iter().collect();
    let down_at = order
        .iter()
        .position(|event| matches!(event, ConnectionEvent::Down { .. }));
    let up_at = order
        .iter()
        .position(|event| **event == ConnectionEvent::Up);
    assert!(down_at < up_at, "Down, then Up: {order:?}");
    let queue = unique_queue("connection-events");
    broker
        .declare_queue(celeriac::actors::QueueSpec::durable(&queue))
        .await
        .expect("the connection works again");
    delete_queues(&broker, &[&queue]).await;
}
