//! Flower 2.2 (from PyPI, pinned in tests/python/requirements.txt) against a celeriac
//! worker: its HTTP API lists the worker with its registered tasks and queues (remote
//! control), turns task events on (its `enable_events` broadcast) and shows the worker's
//! tasks with their states (events: `/api/task/info/<id>` and `/api/tasks`), and revokes a
//! task.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use celeriac::protocol::TaskState;
use celeriac::{AsyncResult, Config, Producer, Signature};
use common::redis_server::redis_url;
use serde_json::{json, Value};

/// One HTTP/1.0 request (so the answer is not chunked); the status code and JSON body,
/// `None` while nothing listens.
fn http(addr: &str, method: &str, path: &str) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    Some((
        status,
        serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    ))
}

async fn http_async(addr: &str, method: &'static str, path: &str) -> Option<(u16, Value)> {
    let (addr, path) = (addr.to_string(), path.to_string());
    actix_rt::task::spawn_blocking(move || http(&addr, method, &path))
        .await
        .ok()
        .flatten()
}

#[actix_rt::test]
async fn flower_lists_the_worker_shows_its_tasks_and_revokes() {
    let node = format!(
        "celeriac-flower-{}@localhost",
        uuid::Uuid::new_v4().simple()
    );
    let queue = common::unique_queue("flower");
    // Task events off: Flower turns them on with its enable_events broadcast.
    let mut worker = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", redis_url())
            .env("CELERIAC_QUEUE", &queue)
            .env("CELERIAC_HOSTNAME", &node)
            .env("CELERIAC_SEND_EVENTS", "false")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _flower = common::KillOnDrop(
        Command::new(common::python())
            .args(["-m", "celery", "-b", &common::amqp_url(), "flower"])
            .arg(format!("--port={port}"))
            .args(["--address=127.0.0.1", "--logging=warning"])
            .env("FLOWER_UNAUTHENTICATED_API", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("flower starts"),
    );

    // The worker, as Flower's /api/workers shows it (through inspect broadcasts).
    let workers_path = "/api/workers?refresh=true";
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let listed = loop {
        if let Some((200, body)) = http_async(&addr, "GET", workers_path).await {
            if body[&node]["registered"].is_array() {
                break body[&node].clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Flower's /api/workers did not list {node} with its registered tasks within 90 s"
        );
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    };
    let registered = listed["registered"].as_array().expect("registered");
    assert!(
        registered.contains(&json!("interop.add")),
        "registered: {registered:?}"
    );
    let queues: Vec<&str> = listed["active_queues"]
        .as_array()
        .expect("active_queues")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(queues, [queue.as_str()], "{listed}");
    assert!(listed["stats"]["pool"].is_object(), "{listed}");

    // Tasks: Flower turned task events on, so it sees a task run.
    let mut config = Config {
        result_backend: Some(redis_url()),
        default_queue: queue.clone(),
        ..common::config(1)
    };
    config.hostname = format!("flower-producer-{}", uuid::Uuid::new_v4().simple());
    let broker = common::connect(&config).await;
    let producer = Producer::from_config(broker.clone(), &config)
        .await
        .expect("a producer");
    // Flower broadcasts enable_events every 5 s: a task sent before the first one runs
    // without events. Send one task after another until Flower shows one SUCCESS (each
    // waited for, so this ends once events are on).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let shown_id = loop {
        let sum = producer
            .send_signature_with_result(
                Signature::new("interop.add")
                    .with_args(vec![json!(2), json!(3)])
                    .with_queue(queue.clone()),
            )
            .await
            .expect("sent");
        assert_eq!(sum.get(Duration::from_secs(60)).await.ok(), Some(json!(5)));
        let path = format!("/api/task/info/{}", sum.id());
        let mut shown = false;
        // Events are batched every 100 ms and Flower reads them at once: a few polls.
        for _ in 0..20 {
            if let Some((200, body)) = http_async(&addr, "GET", &path).await {
                if body["state"] == "SUCCESS" && body["name"] == "interop.add" {
                    assert_eq!(body["worker"], json!(node), "{body}");
                    assert_eq!(body["args"], json!("(2, 3)"), "{body}");
                    shown = true;
                    break;
                }
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        if shown {
            break sum.id().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Flower never showed a task of {node} SUCCESS: task events were not turned on by \
             its enable_events broadcasts, or not sent"
        );
    };
    // The task list, filtered by worker as Flower's task page asks for it.
    let path = format!("/api/tasks?workername={node}");
    let (status, tasks) = http_async(&addr, "GET", &path)
        .await
        .expect("Flower answers /api/tasks");
    assert_eq!(status, 200, "{tasks}");
    let listed = &tasks[&shown_id];
    assert_eq!(listed["state"], "SUCCESS", "/api/tasks: {tasks}");
    assert_eq!(listed["name"], "interop.add", "/api/tasks: {tasks}");
    assert_eq!(listed["worker"], json!(node), "/api/tasks: {tasks}");
    let others = format!("/api/tasks?workername=no-such-{node}");
    let (status, none) = http_async(&addr, "GET", &others)
        .await
        .expect("Flower answers /api/tasks");
    assert_eq!(status, 200, "{none}");
    assert!(
        none.get(&shown_id).is_none(),
        "the worker filter of /api/tasks keeps other workers' tasks out: {none}"
    );

    // Revoke through Flower: a countdown task the worker holds never runs.
    let held = producer
        .send_signature_with_result(
            Signature::new("interop.add")
                .with_args(vec![json!(1), json!(1)])
                .with_queue(queue.clone())
                .with_countdown(Duration::from_secs(300)),
        )
        .await
        .expect("sent");
    let (status, body) = http_async(&addr, "POST", &format!("/api/task/revoke/{}", held.id()))
        .await
        .expect("Flower answers");
    assert_eq!(status, 200, "{body}");
    let result = AsyncResult::from_id(held.id(), &config).expect("a Redis handle");
    common::wait_until_async(
        "the task revoked through Flower to be REVOKED",
        Duration::from_secs(60),
        || {
            let result = result.clone();
            async move { result.state().await == TaskState::Revoked }
        },
    )
    .await;

    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&queue]).await;
}
