//! The options one run goes by, resolved once per delivery: the message's headers, else the
//! task's `TaskOptions`, else the worker's defaults (`WorkerDefaults`).

use std::time::Duration;

use super::super::rate_limit::Rate;
use super::super::result_rules::{result_rules, ResultRules, ResultSettings};
use super::WorkerDefaults;
use crate::protocol::TaskMessage;
use crate::task::{RetryBackoff, TaskOptions};

/// What decides a run's acknowledgement, limits, results and retries.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EffectiveOptions {
    /// Acknowledge after the run (else when it starts).
    pub(crate) acks_late: bool,
    /// With late acks, ack failures and time-outs (else reject them without requeue).
    pub(crate) acks_on_failure: bool,
    /// Hard time limit.
    pub(crate) hard_limit: Option<Duration>,
    /// Soft time limit.
    pub(crate) soft_limit: Option<Duration>,
    /// Which results are stored.
    pub(crate) results: ResultRules,
    /// Retries allowed before a retrying run fails for good.
    pub(crate) max_retries: u32,
    /// Delays of retries asked for without a countdown.
    pub(crate) retry_backoff: RetryBackoff,
    /// The task's own rate limit (the `rate_limit` control command overrides it).
    pub(crate) rate_limit: Option<Rate>,
}

impl EffectiveOptions {
    /// Message > task > worker. `task` is `None` for a task this worker does not know;
    /// `backend` says whether the worker stores results at all.
    pub(crate) fn resolve(
        message: &TaskMessage,
        task: Option<&TaskOptions>,
        defaults: &WorkerDefaults,
        backend: bool,
    ) -> Self {
        let pick = |of: fn(&TaskOptions) -> Option<bool>, default: bool| {
            task.and_then(of).unwrap_or(default)
        };
        let header = |seconds: Option<f64>| {
            seconds
                .filter(|s| *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
        };
        let (hard, soft) = message.headers.timelimit;
        EffectiveOptions {
            acks_late: pick(|o| o.acks_late, defaults.acks_late),
            acks_on_failure: pick(
                |o| o.acks_on_failure_or_timeout,
                defaults.acks_on_failure_or_timeout,
            ),
            hard_limit: header(hard)
                .or(task.and_then(|o| o.time_limit))
                .or(defaults.time_limit),
            soft_limit: header(soft)
                .or(task.and_then(|o| o.soft_time_limit))
                .or(defaults.soft_time_limit),
            results: result_rules(ResultSettings {
                backend,
                task_ignores: pick(|o| o.ignore_result, defaults.ignore_result),
                message_ignores: message.headers.ignore_result == Some(true),
                store_errors_even_if_ignored: pick(
                    |o| o.store_errors_even_if_ignored,
                    defaults.store_errors_even_if_ignored,
                ),
                track_started: pick(|o| o.track_started, defaults.track_started),
            }),
            max_retries: task.map_or(crate::task::DEFAULT_MAX_RETRIES, |o| o.max_retries()),
            retry_backoff: task.map(|o| o.retry_backoff).unwrap_or_default(),
            rate_limit: task
                .and_then(|o| o.rate_limit.as_deref())
                .and_then(|text| Rate::parse(text).ok().flatten()),
        }
    }

    /// Whether any result of this run is stored.
    pub(crate) fn stores_anything(&self) -> bool {
        self.results.success || self.results.errors || self.results.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DecodePolicy;

    fn defaults() -> WorkerDefaults {
        WorkerDefaults {
            acks_late: false,
            acks_on_failure_or_timeout: true,
            time_limit: Some(Duration::from_secs(30)),
            soft_time_limit: None,
            decode: DecodePolicy::default(),
            ignore_result: false,
            store_errors_even_if_ignored: false,
            track_started: false,
        }
    }

    fn message() -> TaskMessage {
        TaskMessage::new_json("t", "id", vec![], serde_json::Map::new())
    }

    #[test]
    fn message_over_task_over_worker() {
        let task = TaskOptions {
            time_limit: Some(Duration::from_secs(10)),
            soft_time_limit: Some(Duration::from_secs(5)),
            acks_late: Some(true),
            ..TaskOptions::default()
        };
        let mut with_header = message();
        with_header.headers.timelimit = (Some(2.0), Some(0.0));
        // (message, task) -> (hard, soft, acks_late)
        let secs = |s| Some(Duration::from_secs(s));
        let rows = [
            (message(), None, (secs(30), None, false)),
            (message(), Some(&task), (secs(10), secs(5), true)),
            (with_header.clone(), Some(&task), (secs(2), secs(5), true)),
            (with_header, None, (secs(2), None, false)),
        ];
        for (index, (message, task, expected)) in rows.into_iter().enumerate() {
            let options = EffectiveOptions::resolve(&message, task, &defaults(), true);
            assert_eq!(
                (options.hard_limit, options.soft_limit, options.acks_late),
                expected,
                "row {index}"
            );
        }
    }

    #[test]
    fn unknown_task_gets_the_worker_defaults() {
        let options = EffectiveOptions::resolve(&message(), None, &defaults(), true);
        assert_eq!(options.max_retries, crate::task::DEFAULT_MAX_RETRIES);
        assert!(options.results.errors && options.results.success);
        assert!(options.rate_limit.is_none());
    }
}
