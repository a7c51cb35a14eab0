//! How the cost grows with the work: drain and peak RSS against the message size and
//! against the number of queues one worker consumes, and a worker's RSS while it holds
//! many ETA tasks.

use std::time::{Duration, Instant};

use crate::drain::{self, Broker, DrainCase, Shape, Work};
use crate::worker::{left_after_consumers_gone, Side, WorkerProcess};
use crate::{raw, stats, BoxError, Settings};

/// Message sizes (body + properties) of the size cases.
pub const SIZES: [usize; 3] = [512, 16 * 1024, 256 * 1024];
/// Queue counts of the queue cases.
pub const QUEUE_COUNTS: [usize; 3] = [1, 10, 100];

/// One line of a growth table.
pub struct GrowthRow {
    /// The case, e.g. "16 KiB".
    pub label: String,
    /// Messages drained.
    pub n: usize,
    /// The medians.
    pub compared: drain::Compared,
}

/// The messages of a size case: N, but at most 128 MiB in all (4 MiB in quick mode).
fn count_for(settings: &Settings, size: usize) -> usize {
    let cap: usize = if settings.quick { 4 << 20 } else { 128 << 20 };
    settings.n.min((cap / size).max(1))
}

/// Drain against the message size.
pub async fn sizes(settings: &Settings, broker: &Broker<'_>) -> Result<Vec<GrowthRow>, BoxError> {
    let mut rows = Vec::new();
    for size in SIZES {
        let label = if size < 1024 {
            format!("{size} B")
        } else {
            format!("{} KiB", size / 1024)
        };
        let n = count_for(settings, size);
        let sample = drain::encode(1, shape(size))?;
        let case = DrainCase {
            shape: shape(size),
            n,
            ..DrainCase::tuned(
                settings,
                &format!(
                    "messages of {label} ({} B body + properties), tuned settings",
                    drain::message_size(&sample[0])
                ),
            )
        };
        let compared = drain::compare(settings, broker, &case).await?;
        rows.push(GrowthRow { label, n, compared });
    }
    Ok(rows)
}

fn shape(size: usize) -> Shape {
    Shape {
        work: Work::Pad(size),
        ..Shape::ADD
    }
}

/// Drain against the number of queues one worker consumes (N spread evenly).
pub async fn queues(settings: &Settings, broker: &Broker<'_>) -> Result<Vec<GrowthRow>, BoxError> {
    let mut rows = Vec::new();
    for count in QUEUE_COUNTS {
        let case = DrainCase {
            queues: count,
            ..DrainCase::tuned(
                settings,
                &format!("{count} queues consumed by one worker, tuned settings"),
            )
        };
        let compared = drain::compare(settings, broker, &case).await?;
        rows.push(GrowthRow {
            label: format!("{count}"),
            n: case.n,
            compared,
        });
    }
    Ok(rows)
}

/// A celeriac worker holding ETA tasks.
pub struct Held {
    /// Tasks held.
    pub count: usize,
    /// VmRSS before any was published, KiB.
    pub idle_kib: u64,
    /// VmRSS once all are held, KiB.
    pub held_kib: u64,
    /// VmHWM then, KiB.
    pub peak_kib: u64,
    /// Body + properties of one held message: about what each is counted for against
    /// `Config::eta_task_bytes_limit`.
    pub message_bytes: usize,
    /// The worker's `eta_task_bytes_limit` (the default).
    pub bytes_limit: usize,
}

/// Publishes `settings.eta_held` tasks with an ETA five minutes ahead to an idle celeriac
/// worker (tuned settings) and reads its RSS once it holds them all (its queue is empty).
pub async fn held_eta(settings: &Settings, broker: &Broker<'_>) -> Result<Held, BoxError> {
    let count = settings.eta_held;
    println!("\n-- worker RSS holding {count} ETA tasks (ETA in 5 minutes), tuned settings");
    let queue = crate::queue_name("eta", "celeriac");
    raw::declare(broker.admin, &queue).await?;
    let mut worker =
        WorkerProcess::spawn(settings, &drain::spec(settings, Side::Celeriac, &queue, 0))?;
    worker.wait_for("READY", Duration::from_secs(60)).await?;
    worker.wait_for("DONE", Duration::from_secs(60)).await?;
    // Idle for a second after startup, as the footprint phase.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let idle = stats::read_proc(worker.pid())?;
    let shape = Shape {
        eta: Some(chrono::Utc::now() + chrono::Duration::minutes(5)),
        ..Shape::ADD
    };
    let messages = drain::encode(count, shape)?;
    let message_bytes = messages.first().map_or(0, drain::message_size);
    let channel = raw::confirm_channel(broker.connection).await?;
    raw::publish_all(&channel, &queue, &messages, settings.in_flight).await?;
    let _ = channel.close(200, "OK".into()).await;
    drop(messages);
    let patience = Duration::from_secs(120);
    let deadline = Instant::now() + patience;
    loop {
        let ready = raw::ready_count(broker.connection, &queue).await?;
        if ready == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the celeriac worker still left {ready} of {count} ETA tasks in its queue \
                 after {patience:?}: it does not hold them all"
            )
            .into());
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let held = stats::read_proc(worker.pid())?;
    worker.kill()?;
    // Held tasks are unacked: all of them come back when the worker is gone.
    let back = left_after_consumers_gone(broker.connection, &queue).await?;
    raw::delete(broker.admin, &queue).await?;
    if back as usize != count {
        return Err(format!(
            "{back} of {count} held ETA tasks came back to the queue after the worker was \
             killed: the others were acked before their ETA"
        )
        .into());
    }
    let figures = Held {
        count,
        idle_kib: idle.rss_kib,
        held_kib: held.rss_kib,
        peak_kib: held.hwm_kib,
        message_bytes,
        bytes_limit: celeriac::Config::default().eta_task_bytes_limit,
    };
    println!(
        "celeriac : idle RSS {:.1} MiB, holding {count}: RSS {:.1} MiB (VmHWM {:.1} MiB), \
         {:.0} B per held task; each counted for about {message_bytes} B against \
         eta_task_bytes_limit {} B",
        figures.idle_kib as f64 / 1024.0,
        figures.held_kib as f64 / 1024.0,
        figures.peak_kib as f64 / 1024.0,
        figures.per_task_bytes(),
        figures.bytes_limit
    );
    Ok(figures)
}

impl Held {
    /// RSS growth per held task, bytes.
    pub fn per_task_bytes(&self) -> f64 {
        self.held_kib.saturating_sub(self.idle_kib) as f64 * 1024.0 / self.count.max(1) as f64
    }
}
