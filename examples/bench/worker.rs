//! Worker processes: the bench binary re-run with `BENCH_ROLE=worker`, a celeriac worker
//! or the raw lapin consumer, told what to do through the environment and talking in
//! lines on stdio (`READY`, `DONE <ns>`, `RAN`, `STOPPED`).

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use celeriac::actors::broker::FlushAcks;
use celeriac::{connect_broker, Config, QueueType, WorkerSystem};
use futures::StreamExt;

use crate::{raw, store, BoxError, Settings};

/// Which consumer a worker process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A celeriac `WorkerSystem`.
    Celeriac,
    /// The raw lapin consumer.
    Raw,
    /// celeriac storing results in `BENCH_REDIS_URL`.
    CeleriacRedis,
    /// The same with `result_extended`.
    CeleriacRedisExtended,
    /// Raw lapin storing result documents in `BENCH_REDIS_URL` itself.
    RawRedis,
}

impl Side {
    /// The side's name on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Side::Celeriac => "celeriac",
            Side::Raw => "raw",
            Side::CeleriacRedis => "celeriac-redis",
            Side::CeleriacRedisExtended => "celeriac-redis-extended",
            Side::RawRedis => "raw-redis",
        }
    }

    /// Whether this side stores results in Redis.
    pub fn stores(self) -> bool {
        matches!(
            self,
            Side::CeleriacRedis | Side::CeleriacRedisExtended | Side::RawRedis
        )
    }

    /// Whether this is the raw lapin consumer.
    pub fn is_raw(self) -> bool {
        matches!(self, Side::Raw | Side::RawRedis)
    }
}

/// The settings of a celeriac worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `BENCH_CONCURRENCY` (8) with celeriac's default prefetch multiplier 4 (prefetch 32).
    Tuned,
    /// No setting but the broker URL (and the queue): `Config::default()`.
    Default,
    /// `BENCH_CONCURRENCY` with the multiplier that makes the window 1000.
    Prefetch1000,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Tuned => "tuned",
            Profile::Default => "default",
            Profile::Prefetch1000 => "prefetch1000",
        }
    }

    fn parse(name: &str) -> Result<Self, BoxError> {
        match name {
            "" | "tuned" => Ok(Profile::Tuned),
            "default" => Ok(Profile::Default),
            "prefetch1000" => Ok(Profile::Prefetch1000),
            other => Err(format!("unknown BENCH_PROFILE={other:?}").into()),
        }
    }

    /// celeriac's configuration for a worker of this profile on `queue`.
    pub fn config(self, settings: &Settings, url: &str, queue: &str) -> Config {
        let mut config = match self {
            Profile::Default => Config::default(),
            Profile::Tuned | Profile::Prefetch1000 => Config {
                concurrency: settings.concurrency,
                prefetch_multiplier: Some(match self {
                    Profile::Prefetch1000 => 1000usize.div_ceil(settings.concurrency),
                    _ => 4,
                }),
                connection_name: "celeriac-bench".into(),
                send_events: settings.send_events,
                ..Config::default()
            },
        };
        config.broker_url = url.to_string();
        config.default_queue = queue.to_string();
        // Every worker of a run needs a node name of its own (two live workers with one
        // name are refused).
        config.hostname = format!("bench-{}@celeriac-bench", uuid::Uuid::new_v4().simple());
        config
    }

    /// The prefetch window a worker of this profile opens with per queue (the default
    /// profile's window then adapts).
    pub fn window(self, settings: &Settings) -> usize {
        usize::from(self.config(settings, "", "").prefetch())
    }
}

/// What a worker process is asked to do.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// celeriac or raw, with or without Redis.
    pub side: Side,
    /// celeriac's settings (the raw side ignores it).
    pub profile: Profile,
    /// The queues it consumes.
    pub queues: Vec<String>,
    /// Tasks to wait for before saying `DONE`; 0: say `DONE 0` at once.
    pub expect: usize,
    /// The raw consumer's prefetch per queue.
    pub raw_prefetch: u16,
    /// The raw consumer's ack batch.
    pub raw_batch: usize,
    /// The broker URL (a node, or a cluster's `;`-list for celeriac).
    pub url: String,
    /// Whether celeriac declares quorum queues.
    pub quorum: bool,
}

impl WorkerSpec {
    /// A worker of `side` with the default profile's counterpart settings on `queue`.
    pub fn new(settings: &Settings, side: Side, queue: &str, expect: usize) -> Self {
        WorkerSpec {
            side,
            profile: Profile::Tuned,
            queues: vec![queue.to_string()],
            expect,
            raw_prefetch: settings.prefetch,
            raw_batch: usize::from(settings.prefetch / 2).max(1),
            url: settings.url.clone(),
            quorum: false,
        }
    }
}

/// A worker process, talking in lines on stdio.
pub struct WorkerProcess {
    child: std::process::Child,
    lines: futures::channel::mpsc::UnboundedReceiver<String>,
    stdin: Option<std::process::ChildStdin>,
}

impl WorkerProcess {
    /// Starts a worker process as `spec` says.
    pub fn spawn(settings: &Settings, spec: &WorkerSpec) -> Result<Self, BoxError> {
        let exe = std::env::current_exe()
            .map_err(|error| format!("finding the bench binary to re-run: {error}"))?;
        let mut child = std::process::Command::new(exe)
            .env("BENCH_ROLE", "worker")
            .env("BENCH_SIDE", spec.side.name())
            .env("BENCH_PROFILE", spec.profile.name())
            .env("BENCH_QUEUES", spec.queues.join(","))
            .env("BENCH_EXPECT", spec.expect.to_string())
            .env("BENCH_PREFETCH", spec.raw_prefetch.to_string())
            .env("BENCH_ACK_BATCH", spec.raw_batch.to_string())
            .env("BENCH_QUEUE_TYPE", if spec.quorum { "quorum" } else { "" })
            .env("BENCH_CONCURRENCY", settings.concurrency.to_string())
            .env("CELERIAC_BROKER_URL", &spec.url)
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the worker says, within `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> Result<String, BoxError> {
        tokio::time::timeout(timeout, self.lines.next())
            .await
            .map_err(|_| format!("the worker process said nothing within {timeout:?}"))?
            .ok_or_else(|| "the worker process exited".into())
    }

    /// Waits for a line starting with `word`; answers the rest of it.
    pub async fn wait_for(&mut self, word: &str, timeout: Duration) -> Result<String, BoxError> {
        let line = self
            .next_line(timeout)
            .await
            .map_err(|error| format!("waiting for {word}: {error}"))?;
        line.strip_prefix(word)
            .map(|rest| rest.trim().to_string())
            .ok_or_else(|| format!("the worker process said {line:?}, expected {word}").into())
    }

    /// Asks the worker to stop warmly, and waits until it has (lines said before
    /// `STOPPED` are skipped).
    pub async fn stop(mut self) -> Result<(), BoxError> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "STOP");
        }
        while self.next_line(Duration::from_secs(60)).await? != "STOPPED" {}
        let status = self
            .child
            .wait()
            .map_err(|error| format!("waiting for the worker process: {error}"))?;
        if !status.success() {
            return Err(format!("the worker process exited with {status}").into());
        }
        Ok(())
    }

    /// Kills the worker (SIGKILL): whatever it had not acked goes back to its queue.
    pub fn kill(mut self) -> Result<(), BoxError> {
        self.child
            .kill()
            .map_err(|error| format!("killing the worker process: {error}"))?;
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Only a worker left behind by an error is still running here.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until the broker no longer counts a consumer on `queue` (a killed worker's
/// connection is gone and its unacked messages are back), then answers the messages
/// ready in it.
pub async fn left_after_consumers_gone(
    connection: &lapin::Connection,
    queue: &str,
) -> Result<u32, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ready, consumers) = raw::counts(connection, queue).await?;
        if consumers == 0 {
            return Ok(ready);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "queue {queue} still has {consumers} consumers 30 s after its worker was killed"
            )
            .into());
        }
        actix_rt::task::yield_now().await;
    }
}

/// The worker process: consumes `BENCH_QUEUES` until `BENCH_EXPECT` tasks started and
/// (celeriac) its acks are flushed, says `READY` once consuming, `DONE <nanoseconds from
/// the start of consuming>`, then waits for a line (or end of input) on stdin, stops
/// warmly and says `STOPPED`.
pub async fn worker_role() -> Result<(), BoxError> {
    if std::env::var_os("RUST_LOG").is_some() {
        env_logger::init();
    }
    let settings = Settings::from_env()?;
    let queues: Vec<String> = std::env::var("BENCH_QUEUES")
        .or_else(|_| std::env::var("BENCH_QUEUE"))
        .map_err(|_| "BENCH_QUEUES (or BENCH_QUEUE) is not set")?
        .split(',')
        .map(|queue| queue.trim().to_string())
        .filter(|queue| !queue.is_empty())
        .collect();
    let first = queues.first().ok_or("BENCH_QUEUES names no queue")?.clone();
    let env_number = |name: &str, default: usize| -> Result<usize, BoxError> {
        match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(value
                .trim()
                .parse()
                .map_err(|_| format!("{name}={value:?} is not a number"))?),
            _ => Ok(default),
        }
    };
    let expect = env_number("BENCH_EXPECT", 0)?;
    let prefetch = u16::try_from(env_number(
        "BENCH_PREFETCH",
        usize::from(settings.prefetch),
    )?)
    .map_err(|_| "BENCH_PREFETCH is over 65535")?;
    let batch = env_number("BENCH_ACK_BATCH", usize::from(prefetch / 2).max(1))?.max(1);
    let profile = Profile::parse(std::env::var("BENCH_PROFILE").unwrap_or_default().trim())?;
    let quorum = std::env::var("BENCH_QUEUE_TYPE").is_ok_and(|kind| kind.trim() == "quorum");
    let side = std::env::var("BENCH_SIDE").unwrap_or_default();
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = stop_tx.send(());
    });
    crate::TARGET.store(expect.max(1), Ordering::Release);
    match side.as_str() {
        "celeriac" | "celeriac-redis" | "celeriac-redis-extended" => {
            let mut config = profile.config(&settings, &settings.url, &first);
            if quorum {
                config.default_queue_type = QueueType::Quorum;
            }
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
            let mut builder = WorkerSystem::builder(broker.clone(), &config);
            for queue in &queues {
                builder = builder.queue(queue.as_str());
            }
            let worker = builder
                .register::<crate::BenchAdd>()
                .register::<crate::BenchPad>()
                .register::<crate::BenchSleep>()
                .start()
                .await?;
            say("READY")?;
            if expect > 0 {
                crate::ALL_STARTED.notified().await;
                // Every task has run and settled, and every ack is written: the clock
                // stops here, not at the last task's start.
                wait_pool_idle(&worker).await?;
                broker.flush_acks.send(FlushAcks).await?;
                if let Some(results) = results.as_mut() {
                    store::wait_for_results(results, expect, Duration::from_secs(600)).await?;
                }
            }
            say(&format!("DONE {}", started.elapsed().as_nanos()))?;
            let _ = stop_rx.await;
            worker.stop().await?;
        }
        "raw" | "raw-redis" => {
            let connection = raw::connect(&settings.url, "celeriac-bench-raw-worker").await?;
            let started = Instant::now();
            let mut redis = match side.as_str() {
                "raw-redis" => Some(store::connect(settings.redis_url()?).await?),
                _ => None,
            };
            let (channel, consumers) = raw::consume_many(&connection, &queues, prefetch).await?;
            say("READY")?;
            if expect > 0 {
                match redis.as_mut() {
                    Some(redis) => {
                        let mut consumer = consumers
                            .into_iter()
                            .next()
                            .ok_or("no consumer was started")?;
                        store::receive_storing(
                            &mut consumer,
                            redis,
                            expect,
                            batch,
                            crate::task_started,
                        )
                        .await?
                    }
                    None => {
                        let mut deliveries = futures::stream::select_all(consumers);
                        raw::receive(&mut deliveries, expect, batch, crate::task_started).await?
                    }
                }
            }
            say(&format!("DONE {}", started.elapsed().as_nanos()))?;
            let _ = stop_rx.await;
            let _ = channel.close(200, "OK".into()).await;
            let _ = connection.close(200, "OK".into()).await;
        }
        other => return Err(format!("unknown BENCH_SIDE={other:?}").into()),
    }
    say("STOPPED")
}

/// Says one line to the orchestrator.
pub fn say(line: &str) -> Result<(), BoxError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// Waits until the worker's pool runs nothing and holds nothing waiting.
async fn wait_pool_idle(worker: &WorkerSystem) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = worker.pool_status().await?;
        if status.running == 0 && status.waiting == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the worker's pool still runs {} and holds {} tasks 60 s after the last started",
                status.running, status.waiting
            )
            .into());
        }
        actix_rt::task::yield_now().await;
    }
}
