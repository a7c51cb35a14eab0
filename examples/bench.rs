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
//! `BENCH_CONCURRENCY` (worker concurrency of the tuned cases, default 8; prefetch =
//! concurrency x 4 as celeriac's default multiplier), `BENCH_IN_FLIGHT` (unconfirmed
//! publishes, default 512), `BENCH_ROUNDS` (rounds per comparison, alternating which side
//! goes first; the median counts; default 3), `BENCH_SEND_EVENTS` (`true`: the tuned
//! celeriac workers send task events), `BENCH_ETA_HELD` (ETA tasks a worker holds, default
//! 10000), `BENCH_QUICK=1` (N 500, latency N 50, 500 held ETA tasks, one round: a smoke
//! test), `BENCH_ONLY` (comma-separated phases: publish, drain, latency, footprint, growth,
//! eta, fairness, cluster, results), `BENCH_REDIS_URL` (a Redis the bench may empty: adds
//! the drain with results), `BENCH_CLUSTER_URL` (a 3-node cluster's `;`-list: adds the
//! classic against quorum drain).
//!
//! Figures:
//! - publish: N Celery-format `bench.add(x, y)` messages with publisher confirms, at most
//!   `BENCH_IN_FLIGHT` unconfirmed; celeriac through `Producer::send_signature`, raw lapin
//!   publishing the same encoded bytes and properties.
//! - drain: a worker process (this binary re-run with `BENCH_ROLE=worker`) started on
//!   queues pre-filled with N messages, timed from the start of consuming until every task
//!   ran and its ack was written: celeriac's worker waits for the N-th task start, for its
//!   pool to be idle, then for `FlushAcks` (the message its warm stop sends: every batched
//!   ack written to the connection); the raw consumer acks with `multiple=true` from a task
//!   of its own and waits for that task's last ack. Then the worker is killed (SIGKILL) and,
//!   once the broker counts no consumer, the queues must hold 0 messages: a message the
//!   worker had not acked is ready again and fails the run. Cases: tuned (concurrency 8,
//!   prefetch 32, against raw at prefetch 32), default settings (no setting but the broker
//!   URL), Python-shaped messages (`reply_to` and `root_id` set, no result backend) and
//!   prefetch 1000, the last three against raw at prefetch 1000 acking every 100.
//! - latency: one task at a time to an idle worker in this process, from just before the
//!   send until the task starts (raw: until the consumer receives it); p50 and p99.
//! - footprint: a worker process on an empty queue: VmRSS once idle after startup; then N
//!   tasks are published to it; CPU seconds (utime + stime) per 1,000 tasks, and VmHWM.
//! - growth: the tuned drain against the message size (0.5, 16, 256 KiB; at most 128 MiB
//!   per drain) and against the number of queues one worker consumes (1, 10, 100), with
//!   peak RSS; a celeriac worker's RSS holding `BENCH_ETA_HELD` ETA tasks.
//! - fairness: two celeriac workers with default settings, the second started once the
//!   first consumes, share 64 tasks of 250 ms: makespan against the ideal.
//! - drain with results (with `BENCH_REDIS_URL`): the same drain, timed until the N-th
//!   result is stored in Redis (DBSIZE reaches N), for a celeriac worker with
//!   `result_backend` = that Redis (with and without `result_extended`), next to a raw
//!   lapin consumer that stores each document itself (`SETEX` + `PUBLISH`, pipelined per
//!   ack batch), and next to both sides storing nothing.
//! - cluster (with `BENCH_CLUSTER_URL`): the tuned drain on a classic and on a quorum
//!   queue declared on the cluster's first node.
//!
//! Profiling aids: `BENCH_ROLE=fill BENCH_QUEUE=q` publishes N messages to `q`
//! (`BENCH_SHAPE=python`: with `reply_to`, as Python sends them);
//! `BENCH_ROLE=worker BENCH_SIDE=celeriac|raw BENCH_QUEUES=q BENCH_EXPECT=n` consumes them
//! (see BENCHMARKS.md).
//!
//! It prints every figure and the celeriac/raw ratios against the targets, and never
//! exits non-zero because of a figure: only when the broker or a worker process fails, or
//! a drain leaves messages unacked.

#[path = "bench/drain.rs"]
mod drain;
#[path = "bench/fairness.rs"]
mod fairness;
#[path = "bench/growth.rs"]
mod growth;
#[path = "bench/raw.rs"]
mod raw;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/stats.rs"]
mod stats;
#[path = "bench/store.rs"]
mod store;
#[path = "bench/worker.rs"]
mod worker;

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use celeriac::{connect_broker, Config, Producer, Signature, Task, TaskContext, TaskError};
use celeriac::{BrokerClient, WorkerSystem};
use futures::StreamExt;
use tokio::sync::{mpsc, Notify};

use stats::{Row, Target};
use worker::{Side, WorkerProcess};

type BoxError = Box<dyn Error>;

/// The task name of the no-op bench messages.
const TASK: &str = "bench.add";
/// The no-op task of the padded messages (message-size cases).
const PAD_TASK: &str = "bench.pad";
/// The long task of the fairness case.
const SLEEP_TASK: &str = "bench.sleep";

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

/// `bench.pad(x, padding)`: a no-op on a padded message.
struct BenchPad;

impl Task for BenchPad {
    const NAME: &'static str = PAD_TASK;
    type Args = (i64, String);
    type Output = usize;

    async fn run(_ctx: TaskContext, (_, padding): (i64, String)) -> Result<usize, TaskError> {
        task_started();
        Ok(padding.len())
    }
}

/// `bench.sleep(ms)`: sleeps, then says `RAN` on stdout (the fairness case counts them).
struct BenchSleep;

impl Task for BenchSleep {
    const NAME: &'static str = SLEEP_TASK;
    type Args = (u64,);
    type Output = ();

    async fn run(_ctx: TaskContext, (millis,): (u64,)) -> Result<(), TaskError> {
        task_started();
        actix_rt::time::sleep(Duration::from_millis(millis)).await;
        worker::say("RAN").map_err(|error| TaskError::from(error.to_string()))?;
        Ok(())
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
    /// Quick mode (`BENCH_QUICK=1`): small counts, one round, for a smoke test.
    quick: bool,
    /// ETA tasks a worker is asked to hold (`BENCH_ETA_HELD`).
    eta_held: usize,
    /// A 3-node cluster's `;`-list of URLs (`BENCH_CLUSTER_URL`): adds the classic
    /// against quorum drain on it.
    cluster_url: Option<String>,
    /// Phases to run (`BENCH_ONLY`, comma-separated); empty: all that apply.
    only: Vec<String>,
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
        let quick = std::env::var("BENCH_QUICK")
            .is_ok_and(|value| matches!(value.trim(), "1" | "true" | "yes" | "on"));
        let by_mode = |full: usize, small: usize| if quick { small } else { full };
        let only: Vec<String> = std::env::var("BENCH_ONLY")
            .unwrap_or_default()
            .split(',')
            .map(|phase| phase.trim().to_string())
            .filter(|phase| !phase.is_empty())
            .collect();
        if let Some(unknown) = only.iter().find(|phase| !PHASES.contains(&phase.as_str())) {
            return Err(format!(
                "BENCH_ONLY names {unknown:?}; known phases: {}",
                PHASES.join(", ")
            )
            .into());
        }
        Ok(Settings {
            url,
            quick,
            eta_held: number("BENCH_ETA_HELD", by_mode(10_000, 500))?,
            cluster_url: std::env::var("BENCH_CLUSTER_URL")
                .ok()
                .map(|url| url.trim().to_string())
                .filter(|url| !url.is_empty()),
            only,
            n: number("BENCH_N", by_mode(20_000, 500))?,
            latency_n: number("BENCH_LATENCY_N", by_mode(1_000, 50))?,
            concurrency,
            prefetch: u16::try_from(concurrency.saturating_mul(4)).unwrap_or(u16::MAX),
            in_flight: number("BENCH_IN_FLIGHT", 512)?,
            rounds: number("BENCH_ROUNDS", by_mode(3, 1))?,
            send_events: std::env::var("BENCH_SEND_EVENTS")
                .is_ok_and(|value| matches!(value.trim(), "1" | "true" | "yes" | "on")),
            redis_url: std::env::var("BENCH_REDIS_URL")
                .ok()
                .map(|url| url.trim().to_string())
                .filter(|url| !url.is_empty()),
        })
    }

    /// Whether `phase` runs: named by `BENCH_ONLY`, or `BENCH_ONLY` is empty.
    fn runs(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| only == phase)
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
            prefetch_multiplier: Some(4),
            connection_name: "celeriac-bench".into(),
            send_events: self.send_events,
            ..Config::default()
        }
    }
}

/// The phases `BENCH_ONLY` may name.
const PHASES: [&str; 9] = [
    "publish",
    "drain",
    "latency",
    "footprint",
    "growth",
    "fairness",
    "eta",
    "cluster",
    "results",
];

/// A queue name unique to this run.
fn queue_name(phase: &str, side: &str) -> String {
    format!("bench.{phase}.{side}.{}", std::process::id())
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
        "worker" => worker::worker_role().await,
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
        "celeriac bench{}: broker {}, N = {}, latency N = {}, concurrency {}, prefetch {}, \
         {} publishes in flight, {} rounds, task events {}",
        if settings.quick { " (quick mode)" } else { "" },
        raw::redact(&settings.url),
        settings.n,
        settings.latency_n,
        settings.concurrency,
        settings.prefetch,
        settings.in_flight,
        settings.rounds,
        if settings.send_events { "on" } else { "off" }
    );
    for (label, shape) in [
        ("celeriac's", drain::Shape::ADD),
        (
            "Python-shaped",
            drain::Shape {
                python: true,
                ..drain::Shape::ADD
            },
        ),
    ] {
        let sample = drain::encode(1, shape)?;
        let (properties, body) = &sample[0];
        let size = stats::wire_size(properties, body, &queue_name("drain", "celeriac"));
        println!(
            "message ({label}): body {} B + properties {} B (headers table {} B) = {} B; \
             all three publish frames {} B",
            size.body,
            size.properties,
            size.headers,
            size.body + size.properties,
            size.frames
        );
    }

    let connection = raw::connect(&settings.url, "celeriac-bench-admin").await?;
    let admin = connection.create_channel().await?;
    let broker = drain::Broker {
        connection: &connection,
        admin: &admin,
        celeriac_url: settings.url.clone(),
        raw_url: settings.url.clone(),
    };
    let mut report = report::Report::default();

    if settings.runs("publish") {
        println!(
            "\n-- publish with confirms, N = {}, {} rounds",
            settings.n, settings.rounds
        );
        let (mut raw_publishes, mut celeriac_publishes) = (Vec::new(), Vec::new());
        for round in 1..=settings.rounds {
            let (raw_rate, celeriac_rate) = if round % 2 == 1 {
                let raw_rate = publish_raw(&settings, &connection).await?;
                (raw_rate, publish_celeriac(&settings, &admin).await?)
            } else {
                let celeriac_rate = publish_celeriac(&settings, &admin).await?;
                (publish_raw(&settings, &connection).await?, celeriac_rate)
            };
            println!(
                "round {round}: raw lapin {raw_rate:>7.0} msg/s, celeriac {celeriac_rate:>7.0} msg/s"
            );
            raw_publishes.push(raw_rate);
            celeriac_publishes.push(celeriac_rate);
        }
        let publish = (median(celeriac_publishes), median(raw_publishes));
        println!(
            "median : raw lapin {:>7.0} msg/s, celeriac {:>7.0} msg/s",
            publish.1, publish.0
        );
        report.publish = Some(publish);
    }

    if settings.runs("drain") {
        let python = drain::Shape {
            python: true,
            ..drain::Shape::ADD
        };
        let cases = [
            (
                drain::DrainCase::tuned(
                    &settings,
                    &format!(
                        "tuned: concurrency {}, prefetch {} (raw: prefetch {}, ack every {})",
                        settings.concurrency,
                        settings.prefetch,
                        settings.prefetch,
                        (settings.prefetch / 2).max(1)
                    ),
                ),
                0.95,
            ),
            (
                drain::DrainCase::against_raw_1000(
                    &settings,
                    &format!(
                        "default settings (adaptive window from {}), no reply_to (raw: prefetch 1000, ack every 100)",
                        worker::Profile::Default.window(&settings)
                    ),
                    worker::Profile::Default,
                ),
                0.9,
            ),
            (
                drain::DrainCase {
                    shape: python,
                    ..drain::DrainCase::against_raw_1000(
                        &settings,
                        "default settings, Python-shaped messages: reply_to set, no result backend (raw: prefetch 1000, ack every 100)",
                        worker::Profile::Default,
                    )
                },
                0.9,
            ),
            (
                drain::DrainCase::against_raw_1000(
                    &settings,
                    &format!(
                        "concurrency {}, prefetch 1000 (raw: prefetch 1000, ack every 100)",
                        settings.concurrency
                    ),
                    worker::Profile::Prefetch1000,
                ),
                0.95,
            ),
        ];
        for (case, target) in cases {
            let compared = drain::compare(&settings, &broker, &case).await?;
            report.drains.push((case.label, compared, target));
        }
    }

    if settings.runs("latency") {
        println!(
            "\n-- latency, send to task start, {} tasks one at a time",
            settings.latency_n
        );
        let raw_latency = latency_raw(&settings, &connection, &admin).await?;
        print_latency("raw lapin", &raw_latency);
        let celeriac_latency = latency_celeriac(&settings, &admin).await?;
        print_latency("celeriac ", &celeriac_latency);
        report.latency = Some((celeriac_latency, raw_latency));
    }

    if settings.runs("footprint") {
        println!(
            "\n-- worker footprint: idle, then N = {} tasks published to it",
            settings.n
        );
        let raw_footprint = footprint(&settings, &connection, &admin, Side::Raw).await?;
        print_footprint("raw lapin", &raw_footprint);
        let celeriac_footprint = footprint(&settings, &connection, &admin, Side::Celeriac).await?;
        print_footprint("celeriac ", &celeriac_footprint);
        report.footprint = Some((celeriac_footprint, raw_footprint));
    }

    if settings.runs("growth") {
        report.sizes = growth::sizes(&settings, &broker).await?;
        report.queues = growth::queues(&settings, &broker).await?;
    }
    if settings.runs("eta") {
        report.held = Some(growth::held_eta(&settings, &broker).await?);
    }
    if settings.runs("fairness") {
        report.fairness = Some(fairness::run(&settings, &broker).await?);
    }
    if let Some(cluster_url) = settings.cluster_url.as_deref() {
        if settings.runs("cluster") {
            report.cluster = cluster(&settings, cluster_url).await?;
        }
    }
    if settings.redis_url.is_some() && settings.runs("results") {
        report.results = drain_with_results(&settings, &broker).await?;
    }
    let _ = connection.close(200, "OK".into()).await;
    report.print(&settings);
    Ok(())
}

/// Drains of a classic and a quorum queue on the cluster: the queue declared on its first
/// node, the raw consumer connected there, celeriac given the whole list (it connects to
/// the first node too).
async fn cluster(
    settings: &Settings,
    cluster_url: &str,
) -> Result<Vec<report::ClusterRow>, BoxError> {
    let first = cluster_url
        .split(';')
        .map(str::trim)
        .find(|url| !url.is_empty())
        .ok_or("BENCH_CLUSTER_URL names no node")?
        .to_string();
    println!(
        "\n-- cluster: {} nodes, queues declared on (and workers connected to) {}",
        cluster_url
            .split(';')
            .filter(|url| !url.trim().is_empty())
            .count(),
        raw::redact(&first)
    );
    let connection = raw::connect(&first, "celeriac-bench-cluster-admin").await?;
    let admin = connection.create_channel().await?;
    let broker = drain::Broker {
        connection: &connection,
        admin: &admin,
        celeriac_url: cluster_url.to_string(),
        raw_url: first,
    };
    let mut rows = Vec::new();
    for quorum in [false, true] {
        let kind = if quorum { "quorum" } else { "classic" };
        let case = drain::DrainCase {
            quorum,
            ..drain::DrainCase::tuned(settings, &format!("cluster, {kind} queue, tuned settings"))
        };
        let compared = drain::compare(settings, &broker, &case).await?;
        rows.push(report::ClusterRow { kind, compared });
    }
    let _ = connection.close(200, "OK".into()).await;
    Ok(rows)
}

/// The drain of a pre-filled queue with results stored in Redis, next to the same drain
/// storing nothing: rounds of the five sides in turn (each round starting one side later),
/// medians, and the rows of a table.
async fn drain_with_results(
    settings: &Settings,
    broker: &drain::Broker<'_>,
) -> Result<Vec<Row>, BoxError> {
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
    let case = drain::DrainCase::tuned(settings, "drain with results");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for round in 1..=settings.rounds {
        let mut line = format!("round {round}:");
        for turn in 0..sides.len() {
            let index = (turn + round - 1) % sides.len();
            let side = sides[index];
            let rate = drain::run(settings, broker, &case, side).await?.rate;
            line.push_str(&format!(" {} {rate:.0}", side.name()));
            rates[index].push(rate);
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
    println!(
        "raw lapin with Redis: one SETEX + PUBLISH pipeline per ack batch (up to {} \
         deliveries), then one ack; celeriac: its Redis backend (one MULTI/SETEX/PUBLISH/EXEC \
         per result), early acks. With results, both are timed until the N-th result is \
         stored.",
        (settings.prefetch / 2).max(1)
    );
    Ok(rows.into())
}

// ---------------------------------------------------------------------------------------
// (a) Publish.

async fn publish_raw(settings: &Settings, connection: &lapin::Connection) -> Result<f64, BoxError> {
    let queue = queue_name("publish", "raw");
    let channel = raw::confirm_channel(connection).await?;
    raw::declare(&channel, &queue).await?;
    let messages = drain::encode(settings.n, drain::Shape::ADD)?;
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
// (d) Footprint, in a worker process.

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
    let messages = drain::encode(settings.n, drain::Shape::ADD)?;
    let mut worker =
        WorkerProcess::spawn(settings, &drain::spec(settings, side, &queue, settings.n))?;
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

/// For profiling a worker by hand: declares `BENCH_QUEUE` and publishes `BENCH_N`
/// messages to it (Python-shaped with `BENCH_SHAPE=python`; see BENCHMARKS.md).
async fn fill_role() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    let queue = std::env::var("BENCH_QUEUE").map_err(|_| "BENCH_QUEUE is not set")?;
    let connection = raw::connect(&settings.url, "celeriac-bench-fill").await?;
    let channel = raw::confirm_channel(&connection).await?;
    raw::declare(&channel, &queue).await?;
    // `BENCH_SHAPE=python`: Python-shaped messages (`reply_to` and `root_id` set).
    let python = std::env::var("BENCH_SHAPE").is_ok_and(|shape| shape.trim() == "python");
    let shape = drain::Shape {
        python,
        ..drain::Shape::ADD
    };
    let messages = drain::encode(settings.n, shape)?;
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
    let messages = drain::encode(total, drain::Shape::ADD)?;
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
