//! What each Celery event says, built as Celery 5.7's `EventDispatcher` builds it: the
//! common fields (`hostname`, `utcoffset`, `pid`, `clock`), the event's own, then
//! `timestamp` and `type`, in that order (docs/wire-protocol.md §4). Pure functions; the
//! publisher actor does the I/O.

use serde_json::{Map, Value};

use crate::actors::amqp::{AMQPValue, BasicProperties, FieldTable, LongString};
use crate::protocol::repr::value_repr;
use crate::task::TaskError;
use crate::worker::{TaskEvent, TaskEventKind};

/// The topic exchange events go to (durable, as Celery declares it).
pub const EXCHANGE: &str = "celeryev";

/// The routing key of a batch of task events (a JSON list), as Celery's worker sends them.
pub const TASK_BATCH_ROUTING_KEY: &str = "task.multi";

/// Seconds between heartbeats; receivers take a worker for dead after twice that.
pub const HEARTBEAT_FREQ: f64 = 2.0;

/// What identifies this software in worker events (`sw_ident`, `sw_ver`).
pub const SW_IDENT: &str = "celeriac";

/// Who sends the events.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The node name (`Config::hostname`).
    pub hostname: String,
    /// The process id.
    pub pid: u32,
}

/// When an event happened, as its receivers order and correct it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamp {
    /// The Lamport clock value of this event.
    pub clock: u64,
    /// Seconds since the epoch.
    pub timestamp: f64,
    /// Hours west of UTC (see `host::utcoffset`).
    pub utcoffset: f64,
}

/// The worker events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEventType {
    /// `worker-online`: the worker started.
    Online,
    /// `worker-heartbeat`: every [`HEARTBEAT_FREQ`] seconds.
    Heartbeat,
    /// `worker-offline`: the worker stopped warmly.
    Offline,
}

impl WorkerEventType {
    /// The event's `type`.
    pub fn name(self) -> &'static str {
        match self {
            WorkerEventType::Online => "worker-online",
            WorkerEventType::Heartbeat => "worker-heartbeat",
            WorkerEventType::Offline => "worker-offline",
        }
    }
}

/// What worker events report about the worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerCounters {
    /// Tasks running now.
    pub active: usize,
    /// Tasks started since the worker started.
    pub processed: u64,
    /// The machine's load averages.
    pub loadavg: [f64; 3],
}

/// The routing key of a single event: its type with `-` made `.` (`worker.heartbeat`).
pub fn routing_key(event_type: &str) -> String {
    event_type.replace('-', ".")
}

/// The AMQP properties of every event: JSON, transient (delivery mode 1), priority 0,
/// and the sender's node name in the `hostname` header.
pub fn properties(hostname: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "hostname".into(),
        AMQPValue::LongString(LongString::from(hostname.as_bytes().to_vec())),
    );
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(1)
        .with_priority(0)
        .with_headers(headers)
}

/// A worker event.
pub fn worker_event(
    event_type: WorkerEventType,
    origin: &Origin,
    stamp: Stamp,
    counters: WorkerCounters,
) -> Map<String, Value> {
    let mut event = common(origin, stamp);
    event.insert("freq".into(), HEARTBEAT_FREQ.into());
    event.insert("active".into(), counters.active.into());
    event.insert("processed".into(), counters.processed.into());
    event.insert("loadavg".into(), counters.loadavg.to_vec().into());
    event.insert("sw_ident".into(), SW_IDENT.into());
    event.insert("sw_ver".into(), env!("CARGO_PKG_VERSION").into());
    event.insert("sw_sys".into(), super::host::system().into());
    finish(event, stamp, event_type.name())
}

/// The `worker-heartbeat` Celery sends when the `heartbeat` remote-control command asks for
/// one: `freq` 5 and the software fields, no counters.
pub fn requested_heartbeat(origin: &Origin, stamp: Stamp) -> Map<String, Value> {
    let mut event = common(origin, stamp);
    event.insert("freq".into(), 5.into());
    event.insert("sw_ident".into(), SW_IDENT.into());
    event.insert("sw_ver".into(), env!("CARGO_PKG_VERSION").into());
    event.insert("sw_sys".into(), super::host::system().into());
    finish(event, stamp, WorkerEventType::Heartbeat.name())
}

/// The Celery task event for a worker's `TaskEvent`, or `None` when Celery sends none for
/// it (requeued at shutdown, deferred to a wait queue, ignored) or it has no task id.
/// `runtime` is the seconds since the task started, for `task-succeeded`.
pub fn task_event(
    event: &TaskEvent,
    runtime: Option<f64>,
    origin: &Origin,
    stamp: Stamp,
) -> Option<Map<String, Value>> {
    let id = event.task_id.as_deref()?;
    let (event_type, fields) = task_fields(&event.kind, event.task_name.as_deref(), runtime)?;
    let mut out = common(origin, stamp);
    out.insert("uuid".into(), id.into());
    out.extend(fields);
    Some(finish(out, stamp, event_type))
}

/// Whether Celery sends an event for `kind` (see [`task_fields`]): not for a task requeued
/// at shutdown, deferred to a wait queue or ignored.
pub fn sends_event(kind: &TaskEventKind) -> bool {
    !matches!(
        kind,
        TaskEventKind::Requeued | TaskEventKind::Deferred { .. } | TaskEventKind::Ignored
    )
}

/// The type and own fields (after `uuid`) of the task event for `kind`; `None` when Celery
/// sends none.
pub fn task_fields(
    kind: &TaskEventKind,
    name: Option<&str>,
    runtime: Option<f64>,
) -> Option<(&'static str, Map<String, Value>)> {
    let mut fields = Map::new();
    let event_type = match kind {
        TaskEventKind::Received(info) => {
            fields.insert("name".into(), name.unwrap_or_default().into());
            fields.insert("args".into(), info.args.clone().into());
            fields.insert("kwargs".into(), info.kwargs.clone().into());
            fields.insert("root_id".into(), info.root_id.clone().into());
            fields.insert("parent_id".into(), info.parent_id.clone().into());
            fields.insert("retries".into(), info.retries.into());
            fields.insert("eta".into(), info.eta.map(iso).into());
            fields.insert("expires".into(), info.expires.map(iso).into());
            "task-received"
        }
        TaskEventKind::Started => "task-started",
        TaskEventKind::Succeeded { result } => {
            fields.insert("result".into(), value_repr(result).into());
            fields.insert("runtime".into(), runtime.unwrap_or(0.0).into());
            "task-succeeded"
        }
        TaskEventKind::Failed { error } => {
            fields.insert("exception".into(), exception_repr(error).into());
            fields.insert("traceback".into(), traceback(error).into());
            "task-failed"
        }
        TaskEventKind::Retried { error, .. } => {
            fields.insert("exception".into(), exception_repr(error).into());
            fields.insert("traceback".into(), traceback(error).into());
            "task-retried"
        }
        TaskEventKind::Revoked { reason, signum } => {
            fields.insert("terminated".into(), signum.is_some().into());
            fields.insert("signum".into(), (*signum).into());
            fields.insert("expired".into(), (reason == "expired").into());
            "task-revoked"
        }
        // Celery answers a task it does not know with task-failed NotRegistered('name'),
        // without a traceback; other rejections are task-rejected.
        TaskEventKind::Rejected { reason, requeue } => match reason.strip_prefix("NotRegistered: ")
        {
            Some(task) => {
                let exception = format!("NotRegistered({})", value_repr(&task.into()));
                fields.insert("exception".into(), exception.into());
                "task-failed"
            }
            None => {
                fields.insert("requeue".into(), (*requeue).into());
                "task-rejected"
            }
        },
        TaskEventKind::Requeued | TaskEventKind::Deferred { .. } | TaskEventKind::Ignored => {
            return None
        }
    };
    Some((event_type, fields))
}

/// Python's `repr(exc)`: `ValueError('boom')`.
pub fn exception_repr(error: &TaskError) -> String {
    format!(
        "{}({})",
        error.exc_type,
        value_repr(&error.message.as_str().into())
    )
}

/// The last line of a Python traceback (a celeriac task has no Python frames):
/// `ValueError: boom`, the module named unless it is `builtins`.
pub fn traceback(error: &TaskError) -> String {
    if error.exc_module.is_empty() || error.exc_module == "builtins" {
        format!("{}: {}\n", error.exc_type, error.message)
    } else {
        format!(
            "{}.{}: {}\n",
            error.exc_module, error.exc_type, error.message
        )
    }
}

/// Python's `datetime.isoformat()` of a UTC time: microseconds when there are any.
fn iso(at: chrono::DateTime<chrono::Utc>) -> String {
    let precision = if at.timestamp_subsec_micros() == 0 {
        chrono::SecondsFormat::Secs
    } else {
        chrono::SecondsFormat::Micros
    };
    at.to_rfc3339_opts(precision, false)
}

/// The fields every event starts with.
fn common(origin: &Origin, stamp: Stamp) -> Map<String, Value> {
    let mut event = Map::new();
    event.insert("hostname".into(), origin.hostname.clone().into());
    event.insert("utcoffset".into(), stamp.utcoffset.into());
    event.insert("pid".into(), origin.pid.into());
    event.insert("clock".into(), stamp.clock.into());
    event
}

/// Adds the fields every event ends with.
fn finish(mut event: Map<String, Value>, stamp: Stamp, event_type: &str) -> Map<String, Value> {
    event.insert("timestamp".into(), stamp.timestamp.into());
    event.insert("type".into(), event_type.into());
    event
}

#[cfg(test)]
mod tests;
