//! Python Celery 5.7 sends, a celeriac worker (the `interop` example) runs: each test
//! starts the worker on its own queue and runs one scenario of
//! tests/python/rust_worker_checks.py, which asserts on the results Python gets back
//! over rpc://.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

async fn run_scenario(scenario: &str) {
    let config = config(4);
    let broker = connect(&config).await;
    let queue = unique_queue(&format!("py-producer-{scenario}"));
    let touch_dir = std::env::temp_dir().join(format!("celeriac-touch-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&touch_dir).expect("a scratch directory");

    let mut worker = KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_RESULT_BACKEND", "rpc://")
            .env("CELERIAC_BROKER_URL", amqp_url())
            .env("CELERIAC_QUEUE", &queue)
            .env("CELERIAC_CONCURRENCY", "4")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );

    let output = Command::new("timeout")
        .arg("180")
        .arg(python())
        .arg(python_dir().join("rust_worker_checks.py"))
        .arg(scenario)
        .env("CELERIAC_TEST_AMQP_URL", amqp_url())
        .env("CELERIAC_QUEUE", &queue)
        .env("CELERIAC_TOUCH_DIR", &touch_dir)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "Python scenario {scenario} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    if let Ok(Some(status)) = worker.0.try_wait() {
        panic!("the interop worker exited during the scenario: {status}");
    }
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "the interop worker exited with {exit} after SIGTERM"
    );
    let _ = std::fs::remove_dir_all(&touch_dir);
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn python_sends_args_kwargs_and_both_by_apply_async_delay_and_send_task() {
    run_scenario("arguments").await;
}

#[actix_rt::test]
async fn python_countdown_eta_expires_retries_priority_headers_and_time_limits() {
    run_scenario("scheduling").await;
}

#[actix_rt::test]
async fn python_gzip_protocol_v1_and_kombu_typed_values() {
    run_scenario("encoding").await;
}

#[actix_rt::test]
async fn python_sees_rust_errors_panics_unknown_tasks_and_bad_arguments_as_exceptions() {
    run_scenario("errors").await;
}

#[actix_rt::test]
async fn python_sees_retries_with_backoff_max_retries_and_blocking_tasks_past_their_limit() {
    run_scenario("semantics").await;
}
