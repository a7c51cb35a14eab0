//! Drains of a pre-filled queue: one worker process (celeriac or raw lapin) empties it,
//! timed from the start of consuming until the last task ran and its ack was written.
//! Rounds alternate which side goes first; messages left unacked fail the run.

use std::time::Duration;

use celeriac::actors::amqp::BasicProperties;
use celeriac::protocol::TaskMessage;
use chrono::{DateTime, Utc};

use crate::worker::{left_after_consumers_gone, Profile, Side, WorkerProcess, WorkerSpec};
use crate::{median, per_second, raw, stats, store, BoxError, Settings};

/// What the messages of a drain look like.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The task and its work.
    pub work: Work,
    /// Python-shaped: `reply_to` and `root_id` set, as Python Celery always sends them.
    pub python: bool,
    /// An ETA, for held tasks.
    pub eta: Option<DateTime<Utc>>,
}

/// The task a message asks for.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// `bench.add(i, i)`: a no-op.
    Add,
    /// `bench.pad(i, "xxx...")`: a no-op whose message is padded to this many bytes
    /// (body + properties).
    Pad(usize),
    /// `bench.sleep(ms)`: sleeps, then says `RAN`.
    Sleep(u64),
}

impl Shape {
    /// `bench.add` as celeriac's `Producer` sends it.
    pub const ADD: Shape = Shape {
        work: Work::Add,
        python: false,
        eta: None,
    };
}

/// `count` encoded messages of `shape`, each with its own id.
pub fn encode(count: usize, shape: Shape) -> Result<Vec<(BasicProperties, Vec<u8>)>, BoxError> {
    let pad = match shape.work {
        Work::Pad(size) => {
            let base = encode_one(0, shape, 0)?;
            size.saturating_sub(message_size(&base))
        }
        _ => 0,
    };
    (0..count).map(|i| encode_one(i, shape, pad)).collect()
}

/// Body + properties of a message, the size the message-size cases aim at.
pub fn message_size((properties, body): &(BasicProperties, Vec<u8>)) -> usize {
    let size = stats::wire_size(properties, body, "");
    size.body + size.properties
}

fn encode_one(i: usize, shape: Shape, pad: usize) -> Result<(BasicProperties, Vec<u8>), BoxError> {
    let id = uuid::Uuid::new_v4().to_string();
    let x = serde_json::Value::from(i as i64);
    let (task, args) = match shape.work {
        Work::Add => (crate::TASK, vec![x.clone(), x]),
        Work::Pad(_) => (crate::PAD_TASK, vec![x, "x".repeat(pad).into()]),
        Work::Sleep(ms) => (crate::SLEEP_TASK, vec![ms.into()]),
    };
    let mut message = TaskMessage::new_json(task, &id, args, Default::default());
    if shape.python {
        message.reply_to = Some(uuid::Uuid::new_v4().to_string());
        message.headers.root_id = Some(id.clone());
    }
    message.headers.eta = shape.eta;
    message
        .encode()
        .map_err(|error| format!("encoding a bench message: {error}").into())
}

/// The broker a drain runs on: a connection and a channel for declaring and counting,
/// and the URL the workers get.
pub struct Broker<'a> {
    /// For filling, counting and deleting.
    pub connection: &'a lapin::Connection,
    /// For declaring and deleting.
    pub admin: &'a lapin::Channel,
    /// celeriac's broker URL (a cluster's `;`-list on the cluster).
    pub celeriac_url: String,
    /// The raw consumer's URL (one node).
    pub raw_url: String,
}

/// One drain setup, run for both sides.
#[derive(Debug, Clone)]
pub struct DrainCase {
    /// What the output calls it.
    pub label: String,
    /// celeriac's settings.
    pub profile: Profile,
    /// The raw consumer's prefetch per queue.
    pub raw_prefetch: u16,
    /// The raw consumer's ack batch.
    pub raw_batch: usize,
    /// The messages.
    pub shape: Shape,
    /// Messages in all.
    pub n: usize,
    /// Queues they are spread over (round-robin); one worker consumes all of them.
    pub queues: usize,
    /// Quorum queues instead of classic ones.
    pub quorum: bool,
}

impl DrainCase {
    /// The tuned case: `BENCH_CONCURRENCY` with prefetch x4 against raw lapin at the same
    /// window, acking every half window.
    pub fn tuned(settings: &Settings, label: &str) -> Self {
        DrainCase {
            label: label.into(),
            profile: Profile::Tuned,
            raw_prefetch: settings.prefetch,
            raw_batch: usize::from(settings.prefetch / 2).max(1),
            shape: Shape::ADD,
            n: settings.n,
            queues: 1,
            quorum: false,
        }
    }

    /// A case against raw lapin at prefetch 1000, acking every 100 (issue 13's baseline).
    pub fn against_raw_1000(settings: &Settings, label: &str, profile: Profile) -> Self {
        DrainCase {
            label: label.into(),
            profile,
            raw_prefetch: 1000,
            raw_batch: 100,
            ..DrainCase::tuned(settings, label)
        }
    }
}

/// Figures of one drain.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// Messages per second.
    pub rate: f64,
    /// The worker's VmHWM, KiB.
    pub peak_kib: u64,
}

/// Medians of a case's rounds.
#[derive(Debug, Clone, Copy)]
pub struct Compared {
    /// celeriac's median rate.
    pub celeriac: f64,
    /// raw lapin's median rate.
    pub raw: f64,
    /// celeriac's largest VmHWM, KiB.
    pub celeriac_peak_kib: u64,
    /// raw lapin's largest VmHWM, KiB.
    pub raw_peak_kib: u64,
}

/// Runs `case` for both sides, `rounds` times, alternating which side goes first; prints
/// each round and the medians.
pub async fn compare(
    settings: &Settings,
    broker: &Broker<'_>,
    case: &DrainCase,
) -> Result<Compared, BoxError> {
    println!(
        "\n-- drain: {}, N = {}, {} rounds",
        case.label, case.n, settings.rounds
    );
    let (mut raw_rates, mut celeriac_rates) = (Vec::new(), Vec::new());
    let (mut raw_peak, mut celeriac_peak) = (0, 0);
    for round in 1..=settings.rounds {
        let order = if round % 2 == 1 {
            [Side::Raw, Side::Celeriac]
        } else {
            [Side::Celeriac, Side::Raw]
        };
        for side in order {
            let drain = run(settings, broker, case, side).await?;
            if side.is_raw() {
                raw_rates.push(drain.rate);
                raw_peak = raw_peak.max(drain.peak_kib);
            } else {
                celeriac_rates.push(drain.rate);
                celeriac_peak = celeriac_peak.max(drain.peak_kib);
            }
        }
        println!(
            "round {round} ({} first): raw lapin {:>7.0} msg/s, celeriac {:>7.0} msg/s",
            order[0].name(),
            raw_rates[raw_rates.len() - 1],
            celeriac_rates[celeriac_rates.len() - 1]
        );
    }
    let compared = Compared {
        celeriac: median(celeriac_rates),
        raw: median(raw_rates),
        celeriac_peak_kib: celeriac_peak,
        raw_peak_kib: raw_peak,
    };
    println!(
        "median : raw lapin {:>7.0} msg/s, celeriac {:>7.0} msg/s ({:.2} x raw); \
         peak RSS raw {:.1} MiB, celeriac {:.1} MiB",
        compared.raw,
        compared.celeriac,
        compared.celeriac / compared.raw.max(1e-9),
        compared.raw_peak_kib as f64 / 1024.0,
        compared.celeriac_peak_kib as f64 / 1024.0
    );
    Ok(compared)
}

/// One drain of `case` by `side`: declares and fills the queues, starts the worker,
/// waits for `DONE`, reads its VmHWM, kills it and checks that nothing is left in the
/// queues (a killed worker's unacked messages are ready again: any left means the clock
/// stopped before the acks were written, and fails the run).
pub async fn run(
    settings: &Settings,
    broker: &Broker<'_>,
    case: &DrainCase,
    side: Side,
) -> Result<Drain, BoxError> {
    let queues: Vec<String> = (0..case.queues)
        .map(|index| {
            let mut name = crate::queue_name("drain", side.name());
            if case.queues > 1 {
                name.push_str(&format!(".{index}"));
            }
            name
        })
        .collect();
    for queue in &queues {
        raw::declare_typed(broker.admin, queue, case.quorum).await?;
    }
    let messages = encode(case.n, case.shape)?;
    let channel = raw::confirm_channel(broker.connection).await?;
    for (index, queue) in queues.iter().enumerate() {
        let share: Vec<_> = messages
            .iter()
            .skip(index)
            .step_by(queues.len())
            .cloned()
            .collect();
        raw::publish_all(&channel, queue, &share, settings.in_flight).await?;
    }
    let _ = channel.close(200, "OK".into()).await;
    drop(messages);
    let mut filled = 0;
    for queue in &queues {
        filled += raw::ready_count(broker.connection, queue).await? as usize;
    }
    if filled != case.n {
        return Err(format!(
            "the queues hold {filled} messages after the fill, not {}",
            case.n
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
    let spec = WorkerSpec {
        side,
        profile: case.profile,
        queues: queues.clone(),
        expect: case.n,
        raw_prefetch: case.raw_prefetch,
        raw_batch: case.raw_batch,
        url: if side.is_raw() {
            broker.raw_url.clone()
        } else {
            broker.celeriac_url.clone()
        },
        quorum: case.quorum,
    };
    let mut worker = WorkerProcess::spawn(settings, &spec)?;
    worker.wait_for("READY", Duration::from_secs(60)).await?;
    let nanos: u64 = worker
        .wait_for("DONE", Duration::from_secs(600))
        .await?
        .parse()?;
    let proc_stats = stats::read_proc(worker.pid())?;
    worker.kill()?;
    let mut left = 0;
    for queue in &queues {
        left += left_after_consumers_gone(broker.connection, queue).await?;
    }
    if left != 0 {
        return Err(format!(
            "{left} of {} messages were left unacked when the {} drain ({}) said it was \
             done: the clock stopped before its acks were written",
            case.n,
            side.name(),
            case.label
        )
        .into());
    }
    if let Some(redis) = redis.as_mut() {
        let stored = store::count(redis).await?;
        if stored != case.n {
            return Err(format!(
                "{stored} results stored by the {} drain, not {}",
                side.name(),
                case.n
            )
            .into());
        }
        store::flush(redis).await?;
    }
    for queue in &queues {
        raw::delete(broker.admin, queue).await?;
    }
    Ok(Drain {
        rate: per_second(case.n, Duration::from_nanos(nanos)),
        peak_kib: proc_stats.hwm_kib,
    })
}

/// A worker spec for `side` on one queue with the tuned settings.
pub fn spec(settings: &Settings, side: Side, queue: &str, expect: usize) -> WorkerSpec {
    WorkerSpec::new(settings, side, queue, expect)
}
