//! The `actix_web` example, run as a real process: its endpoint sends a task that a worker
//! executes, and it shuts down cleanly on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use celeriac::{TaskEventKind, WorkerSystem};
use common::*;

/// POSTs to the example and returns the response (status line and body).
fn post(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = KillOnDrop(
        Command::new(example_binary("actix_web"))
            .env("CELERIAC_BROKER_URL", amqp_url())
            .env("CELERIAC_HTTP_ADDR", &addr)
            .env("CELERIAC_QUEUE", &queue)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example starts"),
    );

    // Wait for the server to listen (it connects to the broker first).
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        match post(&addr, "/add?x=20&y=22") {
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
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "unexpected response: {response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|error| panic!("the body is not JSON ({error}): {body}"));
    let task_id = json["task_id"]
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
