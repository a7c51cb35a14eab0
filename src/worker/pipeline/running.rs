//! Deliveries acked early whose task is still running: a cold shutdown publishes them
//! again so that they are not lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::actors::Delivery;

/// The early-acked deliveries still running, by a per-worker number.
#[derive(Clone, Default)]
pub(crate) struct RunningTasks {
    next: Arc<AtomicU64>,
    running: Arc<Mutex<HashMap<u64, Arc<Delivery>>>>,
}

impl RunningTasks {
    /// Records a running, acked delivery; it is forgotten when the guard drops.
    pub(super) fn track(&self, delivery: &Arc<Delivery>) -> RunningGuard {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut running) = self.running.lock() {
            running.insert(number, delivery.clone());
        }
        RunningGuard {
            tasks: self.clone(),
            number,
        }
    }

    /// The deliveries acked early and still running.
    pub(crate) fn take(&self) -> Vec<Arc<Delivery>> {
        self.running
            .lock()
            .map(|mut running| running.drain().map(|(_, delivery)| delivery).collect())
            .unwrap_or_default()
    }
}

/// Forgets a running delivery when its run ends.
pub(super) struct RunningGuard {
    tasks: RunningTasks,
    number: u64,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if let Ok(mut running) = self.tasks.running.lock() {
            running.remove(&self.number);
        }
    }
}
