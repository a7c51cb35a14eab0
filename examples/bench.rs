//! Throughput, latency and footprint of celeriac against RabbitMQ, next to a raw lapin
//! baseline measured in the same run.
//!
//! ```text
//! scripts/bench                                  # private RabbitMQ node, release build
//! CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --release --example bench
//! ```
//!
//! Environment: `CELERIAC_BROKER_URL` (required), `BENCH_N` (messages per throughput
//! phase, default 20000), `BENCH_LATENCY_N` (tasks sent one at a time, default 1000),
//! `BENCH_CONCURRENCY` (worker concurrency, default 8; prefetch = concurrency x 4 as
//! celeriac's default multiplier), `BENCH_IN_FLIGHT` (unconfirmed publishes, default 512),
//! `BENCH_ROUNDS` (publish and drain rounds, raw and celeriac alternating; the median
//! counts; default 3), `BENCH_SEND_EVENTS` (`true`: celeriac workers send task events,
//! as `CELERIAC_SEND_EVENTS`; default false), `BENCH_REDIS_URL` (a Redis the bench may
//! empty: adds the drain with results stored there), `BENCH_ONLY=results` (only that drain).
//!
//! Figures:
//! - publish: N Celery-format `bench.add(x, y)` messages with publisher confirms, at most
//!   `BENCH_IN_FLIGHT` unconfirmed; celeriac through `Producer::send_signature`, raw lapin
//!   publishing the same encoded bytes and properties.
//! - drain: a worker process (this binary re-run with `BENCH_ROLE=worker`) started on a
//!   queue pre-filled with N messages, timed from the start of consuming until N tasks ran
//!   (raw: N deliveries received and acked with `multiple=true`); afterwards the worker
//!   stops and the queue must hold 0 messages (nothing left ready or unacked).
//! - latency: one task at a time to an idle worker in this process, from just before the
//!   send until the task starts (raw: until the consumer receives it); p50 and p99.
//! - footprint: a worker process on an empty queue: VmRSS once idle after startup; then N
//!   tasks are published to it; CPU seconds (utime + stime) per 1,000 tasks, and VmHWM.
//! - drain with results (with `BENCH_REDIS_URL`): the same drain, timed until the N-th
//!   result is stored in Redis (DBSIZE reaches N), for a celeriac worker with
//!   `result_backend` = that Redis (with and without `result_extended`), next to a raw
//!   lapin consumer that stores each document itself (`SETEX` + `PUBLISH`, pipelined per
//!   ack batch), and next to both sides storing nothing.
//!
//! Profiling aids: `BENCH_ROLE=fill BENCH_QUEUE=q` publishes N messages to `q`;
//! `BENCH_ROLE=worker BENCH_SIDE=celeriac|raw BENCH_QUEUE=q BENCH_EXPECT=n` consumes them
//! (see BENCHMARKS.md).
//!
//! It prints every figure and the celeriac/raw ratios against the targets, and never
//! exits non-zero because of a figure: only when the broker or a worker process fails.

#[path = "bench/raw.rs"]
mod raw;
#[path = "bench/stats.rs"]
mod stats;
#[path = "bench/store.rs"]
mod store;

use std::error::Error;
use std::io::{BufRead, Write};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use celeriac::actors::amqp::BasicProperties;
use celeriac::protocol::TaskMessage;
use celeriac::{connect_broker, Config, Producer, Signature, Task, TaskContext, TaskError};
use celeriac::{BrokerClient, WorkerSystem};
use futures::StreamExt;
use tokio::sync::{mpsc, Notify};

use stats::{Row, Target};

type BoxError = Box<dyn Error>;

/// The task name every bench message carries.
const TASK: &str = "bench.add";

// ---------------------------------------------------------------------------------------
// The task, and how it reports back without going through the worker's event channel.

/// Tasks started in this process.
static STARTED: AtomicUsize = AtomicUsize::new(0);
/// `ALL_STARTED` is notified when `STARTED` reaches this.
static TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);
static ALL_STARTED: Notify = Notify::const_new();
/// When set, every task sends the instant it started (latency phase).
static START_TIMES: OnceLock<mpsc::UnboundedSender<Instant>> = OnceLock::new();

/// Notes that a task (or a raw delivery) started.
fn task_started() {
    if let Some(times) = START_TIMES.get() {
        let _ = times.send(Instant::now());
    }
    if STARTED.fetch_add(1, Ordering::AcqRel) + 1 == TARGET.load(Ordering::Acquire) {
        ALL_STARTED.notify_one();
    }
}

/// `bench.add(x, y)`: a no-op addition.
struct BenchAdd;

impl Task for BenchAdd {
    const NAME: &'static str = TASK;
    type Args = (i64, i64);
    type Output = i64;

    async fn run(_ctx: TaskContext, (x, y): (i64, i64)) -> Result<i64, TaskError> {
        task_started();
        Ok(x.wrapping_add(y))
    }
}

// ---------------------------------------------------------------------------------------
// Settings.

#[derive(Debug, Clone)]
struct Settings {
    url: String,
    n: usize,
    latency_n: usize,
    concurrency: usize,
    prefetch: u16,
    in_flight: usize,
    rounds: usize,
    /// Whether celeriac workers send task events (`BENCH_SEND_EVENTS`).
    send_events: bool,
    /// A Redis the bench may empty, for the drain with results.
    redis_url: Option<String>,
    /// Only the drain with results.
    only_results: bool,
}

impl Settings {
    fn from_env() -> Result<Self, BoxError> {
        let url = std::env::var("CELERIAC_BROKER_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
            .ok_or(
                "CELERIAC_BROKER_URL is not set: the bench needs a RabbitMQ, e.g. \
                 CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
                 (scripts/bench starts a private node and sets it)",
            )?;
        let number = |name: &str, default: usize| -> Result<usize, BoxError> {
            match std::env::var(name) {
                Ok(value) if !value.trim().is_empty() => {
                    let number: usize = value
                        .trim()
                        .parse()
                        .map_err(|_| format!("{name}={value:?} is not a whole number"))?;
                    if number == 0 {
                        return Err(format!("{name} must be at least 1").into());
                    }
                    Ok(number)
                }
                _ => Ok(default),
            }
        };
        let concurrency = number("BENCH_CONCURRENCY", 8)?;
        Ok(Settings {
            url,
            n: number("BENCH_N", 20_000)?,
            latency_n: number("BENCH_LATENCY_N", 1_000)?,
            concurrency,
            prefetch: u16::try_from(concurrency.saturating_mul(4)).unwrap_or(u16::MAX),
            in_flight: number("BENCH_IN_FLIGHT", 512)?,
            rounds: number("BENCH_ROUNDS", 3)?,
            send_events: std::env::var("BENCH_SEND_EVENTS")
                .is_ok_and(|value| matches!(value.trim(), "1" | "true" | "yes" | "on")),
            redis_url: std::env::var("BENCH_REDIS_URL")
                .ok()
                .map(|url| url.trim().to_string())
                .filter(|url| !url.is_empty()),
            only_results: match std::env::var("BENCH_ONLY").as_deref() {
                Ok("results") => true,
                Ok("") | Err(_) => false,
                Ok(other) => {
                    return Err(format!("BENCH_ONLY={other:?}: only \"results\" is known").into())
                }
            },
        })
    }

    /// The Redis of the drain with results.
    fn redis_url(&self) -> Result<&str, BoxError> {
        self.redis_url.as_deref().ok_or_else(|| {
            "BENCH_REDIS_URL is not set: the drain with results needs a Redis it may empty \
             (BENCH_REDIS=1 scripts/bench starts a private one)"
                .into()
        })
    }

    /// celeriac's configuration for the bench.
    fn config(&self, queue: &str) -> Config {
        Config {
            broker_url: self.url.clone(),
            default_queue: queue.to_string(),
            concurrency: self.concurrency,
            prefetch_multiplier: 4,
            connection_name: "celeriac-bench".into(),
            send_events: self.send_events,
            ..Config::default()
        }
    }
}

/// A queue name unique to this run.
fn queue_name(phase: &str, side: &str) -> String {
    format!("bench.{phase}.{side}.{}", std::process::id())
}

/// `count` encoded `bench.add(i, i)` messages, each with its own id, as celeriac sends them.
fn encode_messages(count: usize) -> Result<Vec<(BasicProperties, Vec<u8>)>, BoxError> {
    (0..count)
        .map(|i| {
            let id = uuid::Uuid::new_v4().to_string();
            let x = serde_json::Value::from(i as i64);
            TaskMessage::new_json(TASK, &id, vec![x.clone(), x], Default::default())
                .encode()
                .map_err(|error| format!("encoding a bench message: {error}").into())
        })
        .collect()
}

/// The median of `values` (the upper one of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------------------------------
// Entry point.

#[actix::main]
async fn main() -> ExitCode {
    let role = std::env::var("BENCH_ROLE").unwrap_or_default();
    let outcome = match role.as_str() {
        "" => orchestrate().await,
        "worker" => worker_role().await,
        "fill" => fill_role().await,
        other => Err(format!("unknown BENCH_ROLE={other:?} (\"worker\" or \"fill\")").into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "bench{}: {error}",
                if role.is_empty() { "" } else { " worker" }
            );
            ExitCode::FAILURE
        }
    }
}

async fn orchestrate() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    println!(
        "celeriac bench: broker {}, N = {}, latency N = {}, concurrency {}, prefetch {}, \
         {} publishes in flight, task events {}",
        raw::redact(&settings.url),
        settings.n,
        settings.latency_n,
        settings.concurrency,
        settings.prefetch,
        settings.in_flight,
        if settings.send_events { "on" } else { "off" }
    );
    let sample = encode_messages(1)?;
    let (properties, body) = &sample[0];
    let size = stats::wire_size(properties, body, &queue_name("drain", "celeriac"));
    println!(
        "message: body {} B + properties {} B (headers table {} B) = {} B; \
         all three publish frames {} B",
        size.body,
        size.properties,
        size.headers,
        size.body + size.properties,
        size.frames
    );

    let connection = raw::connect(&settings.url, "celeriac-bench-admin").await?;
    let admin = connection.create_channel().await?;
    if settings.only_results {
        drain_with_results(&settings, &connection, &admin).await?;
        let _ = connection.close(200, "OK".into()).await;
        return Ok(());
    }

    println!(
        "\n-- publish with confirms, N = {}, {} rounds",
        settings.n, settings.rounds
    );
    let (mut raw_publishes, mut celeriac_publishes) = (Vec::new(), Vec::new());
    for round in 1..=settings.rounds {
        let raw_rate = publish_raw(&settings, &connection).await?;
        let celeriac_rate = publish_celeriac(&settings, &admin).await?;
        println!(
            "round {round}: raw lapin {raw_rate:>7.0} msg/s, celeriac {celeriac_rate:>7.0} msg/s"
        );
        raw_publishes.push(raw_rate);
        celeriac_publishes.push(celeriac_rate);
    }
    let (raw_publish, celeriac_publish) = (median(raw_publishes), median(celeriac_publishes));
    println!("median : raw lapin {raw_publish:>7.0} msg/s, celeriac {celeriac_publish:>7.0} msg/s");

    println!(
        "\n-- drain a pre-filled queue, N = {}, {} rounds",
        settings.n, settings.rounds
    );
    let (mut raw_drains, mut celeriac_drains) = (Vec::new(), Vec::new());
    let (mut raw_drain_peak, mut celeriac_drain_peak) = (0, 0);
    for round in 1..=settings.rounds {
        let raw_drain = drain(&settings, &connection, &admin, Side::Raw).await?;
        let celeriac_drain = drain(&settings, &connection, &admin, Side::Celeriac).await?;
        println!(
            "round {round}: raw lapin {:>7.0} msg/s, celeriac {:>7.0} msg/s",
            raw_drain.rate, celeriac_drain.rate
        );
        raw_drains.push(raw_drain.rate);
        celeriac_drains.push(celeriac_drain.rate);
        raw_drain_peak = raw_drain_peak.max(raw_drain.peak_kib);
        celeriac_drain_peak = celeriac_drain_peak.max(celeriac_drain.peak_kib);
    }
    let (raw_drain, celeriac_drain) = (median(raw_drains), median(celeriac_drains));
    println!("median : raw lapin {raw_drain:>7.0} msg/s, celeriac {celeriac_drain:>7.0} msg/s");

    println!(
        "\n-- latency, send to task start, {} tasks one at a time",
        settings.latency_n
    );
    let raw_latency = latency_raw(&settings, &connection, &admin).await?;
    print_latency("raw lapin", &raw_latency);
    let celeriac_latency = latency_celeriac(&settings, &admin).await?;
    print_latency("celeriac ", &celeriac_latency);

    println!(
        "\n-- worker footprint: idle, then N = {} tasks published to it",
        settings.n
    );
    let raw_footprint = footprint(&settings, &connection, &admin, Side::Raw).await?;
    print_footprint("raw lapin", &raw_footprint);
    let celeriac_footprint = footprint(&settings, &connection, &admin, Side::Celeriac).await?;
    print_footprint("celeriac ", &celeriac_footprint);

    if settings.redis_url.is_some() {
        drain_with_results(&settings, &connection, &admin).await?;
    }
    let _ = connection.close(200, "OK".into()).await;

    let mib = |kib: u64| kib as f64 / 1024.0;
    let micros = |duration: Duration| duration.as_secs_f64() * 1e6;
    let rows = [
        Row {
            figure: "publish with confirms (msg/s)".into(),
            celeriac: celeriac_publish,
            raw: raw_publish,
            decimals: 0,
            target: Target::RatioAtLeast(0.9),
        },
        Row {
            figure: "drain, executed + acked (msg/s)".into(),
            celeriac: celeriac_drain,
            raw: raw_drain,
            decimals: 0,
            target: Target::RatioAtLeast(0.95),
        },
        Row {
            figure: "latency send -> start p50 (us)".into(),
            celeriac: micros(celeriac_latency.p50),
            raw: micros(raw_latency.p50),
            decimals: 0,
            target: Target::None,
        },
        Row {
            figure: "latency send -> start p99 (us)".into(),
            celeriac: micros(celeriac_latency.p99),
            raw: micros(raw_latency.p99),
            decimals: 0,
            target: Target::RatioAtMost(1.3),
        },
        Row {
            figure: "worker RSS, idle after startup (MiB)".into(),
            celeriac: mib(celeriac_footprint.idle.rss_kib),
            raw: mib(raw_footprint.idle.rss_kib),
            decimals: 1,
            target: Target::AtMost(20.0),
        },
        Row {
            figure: "worker peak RSS, VmHWM (MiB)".into(),
            celeriac: mib(celeriac_footprint.peak_kib.max(celeriac_drain_peak)),
            raw: mib(raw_footprint.peak_kib.max(raw_drain_peak)),
            decimals: 1,
            target: Target::None,
        },
        Row {
            figure: "worker CPU s per 1,000 tasks".into(),
            celeriac: celeriac_footprint.cpu_per_thousand,
            raw: raw_footprint.cpu_per_thousand,
            decimals: 4,
            target: Target::AtMost(0.04),
        },
    ];
    println!("\n{}", stats::render_table(&rows));
    println!(
        "CPU time from /proc/<pid>/stat at {} ticks/s (getconf CLK_TCK); RSS from \
         /proc/<pid>/status. Targets are checked on this run's figures only; a missed \
         target does not fail the bench.",
        stats::clock_ticks_per_second()
    );
    Ok(())
}

/// The drain of a pre-filled queue with results stored in Redis, next to the same drain
/// storing nothing: rounds of the five sides in turn, medians, and a table.
async fn drain_with_results(
    settings: &Settings,
    connection: &lapin::Connection,
    admin: &lapin::Channel,
) -> Result<(), BoxError> {
    let url = settings.redis_url()?;
    println!(
        "\n-- drain with results in Redis ({}), N = {}, {} rounds",
        raw::redact(url),
        settings.n,
        settings.rounds
    );
    let sides = [
        Side::Raw,
        Side::Celeriac,
        Side::RawRedis,
        Side::CeleriacRedis,
        Side::CeleriacRedisExtended,
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for round in 1..=settings.rounds {
        let mut line = format!("round {round}:");
        for (side, rates) in sides.iter().zip(rates.iter_mut()) {
            let rate = drain(settings, connection, admin, *side).await?.rate;
            line.push_str(&format!(" {} {rate:.0}", side.name()));
            rates.push(rate);
        }
        println!("{line} msg/s");
    }
    let medians: Vec<f64> = rates.into_iter().map(median).collect();
    let line: Vec<String> = sides
        .iter()
        .zip(&medians)
        .map(|(side, rate)| format!("{} {rate:.0}", side.name()))
        .collect();
    println!("median : {} msg/s", line.join(", "));
    let row = |figure: &str, celeriac: f64, raw: f64| Row {
        figure: figure.into(),
        celeriac,
        raw,
        decimals: 0,
        target: Target::None,
    };
    let rows = [
        row("drain, no results (msg/s)", medians[1], medians[0]),
        row("drain, results in Redis (msg/s)", medians[3], medians[2]),
        row(
            "drain, results in Redis, extended (msg/s)",
            medians[4],
            medians[2],
        ),
    ];
    println!("\n{}", stats::render_table(&rows));
    println!(
        "raw lapin with Redis: one SETEX + PUBLISH pipeline per ack batch (up to {} \
         deliveries), then one ack; celeriac: its Redis backend (one MULTI/SETEX/PUBLISH/EXEC \
         per result), early acks. With results, both are timed until the N-th result is \
         stored.",
        (settings.prefetch / 2).max(1)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (a) Publish.

async fn publish_raw(settings: &Settings, connection: &lapin::Connection) -> Result<f64, BoxError> {
    let queue = queue_name("publish", "raw");
    let channel = raw::confirm_channel(connection).await?;
    raw::declare(&channel, &queue).await?;
    let messages = encode_messages(settings.n)?;
    // Warm-up, not timed.
    raw::publish_all(
        &channel,
        &queue,
        &messages[..messages.len().min(500)],
        settings.in_flight,
    )
    .await?;
    let elapsed = raw::publish_all(&channel, &queue, &messages, settings.in_flight).await?;
    raw::delete(&channel, &queue).await?;
    let _ = channel.close(200, "OK".into()).await;
    Ok(per_second(settings.n, elapsed))
}

async fn publish_celeriac(settings: &Settings, admin: &lapin::Channel) -> Result<f64, BoxError> {
    let queue = queue_name("publish", "celeriac");
    let config = settings.config(&queue);
    let broker = connect_broker(&config).await?;
    let producer = Producer::new(broker.clone(), &config);
    let send_all = |count: usize| {
        let producer = producer.clone();
        async move {
            let started = Instant::now();
            let mut sends = futures::stream::iter((0..count).map(|i| {
                let x = serde_json::Value::from(i as i64);
                producer.send_signature(Signature::new(TASK).with_args(vec![x.clone(), x]))
            }))
            .buffer_unordered(settings.in_flight);
            while let Some(sent) = sends.next().await {
                sent.map_err(|error| format!("celeriac publish: {error}"))?;
            }
            Ok::<_, BoxError>(started.elapsed())
        }
    };
    send_all(settings.n.min(500)).await?; // warm-up (declares the queue), not timed
    let elapsed = send_all(settings.n).await?;
    raw::delete(admin, &queue).await?;
    broker.close().await?;
    Ok(per_second(settings.n, elapsed))
}

// ---------------------------------------------------------------------------------------
// (b) Drain and (d) footprint, in a worker process.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Celeriac,
    Raw,
    /// celeriac storing results in `BENCH_REDIS_URL`.
    CeleriacRedis,
    /// The same with `result_extended`.
    CeleriacRedisExtended,
    /// Raw lapin storing result documents in `BENCH_REDIS_URL` itself.
    RawRedis,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Celeriac => "celeriac",
            Side::Raw => "raw",
            Side::CeleriacRedis => "celeriac-redis",
            Side::CeleriacRedisExtended => "celeriac-redis-extended",
            Side::RawRedis => "raw-redis",
        }
    }

    /// Whether this side stores results in Redis.
    fn stores(self) -> bool {
        matches!(
            self,
            Side::CeleriacRedis | Side::CeleriacRedisExtended | Side::RawRedis
        )
    }
}

/// A worker process: this binary with `BENCH_ROLE=worker`, talking in lines on stdio.
struct WorkerProcess {
    child: std::process::Child,
    lines: futures::channel::mpsc::UnboundedReceiver<String>,
    stdin: Option<std::process::ChildStdin>,
}

impl WorkerProcess {
    fn spawn(
        settings: &Settings,
        side: Side,
        queue: &str,
        expect: usize,
    ) -> Result<Self, BoxError> {
        let exe = std::env::current_exe()
            .map_err(|error| format!("finding the bench binary to re-run: {error}"))?;
        let mut child = std::process::Command::new(exe)
            .env("BENCH_ROLE", "worker")
            .env("BENCH_SIDE", side.name())
            .env("BENCH_QUEUE", queue)
            .env("BENCH_EXPECT", expect.to_string())
            .env("BENCH_CONCURRENCY", settings.concurrency.to_string())
            .env("CELERIAC_BROKER_URL", &settings.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("starting the worker process: {error}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the worker process has no stdout")?;
        let (sender, lines) = futures::channel::mpsc::unbounded();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.unbounded_send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(WorkerProcess {
            child,
            lines,
            stdin,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line starting with `word`; answers the rest of it.
    async fn wait_for(&mut self, word: &str, timeout: Duration) -> Result<String, BoxError> {
        let line = tokio::time::timeout(timeout, self.lines.next())
            .await
            .map_err(|_| format!("the worker process did not say {word} within {timeout:?}"))?
            .ok_or_else(|| format!("the worker process exited before saying {word}"))?;
        line.strip_prefix(word)
            .map(|rest| rest.trim().to_string())
            .ok_or_else(|| format!("the worker process said {line:?}, expected {word}").into())
    }

    /// Asks the worker to stop, and waits until it has.
    async fn stop(mut self) -> Result<(), BoxError> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "STOP");
        }
        self.wait_for("STOPPED", Duration::from_secs(60)).await?;
        let status = self
            .child
            .wait()
            .map_err(|error| format!("waiting for the worker process: {error}"))?;
        if !status.success() {
            return Err(format!("the worker process exited with {status}").into());
        }
        Ok(())
    }
}

/// Drain figures.
struct Drain {
    rate: f64,
    peak_kib: u64,
}

async fn drain(
    settings: &Settings,
    connection: &lapin::Connection,
    admin: &lapin::Channel,
    side: Side,
) -> Result<Drain, BoxError> {
    let queue = queue_name("drain", side.name());
    raw::declare(admin, &queue).await?;
    let channel = raw::confirm_channel(connection).await?;
    let messages = encode_messages(settings.n)?;
    raw::publish_all(&channel, &queue, &messages, settings.in_flight).await?;
    let _ = channel.close(200, "OK".into()).await;
    let ready = raw::ready_count(connection, &queue).await?;
    if ready as usize != settings.n {
        return Err(format!(
            "queue {queue} holds {ready} messages after the fill, not {}",
            settings.n
        )
        .into());
    }
    let mut redis = match side.stores() {
        true => {
            let mut redis = store::connect(settings.redis_url()?).await?;
            store::flush(&mut redis).await?;
            Some(redis)
        }
        false => None,
    };
    let mut worker = WorkerProcess::spawn(settings, side, &queue, settings.n)?;
    worker.wait_for("READY", Duration::from_secs(60)).await?;
    let nanos: u64 = worker
        .wait_for("DONE", Duration::from_secs(600))
        .await?
        .parse()?;
    let proc_stats = stats::read_proc(worker.pid())?;
    worker.stop().await?;
    // The worker closed its connection: anything it had not acked would be ready again.
    let left = raw::ready_count(connection, &queue).await?;
    if left != 0 {
        println!(
            "WARNING: {left} messages left in {queue} after the {} drain",
            side.name()
        );
    }
    if let Some(redis) = redis.as_mut() {
        let stored = store::count(redis).await?;
        if stored != settings.n {
            println!(
                "WARNING: {stored} results stored by the {} drain, not {}",
                side.name(),
                settings.n
            );
        }
        store::flush(redis).await?;
    }
    raw::delete(admin, &queue).await?;
    Ok(Drain {
        rate: per_second(settings.n, Duration::from_nanos(nanos)),
        peak_kib: proc_stats.hwm_kib,
    })
}

/// Footprint figures.
struct Footprint {
    idle: stats::ProcStats,
    peak_kib: u64,
    cpu_per_thousand: f64,
}

fn print_footprint(label: &str, footprint: &Footprint) {
    println!(
        "{label} : idle RSS {:.1} MiB, peak RSS {:.1} MiB, {:.4} CPU s per 1,000 tasks",
        footprint.idle.rss_kib as f64 / 1024.0,
        footprint.peak_kib as f64 / 1024.0,
        footprint.cpu_per_thousand
    );
}

async fn footprint(
    settings: &Settings,
    connection: &lapin::Connection,
    admin: &lapin::Channel,
    side: Side,
) -> Result<Footprint, BoxError> {
    let queue = queue_name("footprint", side.name());
    raw::declare(admin, &queue).await?;
    let messages = encode_messages(settings.n)?;
    let mut worker = WorkerProcess::spawn(settings, side, &queue, settings.n)?;
    worker.wait_for("READY", Duration::from_secs(60)).await?;
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let idle = stats::read_proc(worker.pid())?;
    let channel = raw::confirm_channel(connection).await?;
    raw::publish_all(&channel, &queue, &messages, settings.in_flight).await?;
    worker.wait_for("DONE", Duration::from_secs(600)).await?;
    let busy = stats::read_proc(worker.pid())?;
    let _ = channel.close(200, "OK".into()).await;
    worker.stop().await?;
    raw::delete(admin, &queue).await?;
    let ticks = busy.cpu_ticks.saturating_sub(idle.cpu_ticks) as f64;
    let seconds = ticks / stats::clock_ticks_per_second() as f64;
    Ok(Footprint {
        idle,
        peak_kib: busy.hwm_kib,
        cpu_per_thousand: seconds / settings.n as f64 * 1000.0,
    })
}

/// The worker process: consumes `BENCH_QUEUE` until `BENCH_EXPECT` tasks started, says
/// `READY` once consuming, `DONE <nanoseconds from the start of consuming>`, then waits
/// for a line (or end of input) on stdin, stops warmly and says `STOPPED`.
async fn worker_role() -> Result<(), BoxError> {
    if std::env::var_os("RUST_LOG").is_some() {
        env_logger::init();
    }
    let settings = Settings::from_env()?;
    let queue = std::env::var("BENCH_QUEUE").map_err(|_| "BENCH_QUEUE is not set")?;
    let expect: usize = std::env::var("BENCH_EXPECT")
        .map_err(|_| "BENCH_EXPECT is not set")?
        .parse()
        .map_err(|_| "BENCH_EXPECT is not a number")?;
    let side = std::env::var("BENCH_SIDE").unwrap_or_default();
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = stop_tx.send(());
    });
    let say = |line: String| -> Result<(), BoxError> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        Ok(())
    };
    TARGET.store(expect, Ordering::Release);
    match side.as_str() {
        "celeriac" | "celeriac-redis" | "celeriac-redis-extended" => {
            let mut config = settings.config(&queue);
            // With results, the drain ends when the N-th result is stored.
            let mut results = None;
            if side != "celeriac" {
                let url = settings.redis_url()?;
                config.result_backend = Some(url.to_string());
                config.result_extended = side == "celeriac-redis-extended";
                results = Some(store::connect(url).await?);
            }
            let broker = connect_broker(&config).await?;
            let started = Instant::now();
            let worker = WorkerSystem::builder(broker, &config)
                .queue(queue.as_str())
                .register::<BenchAdd>()
                .start()
                .await?;
            say("READY".into())?;
            ALL_STARTED.notified().await;
            if let Some(results) = results.as_mut() {
                store::wait_for_results(results, expect, Duration::from_secs(600)).await?;
            }
            say(format!("DONE {}", started.elapsed().as_nanos()))?;
            let _ = stop_rx.await;
            worker.stop().await?;
        }
        "raw" => {
            let connection = raw::connect(&settings.url, "celeriac-bench-raw-worker").await?;
            let started = Instant::now();
            let (channel, mut consumer) =
                raw::consume(&connection, &queue, settings.prefetch).await?;
            say("READY".into())?;
            let batch = usize::from(settings.prefetch / 2).max(1);
            raw::receive(&mut consumer, expect, batch, task_started).await?;
            say(format!("DONE {}", started.elapsed().as_nanos()))?;
            let _ = stop_rx.await;
            let _ = channel.close(200, "OK".into()).await;
            let _ = connection.close(200, "OK".into()).await;
        }
        "raw-redis" => {
            let connection = raw::connect(&settings.url, "celeriac-bench-raw-worker").await?;
            let started = Instant::now();
            let mut redis = store::connect(settings.redis_url()?).await?;
            let (channel, mut consumer) =
                raw::consume(&connection, &queue, settings.prefetch).await?;
            say("READY".into())?;
            let batch = usize::from(settings.prefetch / 2).max(1);
            store::receive_storing(&mut consumer, &mut redis, expect, batch, task_started).await?;
            say(format!("DONE {}", started.elapsed().as_nanos()))?;
            let _ = stop_rx.await;
            let _ = channel.close(200, "OK".into()).await;
            let _ = connection.close(200, "OK".into()).await;
        }
        other => return Err(format!("unknown BENCH_SIDE={other:?}").into()),
    }
    say("STOPPED".into())
}

/// For profiling a worker by hand: declares `BENCH_QUEUE` and publishes `BENCH_N`
/// messages to it (see BENCHMARKS.md).
async fn fill_role() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    let queue = std::env::var("BENCH_QUEUE").map_err(|_| "BENCH_QUEUE is not set")?;
    let connection = raw::connect(&settings.url, "celeriac-bench-fill").await?;
    let channel = raw::confirm_channel(&connection).await?;
    raw::declare(&channel, &queue).await?;
    let messages = encode_messages(settings.n)?;
    raw::publish_all(&channel, &queue, &messages, settings.in_flight).await?;
    println!("{} messages published to {queue}", settings.n);
    let _ = connection.close(200, "OK".into()).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (c) Latency, in this process.

fn print_latency(label: &str, latency: &stats::Latency) {
    println!(
        "{label} : p50 {:>6.0} us, p99 {:>6.0} us, max {:>6.0} us",
        latency.p50.as_secs_f64() * 1e6,
        latency.p99.as_secs_f64() * 1e6,
        latency.max.as_secs_f64() * 1e6
    );
}

/// Sends discarded before the timed ones.
const LATENCY_WARM_UP: usize = 50;
/// Pause between sends, so that the worker is idle when the next one comes.
const LATENCY_GAP: Duration = Duration::from_millis(1);

async fn latency_raw(
    settings: &Settings,
    connection: &lapin::Connection,
    admin: &lapin::Channel,
) -> Result<stats::Latency, BoxError> {
    let queue = queue_name("latency", "raw");
    raw::declare(admin, &queue).await?;
    let consumer_connection = raw::connect(&settings.url, "celeriac-bench-raw-consumer").await?;
    let (consumer_channel, mut consumer) =
        raw::consume(&consumer_connection, &queue, settings.prefetch).await?;
    let total = settings.latency_n + LATENCY_WARM_UP;
    let (times_tx, mut times) = mpsc::unbounded_channel();
    let batch = usize::from(settings.prefetch / 2).max(1);
    let receiving = actix_rt::spawn(async move {
        raw::receive(&mut consumer, total, batch, || {
            let _ = times_tx.send(Instant::now());
        })
        .await
        .map_err(|error| error.to_string())
    });
    let channel = raw::confirm_channel(connection).await?;
    let messages = encode_messages(total)?;
    let mut samples = Vec::with_capacity(settings.latency_n);
    for (i, (properties, body)) in messages.into_iter().enumerate() {
        let sent = Instant::now();
        raw::publish_confirmed(&channel, &queue, properties, &body).await?;
        let started = tokio::time::timeout(Duration::from_secs(10), times.recv())
            .await
            .map_err(|_| "the raw consumer did not receive a message within 10 s")?
            .ok_or("the raw consumer stopped")?;
        if i >= LATENCY_WARM_UP {
            samples.push(started.saturating_duration_since(sent));
        }
        actix_rt::time::sleep(LATENCY_GAP).await;
    }
    receiving
        .await
        .map_err(|error| format!("the raw consumer task failed: {error}"))??;
    let _ = consumer_channel.close(200, "OK".into()).await;
    let _ = consumer_connection.close(200, "OK".into()).await;
    let _ = channel.close(200, "OK".into()).await;
    raw::delete(admin, &queue).await?;
    Ok(stats::percentiles(samples))
}

async fn latency_celeriac(
    settings: &Settings,
    admin: &lapin::Channel,
) -> Result<stats::Latency, BoxError> {
    let queue = queue_name("latency", "celeriac");
    let config = settings.config(&queue);
    let (times_tx, mut times) = mpsc::unbounded_channel();
    START_TIMES
        .set(times_tx)
        .map_err(|_| "the latency phase ran twice")?;
    let worker_broker: BrokerClient = connect_broker(&config).await?;
    let worker = WorkerSystem::builder(worker_broker, &config)
        .queue(queue.as_str())
        .register::<BenchAdd>()
        .start()
        .await?;
    let producer_broker = connect_broker(&config).await?;
    let producer = Producer::new(producer_broker.clone(), &config);
    let mut samples = Vec::with_capacity(settings.latency_n);
    for i in 0..settings.latency_n + LATENCY_WARM_UP {
        let x = serde_json::Value::from(i as i64);
        let signature = Signature::new(TASK).with_args(vec![x.clone(), x]);
        let sent = Instant::now();
        producer
            .send_signature(signature)
            .await
            .map_err(|error| format!("celeriac send: {error}"))?;
        let started = tokio::time::timeout(Duration::from_secs(10), times.recv())
            .await
            .map_err(|_| "the celeriac worker did not start a task within 10 s")?
            .ok_or("the celeriac worker stopped")?;
        if i >= LATENCY_WARM_UP {
            samples.push(started.saturating_duration_since(sent));
        }
        actix_rt::time::sleep(LATENCY_GAP).await;
    }
    worker.stop().await?;
    producer_broker.close().await?;
    raw::delete(admin, &queue).await?;
    Ok(stats::percentiles(samples))
}
