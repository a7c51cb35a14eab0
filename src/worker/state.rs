//! What the worker is doing, for remote control (`celery inspect`): the requests it holds
//! (reserved, scheduled for an ETA, active), how many tasks of each name it started, the
//! ids revoked, the rate limits set at run time and the logical clock.
//!
//! `pipeline` updates it at the points where a request is received, held for its ETA,
//! started and finished (a [`Tracked`] guard per request); the pidbox actor reads it as a
//! [`Snapshot`] and the pure command functions answer from that.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::AbortHandle;
use serde_json::{json, Value};

use super::limited_set::LimitedSet;
use super::rate_limit::{Rate, TokenBucket};
use crate::actors::Delivery;
use crate::protocol::{TaskMessage, TaskPayload};

/// Celery's `request.info()`: one request as `inspect active/reserved/scheduled` show it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestInfo {
    /// Task id.
    pub(crate) id: String,
    /// Task name.
    pub(crate) name: String,
    /// Positional arguments (a bincode body shows as its `argsrepr`, or `[]`).
    pub(crate) args: Value,
    /// Keyword arguments.
    pub(crate) kwargs: Value,
    /// This worker's node name.
    pub(crate) hostname: String,
    /// When it started (epoch seconds); `None` until then.
    pub(crate) time_start: Option<f64>,
    /// Whether its message is acked.
    pub(crate) acknowledged: bool,
    /// Exchange and routing key it came with, its priority, whether it was redelivered.
    pub(crate) exchange: String,
    /// Routing key it came with.
    pub(crate) routing_key: String,
    /// AMQP priority (0 when unset).
    pub(crate) priority: u8,
    /// Whether the broker redelivered it.
    pub(crate) redelivered: bool,
    /// The process running it, once started.
    pub(crate) worker_pid: Option<u32>,
}

impl RequestInfo {
    /// The JSON Celery's `Request.info()` gives.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "args": self.args,
            "kwargs": self.kwargs,
            "type": self.name,
            "hostname": self.hostname,
            "time_start": self.time_start,
            "acknowledged": self.acknowledged,
            "delivery_info": {
                "exchange": self.exchange,
                "routing_key": self.routing_key,
                "priority": self.priority,
                "redelivered": self.redelivered,
            },
            "worker_pid": self.worker_pid,
        })
    }
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// Received, not started (waiting for a slot or a rate-limit token).
    Reserved,
    /// Held until its ETA.
    Scheduled {
        /// When it is due.
        eta: DateTime<Utc>,
    },
    /// Running.
    Active {
        /// A blocking task: `revoke(terminate=True)` cannot interrupt it.
        blocking: bool,
    },
}

/// One request the worker holds.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// What `inspect` shows of it.
    pub(crate) info: RequestInfo,
    /// Where it stands.
    pub(crate) phase: Phase,
}

/// A copy of the state, taken for one control command.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Requests held, in the order they were received.
    pub(crate) held: Vec<Held>,
    /// Tasks started, by name.
    pub(crate) total: BTreeMap<String, u64>,
    /// Revoked ids, oldest first.
    pub(crate) revoked: Vec<String>,
    /// The logical clock.
    pub(crate) clock: u64,
    /// Seconds since the worker started.
    pub(crate) uptime: u64,
    /// Rate limits set at run time, by task name (`None`: turned off).
    pub(crate) rate_limits: BTreeMap<String, Option<String>>,
    /// Whether task events are on.
    pub(crate) task_events: bool,
}

struct Inner {
    /// Requests held, by a per-worker number (the same id can arrive twice).
    held: BTreeMap<u64, Held>,
    total: BTreeMap<String, u64>,
    revoked: LimitedSet,
    /// Rate limits set by the `rate_limit` command; override the task's option.
    rate_overrides: BTreeMap<String, Option<(String, Rate)>>,
    /// One bucket per rate-limited task name.
    buckets: HashMap<String, TokenBucket>,
    /// How to stop each running async task, by task id (`revoke(terminate=True)`).
    terminators: HashMap<String, (u64, AbortHandle)>,
}

/// The worker's state; shared by the dispatcher's deliveries and the pidbox actor.
pub(crate) struct WorkerState {
    inner: Mutex<Inner>,
    next: AtomicU64,
    /// The worker's Lamport clock, shared with the event publisher.
    clock: crate::monitor::LamportClock,
    started: Instant,
    hostname: String,
    /// This process's id (`worker_pid` of the requests it runs), read once: it is a
    /// system call.
    pid: u32,
    /// "Task events enabled" (Celery's `-E`, `enable_events` / `disable_events`).
    task_events: crate::monitor::TaskEvents,
    /// Bumped on every revoke: held requests wake up and check whether they are revoked.
    revocations: tokio::sync::watch::Sender<u64>,
}

impl WorkerState {
    /// A fresh state for node `hostname`, with `revoked` ids carried over (state db).
    pub(crate) fn new(
        hostname: &str,
        revoked: LimitedSet,
        task_events: crate::monitor::TaskEvents,
    ) -> Self {
        WorkerState {
            inner: Mutex::new(Inner {
                held: BTreeMap::new(),
                total: BTreeMap::new(),
                revoked,
                rate_overrides: BTreeMap::new(),
                buckets: HashMap::new(),
                terminators: HashMap::new(),
            }),
            next: AtomicU64::new(0),
            clock: crate::monitor::LamportClock::new(),
            started: Instant::now(),
            hostname: hostname.to_string(),
            pid: std::process::id(),
            task_events,
            revocations: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Resolves once `id` is revoked (for requests held for an ETA or a rate limit).
    pub(crate) fn wait_revoked(&self, id: &str) -> impl std::future::Future<Output = ()> + use<'_> {
        let mut changes = self.revocations.subscribe();
        let id = id.to_string();
        async move {
            loop {
                if self.is_revoked(&id) {
                    return;
                }
                if changes.changed().await.is_err() {
                    // The state is going away with the worker: wait no more for a revoke.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The node name.
    pub(crate) fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The "task events enabled" flag.
    pub(crate) fn task_events(&self) -> &crate::monitor::TaskEvents {
        &self.task_events
    }

    /// Lamport clock: moves past `seen` (a clock from a message) and ticks; answers the
    /// new value.
    pub(crate) fn tick(&self, seen: u64) -> u64 {
        self.clock.adjust(seen)
    }

    /// The worker's Lamport clock (the event publisher stamps events with it).
    pub(crate) fn clock(&self) -> &crate::monitor::LamportClock {
        &self.clock
    }

    /// A request received: tracked as reserved until the guard drops.
    pub(crate) fn received(
        self: &Arc<Self>,
        message: &TaskMessage,
        delivery: &Delivery,
    ) -> Tracked {
        let (args, kwargs) = match &message.payload {
            TaskPayload::Json { args, kwargs, .. } => {
                (Value::Array(args.clone()), Value::Object(kwargs.clone()))
            }
            TaskPayload::Bincode(_) => (
                message
                    .headers
                    .argsrepr
                    .clone()
                    .map_or(Value::Array(Vec::new()), Value::String),
                Value::Object(Default::default()),
            ),
        };
        let info = RequestInfo {
            id: message.headers.id.clone(),
            name: message.headers.task.clone(),
            args,
            kwargs,
            hostname: self.hostname.clone(),
            time_start: None,
            acknowledged: false,
            exchange: delivery.exchange.clone(),
            routing_key: delivery.routing_key.clone(),
            priority: message.priority.unwrap_or(0),
            redelivered: delivery.redelivered,
            worker_pid: None,
        };
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().held.insert(
            key,
            Held {
                info,
                phase: Phase::Reserved,
            },
        );
        Tracked {
            state: self.clone(),
            key,
        }
    }

    /// Whether `id` is revoked (expired entries do not count).
    pub(crate) fn is_revoked(&self, id: &str) -> bool {
        self.lock().revoked.contains(id, now_epoch())
    }

    /// Revokes `ids`; answers the running async tasks among them that `terminate` stops.
    pub(crate) fn revoke(&self, ids: &[String], terminate: bool) -> Vec<String> {
        let mut inner = self.lock();
        let now = now_epoch();
        for id in ids {
            inner.revoked.add(id.clone(), now);
        }
        self.revocations.send_modify(|count| *count += 1);
        if !terminate {
            return Vec::new();
        }
        let mut stopped = Vec::new();
        for id in ids {
            if let Some((_, handle)) = inner.terminators.get(id) {
                handle.abort();
                stopped.push(id.clone());
            }
        }
        stopped
    }

    /// The revoked ids with when they were revoked (epoch seconds), for the state db.
    pub(crate) fn revoked_entries(&self) -> Vec<(String, f64)> {
        let mut inner = self.lock();
        inner.revoked.purge(now_epoch());
        inner.revoked.entries()
    }

    /// Sets (or, with `None`, turns off) the rate limit of task `name`.
    pub(crate) fn set_rate_limit(&self, name: &str, rate: Option<(String, Rate)>) {
        let mut inner = self.lock();
        inner.buckets.remove(name);
        inner.rate_overrides.insert(name.to_string(), rate);
    }

    /// How long a task of `name` must wait for its token (zero: start now), given the
    /// task's own `option` (overridden by the `rate_limit` command). Takes the token.
    pub(crate) fn rate_limit_wait(&self, name: &str, option: Option<Rate>) -> Duration {
        let mut inner = self.lock();
        let rate = match inner.rate_overrides.get(name) {
            Some(set) => set.as_ref().map(|(_, rate)| *rate),
            None => option,
        };
        let Some(rate) = rate else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let bucket = inner
            .buckets
            .entry(name.to_string())
            .or_insert_with(|| TokenBucket::new(rate));
        if bucket.rate() != rate {
            *bucket = TokenBucket::new(rate);
        }
        bucket.take(now)
    }

    /// A copy for one control command.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        inner.revoked.purge(now_epoch());
        Snapshot {
            held: inner.held.values().cloned().collect(),
            total: inner.total.clone(),
            revoked: inner.revoked.ids(),
            clock: self.clock.value(),
            uptime: self.started.elapsed().as_secs(),
            rate_limits: inner
                .rate_overrides
                .iter()
                .map(|(name, rate)| (name.clone(), rate.as_ref().map(|(text, _)| text.clone())))
                .collect(),
            task_events: self.task_events.enabled(),
        }
    }
}

/// Seconds since the epoch, as a float.
pub(crate) fn now_epoch() -> f64 {
    let now = Utc::now();
    now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6
}

/// One request in the state; forgotten when dropped.
pub(crate) struct Tracked {
    state: Arc<WorkerState>,
    key: u64,
}

impl Tracked {
    fn update(&self, change: impl FnOnce(&mut Held)) {
        if let Some(held) = self.state.lock().held.get_mut(&self.key) {
            change(held);
        }
    }

    /// Held until `eta`. `_priority` (the message's) is not kept: Celery's `scheduled`
    /// reply shows its timer entry's priority, 6 for every ETA request whatever the
    /// message's (`celery/worker/strategy.py`).
    pub(crate) fn scheduled(&self, eta: DateTime<Utc>, _priority: Option<u8>) {
        self.update(|held| held.phase = Phase::Scheduled { eta });
    }

    /// Waiting for a slot again (after its ETA).
    pub(crate) fn reserved(&self) {
        self.update(|held| held.phase = Phase::Reserved);
    }

    /// Started: counted in `total`; `abort` stops it on `revoke(terminate=True)` (`None`
    /// for a blocking task, which cannot be interrupted).
    pub(crate) fn started(&self, acknowledged: bool, abort: Option<AbortHandle>) {
        let mut guard = self.state.lock();
        let inner = &mut *guard;
        let Some(held) = inner.held.get_mut(&self.key) else {
            return;
        };
        held.phase = Phase::Active {
            blocking: abort.is_none(),
        };
        held.info.time_start = Some(now_epoch());
        held.info.acknowledged = acknowledged;
        held.info.worker_pid = Some(self.state.pid);
        let name = &held.info.name;
        // The name is copied only the first time a task of that name starts.
        match inner.total.get_mut(name) {
            Some(total) => *total += 1,
            None => {
                let name = name.clone();
                inner.total.insert(name, 1);
            }
        }
        if let Some(abort) = abort {
            inner
                .terminators
                .insert(held.info.id.clone(), (self.key, abort));
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut inner = self.state.lock();
        if let Some(held) = inner.held.remove(&self.key) {
            if inner
                .terminators
                .get(&held.info.id)
                .is_some_and(|(key, _)| *key == self.key)
            {
                inner.terminators.remove(&held.info.id);
            }
        }
    }
}
