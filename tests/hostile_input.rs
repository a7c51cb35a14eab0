//! Hostile input against a real worker process (the `interop` example) on RabbitMQ: a
//! bincode body that declares a 1 TiB string, compression bombs, refused content types and
//! a huge error text. Each is rejected with a log line that names the problem, no log line
//! is longer than a few hundred bytes of quoted input, the worker keeps serving, and its
//! peak memory stays far below what any of these messages declares.

mod common;

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::time::Duration;

use celeriac::actors::amqp::{AMQPValue, BasicProperties};
use celeriac::actors::OutboundMessage;
use celeriac::protocol::TaskMessage;
use celeriac::{BrokerClient, Producer, Signature};
use serde_json::{json, Map};

use common::*;

const WAIT: Duration = Duration::from_secs(60);

/// The worker's `CELERIAC_MAX_MESSAGE_SIZE` in this test: 1 MiB.
const SIZE_LIMIT: usize = 1024 * 1024;

/// How many bombs are sent: twice the worker's prefetch window (concurrency 2 x 4), so
/// that a whole window of them is in the worker at once.
const BOMBS: usize = 16;

/// What one bomb inflates to: 128 MiB of JSON (about 130 KB compressed).
const BOMB_INFLATED: usize = 128 * 1024 * 1024;

/// The bound on the worker's peak RSS. Derivation: the worker idles at about 15 MiB;
/// each delivery in the window may hold its body (at most `SIZE_LIMIT` compressed) and at
/// most `SIZE_LIMIT` + 1 inflated bytes (inflating stops there), and decoding happens one
/// delivery at a time per thread, so the window adds at most 8 x 2 MiB = 16 MiB. Without
/// the inflation cap a single bomb costs 128 MiB; without the bincode limit the first
/// bincode message aborts the process.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// A `[["aaa...aaa"], {}, {}]` body of `size` bytes, zlib-compressed as Celery's
/// `compression='gzip'` sends it.
fn compressed_json_body(size: usize) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(b"[[\"").unwrap();
    let chunk = vec![b'a'; 1024 * 1024];
    let mut left = size.saturating_sub(16);
    while left > 0 {
        let take = left.min(chunk.len());
        encoder.write_all(&chunk[..take]).unwrap();
        left -= take;
    }
    encoder.write_all(b"\"], {}, {}]").unwrap();
    encoder.finish().unwrap()
}

/// A raw message for `task` with task id `id`: the properties and headers a celeriac
/// producer writes, then the body and content type replaced.
fn raw(
    queue: &str,
    task: &str,
    id: &str,
    content_type: &str,
    compression: Option<&str>,
    body: Vec<u8>,
) -> OutboundMessage {
    let (properties, _) = TaskMessage::new_json(task, id, vec![json!(1)], Map::new())
        .encode()
        .expect("the message encodes");
    let mut headers = properties.headers().clone().unwrap_or_default();
    if let Some(compression) = compression {
        headers.insert(
            "compression".into(),
            AMQPValue::LongString(compression.into()),
        );
    }
    let properties: BasicProperties = properties
        .with_content_type(content_type.into())
        .with_headers(headers);
    OutboundMessage {
        exchange: String::new(),
        routing_key: queue.to_string(),
        properties,
        body,
    }
}

/// The 9-byte bincode body that declares a string of 2^40 bytes.
fn bincode_length_bomb() -> Vec<u8> {
    let mut body = vec![0xFD];
    body.extend_from_slice(&(1u64 << 40).to_le_bytes());
    body
}

/// An `interop` worker process on `queue`, logging to `log`.
fn start_worker(queue: &str, accept: &str, log: &std::path::Path) -> KillOnDrop {
    let log_file = std::fs::File::create(log).expect("the log file is created");
    let child = common::example_command("interop")
        .env("CELERIAC_RESULT_BACKEND", "rpc://")
        .env("CELERIAC_BROKER_URL", amqp_url())
        .env("CELERIAC_QUEUE", queue)
        .env("CELERIAC_CONCURRENCY", "2")
        .env("CELERIAC_PREFETCH_MULTIPLIER", "4")
        .env("CELERIAC_MAX_MESSAGE_SIZE", SIZE_LIMIT.to_string())
        .env("CELERIAC_ACCEPT_CONTENT", accept)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("the interop example starts");
    KillOnDrop(child)
}

/// The worker's log lines so far.
fn log_lines(log: &std::path::Path) -> Vec<String> {
    let file = std::fs::File::open(log).expect("the log file opens");
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .collect()
}

/// Peak resident set size of `pid` in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

/// Waits until the worker has logged `count` lines containing `needle`; fails with the
/// end of the worker's log.
async fn wait_for_log(worker: &mut KillOnDrop, log: &std::path::Path, needle: &str, count: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let lines = log_lines(log);
        if lines.iter().filter(|line| line.contains(needle)).count() >= count {
            return;
        }
        let exited = worker.0.try_wait().expect("wait on the worker");
        if exited.is_some() || std::time::Instant::now() >= deadline {
            let tail: Vec<String> = lines
                .iter()
                .rev()
                .take(20)
                .rev()
                .map(|line| line.chars().take(300).collect())
                .collect();
            let what = match exited {
                Some(status) => format!("the worker exited ({status})"),
                None => format!("timed out after {WAIT:?}"),
            };
            panic!(
                "{what} waiting for {count} log lines containing {needle:?}; \
                 the worker's log ends with:\n{}",
                tail.join("\n")
            );
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A task that must still run after the hostile ones: `interop.add(2, 3)` = 5.
async fn still_serving(broker: &BrokerClient, queue: &str) {
    let producer = Producer::new(broker.clone(), &config(1))
        .with_rpc_results()
        .await
        .expect("the reply queue is declared");
    let result = producer
        .send_signature_with_result(
            Signature::new("interop.add")
                .with_args(vec![2.into(), 3.into()])
                .with_queue(queue),
        )
        .await
        .expect("the task is sent");
    let value = result
        .get(WAIT)
        .await
        .expect("the worker still runs tasks after the hostile messages");
    assert_eq!(value, json!(5));
}

/// No line quotes more than a few hundred bytes of input.
fn assert_log_lines_short(log: &std::path::Path) {
    for line in log_lines(log) {
        assert!(
            line.len() < 2048,
            "a log line of {} bytes: {}...",
            line.len(),
            &line[..200]
        );
    }
}

/// A worker process under attack, with its queue, its log and the broker the test uses.
struct Target {
    broker: BrokerClient,
    queue: String,
    dir: std::path::PathBuf,
    log: std::path::PathBuf,
    worker: KillOnDrop,
}

impl Target {
    /// Starts an `interop` worker accepting `accept` on a fresh queue and waits until it
    /// consumes.
    async fn start(name: &str, accept: &str) -> Target {
        let broker = connect(&config(1)).await;
        let queue = unique_queue(name);
        let dir = std::env::temp_dir().join(format!("celeriac-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let log = dir.join("worker.log");
        let mut worker = start_worker(&queue, accept, &log);
        wait_for_log(&mut worker, &log, "worker started", 1).await;
        Target {
            broker,
            queue,
            dir,
            log,
            worker,
        }
    }

    /// Publishes a raw message to the worker's queue.
    async fn publish(
        &self,
        task: &str,
        id: &str,
        content_type: &str,
        compression: Option<&str>,
        body: Vec<u8>,
    ) {
        self.broker
            .publish(raw(&self.queue, task, id, content_type, compression, body))
            .await
            .expect("published");
    }

    /// Waits until the worker has logged `count` lines containing `needle`.
    async fn logged(&mut self, needle: &str, count: usize) {
        wait_for_log(&mut self.worker, &self.log, needle, count).await;
    }

    /// Checks that the worker still serves, that its peak RSS stayed under the bound and
    /// that no log line quotes much input; then stops it and cleans up.
    async fn finish(mut self, what: &str) {
        still_serving(&self.broker, &self.queue).await;
        assert!(
            self.worker
                .0
                .try_wait()
                .expect("wait on the worker")
                .is_none(),
            "the worker exited"
        );
        let peak = peak_rss_kib(self.worker.0.id());
        println!("{what}: peak RSS {} MiB", peak / 1024);
        assert!(
            peak < RSS_BOUND_KIB,
            "the worker's peak RSS is {peak} KiB, over the bound of {RSS_BOUND_KIB} KiB"
        );
        assert_log_lines_short(&self.log);
        let exit = self.worker.terminate(WAIT).await;
        assert!(exit.success(), "the worker exited with {exit}");
        delete_queues(&self.broker, &[&self.queue]).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[actix_rt::test]
async fn a_json_only_worker_refuses_bincode_and_bombs_and_keeps_serving() {
    let mut target = Target::start("hostile-json", "json").await;

    // The 9-byte bincode message: bincode is not accepted by default.
    let bomb = bincode_length_bomb();
    target
        .publish(
            "interop.touch",
            "bincode-bomb",
            "application/x-bincode",
            None,
            bomb,
        )
        .await;
    target
        .logged("is not accepted (accepted: application/json)", 1)
        .await;

    // Compression bombs: each inflates to 128 MiB against a 1 MiB limit.
    let bomb = compressed_json_body(BOMB_INFLATED);
    assert!(bomb.len() < SIZE_LIMIT, "the bomb is {} bytes", bomb.len());
    for index in 0..BOMBS {
        let id = format!("bomb-{index}");
        let gzip = Some("application/x-gzip");
        target
            .publish("interop.echo", &id, "application/json", gzip, bomb.clone())
            .await;
    }
    target
        .logged(
            "inflates to more than the size limit of 1048576 bytes",
            BOMBS,
        )
        .await;

    // A task that fails with a 900 KB error message: its log line is clipped.
    let long = "z".repeat(900 * 1024);
    let producer = Producer::new(target.broker.clone(), &config(1));
    producer
        .send_signature(
            Signature::new("interop.fail")
                .with_args(vec![long.into()])
                .with_queue(&target.queue),
        )
        .await
        .expect("sent");
    target.logged("bytes in all)", 1).await;

    target
        .finish(&format!("json-only worker after {BOMBS} compression bombs"))
        .await;
}

#[actix_rt::test]
async fn a_worker_that_accepts_bincode_refuses_hostile_length_prefixes() {
    let mut target = Target::start("hostile-bincode", "json,bincode").await;

    // Sent twice the prefetch window over: the worker must survive every one of them.
    for index in 0..BOMBS {
        let id = format!("bincode-bomb-{index}");
        let bomb = bincode_length_bomb();
        target
            .publish("interop.touch", &id, "application/x-bincode", None, bomb)
            .await;
    }
    // And a body with trailing bytes after valid arguments: `interop.fail("x")` + junk.
    let mut trailing =
        bincode::serde::encode_to_vec(("x".to_string(),), bincode::config::standard()).unwrap();
    trailing.extend_from_slice(b"junk");
    target
        .publish(
            "interop.fail",
            "trailing",
            "application/x-bincode",
            None,
            trailing,
        )
        .await;
    target
        .logged("more than the limit of 1048576 bytes", BOMBS)
        .await;
    target
        .logged("4 trailing bytes after the arguments", 1)
        .await;

    target
        .finish(&format!("bincode worker after {BOMBS} length bombs"))
        .await;
}
