//! Collecting events with a deadline, order-independent: a `Collected` keeps every message
//! it received, so a test can wait for B and then for A even when A came first, and check
//! orderings and counts over everything seen afterwards.

use std::fmt::Debug;
use std::time::Duration;

use celeriac::{TaskEvent, TaskEventKind};
use futures::channel::mpsc::{TryRecvError, UnboundedReceiver};
use futures::StreamExt;

/// Every message received on a channel (task events, supervisor events...), in order of
/// arrival, each with when it was taken off the channel.
pub struct Collected<M> {
    receiver: UnboundedReceiver<M>,
    seen: Vec<M>,
    /// When each message of `seen` was taken off the channel (by the same index): it was
    /// emitted no later than that.
    received_at: Vec<chrono::DateTime<chrono::Utc>>,
    /// Which messages of `seen` were handed out by `take_next` (by the same index).
    taken: Vec<bool>,
    /// The channel ended (the sender was dropped).
    ended: bool,
}

/// The task events of a worker.
pub type Events = Collected<TaskEvent>;

impl<M: Clone + Debug> Collected<M> {
    /// Collects what arrives on `receiver`.
    pub fn new(receiver: UnboundedReceiver<M>) -> Self {
        Collected {
            receiver,
            seen: Vec::new(),
            received_at: Vec::new(),
            taken: Vec::new(),
            ended: false,
        }
    }

    /// Everything received so far (call `take_ready` first to include what is waiting).
    pub fn seen(&self) -> &[M] {
        &self.seen
    }

    /// Everything received so far with when it was taken off the channel (it was emitted
    /// no later than that).
    pub fn seen_with_times(
        &self,
    ) -> impl Iterator<Item = (&M, chrono::DateTime<chrono::Utc>)> + '_ {
        self.seen.iter().zip(self.received_at.iter().copied())
    }

    /// When the first message matching `matches` was taken off the channel.
    pub fn received_at(
        &self,
        matches: impl FnMut(&M) -> bool,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.seen
            .iter()
            .position(matches)
            .map(|index| self.received_at[index])
    }

    /// Takes in what is already waiting on the channel, without waiting.
    pub fn take_ready(&mut self) {
        while !self.ended {
            match self.receiver.try_recv() {
                Ok(message) => self.push(message),
                Err(TryRecvError::Closed) => self.ended = true,
                Err(TryRecvError::Empty) => break,
            }
        }
    }

    fn push(&mut self, message: M) {
        self.seen.push(message);
        self.received_at.push(chrono::Utc::now());
        self.taken.push(false);
    }

    /// Waits until `done` holds over everything received (before or during the wait);
    /// fails after `timeout` saying `what` did not happen, with what was seen.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl FnMut(&[M]) -> bool,
    ) {
        if !self.try_wait_until(timeout, done).await {
            let why = if self.ended {
                "the channel ended"
            } else {
                "timed out"
            };
            panic!(
                "{why} after waiting up to {timeout:?} for {what}; seen: {}",
                self.describe()
            );
        }
    }

    /// Waits until `done` holds over everything received (before or during the wait);
    /// answers false if it did not within `timeout` (or the channel ended first).
    pub async fn try_wait_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[M]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.take_ready();
            if done(&self.seen) {
                return true;
            }
            if self.ended {
                return false;
            }
            match tokio::time::timeout_at(deadline, self.receiver.next()).await {
                Err(_) => return false,
                Ok(None) => self.ended = true,
                Ok(Some(message)) => self.push(message),
            }
        }
    }

    /// Calls `done` on every message received, from the first one (also those received
    /// before the call), until it answers true; fails after `timeout` saying `what` did not
    /// happen. For tallies kept by the caller.
    pub async fn wait_each(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&M) -> bool,
    ) {
        let mut next = 0;
        let mut finished = false;
        self.wait_until(timeout, what, |seen| {
            while !finished && next < seen.len() {
                finished = done(&seen[next]);
                next += 1;
            }
            finished
        })
        .await;
    }

    /// Waits until a message matching `matches` was received (it may have come before the
    /// call) and answers the first one; fails after `timeout` saying `what` did not come.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        mut matches: impl FnMut(&M) -> bool,
    ) -> M {
        self.wait_until(timeout, what, |seen| seen.iter().any(&mut matches))
            .await;
        self.seen
            .iter()
            .find(|message| matches(message))
            .cloned()
            .unwrap_or_else(|| unreachable!("waited for it"))
    }

    /// Answers the first message matching `matches` that no earlier `take_next` answered
    /// (waiting for one if there is none yet), for loops that handle each message once.
    /// Messages that do not match are kept for later waits, not dropped.
    pub async fn take_next(
        &mut self,
        timeout: Duration,
        what: &str,
        mut matches: impl FnMut(&M) -> bool,
    ) -> M {
        let taken = std::mem::take(&mut self.taken);
        let mut found = None;
        let mut checked = 0;
        self.wait_until(timeout, what, |seen| {
            found = (checked..seen.len()).find(|index| {
                !taken.get(*index).copied().unwrap_or(false) && matches(&seen[*index])
            });
            checked = seen.len();
            found.is_some()
        })
        .await;
        self.taken = taken;
        self.taken.resize(self.seen.len(), false);
        let index = found.unwrap_or_else(|| unreachable!("waited for it"));
        self.taken[index] = true;
        self.seen[index].clone()
    }

    /// Waits until `count` messages matching `matches` were received.
    pub async fn wait_count(
        &mut self,
        timeout: Duration,
        what: &str,
        count: usize,
        mut matches: impl FnMut(&M) -> bool,
    ) {
        self.wait_until(timeout, what, |seen| {
            seen.iter().filter(|message| matches(message)).count() >= count
        })
        .await;
    }

    /// The last messages seen, for failure messages.
    fn describe(&self) -> String {
        const LAST: usize = 20;
        let skipped = self.seen.len().saturating_sub(LAST);
        let last: Vec<String> = self.seen[skipped..]
            .iter()
            .map(|message| format!("{message:?}"))
            .collect();
        if skipped > 0 {
            format!("{} messages, the last {LAST}: {last:?}", self.seen.len())
        } else {
            format!("{last:?}")
        }
    }
}

impl Collected<TaskEvent> {
    /// The first event of task `id` matching `matches`, if it was received.
    pub fn of_task(
        &self,
        id: &str,
        mut matches: impl FnMut(&TaskEventKind) -> bool,
    ) -> Option<&TaskEvent> {
        self.seen
            .iter()
            .find(|event| event.task_id.as_deref() == Some(id) && matches(&event.kind))
    }

    /// Waits for the outcome of task `id` (it succeeded, failed, was rejected or revoked,
    /// or ended with Ignore) and answers it.
    pub async fn outcome(&mut self, timeout: Duration, id: &str) -> TaskEventKind {
        self.wait_for(timeout, &format!("the outcome of task {id}"), |event| {
            event.task_id.as_deref() == Some(id) && is_outcome(&event.kind)
        })
        .await
        .kind
    }
}

/// Whether the event ends a run (succeeded, failed, rejected, revoked, ignored).
pub fn is_outcome(kind: &TaskEventKind) -> bool {
    matches!(
        kind,
        TaskEventKind::Succeeded { .. }
            | TaskEventKind::Failed { .. }
            | TaskEventKind::Rejected { .. }
            | TaskEventKind::Revoked { .. }
            | TaskEventKind::Ignored
    )
}

/// Whether the event is a success.
pub fn succeeded(event: &TaskEvent) -> bool {
    matches!(event.kind, TaskEventKind::Succeeded { .. })
}
