//! Fairness: two celeriac workers with default settings share a queue of long tasks; the
//! second starts once the first is consuming. A worker that hoards a backlog it cannot run
//! while the other idles stretches the makespan past the ideal (every slot busy).

use std::time::{Duration, Instant};

use crate::drain::{self, Broker, Shape, Work};
use crate::worker::{Profile, Side, WorkerProcess, WorkerSpec};
use crate::{raw, BoxError, Settings};

/// Figures of the fairness case.
pub struct Fairness {
    /// Tasks.
    pub tasks: usize,
    /// How long each sleeps.
    pub task_time: Duration,
    /// Slots of both workers together.
    pub slots: usize,
    /// From the first worker's start until the last task ended.
    pub makespan: Duration,
    /// ceil(tasks / slots) x task time.
    pub ideal: Duration,
    /// When the second worker was consuming, after the first's start.
    pub second_ready: Duration,
    /// Tasks each worker ran.
    pub ran: [usize; 2],
}

/// Runs the fairness case.
pub async fn run(settings: &Settings, broker: &Broker<'_>) -> Result<Fairness, BoxError> {
    let (tasks, millis) = if settings.quick { (8, 100) } else { (64, 250) };
    let task_time = Duration::from_millis(millis);
    let queue = crate::queue_name("fairness", "celeriac");
    raw::declare(broker.admin, &queue).await?;
    let shape = Shape {
        work: Work::Sleep(millis),
        ..Shape::ADD
    };
    let channel = raw::confirm_channel(broker.connection).await?;
    raw::publish_all(
        &channel,
        &queue,
        &drain::encode(tasks, shape)?,
        settings.in_flight,
    )
    .await?;
    let _ = channel.close(200, "OK".into()).await;
    let spec = WorkerSpec {
        profile: Profile::Default,
        ..WorkerSpec::new(settings, Side::Celeriac, &queue, 0)
    };
    let slots = 2 * Profile::Default.config(settings, "", "").concurrency;
    println!(
        "\n-- fairness: {tasks} tasks of {millis} ms, two celeriac workers with default \
         settings ({slots} slots in all), the second started once the first consumes"
    );
    let started = Instant::now();
    let mut first = WorkerProcess::spawn(settings, &spec)?;
    first.wait_for("READY", Duration::from_secs(60)).await?;
    let mut second = WorkerProcess::spawn(settings, &spec)?;
    let mut ran = [0usize; 2];
    // The first worker may already be running tasks while the second starts.
    let mut second_ready = None;
    let patience = Duration::from_secs(60) + task_time * tasks as u32;
    while ran[0] + ran[1] < tasks {
        let (index, line) = tokio::select! {
            line = first.next_line(patience) => (0, line?),
            line = second.next_line(patience) => (1, line?),
        };
        match line.as_str() {
            "RAN" => ran[index] += 1,
            "READY" if index == 1 => second_ready = Some(started.elapsed()),
            _ => {}
        }
    }
    let makespan = started.elapsed();
    first.stop().await?;
    second.stop().await?;
    raw::delete(broker.admin, &queue).await?;
    let ideal = task_time * tasks.div_ceil(slots) as u32;
    let figures = Fairness {
        tasks,
        task_time,
        slots,
        makespan,
        ideal,
        second_ready: second_ready.unwrap_or_default(),
        ran,
    };
    println!(
        "makespan {:.2} s against the ideal {:.2} s ({:.2} x); tasks run: first worker {}, \
         second {} (consuming {:.2} s after the first started)",
        makespan.as_secs_f64(),
        ideal.as_secs_f64(),
        figures.ratio(),
        ran[0],
        ran[1],
        figures.second_ready.as_secs_f64()
    );
    Ok(figures)
}

impl Fairness {
    /// Makespan over the ideal.
    pub fn ratio(&self) -> f64 {
        self.makespan.as_secs_f64() / self.ideal.as_secs_f64().max(1e-9)
    }
}
