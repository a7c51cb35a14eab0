//! The `actix_web` example, run as a real process: its endpoint sends a task that a worker
//! executes, and it shuts down cleanly on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use celeriac::{TaskEventKind, WorkerSystem};
use common::*;

/// POSTs to the example and returns the response (status line and body).
fn post(addr: &str, path: &str) -> std::io::Result<String> {
    request(addr, "POST", path)
}

/// Sends one HTTP/1.1 request and returns the response (status line and body).
fn request(addr: &str, method: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The JSON body of a response.
fn json_body(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body.trim())
        .unwrap_or_else(|error| panic!("the body is not JSON ({error}): {response}"))
}

/// Starts the example on a free port with `env`, and POSTs `path` once it listens.
async fn start_example(env: &[(&str, String)], path: &str) -> (KillOnDrop, String, String) {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut command = common::example_command("actix_web");
    command
        .env("CELERIAC_BROKER_URL", amqp_url())
        .env("CELERIAC_HTTP_ADDR", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut server = KillOnDrop(command.spawn().expect("the example starts"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        match post(&addr, path) {
            Ok(response) => break response,
            Err(error) if Instant::now() < deadline => {
                if let Ok(Some(status)) = server.0.try_wait() {
                    panic!("the example exited with {status} before serving");
                }
                let _ = error;
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                panic!("the example did not accept connections on {addr} within 30 s: {error}")
            }
        }
    };
    (server, addr, response)
}

/// The web polling pattern: POST answers the task id, GET /tasks/{id} answers its state and
/// value from Redis (the worker stores there); `AsyncResult::from_id` reads it too, in a
/// process that did not send the task.
#[actix_rt::test]
async fn a_result_is_polled_over_http_from_the_redis_backend() {
    polled_over_http(common::redis_server::redis_url()).await;
}

/// The same with Redis over TLS: the example reads a `rediss://` backend (it answered 501,
/// no result backend, when it knew only `redis://`).
#[actix_rt::test]
async fn a_result_is_polled_over_http_from_redis_over_tls() {
    polled_over_http(common::redis_server::redis_tls_url()).await;
}

/// A worker and the example sharing the result backend `backend_url`: a task POSTed to the
/// example is polled to SUCCESS over HTTP, then read by id with `AsyncResult::from_id`.
async fn polled_over_http(backend_url: String) {
    let config = celeriac::Config {
        result_backend: Some(backend_url.clone()),
        ..config(2)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("actix-web-results");
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<ExampleAdd>()
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker starts");
    let env = [
        ("CELERIAC_QUEUE", queue.clone()),
        ("CELERIAC_RESULT_BACKEND", backend_url),
    ];
    let (mut server, addr, response) = start_example(&env, "/add?x=2&y=3").await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    let task_id = json_body(&response)["task_id"]
        .as_str()
        .expect("a task_id")
        .to_string();

    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let response = request(&addr, "GET", &format!("/tasks/{task_id}")).expect("GET answers");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let state = json_body(&response);
        if state["ready"] == serde_json::json!(true) {
            break state;
        }
        assert!(
            ["PENDING", "STARTED"].contains(&state["state"].as_str().unwrap_or_default()),
            "{state}"
        );
        assert!(Instant::now() < deadline, "no result within 30 s: {state}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        state,
        serde_json::json!({"task_id": task_id, "state": "SUCCESS", "ready": true, "result": 5})
    );
    let unknown = request(&addr, "GET", "/tasks/no-such-task").expect("GET answers");
    assert_eq!(json_body(&unknown)["state"], serde_json::json!("PENDING"));

    let result = celeriac::AsyncResult::from_id(&task_id, &config).expect("a Redis handle");
    assert_eq!(
        result
            .get(Duration::from_secs(30))
            .await
            .expect("the value"),
        serde_json::json!(5)
    );
    let rpc = celeriac::Config {
        result_backend: Some("rpc://".into()),
        ..config.clone()
    };
    let refused = celeriac::AsyncResult::from_id(&task_id, &rpc).expect_err("rpc is refused");
    assert!(
        refused.to_string().contains("only the producer"),
        "{refused}"
    );

    let exit = server.terminate(Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "the example exited with {exit} after SIGTERM"
    );
    worker.stop().await.expect("worker stops");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn the_endpoint_sends_a_task_that_a_worker_executes() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("actix-web");
    let (events, mut received) = task_events();
    // The example sends `tasks.add`; this worker serves it under that name.
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<ExampleAdd>()
        .on_task_event(events)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker starts");

    let env = [("CELERIAC_QUEUE", queue.clone())];
    let (mut server, _addr, response) = start_example(&env, "/add?x=20&y=22").await;
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "unexpected response: {response}"
    );
    let task_id = json_body(&response)["task_id"]
        .as_str()
        .expect("a task_id in the body")
        .to_string();

    let event = received
        .wait_for(Duration::from_secs(30), "the sent task to run", |e| {
            e.task_id.as_deref() == Some(task_id.as_str())
                && matches!(e.kind, TaskEventKind::Succeeded { .. })
        })
        .await;
    assert_eq!(
        event.kind,
        TaskEventKind::Succeeded {
            result: serde_json::json!(42)
        }
    );

    // SIGTERM: the example stops its server and closes its connection, then exits 0.
    let exit = server.terminate(Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "the example exited with {exit} after SIGTERM"
    );

    worker.stop().await.expect("worker stops");
    delete_queues(&broker, &[&queue]).await;
}

/// The example's `tasks.add`, served by the test's worker.
struct ExampleAdd;

impl celeriac::Task for ExampleAdd {
    const NAME: &'static str = "tasks.add";
    type Args = AddArgs;
    type Output = i64;
    async fn run(_: celeriac::TaskContext, args: AddArgs) -> Result<i64, celeriac::TaskError> {
        Ok(args.x + args.y)
    }
}
