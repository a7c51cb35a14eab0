//! Celery events from a celeriac worker (the `interop` example), watched by Python Celery
//! 5.7's own event receiver and `celery.events.state.State` (tests/python/events_receiver.py):
//! worker-online, heartbeats every 2 s counting the tasks, task events with Celery's fields
//! when they are on (then State also sees a task retried, a countdown task revoked and a
//! running task terminated; none when they are off), worker-offline on a warm shutdown.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// How long the Python script may take in all (its own waits are 60 s each).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// The lines the Python script prints.
struct Lines {
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Waits until the script prints `what`; fails with what it printed (its traceback is
    /// on stderr) when it ends or times out first.
    async fn wait_for(&mut self, what: &str) {
        loop {
            match tokio::time::timeout(SCRIPT_TIMEOUT, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let done = line == what;
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                _ => panic!(
                    "the Python receiver never printed {what:?} (see its stderr); it printed {:?}",
                    self.seen
                ),
            }
        }
    }
}

async fn run(mode: &str) {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue(&format!("events-{mode}"));
    let hostname = format!("{queue}@events-test");
    let mut receiver = KillOnDrop(
        Command::new("timeout")
            .arg(SCRIPT_TIMEOUT.as_secs().to_string())
            .arg(python())
            .arg(python_dir().join("events_receiver.py"))
            .arg(mode)
            .env("CELERIAC_TEST_AMQP_URL", amqp_url())
            .env("CELERIAC_QUEUE", &queue)
            .env("CELERIAC_HOSTNAME", &hostname)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python runs"),
    );
    let stdout = receiver.0.stdout.take().expect("python's stdout");
    let (lines_tx, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Lines {
        lines,
        seen: Vec::new(),
    };

    lines.wait_for("ready").await;
    let mut worker_command = Command::new(example_binary("interop"));
    worker_command
        .env("CELERIAC_RESULT_BACKEND", "rpc://")
        .env("CELERIAC_BROKER_URL", amqp_url())
        .env("CELERIAC_QUEUE", &queue)
        .env("CELERIAC_HOSTNAME", &hostname)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if mode == "on" {
        worker_command.env("CELERIAC_SEND_EVENTS", "true");
    }
    let mut worker = KillOnDrop(worker_command.spawn().expect("the interop worker starts"));
    lines.wait_for("stop-worker").await;
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "the worker exited with {exit} after SIGTERM"
    );
    lines.wait_for("all checks passed").await;
    let status = receiver.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "the Python receiver failed ({status})");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn python_sees_worker_and_task_events_with_celerys_fields_when_events_are_on() {
    run("on").await;
}

#[actix_rt::test]
async fn python_sees_worker_events_and_no_task_events_by_default() {
    run("off").await;
}
