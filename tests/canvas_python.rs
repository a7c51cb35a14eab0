//! Workflows Python Celery 5.7 clients build, run on celeriac workers, alone and beside
//! Python workers: chains, link and link_error, groups, chords both ways, a failing chain
//! step and a failing chord header (tests/python/canvas_checks.py).
//!
//! Needs RabbitMQ, Redis and the Python virtualenv (scripts/test provides them).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::redis_server::redis_url;

/// A celeriac `interop` worker and a Python worker, both storing to Redis, serve the two
/// queues; Python's own canvas runs across them.
#[actix_rt::test]
async fn python_workflows_run_on_celeriac_workers() {
    let config = common::config(1);
    let broker = common::connect(&config).await;
    let rust_queue = common::unique_queue("canvas-rust");
    let py_queue = common::unique_queue("canvas-py");
    let mut rust_worker = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", redis_url())
            .env("CELERIAC_QUEUE", &rust_queue)
            .env("CELERIAC_CONCURRENCY", "4")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    let _py_worker = common::python_worker(
        &py_queue,
        &format!("pyworker-{}@localhost", uuid::Uuid::new_v4().simple()),
        &redis_url(),
    );
    let output = actix_rt::task::spawn_blocking({
        let (rust_queue, py_queue) = (rust_queue.clone(), py_queue.clone());
        move || {
            Command::new(common::python())
                .arg(common::python_dir().join("canvas_checks.py"))
                .args([redis_url(), common::amqp_url(), rust_queue, py_queue])
                .stderr(Stdio::inherit())
                .output()
                .expect("python runs")
        }
    })
    .await
    .expect("the checks ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "all checks passed"),
        "the Python canvas checks failed ({}); passed before the failure:\n{stdout}",
        output.status
    );
    let exit = rust_worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&rust_queue, &py_queue]).await;
}
