//! `TaskOptions`: how a task is retried, limited, acknowledged and routed. Unset fields
//! fall back to the worker's configuration, then to Celery's defaults.

use std::time::Duration;

use crate::actors::{Backoff, Jitter};

/// Exponential backoff with jitter between retries of a task that failed with a
/// retryable error (`TaskError::retryable`): the n-th retry waits a random time between
/// `min` and `min * 2^n`, never more than `max` (Celery's `retry_backoff`,
/// `retry_backoff_max`, `retry_jitter`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBackoff {
    /// The delay before the first retry (and the lower bound of every delay).
    pub min: Duration,
    /// No delay is longer than this.
    pub max: Duration,
    /// Spread delays randomly between `min` and the exponential delay, so that tasks that
    /// failed together do not retry together.
    pub jitter: bool,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(600),
            jitter: true,
        }
    }
}

impl RetryBackoff {
    /// The delay before retry number `retries + 1`.
    pub fn delay(&self, retries: u32) -> Duration {
        self.delay_at(retries, fastrand::f64())
    }

    /// The delay before retry number `retries + 1`, with `fraction` (in [0, 1)) placing it
    /// within its jitter: the same inputs give the same delay.
    pub fn delay_at(&self, retries: u32, fraction: f64) -> Duration {
        self.backoff().delay_at(retries, fraction)
    }

    /// These delays as the [`Backoff`] every other retry loop uses (full jitter).
    pub fn backoff(&self) -> Backoff {
        Backoff {
            min: self.min,
            max: self.max,
            jitter: if self.jitter {
                Jitter::Full
            } else {
                Jitter::None
            },
        }
    }
}

/// Per-task settings. `None` means: the worker's setting (see `WorkerBuilder`), or
/// Celery's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOptions {
    /// Retries allowed before a retrying task fails for good; `None`: 3, as Celery.
    /// `Some(u32::MAX)` retries forever.
    pub max_retries: Option<u32>,
    /// Delays between retries asked for without a countdown.
    pub retry_backoff: RetryBackoff,
    /// Hard time limit: the run is dropped and fails with `TimeLimitExceeded`.
    pub time_limit: Option<Duration>,
    /// Soft time limit: an async run is cancelled and fails with `SoftTimeLimitExceeded`.
    pub soft_time_limit: Option<Duration>,
    /// Acknowledge after the run instead of when it starts.
    pub acks_late: Option<bool>,
    /// With `acks_late`: ack a failed or timed-out run (`true`, Celery's default) or
    /// reject it without requeue (`false`, so a dead-letter exchange keeps it).
    pub acks_on_failure_or_timeout: Option<bool>,
    /// The queue producers send this task to when neither the call nor a route names one.
    pub queue: Option<String>,
    /// Store no SUCCESS result, nor (unless `store_errors_even_if_ignored`) errors
    /// (Celery's `Task.ignore_result`); `None`: the worker's `Config::ignore_result`.
    pub ignore_result: Option<bool>,
    /// Store errors even when results are ignored; `None`: the worker's setting.
    pub store_errors_even_if_ignored: Option<bool>,
    /// Store a STARTED result when the task starts (Celery's `Task.track_started`);
    /// `None`: the worker's `Config::track_started`.
    pub track_started: Option<bool>,
    /// At most this many starts of this task per worker (Celery's `Task.rate_limit`):
    /// `"10/s"`, `"100/m"`, `"1000/h"` (a bare number is per second). Tasks over the rate
    /// wait for their turn in the worker without taking an executor slot. The
    /// `rate_limit` control command overrides it at run time. A string that does not
    /// parse is logged and ignored.
    pub rate_limit: Option<String>,
}

/// The default number of retries, as Celery's `Task.max_retries`.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

impl TaskOptions {
    /// The effective retry limit.
    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_bounds() {
        let backoff = RetryBackoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: false,
        };
        let delays: Vec<_> = (0..6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        let jittered = RetryBackoff {
            jitter: true,
            ..backoff
        };
        for retries in 0..10 {
            let delay = jittered.delay(retries);
            assert!(delay >= backoff.min && delay <= backoff.max, "{delay:?}");
        }
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }
}
