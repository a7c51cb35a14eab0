//! Remote control against a celeriac worker with Python Celery 5.7's own CLI:
//! `celery inspect ping|registered|stats|active_queues|clock|conf`, `celery status`, an
//! unknown command, a malformed request, and a second worker with the same node name.

mod common;
#[path = "common/control.rs"]
mod control;

use celeriac::actors::amqp::BasicProperties;
use celeriac::actors::OutboundMessage;
use celeriac::Config;
use common::{connect, unique_queue, Add, Slow};
use serde_json::{json, Value};

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
