//! `LamportClock`: the worker's one logical clock, as Celery's `app.clock` (kombu's
//! `LamportClock`). Events stamp their `clock` with it and remote-control requests move it
//! past the clock they carry, so that events and pidbox replies are ordered together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A shared Lamport clock; clones tick the same clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct LamportClock {
    value: Arc<AtomicU64>,
}

impl LamportClock {
    /// A clock at 0.
    pub(crate) fn new() -> Self {
        LamportClock::default()
    }

    /// Ticks for an event of this process (kombu's `forward`): the new value.
    pub(crate) fn forward(&self) -> u64 {
        self.value.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Moves past `other`, a clock read from a message, and ticks (kombu's `adjust`:
    /// `max(value, other) + 1`): the new value.
    pub(crate) fn adjust(&self, other: u64) -> u64 {
        let mut current = self.value.load(Ordering::Relaxed);
        loop {
            let next = current.max(other).saturating_add(1);
            match self.value.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => current = actual,
            }
        }
    }

    /// The value now, without ticking.
    pub(crate) fn value(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::LamportClock;

    /// Each step on one clock: the operation and the value it answers.
    #[test]
    fn forward_and_adjust_table() {
        let clock = LamportClock::new();
        let steps: [(Option<u64>, u64); 6] = [
            (None, 1),      // forward
            (Some(0), 2),   // adjust to an older clock: still ticks
            (Some(10), 11), // adjust to a newer clock: moves past it
            (None, 12),
            (Some(11), 13),
            (Some(13), 14),
        ];
        for (step, (adjust, expected)) in steps.into_iter().enumerate() {
            let got = match adjust {
                None => clock.forward(),
                Some(other) => clock.adjust(other),
            };
            assert_eq!(got, expected, "step {step}");
            assert_eq!(clock.value(), expected, "step {step}");
        }
    }

    #[test]
    fn clones_share_the_clock() {
        let clock = LamportClock::new();
        let other = clock.clone();
        clock.forward();
        assert_eq!(other.adjust(5), 6);
        assert_eq!(clock.forward(), 7);
    }

    #[test]
    fn ticks_from_many_threads_are_unique() {
        let clock = LamportClock::new();
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|i| {
                            if (i + n) % 2 == 0 {
                                clock.forward()
                            } else {
                                clock.adjust(0)
                            }
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("a thread"))
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000, "every tick answers a value of its own");
        assert_eq!(clock.value(), 4000);
    }
}
