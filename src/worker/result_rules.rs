//! Which results of one task are stored, decided as Celery 5.7's worker decides it (a pure
//! function, so every combination is a row of a table test).
//!
//! - Nothing is stored without a result backend.
//! - SUCCESS is stored unless the task ignores results (`ignore_result` of the task, else
//!   of the worker) or the message asked for none (its `ignore_result` header).
//! - Errors (FAILURE, RETRY, REVOKED) are stored unless the task ignores results, or even
//!   then with `store_errors_even_if_ignored`; the message's header does not suppress them
//!   (Celery checks it for SUCCESS only).
//! - STARTED is stored with `track_started`, unless the task ignores results.

/// What a task's settings and its message say about results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ResultSettings {
    /// The worker has a result backend.
    pub(crate) backend: bool,
    /// The task ignores results (its option, else the worker's `ignore_result`).
    pub(crate) task_ignores: bool,
    /// The message's `ignore_result` header is true.
    pub(crate) message_ignores: bool,
    /// Store errors even when the task ignores results.
    pub(crate) store_errors_even_if_ignored: bool,
    /// Store STARTED when the task starts.
    pub(crate) track_started: bool,
}

/// Which results are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ResultRules {
    /// SUCCESS.
    pub(crate) success: bool,
    /// FAILURE, RETRY and REVOKED.
    pub(crate) errors: bool,
    /// STARTED.
    pub(crate) started: bool,
}

/// The rules for one task run.
pub(crate) fn result_rules(settings: ResultSettings) -> ResultRules {
    if !settings.backend {
        return ResultRules::default();
    }
    ResultRules {
        success: !settings.task_ignores && !settings.message_ignores,
        errors: !settings.task_ignores || settings.store_errors_even_if_ignored,
        started: settings.track_started && !settings.task_ignores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        // (backend, task ignores, message ignores, errors even if ignored, track started)
        //   -> (success, errors, started)
        let rows = [
            ((false, false, false, true, true), (false, false, false)),
            ((true, false, false, false, false), (true, true, false)),
            ((true, false, false, false, true), (true, true, true)),
            ((true, false, true, false, true), (false, true, true)),
            ((true, true, false, false, true), (false, false, false)),
            ((true, true, false, true, true), (false, true, false)),
            ((true, true, true, true, false), (false, true, false)),
            ((true, false, true, true, false), (false, true, false)),
        ];
        for ((backend, task, message, errors, started), expected) in rows {
            let rules = result_rules(ResultSettings {
                backend,
                task_ignores: task,
                message_ignores: message,
                store_errors_even_if_ignored: errors,
                track_started: started,
            });
            assert_eq!(
                (rules.success, rules.errors, rules.started),
                expected,
                "backend {backend}, task ignores {task}, message ignores {message}, \
                 errors even if ignored {errors}, track started {started}"
            );
        }
    }
}
