//! The adaptive prefetch window, used when the prefetch multiplier is not set
//! (`Config::prefetch_multiplier` is `None`).
//!
//! A fixed window of concurrency x 4 starves a worker of short tasks (it waits a broker
//! round trip for every few tasks), and a large fixed window lets one worker hoard long
//! tasks an idle worker could run. So the window follows the tasks' run times: it holds
//! about [`HELD_WORK_PER_SLOT`] of work per executor slot, within
//! `[concurrency x 4, max(cap, concurrency x 4)]` ([`Bounds`]).
//!
//! - Every [`Bounds::floor`] completed runs, the mean run time of that batch gives the next
//!   window ([`next_window`], pure): it at most doubles at a time, and shrinks to its target
//!   at once.
//! - Nothing is given back when the window shrinks: a delivery the worker holds runs here.
//!   Giving it back (a requeue) would redeliver it with the `redelivered` flag, send its
//!   `task-received` event twice and, on a loaded machine where short tasks measure long,
//!   churn messages between the broker and the worker. So what one worker can hoard is what
//!   it held when its tasks turned long: at most the window then, about
//!   [`HELD_WORK_PER_SLOT`] per slot of the *earlier*, shorter tasks, and never more than
//!   [`WINDOW_CAP`] deliveries; after [`Bounds::floor`] long runs the window is back at the
//!   floor, Celery's default (`worker_prefetch_multiplier` 4).
//! - The window is applied to every consumer through the consumer supervisor, and it
//!   composes with the ETA widening: a consumer's window is this base plus one per held
//!   ETA or rate-limited task.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix::Recipient;

use crate::actors::SetConsumersWindow;

/// The work the window lets the worker hold per executor slot, beyond what runs: enough to
/// hide a broker round trip and the ack batching, small enough that a worker holds no more
/// than a fraction of a second of work an idle worker could run.
pub(crate) const HELD_WORK_PER_SLOT: Duration = Duration::from_millis(50);

/// The largest adaptive window (unless the floor is larger): past a few hundred messages a
/// wider window brings no more speed, only memory.
pub(crate) const WINDOW_CAP: u16 = 1000;

/// The multiplier the floor is computed with (Celery's default `worker_prefetch_multiplier`).
pub(crate) const FLOOR_MULTIPLIER: usize = 4;

/// The limits of the adaptive window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Executor slots (at least 1).
    pub(crate) concurrency: u16,
    /// The smallest window: concurrency x [`FLOOR_MULTIPLIER`]; also the number of runs
    /// each decision is made over.
    pub(crate) floor: u16,
    /// The largest window.
    pub(crate) cap: u16,
}

impl Bounds {
    /// The bounds for a worker of `concurrency` slots.
    pub(crate) fn for_concurrency(concurrency: usize) -> Bounds {
        let concurrency = u16::try_from(concurrency.max(1)).unwrap_or(u16::MAX);
        let floor = concurrency.saturating_mul(FLOOR_MULTIPLIER as u16);
        Bounds {
            concurrency,
            floor,
            cap: WINDOW_CAP.max(floor),
        }
    }
}

/// The next window, from the current one and the mean run time of the last batch: about
/// [`HELD_WORK_PER_SLOT`] of work per slot, within the bounds, growing at most twofold.
pub(crate) fn next_window(bounds: Bounds, current: u16, mean_run: Duration) -> u16 {
    let per_slot = HELD_WORK_PER_SLOT
        .as_nanos()
        .checked_div(mean_run.as_nanos())
        .unwrap_or(u128::MAX);
    let target = u128::from(bounds.concurrency)
        .saturating_mul(per_slot.saturating_add(1))
        .clamp(u128::from(bounds.floor), u128::from(bounds.cap));
    let target = u16::try_from(target).unwrap_or(bounds.cap);
    if target > current {
        target.min(current.saturating_mul(2).max(bounds.floor))
    } else {
        target
    }
}

/// Run times of the current batch.
#[derive(Debug, Default)]
struct Batch {
    /// Their sum.
    total: Duration,
    /// How many.
    runs: u16,
}

/// The adaptive window of one worker: records run times, decides, and tells the consumer
/// supervisor when the window changes.
pub(crate) struct AdaptiveWindow {
    /// Its limits.
    bounds: Bounds,
    /// The current window.
    window: AtomicU16,
    /// Runs since the last decision.
    batch: Mutex<Batch>,
    /// Applies a new window to every consumer.
    apply: Recipient<SetConsumersWindow>,
}

impl AdaptiveWindow {
    /// Starts at the floor (the window consumers are opened with).
    pub(crate) fn new(bounds: Bounds, apply: Recipient<SetConsumersWindow>) -> AdaptiveWindow {
        AdaptiveWindow {
            bounds,
            window: AtomicU16::new(bounds.floor),
            batch: Mutex::default(),
            apply,
        }
    }

    /// The current window.
    pub(crate) fn current(&self) -> u16 {
        self.window.load(Ordering::Relaxed)
    }

    /// Records a completed run; every [`Bounds::floor`] runs, decides the next window.
    pub(crate) fn ran(&self, took: Duration) {
        let mean = {
            let Ok(mut batch) = self.batch.lock() else {
                return;
            };
            batch.total += took;
            batch.runs += 1;
            if batch.runs < self.bounds.floor {
                return;
            }
            let mean = batch.total / u32::from(batch.runs);
            *batch = Batch::default();
            mean
        };
        let current = self.current();
        let next = next_window(self.bounds, current, mean);
        if next != current {
            self.window.store(next, Ordering::Relaxed);
            log::debug!("adaptive prefetch window: {current} -> {next} (mean run {mean:?})");
            self.apply.do_send(SetConsumersWindow(next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    #[test]
    fn bounds_follow_concurrency() {
        let two = Bounds::for_concurrency(2);
        assert_eq!((two.concurrency, two.floor, two.cap), (2, 8, 1000));
        let none = Bounds::for_concurrency(0);
        assert_eq!((none.concurrency, none.floor, none.cap), (1, 4, 1000));
        // A floor above the cap wins.
        let many = Bounds::for_concurrency(500);
        assert_eq!((many.floor, many.cap), (2000, 2000));
    }

    #[test]
    fn next_window_table() {
        let two = Bounds::for_concurrency(2);
        let eight = Bounds::for_concurrency(8);
        // (bounds, current, mean run, next)
        let table = [
            // Short tasks: doubles from the floor up to the cap.
            (two, 8, 10 * US, 16),
            (two, 16, 10 * US, 32),
            (two, 512, 10 * US, 1000),
            (two, 1000, 10 * US, 1000),
            (two, 8, Duration::ZERO, 16),
            // A target between: 50 ms / 1 ms = 50 per slot (+1 running), 2 slots.
            (two, 64, MS, 102),
            (two, 102, MS, 102),
            (two, 1000, MS, 102),
            // Long tasks: the floor, at once.
            (two, 1000, 200 * MS, 8),
            (two, 8, 200 * MS, 8),
            (two, 8, 13 * MS, 8),
            (two, 8, Duration::from_secs(3600), 8),
            // Just under 12.5 ms: 4 per slot, +1: 10.
            (two, 8, 12 * MS, 10),
            (eight, 32, 10 * US, 64),
            (eight, 1000, 100 * MS, 32),
        ];
        for (bounds, current, mean, expected) in table {
            assert_eq!(
                next_window(bounds, current, mean),
                expected,
                "{bounds:?}, window {current}, mean run {mean:?}"
            );
        }
    }
}
