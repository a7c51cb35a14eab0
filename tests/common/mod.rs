//! Helpers shared by the integration tests: the broker under test, unique queues, test
//! tasks, and waiting for events with a deadline that fails with a clear message
//! (`events`: every event is kept, so waits do not depend on the order events came in).
//!
//! No helper waits by sleeping for a fixed time: each waits for a condition, with a
//! generous deadline, and fails saying what did not happen.
#![allow(dead_code)]

use std::time::Duration;

use actix::prelude::*;
use celeriac::{connect_broker, BrokerClient, Config, Task, TaskContext, TaskError, TaskEvent};
use futures::channel::mpsc::UnboundedReceiver;
use serde::{Deserialize, Serialize};

#[allow(unused_imports)]
pub use events::{is_outcome, succeeded, Collected, Events};

/// The RabbitMQ the tests run against; fails with instructions when there is none.
pub fn amqp_url() -> String {
    match std::env::var("CELERIAC_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "CELERIAC_TEST_AMQP_URL is not set: these tests need a real RabbitMQ. \
             Run scripts/test (it installs rabbitmq-server and starts a private node), \
             or point CELERIAC_TEST_AMQP_URL at a broker, e.g. amqp://guest:guest@127.0.0.1:5672/%2f"
        ),
    }
}

/// A config for the test broker with the given concurrency, and `rpc://` results (workers
/// publish results to each message's reply queue).
pub fn config(concurrency: usize) -> Config {
    config_on(amqp_url(), concurrency)
}

/// The test config of [`config`], on the broker at `broker_url` (`memory://` for the
/// in-process one, which needs no `CELERIAC_TEST_AMQP_URL`).
pub fn config_on(broker_url: String, concurrency: usize) -> Config {
    Config {
        broker_url,
        result_backend: Some("rpc://".into()),
        concurrency,
        connect_timeout: Duration::from_secs(10),
        connection_name: "celeriac-tests".into(),
        // Node names must be unique among live workers (the pidbox queue is exclusive),
        // and the tests run many workers at once.
        hostname: format!("test-{}@celeriac-test", uuid::Uuid::new_v4().simple()),
        ..Config::default()
    }
}

/// Sends log lines to the test's captured output (shown when a test fails).
pub fn init_logging() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .is_test(true)
        .try_init();
}

/// Connects to the test broker.
pub async fn connect(config: &Config) -> BrokerClient {
    init_logging();
    match connect_broker(config).await {
        Ok(broker) => broker,
        Err(error) => panic!("cannot connect to the test RabbitMQ: {error}"),
    }
}

/// A queue name no other test uses.
pub fn unique_queue(test: &str) -> String {
    format!("celeriac-test.{test}.{}", uuid::Uuid::new_v4().simple())
}

/// A worker for `queue` as most tests want it: its task events are collected in the
/// returned `Events`, and stopping it leaves the broker connection open for the test's
/// checks.
pub fn test_worker(
    broker: &BrokerClient,
    config: &Config,
    queue: &str,
) -> (celeriac::worker::WorkerBuilder, Events) {
    let (events, received) = task_events();
    let builder = celeriac::WorkerSystem::builder(broker.clone(), config)
        .queue(queue)
        .on_task_event(events)
        .close_broker_on_stop(false);
    (builder, received)
}

/// Waits for the first event matching `matches` that no earlier call answered, failing
/// after `timeout` with `what`. Events that do not match are kept (`Events::take_next`),
/// so the order in which events come does not matter.
pub async fn wait_for_event(
    events: &mut Events,
    timeout: Duration,
    what: &str,
    matches: impl FnMut(&TaskEvent) -> bool,
) -> TaskEvent {
    events.take_next(timeout, what, matches).await
}

/// A recipient for `WorkerBuilder::on_task_event` and the collector of what it receives.
pub fn task_events() -> (Recipient<TaskEvent>, Events) {
    let (events, received) = celeriac::task_event_channel();
    (events, Collected::new(received))
}

/// Deletes test queues.
pub async fn delete_queues(broker: &BrokerClient, queues: &[&str]) {
    for queue in queues {
        if let Err(error) = broker.delete_queue(queue).await {
            panic!("cleaning up queue {queue}: {error}");
        }
    }
}

/// Forwards any message type into a channel (supervisor events and the like).
pub struct Forward<M: Message<Result = ()> + Send> {
    sender: futures::channel::mpsc::UnboundedSender<M>,
}

impl<M: Message<Result = ()> + Send + Unpin + 'static> Actor for Forward<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + Send + Unpin + 'static> Handler<M> for Forward<M> {
    type Result = ();
    fn handle(&mut self, message: M, _: &mut Context<Self>) {
        let _ = self.sender.unbounded_send(message);
    }
}

/// A recipient that forwards into the returned receiver.
pub fn forward<M: Message<Result = ()> + Send + Unpin + 'static>(
) -> (Recipient<M>, UnboundedReceiver<M>) {
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    (Forward { sender }.start().recipient(), receiver)
}

/// A recipient that forwards into the returned collector.
pub fn collect<M: Message<Result = ()> + Send + Unpin + Clone + std::fmt::Debug + 'static>(
) -> (Recipient<M>, Collected<M>) {
    let (recipient, receiver) = forward();
    (recipient, Collected::new(receiver))
}

/// A command running example binary `name` with a node name of its own
/// (`CELERIAC_HOSTNAME`): node names must be unique among live workers, and tests run
/// many at once.
pub fn example_command(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(example_binary(name));
    command.env(
        "CELERIAC_HOSTNAME",
        format!("{name}-{}@celeriac-test", uuid::Uuid::new_v4().simple()),
    );
    command
}

/// The example binary that `cargo test` built (it builds the examples next to the tests).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test` (which builds the examples)",
        binary.display()
    );
    binary
}

/// A child process that is killed when the test ends, whatever happens.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (`libc::SIGTERM`, `libc::SIGKILL`...) to process `pid` with kill(2).
pub fn send_signal(pid: u32, signal: libc::c_int) {
    let target = libc::pid_t::try_from(pid).expect("a pid fits in pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(target, signal) };
    assert_eq!(
        sent,
        0,
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
}

impl KillOnDrop {
    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        send_signal(self.0.id(), signal);
    }

    /// Sends SIGTERM and waits for the process to exit, failing after `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout).await
    }

    /// Waits for the process to exit, failing after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.0.id();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(exit) = self.0.try_wait().expect("wait on the child") {
                return exit;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} did not exit within {timeout:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The Python with the pinned Celery (scripts/python-venv prints it; scripts/test sets it).
pub fn python() -> String {
    match std::env::var("CELERIAC_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!(
            "CELERIAC_TEST_PYTHON is not set: the interop tests need Python with celery==5.7.0. \
             Run scripts/test (it creates the virtualenv), or \
             export CELERIAC_TEST_PYTHON=$(scripts/python-venv)"
        ),
    }
}

/// The directory of the Python scripts the interop tests run.
pub fn python_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// The `(ready, unacked)` message counts of every queue on the node of scripts/test
/// (`CELERIAC_TEST_RABBIT_DIR`), read with one rabbitmqctl call. Blocking (0.4 to 1 s): from
/// async code, use `queue_counts_async` or `wait_for_counts`.
pub fn all_queue_counts() -> std::collections::HashMap<String, (u64, u64)> {
    let dir = match std::env::var("CELERIAC_TEST_RABBIT_DIR") {
        Ok(dir) if !dir.is_empty() => dir,
        _ => panic!(
            "CELERIAC_TEST_RABBIT_DIR is not set: this test reads unacked counts with \
             rabbitmqctl from the private node of scripts/test; run scripts/test"
        ),
    };
    let listing = node_ctl(
        std::path::Path::new(&dir),
        &[
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ],
    );
    parse_counts(&listing)
}

/// `name ready unacked` lines, tab-separated, by name.
fn parse_counts(listing: &str) -> std::collections::HashMap<String, (u64, u64)> {
    let mut counts = std::collections::HashMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if let [name, ready, unacked] = fields[..] {
            let count = |field: &str| {
                field
                    .trim()
                    .parse::<u64>()
                    .unwrap_or_else(|error| panic!("a count in {line:?}: {error}"))
            };
            counts.insert(name.to_string(), (count(ready), count(unacked)));
        }
    }
    counts
}

/// `(ready, unacked)` message counts of `queue`, read with rabbitmqctl from the private
/// node that scripts/test started. Blocking (0.4 to 1 s): from async code, use
/// `queue_counts_async` or `wait_for_counts`.
pub fn queue_counts(queue: &str) -> (u64, u64) {
    match all_queue_counts().get(queue) {
        Some(counts) => *counts,
        None => panic!("queue {queue} is not in rabbitmqctl's listing"),
    }
}

/// Waits until `condition` holds over the `(ready, unacked)` counts of `queues` (in that
/// order; a queue that does not exist counts as `(0, 0)`), read with rabbitmqctl on a
/// blocking thread so that a worker in this process keeps running however long the call
/// takes. Fails after `timeout` (checked after each reading) with `what` and the counts.
pub async fn wait_for_counts(
    what: &str,
    timeout: Duration,
    queues: &[&str],
    mut condition: impl FnMut(&[(u64, u64)]) -> bool,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let all = actix_rt::task::spawn_blocking(all_queue_counts)
            .await
            .expect("the rabbitmqctl thread");
        let counts: Vec<(u64, u64)> = queues
            .iter()
            .map(|queue| all.get(*queue).copied().unwrap_or((0, 0)))
            .collect();
        if condition(&counts) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; (ready, unacked) of {queues:?}: {counts:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(ready, unacked)` message counts of `queue` on the node of scripts/test, read with
/// rabbitmqctl on a blocking thread: the actix system (a worker in this process) keeps
/// running however long the call takes.
pub async fn queue_counts_async(queue: &str) -> (u64, u64) {
    let queue = queue.to_string();
    actix_rt::task::spawn_blocking(move || queue_counts(&queue))
        .await
        .expect("the rabbitmqctl thread")
}

/// The number of consumers of `queue` on the node of scripts/test, read with rabbitmqctl
/// on a blocking thread.
pub async fn queue_consumers_async(queue: &str) -> u64 {
    let queue = queue.to_string();
    actix_rt::task::spawn_blocking(move || queue_consumers(&queue))
        .await
        .expect("the rabbitmqctl thread")
}

/// Evaluates the async `condition` until it holds, failing after `timeout` with `what`.
/// For conditions that take time to evaluate (rabbitmqctl): the deadline is checked after
/// each evaluation, so a slow call never makes the wait give up early.
pub async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `condition` until it holds, failing after `timeout` with `what`. `condition`
/// must not block (no rabbitmqctl: use `wait_until_async`).
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `test.add(x, y)`.
pub struct Add;

/// Arguments of `test.add`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddArgs {
    pub x: i64,
    pub y: i64,
}

impl Task for Add {
    const NAME: &'static str = "test.add";
    type Args = AddArgs;
    type Output = i64;
    async fn run(_ctx: TaskContext, args: AddArgs) -> Result<i64, TaskError> {
        Ok(args.x + args.y)
    }
}

/// `test.panic(message)`: panics.
pub struct Panic;

impl Task for Panic {
    const NAME: &'static str = "test.panic";
    type Args = (String,);
    type Output = ();
    async fn run(_ctx: TaskContext, (message,): (String,)) -> Result<(), TaskError> {
        panic!("{message}")
    }
}

/// `test.slow(ms)`: waits `ms` milliseconds, returns them.
pub struct Slow;

impl Task for Slow {
    const NAME: &'static str = "test.slow";
    type Args = (u64,);
    type Output = u64;
    async fn run(_ctx: TaskContext, (ms,): (u64,)) -> Result<u64, TaskError> {
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
}

/// The number of consumers of `queue` on the private node of scripts/test, read with
/// rabbitmqctl (blocking: from async code, use `queue_consumers_async`).
pub fn queue_consumers(queue: &str) -> u64 {
    let dir = std::env::var("CELERIAC_TEST_RABBIT_DIR")
        .ok()
        .filter(|dir| !dir.is_empty())
        .expect("CELERIAC_TEST_RABBIT_DIR is not set: run scripts/test");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq");
    let output = std::process::Command::new(script)
        .args(["ctl", &dir, "list_queues", "-q", "--no-table-headers"])
        .args(["name", "consumers"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl list_queues failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .map(|(_, consumers)| consumers.trim().parse().expect("a count"))
        .unwrap_or_else(|| panic!("queue {queue} is not in rabbitmqctl's listing:\n{listing}"))
}

/// Gates that `test.held` tasks wait on, by name (a test uses its queue's name).
type Gates = std::collections::HashMap<String, std::sync::Arc<tokio::sync::watch::Sender<bool>>>;
static GATES: std::sync::Mutex<Option<Gates>> = std::sync::Mutex::new(None);

/// The gate called `name`, created closed.
fn gate(name: &str) -> std::sync::Arc<tokio::sync::watch::Sender<bool>> {
    GATES
        .lock()
        .expect("the gates")
        .get_or_insert_with(std::collections::HashMap::new)
        .entry(name.to_string())
        .or_insert_with(|| std::sync::Arc::new(tokio::sync::watch::Sender::new(false)))
        .clone()
}

/// Opens gate `name`: every `test.held(name)` task waiting on it (or started later) ends.
pub fn open_gate(name: &str) {
    gate(name).send_replace(true);
}

/// Resolves once gate `name` is open. Runtime-agnostic: a blocking task can wait for it
/// with `futures::executor::block_on`.
pub async fn gate_opened(name: &str) {
    let mut open = gate(name).subscribe();
    let _ = open.wait_for(|open| *open).await;
}

/// `test.held(gate)`: runs until the test opens gate `gate` (`open_gate`), then returns
/// the gate's name. Holds a slot for as long as the test needs, whatever the machine's
/// speed: no task duration to guess.
pub struct Held;

impl Task for Held {
    const NAME: &'static str = "test.held";
    type Args = (String,);
    type Output = String;
    async fn run(_ctx: TaskContext, (name,): (String,)) -> Result<String, TaskError> {
        gate_opened(&name).await;
        Ok(name)
    }
}

/// A RabbitMQ node of the test's own (for tests that stop or restart the broker, which
/// must never touch the shared node), stopped and deleted when dropped.
pub struct PrivateNode {
    /// The node's data directory (scripts/rabbitmq's DIR).
    pub dir: std::path::PathBuf,
    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub url: String,
}

impl PrivateNode {
    /// Boots a node with RabbitMQ's defaults.
    pub fn start() -> Self {
        Self::boot(None)
    }

    /// Boots a node whose `consumer_timeout` is `ms` milliseconds.
    pub fn with_consumer_timeout(ms: u32) -> Self {
        Self::boot(Some(ms))
    }

    fn boot(consumer_timeout_ms: Option<u32>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("celeriac-node-{}", uuid::Uuid::new_v4().simple()));
        let mut command = std::process::Command::new(rabbitmq_script());
        command.arg("start").arg(&dir);
        if let Some(ms) = consumer_timeout_ms {
            command.env("CELERIAC_RABBIT_CONSUMER_TIMEOUT_MS", ms.to_string());
        }
        let output = command.output().expect("scripts/rabbitmq runs");
        assert!(
            output.status.success(),
            "could not start a private RabbitMQ node (needs rabbitmq-server; scripts/test \
             installs it): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env = String::from_utf8_lossy(&output.stdout);
        let url = env
            .lines()
            .find_map(|line| line.strip_prefix("CELERIAC_TEST_AMQP_URL="))
            .expect("the node's URL")
            .to_string();
        PrivateNode { dir, url }
    }

    /// Runs `rabbitmqctl args` on this node; answers its output, fails with its error.
    /// Blocking: from async code, use `ctl_async`.
    pub fn ctl(&self, args: &[&str]) -> String {
        node_ctl(&self.dir, args)
    }

    /// Runs `rabbitmqctl args` on a blocking thread, so the actix system keeps running.
    pub async fn ctl_async(&self, args: &[&str]) -> String {
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_string()).collect();
        actix_rt::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            node_ctl(&dir, &args)
        })
        .await
        .expect("the rabbitmqctl thread")
    }

    /// `(ready, unacked)` message counts of `queue` on this node.
    pub fn queue_counts(&self, queue: &str) -> (u64, u64) {
        let listing = self.ctl(&[
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ]);
        for line in listing.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            if let [name, ready, unacked] = fields[..] {
                if name == queue {
                    return (
                        ready.trim().parse().expect("a count"),
                        unacked.trim().parse().expect("a count"),
                    );
                }
            }
        }
        panic!("queue {queue} is not on the private node:\n{listing}");
    }
}

/// scripts/rabbitmq.
fn rabbitmq_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq")
}

/// Runs `rabbitmqctl args` on the node under `dir` (blocking: call it off the worker's
/// thread); answers its output, fails with its error.
pub fn node_ctl(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(rabbitmq_script())
        .arg("ctl")
        .arg(dir)
        .args(args)
        .output()
        .expect("scripts/rabbitmq runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {} failed on the node under {}: {}{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        let _ = std::process::Command::new(rabbitmq_script())
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub mod cluster;
pub mod events;
pub mod proxy;
pub mod redis_server;
pub mod tls;

/// A loopback port nobody listens on (bound, then released): for unreachable servers, or a
/// server a test starts on it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Publishes `message` (encoded as the worker's producer encodes it) on `queue` through the
/// default exchange, as a producer that bypasses celeriac's `Producer` would.
pub async fn publish_task_message(
    broker: &BrokerClient,
    queue: &str,
    message: &celeriac::protocol::TaskMessage,
) {
    let (properties, body) = message.encode().expect("encodes");
    broker
        .publish(celeriac::actors::OutboundMessage {
            exchange: String::new(),
            routing_key: queue.to_string(),
            properties,
            body,
        })
        .await
        .expect("published");
}

/// A Python Celery 5.7 worker (tests/python/py_worker_app.py, the `pyinterop.*` tasks) on
/// `queue`, named `node`, storing results in `backend` (`rpc://` or a Redis URL); killed when
/// dropped.
pub fn python_worker(queue: &str, node: &str, backend: &str) -> KillOnDrop {
    python_worker_with(queue, node, backend, &[])
}

/// [`python_worker`] with more options of `celery worker` (`-E` for task events).
pub fn python_worker_with(queue: &str, node: &str, backend: &str, more: &[&str]) -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new(python())
            .args(["-m", "celery", "-A", "py_worker_app", "worker", "-Q", queue])
            .args(more)
            .args([
                "--pool=solo",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
            ])
            .args(["--without-heartbeat", "--loglevel=WARNING"])
            .arg(format!("--hostname={node}"))
            .current_dir(python_dir())
            .env("CELERIAC_TEST_AMQP_URL", amqp_url())
            .env("CELERIAC_QUEUE", queue)
            .env("CELERIAC_PY_RESULT_BACKEND", backend)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the Python worker starts"),
    )
}
