//! What the worker holds for ETA tasks: the limits (a count and a number of bytes), the
//! load held now, the guard that counts one held delivery for as long as it lives, and
//! [`place`], the pure decision between holding a delivery and deferring it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use crate::actors::Delivery;

/// The line saying a limit defers tasks is logged at most once in this long.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);

/// Bytes counted for a header value that is itself an array or a table, per entry: a
/// flat estimate, so that sizing a delivery never walks nested values.
const NESTED_ENTRY_BYTES: usize = 16;

/// The horizon and the held-task limits (`Config::eta_horizon`, `eta_task_limit`,
/// `eta_task_bytes_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HoldLimits {
    /// Further ahead than this, a task goes to the wait queue.
    pub(crate) horizon: Duration,
    /// At most this many tasks are held.
    pub(crate) count: usize,
    /// At most this many bytes of held deliveries (as [`held_size`] counts them).
    pub(crate) bytes: usize,
}

/// What is held now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Load {
    /// Deliveries held.
    pub(crate) count: usize,
    /// Their bytes, as [`held_size`] counts them.
    pub(crate) bytes: usize,
}

/// Which held-task limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `eta_task_limit`.
    Count,
    /// `eta_task_bytes_limit`.
    Bytes,
}

impl Limit {
    /// The limit named with its value, for the log.
    pub(crate) fn describe(self, limits: &HoldLimits) -> String {
        match self {
            Limit::Count => format!("at the count limit eta_task_limit = {}", limits.count),
            Limit::Bytes => format!(
                "at the byte limit eta_task_bytes_limit = {} bytes",
                limits.bytes
            ),
        }
    }
}

/// Where a delivery waits, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Held in the worker until due.
    Hold,
    /// Deferred: due further ahead than the horizon.
    BeyondHorizon,
    /// Deferred: holding it too would pass this limit.
    AtLimit(Limit),
}

/// Where a delivery of `size` bytes, due `ahead` from now, waits while `load` is held.
pub(crate) fn place(ahead: Duration, size: usize, load: Load, limits: &HoldLimits) -> Placement {
    if ahead > limits.horizon {
        Placement::BeyondHorizon
    } else if load.count >= limits.count {
        Placement::AtLimit(Limit::Count)
    } else if load.bytes.saturating_add(size) > limits.bytes {
        Placement::AtLimit(Limit::Bytes)
    } else {
        Placement::Hold
    }
}

/// The bytes a held delivery is counted for: its body, its routing strings, its
/// properties and its headers' keys and values, from their lengths (a header that is an
/// array or a table counts a flat [`NESTED_ENTRY_BYTES`] per entry, not walked). What it
/// does not count: the fixed cost of each held task in the worker (about 19 KB measured,
/// bounded by the count limit) and the decoded arguments kept alongside the body.
pub(crate) fn held_size(delivery: &Delivery) -> usize {
    delivery.queue.len()
        + delivery.consumer_tag.len()
        + delivery.exchange.len()
        + delivery.routing_key.len()
        + message_bytes(&delivery.properties, &delivery.body)
}

/// The body, properties and headers part of [`held_size`].
fn message_bytes(properties: &BasicProperties, body: &[u8]) -> usize {
    let short = |text: &Option<crate::actors::amqp::ShortString>| {
        text.as_ref().map_or(0, |text| text.as_str().len())
    };
    let headers = properties.headers().as_ref().map_or(0, table_bytes);
    body.len()
        + short(properties.content_type())
        + short(properties.content_encoding())
        + short(properties.correlation_id())
        + short(properties.reply_to())
        + short(properties.expiration())
        + short(properties.message_id())
        + short(properties.kind())
        + short(properties.user_id())
        + short(properties.app_id())
        + headers
}

fn table_bytes(table: &FieldTable) -> usize {
    table
        .inner()
        .iter()
        .map(|(key, value)| key.as_str().len() + value_bytes(value))
        .sum()
}

fn value_bytes(value: &AMQPValue) -> usize {
    match value {
        AMQPValue::LongString(text) => text.as_bytes().len(),
        AMQPValue::ShortString(text) => text.as_str().len(),
        AMQPValue::ByteArray(bytes) => bytes.as_slice().len(),
        AMQPValue::FieldArray(array) => array.as_slice().len() * NESTED_ENTRY_BYTES,
        AMQPValue::FieldTable(table) => table.inner().len() * NESTED_ENTRY_BYTES,
        _ => 8,
    }
}

/// What is held now, shared by every delivery's guard.
#[derive(Debug, Default)]
pub(crate) struct HeldLoad {
    count: AtomicUsize,
    bytes: AtomicUsize,
}

impl HeldLoad {
    /// A reading of the load.
    pub(crate) fn now(&self) -> Load {
        Load {
            count: self.count.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// One held delivery, counted in the load for as long as the guard lives: dropping it
/// (due, revoked, requeued at drain, the channel gone, the wait dropped) takes it out.
#[must_use = "the delivery is counted as held only while the guard lives"]
pub(crate) struct Held<'a> {
    load: &'a HeldLoad,
    bytes: usize,
}

impl<'a> Held<'a> {
    /// Counts a delivery of `bytes` in `load`.
    pub(crate) fn take(load: &'a HeldLoad, bytes: usize) -> Self {
        load.count.fetch_add(1, Ordering::Relaxed);
        load.bytes.fetch_add(bytes, Ordering::Relaxed);
        Held { load, bytes }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.load.count.fetch_sub(1, Ordering::Relaxed);
        self.load.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Opens at most once every [`LOG_EVERY`].
#[derive(Debug, Default)]
pub(crate) struct LogGate {
    last: Mutex<Option<Instant>>,
}

impl LogGate {
    /// Whether to log at `now`; opening it starts a new period.
    pub(crate) fn open(&self, now: Instant) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HoldLimits = HoldLimits {
        horizon: Duration::from_secs(600),
        count: 3,
        bytes: 1000,
    };

    #[test]
    fn place_holds_within_the_horizon_and_both_limits_and_defers_otherwise() {
        let secs = Duration::from_secs;
        let load = |count, bytes| Load { count, bytes };
        let cases = [
            // (ahead, size, load, expected)
            (secs(10), 100, load(0, 0), Placement::Hold),
            (secs(600), 100, load(0, 0), Placement::Hold),
            (secs(601), 100, load(0, 0), Placement::BeyondHorizon),
            // Beyond the horizon wins over a full load.
            (secs(601), 100, load(3, 1000), Placement::BeyondHorizon),
            (secs(10), 100, load(2, 800), Placement::Hold),
            (secs(10), 100, load(2, 900), Placement::Hold), // exactly at the byte limit
            (
                secs(10),
                101,
                load(2, 900),
                Placement::AtLimit(Limit::Bytes),
            ),
            (secs(10), 0, load(3, 0), Placement::AtLimit(Limit::Count)),
            // Both reached: the count is named.
            (
                secs(10),
                100,
                load(3, 1000),
                Placement::AtLimit(Limit::Count),
            ),
            // One delivery larger than the whole byte limit is never held.
            (secs(10), 1001, load(0, 0), Placement::AtLimit(Limit::Bytes)),
            (
                secs(10),
                usize::MAX,
                load(1, 10),
                Placement::AtLimit(Limit::Bytes),
            ),
        ];
        for (ahead, size, load, expected) in cases {
            assert_eq!(
                place(ahead, size, load, &LIMITS),
                expected,
                "ahead {ahead:?}, size {size}, load {load:?}"
            );
        }
    }

    #[test]
    fn a_message_counts_its_body_properties_and_header_lengths_without_walking_nesting() {
        let mut headers = FieldTable::default();
        headers.insert("task".into(), AMQPValue::LongString("proj.add".into())); // 4 + 8
        headers.insert("retries".into(), AMQPValue::LongLongInt(0)); // 7 + 8
        let nested = vec![AMQPValue::LongString("x".repeat(1000).into()); 2];
        headers.insert("timelimit".into(), AMQPValue::FieldArray(nested.into())); // 9 + 2 x 16
        let properties = BasicProperties::default()
            .with_content_type("application/json".into()) // 16
            .with_correlation_id("abc".into()) // 3
            .with_headers(headers);
        let body = vec![b'x'; 5000];
        assert_eq!(
            message_bytes(&properties, &body),
            5000 + 16 + 3 + (4 + 8) + (7 + 8) + (9 + 2 * NESTED_ENTRY_BYTES)
        );
        assert_eq!(message_bytes(&BasicProperties::default(), &[]), 0);
    }

    #[test]
    fn held_guards_give_back_what_they_took_when_dropped() {
        let load = HeldLoad::default();
        let first = Held::take(&load, 300);
        let second = Held::take(&load, 500);
        assert_eq!(
            load.now(),
            Load {
                count: 2,
                bytes: 800
            }
        );
        drop(first);
        assert_eq!(
            load.now(),
            Load {
                count: 1,
                bytes: 500
            }
        );
        drop(second);
        assert_eq!(load.now(), Load::default());
    }

    #[test]
    fn the_log_gate_opens_once_per_period() {
        let gate = LogGate::default();
        let start = Instant::now();
        assert!(gate.open(start));
        assert!(!gate.open(start + Duration::from_secs(1)));
        assert!(!gate.open(start + LOG_EVERY - Duration::from_millis(1)));
        assert!(gate.open(start + LOG_EVERY));
        assert!(!gate.open(start + LOG_EVERY + Duration::from_secs(1)));
    }
}
