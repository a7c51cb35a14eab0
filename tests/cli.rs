//! The `celeriac` binary against a real RabbitMQ (and Redis for results), with a celeriac
//! worker (the `interop` example) and a Python Celery 5.7 worker: inspect, control,
//! status, purge, result, events, call, and the exit codes of errors (clap's included:
//! one line).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "common/control.rs"]
mod control;

use common::*;
use control::{unique_node, CliRun};
use serde_json::{json, Value};

/// Generous bound for a CLI run that should end by itself (broker round trips only).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// How long a started worker may take to answer its first ping (a Python worker imports
/// Celery first).
const STARTUP: Duration = Duration::from_secs(60);

/// `celeriac ARGS` on the test broker, results in `backend` (none for `None`), stdin
/// closed (not a terminal).
fn cli_command(args: &[&str], backend: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_celeriac"));
    command
        .args(args)
        .env("CELERIAC_BROKER_URL", amqp_url())
        .env_remove("CELERIAC_RESULT_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(backend) = backend {
        command.env("CELERIAC_RESULT_BACKEND", backend);
    }
    command
}

/// Runs `command` to its end, killing it and failing after `RUN_LIMIT`.
async fn finish(mut command: Command, what: &str) -> CliRun {
    let mut child = command.spawn().expect("the celeriac binary starts");
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on celeriac") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`celeriac {what}` did not exit within {RUN_LIMIT:?}");
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout).expect("read stdout");
    }
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    CliRun {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// `celeriac ARGS`, no result backend.
async fn cli(args: &[&str]) -> CliRun {
    finish(cli_command(args, None), &args.join(" ")).await
}

/// `celeriac ARGS` with results in `backend`.
async fn cli_with(args: &[&str], backend: &str) -> CliRun {
    finish(cli_command(args, Some(backend)), &args.join(" ")).await
}

/// A celeriac worker (the `interop` example) named `node` on `queue`, results in
/// `backend`, task events on.
fn celeriac_worker(queue: &str, node: &str, backend: &str) -> KillOnDrop {
    let child = example_command("interop")
        .env("CELERIAC_HOSTNAME", node)
        .env("CELERIAC_QUEUE", queue)
        .env("CELERIAC_BROKER_URL", amqp_url())
        .env("CELERIAC_RESULT_BACKEND", backend)
        .env("CELERIAC_SEND_EVENTS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the interop worker starts");
    KillOnDrop(child)
}

/// Waits until `node` answers `celeriac inspect ping`.
async fn wait_online(node: &str) {
    let what = format!("{node} to answer `celeriac inspect ping`");
    wait_until_async(&what, STARTUP, || async {
        cli(&["inspect", "ping", "-d", node, "--json", "--timeout", "2"])
            .await
            .code
            == Some(0)
    })
    .await;
}

/// The JSON on the last line of a run's stdout.
fn last_json(run: &CliRun) -> Value {
    let line = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|error| panic!("no JSON ({error}): {run:?}"))
}

/// The task id `celeriac call` printed first.
fn task_id(run: &CliRun) -> String {
    assert_eq!(run.code, Some(0), "call failed: {run:?}");
    let id = run
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "no task id: {run:?}");
    id
}

#[actix_rt::test]
async fn inspect_control_and_status_answer_from_celeriac_and_python_workers() {
    let backend = redis_server::redis_url();
    let queue = unique_queue("cli-ping");
    let rust_node = unique_node("cli-ping-rust");
    let python_node = unique_node("cli-ping-python");
    let rust = celeriac_worker(&queue, &rust_node, &backend);
    // With task events on: without them (and with neither heartbeat nor gossip) a Python
    // worker has no event dispatcher and refuses enable_events / disable_events.
    let python = python_worker_with(&queue, &python_node, &backend, &["-E"]);
    wait_online(&rust_node).await;
    wait_online(&python_node).await;

    let both = format!("{rust_node},{python_node}");
    // Both named: the CLI stops waiting once both answered; the timeout bounds a missing one.
    let run = cli(&["inspect", "ping", "-d", &both, "--json", "--timeout", "10"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    // Replies come in arrival order: compare node by node.
    let replies = last_json(&run);
    assert_eq!(
        replies.as_object().map(|replies| replies.len()),
        Some(2),
        "{run:?}"
    );
    assert_eq!(replies[&rust_node], json!({"ok": "pong"}), "{run:?}");
    assert_eq!(replies[&python_node], json!({"ok": "pong"}), "{run:?}");

    let text = cli(&["inspect", "ping", "-d", &rust_node, "--timeout", "10"]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert_eq!(
        text.stdout,
        format!("->  {rust_node}: OK\n        pong\n\n1 node online.\n"),
        "Celery's text output"
    );

    let registered = cli(&[
        "inspect",
        "registered",
        "-d",
        &python_node,
        "--json",
        "--timeout",
        "10",
    ])
    .await;
    assert_eq!(registered.code, Some(0), "{registered:?}");
    let tasks = last_json(&registered)[&python_node].clone();
    assert!(
        tasks
            .as_array()
            .is_some_and(|tasks| tasks.contains(&json!("pyinterop.add"))),
        "the Python worker's tasks: {registered:?}"
    );

    let status = cli(&["status", "-d", &both, "--timeout", "10"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert!(
        status.stdout.contains(&format!("->  {rust_node}: OK")),
        "{status:?}"
    );
    assert!(
        status.stdout.contains(&format!("->  {python_node}: OK")),
        "{status:?}"
    );
    assert!(status.stdout.ends_with("2 nodes online.\n"), "{status:?}");

    inspect_answers_from_both(&both, &[&rust_node, &python_node]).await;
    control_answers(&rust_node, "interop.add").await;
    control_answers(&python_node, "pyinterop.add").await;
    // Last: the workers are done with.
    shutdown(rust, &rust_node).await;
    shutdown(python, &python_node).await;
    delete_queue(&queue).await;
}

/// `inspect METHOD -d <both nodes> --json` for each read-only method: exit 0 and a reply
/// from each node.
async fn inspect_answers_from_both(both: &str, nodes: &[&str]) {
    for method in ["stats", "active", "reserved", "revoked", "active_queues"] {
        let run = cli(&["inspect", method, "-d", both, "--json", "--timeout", "10"]).await;
        assert_eq!(run.code, Some(0), "inspect {method}: {run:?}");
        let replies = last_json(&run);
        for node in nodes {
            assert!(
                replies.get(node).is_some(),
                "inspect {method}: no reply from {node}: {run:?}"
            );
        }
    }
}

/// The control commands that change a worker's state, addressed to `node` only: each
/// answers `ok`. `task` is one of its tasks (for `rate_limit`).
async fn control_answers(node: &str, task: &str) {
    let extra = unique_queue("cli-consumer");
    let commands: [&[&str]; 5] = [
        &["rate_limit", task, "100/m"],
        &["enable_events"],
        &["disable_events"],
        &["add_consumer", &extra],
        &["cancel_consumer", &extra],
    ];
    for command in commands {
        let mut args = vec!["control"];
        args.extend_from_slice(command);
        args.extend_from_slice(&["-d", node, "--json", "--timeout", "10"]);
        let run = cli(&args).await;
        assert_eq!(run.code, Some(0), "control {command:?} to {node}: {run:?}");
        let replies = last_json(&run);
        assert!(
            replies[0][node]["ok"].is_string(),
            "control {command:?}: no ok from {node}: {run:?}"
        );
    }
    delete_queue(&extra).await;
}

/// `control shutdown -d NODE`: the worker process exits.
async fn shutdown(mut worker: KillOnDrop, node: &str) {
    // Workers do not answer a shutdown: the CLI's wait for replies is kept short.
    let run = cli(&["control", "shutdown", "-d", node, "--timeout", "1"]).await;
    assert_eq!(run.code, Some(0), "control shutdown to {node}: {run:?}");
    // A worker stops consuming and exits once its (idle) pool is done.
    worker.wait_exit(STARTUP).await;
}

/// How long a task waits for its countdown: the time the test has to see it scheduled on
/// the worker and revoke it (a few broker round trips; generous for a loaded machine).
/// Both workers store REVOKED as soon as the revoke arrives, so it costs no test time.
const COUNTDOWN_S: u64 = 20;

/// Sends `task` to `queue` with a countdown, waits until `node` holds it scheduled,
/// revokes it with `celeriac control revoke`, and checks that it ends REVOKED.
async fn revoke_countdown_task(task: &str, queue: &str, node: &str, backend: &str) {
    let countdown = COUNTDOWN_S.to_string();
    let call = cli(&[
        "call",
        task,
        "--args",
        "[1, 2]",
        "-Q",
        queue,
        "--countdown",
        &countdown,
    ])
    .await;
    let id = task_id(&call);
    let what = format!("{node} to hold task {id} scheduled");
    wait_until_async(&what, Duration::from_secs(COUNTDOWN_S), || async {
        let run = cli(&[
            "inspect",
            "scheduled",
            "-d",
            node,
            "--json",
            "--timeout",
            "10",
        ])
        .await;
        run.code == Some(0) && run.stdout.contains(&id)
    })
    .await;
    let revoke = cli(&[
        "control",
        "revoke",
        &id,
        "-d",
        node,
        "--json",
        "--timeout",
        "10",
    ])
    .await;
    assert_eq!(revoke.code, Some(0), "{revoke:?}");
    let reply = last_json(&revoke);
    let ok = reply[0][node]["ok"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        ok.contains("flagged as revoked") && ok.contains(&id),
        "{revoke:?}"
    );
    // The worker settles the task when its countdown ends: REVOKED, not run. (Had the
    // revoke come after the countdown, the task would have run and succeeded.)
    let wait = (COUNTDOWN_S + 30).to_string();
    let result = cli_with(&["result", &id, "--wait", &wait], backend).await;
    assert_eq!(
        result.code,
        Some(1),
        "a revoked task is a failure: {result:?}"
    );
    assert!(
        result.stderr.to_lowercase().contains("revoked"),
        "the error says revoked: {result:?}"
    );
    assert!(result.stdout.is_empty(), "no value printed: {result:?}");
}

#[actix_rt::test]
async fn control_revoke_stops_a_countdown_task_on_celeriac_and_python_workers() {
    let backend = redis_server::redis_url();
    let rust_queue = unique_queue("cli-revoke-rust");
    let python_queue = unique_queue("cli-revoke-python");
    let rust_node = unique_node("cli-revoke-rust");
    let python_node = unique_node("cli-revoke-python");
    let _rust = celeriac_worker(&rust_queue, &rust_node, &backend);
    let _python = python_worker(&python_queue, &python_node, &backend);
    wait_online(&rust_node).await;
    wait_online(&python_node).await;
    revoke_countdown_task("interop.add", &rust_queue, &rust_node, &backend).await;
    revoke_countdown_task("pyinterop.add", &python_queue, &python_node, &backend).await;
    delete_queue(&rust_queue).await;
    delete_queue(&python_queue).await;
}

/// Deletes a test queue.
async fn delete_queue(queue: &str) {
    let config = config(1);
    let broker = connect(&config).await;
    delete_queues(&broker, &[queue]).await;
    let _ = broker.close().await;
}

#[actix_rt::test]
async fn purge_empties_a_queue_and_asks_first() {
    let config = config(1);
    let broker = connect(&config).await;
    let queue = unique_queue("cli-purge");
    for n in 0..3 {
        let args = format!("[{n}]");
        task_id(&cli(&["call", "nobody.serves", "--args", &args, "-Q", &queue]).await);
    }
    assert_eq!(broker.count_messages(&queue).await.expect("count"), 3);

    let refused = cli(&["purge", "-Q", &queue]).await;
    assert_eq!(
        refused.code,
        Some(2),
        "no terminal to ask on, no -f: {refused:?}"
    );
    assert!(refused.stderr.contains("-f"), "{refused:?}");
    assert_eq!(
        broker.count_messages(&queue).await.expect("count"),
        3,
        "nothing purged"
    );

    let purged = cli(&["purge", "-Q", &queue, "-f"]).await;
    assert_eq!(purged.code, Some(0), "{purged:?}");
    assert_eq!(
        purged.stdout,
        "Purged 3 messages from 1 known task queue.\n"
    );
    assert_eq!(broker.count_messages(&queue).await.expect("count"), 0);

    // Without -Q: the default queue (CELERIAC_DEFAULT_QUEUE here, `celery` unset).
    task_id(&cli(&["call", "nobody.serves", "-Q", &queue]).await);
    let mut command = cli_command(&["purge", "-f"], None);
    command.env("CELERIAC_DEFAULT_QUEUE", &queue);
    let purged = finish(command, "purge -f (default queue)").await;
    assert_eq!(purged.code, Some(0), "{purged:?}");
    assert_eq!(purged.stdout, "Purged 1 message from 1 known task queue.\n");
    assert_eq!(broker.count_messages(&queue).await.expect("count"), 0);

    let missing = unique_queue("cli-purge-missing");
    let run = cli(&["purge", "-Q", &missing, "-f"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("does not exist"), "{run:?}");
    delete_queues(&broker, &[&queue]).await;
    let _ = broker.close().await;
}

#[actix_rt::test]
async fn result_prints_a_stored_value() {
    let backend = redis_server::redis_url();
    let queue = unique_queue("cli-result");
    let node = unique_node("cli-result");
    let _worker = celeriac_worker(&queue, &node, &backend);
    let id = task_id(&cli(&["call", "interop.add", "--args", "[2, 3]", "-Q", &queue]).await);
    let run = cli_with(&["result", &id, "--wait", "60"], &backend).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "5\n");
    // Stored: read again without waiting.
    let again = cli_with(&["result", &id], &backend).await;
    assert_eq!(
        (again.code, again.stdout.as_str()),
        (Some(0), "5\n"),
        "{again:?}"
    );

    let unknown = uuid::Uuid::new_v4().to_string();
    let pending = cli_with(&["result", &unknown], &backend).await;
    assert_eq!(pending.code, Some(1), "{pending:?}");
    assert!(pending.stderr.contains("PENDING"), "{pending:?}");
    let no_backend = cli(&["result", &unknown]).await;
    assert_eq!(no_backend.code, Some(1), "{no_backend:?}");
    assert!(
        no_backend.stderr.contains("CELERIAC_RESULT_BACKEND"),
        "{no_backend:?}"
    );
    delete_queue(&queue).await;
}

/// Lines a child prints, read on a thread of their own.
fn lines_of(pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits for a line matching `wanted`, failing after `timeout` with `what` and the lines
/// seen.
async fn wait_for_line(
    lines: &std::sync::mpsc::Receiver<String>,
    what: &str,
    timeout: Duration,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        while let Ok(line) = lines.try_recv() {
            if wanted(&line) {
                return line;
            }
            seen.push(line);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line with {what} within {timeout:?}; saw: {seen:#?}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn events_prints_a_task_succeeded() {
    let backend = redis_server::redis_url();
    let rust_queue = unique_queue("cli-events-rust");
    let python_queue = unique_queue("cli-events-python");
    let rust_node = unique_node("cli-events-rust");
    let python_node = unique_node("cli-events-python");
    let _rust = celeriac_worker(&rust_queue, &rust_node, &backend);
    let _python = python_worker_with(&python_queue, &python_node, &backend, &["-E"]);
    wait_online(&rust_node).await;
    wait_online(&python_node).await;
    let workers = [
        ("interop.add", &rust_queue, &rust_node),
        ("pyinterop.add", &python_queue, &python_node),
    ];
    for json in [false, true] {
        let args: &[&str] = if json {
            &["events", "--json"]
        } else {
            &["events"]
        };
        let mut command = cli_command(args, None);
        let mut events = KillOnDrop(command.spawn().expect("celeriac events starts"));
        let stdout = lines_of(events.0.stdout.take().expect("stdout"));
        let stderr = lines_of(events.0.stderr.take().expect("stderr"));
        // Printed once its queue is bound: every event from now on reaches it.
        wait_for_line(&stderr, "\"receiving events\"", RUN_LIMIT, |line| {
            line.contains("receiving events")
        })
        .await;
        for (task, queue, node) in workers {
            let id = task_id(&cli(&["call", task, "--args", "[2, 3]", "-Q", queue]).await);
            let what = format!("task-succeeded of {id} from {node}");
            let line = wait_for_line(&stdout, &what, RUN_LIMIT, |line| {
                line.contains(&id) && line.contains("task-succeeded")
            })
            .await;
            if json {
                let event: Value = serde_json::from_str(&line).expect("one JSON object per line");
                assert_eq!(event["type"], "task-succeeded", "{line}");
                assert_eq!(event["hostname"], node.as_str(), "{line}");
                assert_eq!(event["result"], "5", "{line}");
            } else {
                assert!(
                    line.contains(&format!(" {node} task-succeeded uuid=\"{id}\"")),
                    "{line}"
                );
                assert!(line.contains("result=\"5\""), "{line}");
            }
        }
        events.signal(libc::SIGINT);
        let status = events.wait_exit(RUN_LIMIT).await;
        assert_eq!(
            status.code(),
            Some(0),
            "Ctrl-C ends `celeriac events` cleanly"
        );
    }
    delete_queue(&rust_queue).await;
    delete_queue(&python_queue).await;
}

#[actix_rt::test]
async fn events_wakes_the_workers_up_with_a_heartbeat_broadcast() {
    // A vhost of its own: no other test's event receiver (each broadcasts `heartbeat` when
    // it starts) reaches this worker, so a requested heartbeat (freq 5) can only come from
    // this `celeriac events`. The periodic ones have freq 2.
    let dir = std::env::var("CELERIAC_TEST_RABBIT_DIR")
        .expect("CELERIAC_TEST_RABBIT_DIR (run scripts/test)");
    let dir = std::path::Path::new(&dir);
    let vhost = format!("cli-events-{}", uuid::Uuid::new_v4().simple());
    node_ctl(dir, &["add_vhost", &vhost]);
    node_ctl(
        dir,
        &["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"],
    );
    let base = amqp_url();
    let url = format!(
        "{}/{vhost}",
        &base[..base.rfind('/').expect("a vhost in the URL")]
    );
    let queue = unique_queue("cli-wakeup");
    let node = unique_node("cli-wakeup");
    let _worker = KillOnDrop(
        example_command("interop")
            .env("CELERIAC_HOSTNAME", &node)
            .env("CELERIAC_QUEUE", &queue)
            .env("CELERIAC_BROKER_URL", &url)
            .env_remove("CELERIAC_RESULT_BACKEND")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    let on_vhost = |args: &[&str]| {
        let mut command = cli_command(args, None);
        command.env("CELERIAC_BROKER_URL", &url);
        command
    };
    wait_until_async(
        "the worker on its own vhost to answer ping",
        STARTUP,
        || async {
            let ping = on_vhost(&["inspect", "ping", "-d", &node, "--json", "--timeout", "2"]);
            finish(ping, "inspect ping").await.code == Some(0)
        },
    )
    .await;
    let mut events = KillOnDrop(
        on_vhost(&["events", "--json"])
            .spawn()
            .expect("celeriac events starts"),
    );
    let stdout = lines_of(events.0.stdout.take().expect("stdout"));
    let what = format!("a requested worker-heartbeat (freq 5) from {node}");
    let line = wait_for_line(&stdout, &what, RUN_LIMIT, |line| {
        serde_json::from_str::<Value>(line).is_ok_and(|event| {
            event["type"] == "worker-heartbeat"
                && event["hostname"] == node.as_str()
                && event["freq"] == 5
        })
    })
    .await;
    assert!(line.contains("sw_ident"), "{line}");
    events.signal(libc::SIGINT);
    let status = events.wait_exit(RUN_LIMIT).await;
    assert_eq!(status.code(), Some(0), "Ctrl-C ends `celeriac events`");
    node_ctl(dir, &["delete_vhost", &vhost]);
}

#[actix_rt::test]
async fn errors_are_one_line_and_an_exit_code() {
    // Unreachable: a port nobody listens on (bound, then closed).
    let port = common::free_port();
    let url = format!("amqp://guest:hunter2@127.0.0.1:{port}/%2f");
    let mut command = cli_command(&["--broker", &url, "inspect", "ping"], None);
    command.env("CELERIAC_CONNECT_TIMEOUT_MS", "2000");
    let run = finish(command, "inspect ping (unreachable)").await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    assert!(run.stderr.starts_with("celeriac: "), "{run:?}");
    assert!(
        run.stderr.contains(&port.to_string()),
        "names the broker: {run:?}"
    );
    assert!(!run.stderr.contains("hunter2"), "no password: {run:?}");

    let bad_json = cli(&["call", "t.add", "--args", "[1,"]).await;
    assert_eq!(bad_json.code, Some(2), "{bad_json:?}");
    assert!(
        bad_json.stderr.contains("--args is not valid JSON"),
        "{bad_json:?}"
    );
    assert!(bad_json.stdout.is_empty(), "nothing sent: {bad_json:?}");

    // clap's parse errors: one line of ours, exit code 2.
    for (args, says) in [
        (&["frobnicate"][..], "frobnicate"),
        (&["inspect", "frobnicate"], "frobnicate"),
        (&["control", "frobnicate"], "frobnicate"),
        (&["inspect", "ping", "--frobnicate"], "--frobnicate"),
        (&["inspect", "ping", "--timeout", "soon"], "soon"),
        (&["control", "rate_limit"], "<TASK>, <RATE>"),
    ] {
        let run = cli(args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "one line: {args:?}: {run:?}");
        assert!(
            run.stderr.starts_with("celeriac: ") && run.stderr.contains(says),
            "{args:?}: {run:?}"
        );
    }
    // Help is not an error.
    let help = cli(&["inspect", "--help"]).await;
    assert_eq!(help.code, Some(0), "{help:?}");
    assert!(help.stdout.contains("ping"), "{help:?}");

    // No node answers: a failure, as in Celery.
    let nobody = unique_node("cli-nobody");
    let run = cli(&["inspect", "ping", "-d", &nobody, "--timeout", "0.5"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("no nodes replied"), "{run:?}");
}

#[actix_rt::test]
async fn call_refuses_args_that_are_not_an_array() {
    let output = cli(&["call", "test.add", "--args", r#"{"x": 1}"#]).await;
    let stderr = &output.stderr;
    assert_eq!(output.code, Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("--args must be a JSON array"),
        "the message explains the usage error: {stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing was sent");
}

#[actix_rt::test]
async fn call_times_out_when_nobody_serves_the_task() {
    let config = config(1);
    let broker = connect(&config).await;
    let queue = unique_queue("call-timeout");
    // 2 s: longer than the second after which the progress line is printed.
    let output = cli(&["call", "nobody.serves", "--queue", &queue, "--wait", "2"]).await;
    let (stdout, stderr) = (&output.stdout, &output.stderr);
    assert_eq!(output.code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    let task_id = stdout.lines().next().unwrap_or_default().trim().to_string();
    assert!(
        uuid::Uuid::parse_str(&task_id).is_ok(),
        "the task id is printed first: {stdout}"
    );
    assert!(
        stderr.contains(&format!("no result for task {task_id} within 2s")),
        "a timeout message naming the task: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "waiting up to 2s for the result of task {task_id}..."
        )),
        "a progress line while waiting: {stderr}"
    );
    assert_eq!(
        broker.count_messages(&queue).await.expect("count"),
        1,
        "the task message waits in its queue"
    );
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn call_waits_for_a_result_in_redis() {
    let redis = redis_server::redis_url();
    let config = celeriac::Config {
        result_backend: Some(redis.clone()),
        ..config(2)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("call-redis");
    let (builder, _events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("the worker starts");
    let args = [
        "call",
        <Add as celeriac::Task>::NAME,
        "--args",
        "[40, 2]",
        "--queue",
        queue.as_str(),
        "--wait",
        "30",
    ];
    let output = cli_with(&args, &redis).await;
    assert_eq!(output.code, Some(0), "stderr: {}", output.stderr);
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some("42"),
        "stdout: {}",
        output.stdout
    );
    worker.stop().await.expect("the worker stops");
    delete_queues(&broker, &[&queue]).await;
}

/// `call A --then B --wait`: a chain; the last step's result is printed.
#[actix_rt::test]
async fn call_sends_a_chain_with_then() {
    let redis = redis_server::redis_url();
    let config = celeriac::Config {
        result_backend: Some(redis.clone()),
        ..config(2)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("call-chain");
    let (builder, _events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("the worker starts");
    let add = <Add as celeriac::Task>::NAME;
    let args = [
        "call", add, "--args", "[1, 2]", "--queue", &queue, "--then", add, "--args", "[10]",
        "--queue", &queue, "--then", add, "--args", "[100]", "--queue", &queue, "--wait", "30",
    ];
    let output = cli_with(&args, &redis).await;
    assert_eq!(output.code, Some(0), "stderr: {}", output.stderr);
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "the id, then the result: {}", output.stdout);
    assert_eq!(lines[1], "113", "stdout: {}", output.stdout);
    worker.stop().await.expect("the worker stops");
    delete_queues(&broker, &[&queue]).await;
}
