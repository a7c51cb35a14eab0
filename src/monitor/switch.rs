//! `TaskEvents`: whether a worker sends task events, switchable at run time (Celery's
//! `enable_events` / `disable_events` remote-control commands).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cheap, cloneable switch of a worker's task events (`task-received`, `task-started`,
/// `task-succeeded`...). Worker events (online, heartbeat, offline) are sent either way.
#[derive(Debug, Clone, Default)]
pub struct TaskEvents {
    on: Arc<AtomicBool>,
}

impl TaskEvents {
    /// A switch, on or off.
    pub fn new(on: bool) -> Self {
        TaskEvents {
            on: Arc::new(AtomicBool::new(on)),
        }
    }

    /// Turns task events on (Celery's `enable_events`).
    pub fn enable(&self) {
        self.on.store(true, Ordering::Relaxed);
    }

    /// Turns task events off (Celery's `disable_events`).
    pub fn disable(&self) {
        self.on.store(false, Ordering::Relaxed);
    }

    /// Whether task events are on.
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskEvents;

    #[test]
    fn clones_share_the_switch() {
        let events = TaskEvents::new(false);
        let other = events.clone();
        assert!(!other.enabled());
        events.enable();
        assert!(other.enabled());
        other.disable();
        assert!(!events.enabled());
    }
}
