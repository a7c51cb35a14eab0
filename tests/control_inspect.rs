//! Remote control against a celeriac worker with Python Celery 5.7's own CLI:
//! `celery inspect ping|registered|stats|active_queues|clock|conf`, `celery status`, an
//! unknown command, a malformed request, a second worker with the same node name, and
//! `celery control add_consumer|cancel_consumer|shutdown` against a worker process.

mod common;
#[path = "common/control.rs"]
mod control;

use celeriac::actors::amqp::BasicProperties;
use celeriac::actors::OutboundMessage;
use celeriac::{Config, Producer, Signature};
use common::redis_server::redis_url;
use common::{connect, unique_queue, Add, Slow};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

fn node_config(node: &str) -> Config {
    Config {
        hostname: node.to_string(),
        ..common::config(2)
    }
}

#[actix_rt::test]
async fn inspect_commands_answer_as_celery() {
    let node = control::unique_node("inspect");
    let queue = unique_queue("control-inspect");
    let config = node_config(&node);
    let broker = connect(&config).await;
    let (builder, _events) = common::test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .register::<Slow>()
        .start()
        .await
        .expect("worker starts");

    assert_eq!(
        control::inspect(&node, "ping", &[]).await,
        json!({"ok": "pong"})
    );
    assert_eq!(
        control::inspect(&node, "registered", &[]).await,
        json!(["test.add", "test.slow"])
    );
    let stats = control::inspect(&node, "stats", &[]).await;
    for key in [
        "total",
        "pid",
        "clock",
        "uptime",
        "pool",
        "broker",
        "prefetch_count",
    ] {
        assert!(stats.get(key).is_some(), "stats has no {key}: {stats}");
    }
    assert_eq!(stats["pid"], json!(std::process::id()));
    assert_eq!(stats["pool"]["max-concurrency"], json!(2));
    assert!(
        !stats["broker"].to_string().contains("guest:guest"),
        "no password in stats: {stats}"
    );
    let queues = control::inspect(&node, "active_queues", &[]).await;
    assert_eq!(queues.as_array().map(Vec::len), Some(1), "{queues}");
    assert_eq!(queues[0]["name"], json!(queue));
    assert_eq!(queues[0]["routing_key"], json!(queue));
    assert_eq!(queues[0]["exchange"]["type"], json!("direct"));
    let clock = control::inspect(&node, "clock", &[]).await;
    assert!(
        clock["clock"].as_u64().is_some_and(|clock| clock > 0),
        "{clock}"
    );
    let conf = control::inspect(&node, "conf", &[]).await;
    assert_eq!(conf["task_default_queue"], json!("celery"));
    assert!(
        !conf.to_string().contains("guest:guest"),
        "no password in conf: {conf}"
    );

    let status = control::celery(&["status", "--timeout", "10"]).await;
    assert!(
        status.stdout.contains(&format!("{node}: OK")),
        "celery status lists the node: {status:?}"
    );
    worker.stop().await.expect("stops");
    common::delete_queues(&broker, &[&queue]).await;
}

/// Publishes a raw request to `celery.pidbox` as Celery's `Mailbox` does.
async fn publish_request(broker: &celeriac::BrokerClient, body: Vec<u8>) {
    broker
        .publish(OutboundMessage {
            exchange: "celery.pidbox".into(),
            routing_key: String::new(),
            properties: BasicProperties::default()
                .with_content_type("application/json".into())
                .with_content_encoding("utf-8".into()),
            body,
        })
        .await
        .expect("request published");
}

#[actix_rt::test]
async fn unknown_and_malformed_requests() {
    let node = control::unique_node("unknown");
    let queue = unique_queue("control-unknown");
    let config = node_config(&node);
    let broker = connect(&config).await;
    let (builder, _events) = common::test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("worker starts");
    // Celery's CLI refuses unknown commands itself; its API sends them.
    let script = "import json, sys\nfrom celery import Celery\napp = Celery(broker=sys.argv[1])\n\
         print(json.dumps(app.control.broadcast('no_such_command', destination=[sys.argv[2]], reply=True, timeout=10, limit=1)))".to_string();
    let run = actix_rt::task::spawn_blocking({
        let node = node.clone();
        move || {
            std::process::Command::new(common::python())
                .args(["-c", &script, &common::amqp_url(), &node])
                .output()
                .expect("python runs")
        }
    })
    .await
    .expect("thread");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let replies: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "a JSON list: {stdout} {}",
            String::from_utf8_lossy(&run.stderr)
        )
    });
    assert_eq!(
        replies,
        json!([{ node.clone(): {"error": "KeyError('no_such_command')"} }])
    );
    // Garbage, a body without a method, a wrong type: logged and dropped; the worker
    // still answers.
    publish_request(&broker, b"{not json".to_vec()).await;
    publish_request(&broker, br#"{"arguments": {}}"#.to_vec()).await;
    publish_request(&broker, br#"{"method": 3, "destination": "x"}"#.to_vec()).await;
    assert_eq!(
        control::inspect(&node, "ping", &[]).await,
        json!({"ok": "pong"})
    );
    worker.stop().await.expect("stops");
    common::delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_second_worker_with_the_same_name_is_refused() {
    let node = control::unique_node("duplicate");
    let queue = unique_queue("control-duplicate");
    let config = node_config(&node);
    let first_broker = connect(&config).await;
    let (builder, _events) = common::test_worker(&first_broker, &config, &queue);
    let first = builder
        .register::<Add>()
        .start()
        .await
        .expect("first worker starts");
    // Its own connection, as a second process would have.
    let second_broker = connect(&config).await;
    let (builder, _events) = common::test_worker(&second_broker, &config, &queue);
    let refused = builder.register::<Add>().start().await;
    let error = match refused {
        Ok(_) => panic!("a second worker named {node} started"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("is in use by another live worker") && error.contains(&node),
        "{error}"
    );
    // The first one is unaffected.
    assert_eq!(
        control::inspect(&node, "ping", &[]).await,
        json!({"ok": "pong"})
    );
    first.stop().await.expect("stops");
    // Once it is gone, the name is free again (the exclusive queue goes with its
    // connection; closing the first worker's broker frees it).
    first_broker.close().await.expect("closed");
    common::delete_queues(&second_broker, &[&queue]).await;
}

/// The names `celery inspect active_queues` lists for `node`.
async fn active_queue_names(node: &str) -> Vec<String> {
    let queues = control::inspect(node, "active_queues", &[]).await;
    queues
        .as_array()
        .unwrap_or_else(|| panic!("active_queues is a list: {queues}"))
        .iter()
        .map(|queue| queue["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `celery control add_consumer` makes a worker consume a new queue (a task sent there runs,
/// `active_queues` lists it), `cancel_consumer` stops that (no consumer left, no longer
/// listed), and `celery control shutdown` ends the worker process. Every command is
/// addressed to this test's node.
#[actix_rt::test]
async fn consumers_come_and_go_then_shutdown_ends_the_worker() {
    let node = control::unique_node("consumers");
    let queue = unique_queue("control-consumers");
    let extra = unique_queue("control-consumers-extra");
    let mut worker = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", redis_url())
            .env("CELERIAC_QUEUE", &queue)
            .env("CELERIAC_HOSTNAME", &node)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    common::wait_until_async(
        "the worker to answer celery inspect ping",
        Duration::from_secs(60),
        || {
            let node = node.clone();
            async move {
                let run =
                    control::celery(&["inspect", "ping", "-d", &node, "--timeout", "2"]).await;
                run.code == Some(0)
            }
        },
    )
    .await;
    assert_eq!(active_queue_names(&node).await, [queue.as_str()]);

    // add_consumer: listed, consumed, and a task sent there runs.
    assert_eq!(
        control::control(&node, "add_consumer", &[&extra]).await,
        json!({"ok": format!("add consumer {extra}")})
    );
    common::wait_until_async(
        "a consumer on the queue add_consumer named",
        Duration::from_secs(30),
        || {
            let extra = extra.clone();
            async move { common::queue_consumers_async(&extra).await == 1 }
        },
    )
    .await;
    assert_eq!(
        active_queue_names(&node).await,
        [queue.as_str(), extra.as_str()]
    );
    let config = Config {
        result_backend: Some(redis_url()),
        hostname: control::unique_node("consumers-producer"),
        ..common::config(1)
    };
    let broker = connect(&config).await;
    let producer = Producer::from_config(broker.clone(), &config)
        .await
        .expect("a producer");
    let sum = producer
        .send_signature_with_result(
            Signature::new("interop.add")
                .with_args(vec![json!(20), json!(22)])
                .with_queue(extra.clone()),
        )
        .await
        .expect("sent");
    assert_eq!(
        sum.get(Duration::from_secs(60)).await.ok(),
        Some(json!(42)),
        "the task sent to the added queue ran"
    );

    // add_consumer again for a queue consumed already: no second consumer.
    control::control(&node, "add_consumer", &[&extra]).await;
    assert_eq!(
        active_queue_names(&node).await,
        [queue.as_str(), extra.as_str()]
    );
    assert_eq!(common::queue_consumers_async(&extra).await, 1);

    // cancel_consumer: no longer listed, its consumer gone; the first queue stays.
    assert_eq!(
        control::control(&node, "cancel_consumer", &[&extra]).await,
        json!({"ok": format!("no longer consuming from {extra}")})
    );
    assert_eq!(active_queue_names(&node).await, [queue.as_str()]);
    common::wait_until_async(
        "the consumer of the cancelled queue to go",
        Duration::from_secs(30),
        || {
            let extra = extra.clone();
            async move { common::queue_consumers_async(&extra).await == 0 }
        },
    )
    .await;
    assert_eq!(common::queue_consumers_async(&queue).await, 1);

    // shutdown: the worker process ends, cleanly.
    assert_eq!(
        control::control(&node, "shutdown", &[]).await,
        json!({"ok": "shutting down"})
    );
    let exit = worker.wait_exit(Duration::from_secs(60)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&queue, &extra]).await;
}
