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
//!
//! And what every stored document says of its request ([`request_meta`]), as Celery's
//! `_get_result_meta` writes it: `group_id` and `parent_id` when the message has them, and
//! with `result_extended` the task's name, arguments, worker, retries and routing key;
//! a task the worker does not know gets none of these but six `null`s (Celery's worker
//! stores its `NotRegistered` with a request that has none of them).

use crate::protocol::body::TaskPayload;
use crate::protocol::{ExtendedMeta, TaskMessage};

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

/// What a result document says of the request it answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RequestMeta {
    /// The message's `group` header, when not empty.
    pub(crate) group_id: Option<String>,
    /// The message's `parent_id` header, when not empty.
    pub(crate) parent_id: Option<String>,
    /// With `result_extended`: the request's fields.
    pub(crate) extended: Option<ExtendedMeta>,
}

/// How a message was received, for [`request_meta`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received<'a> {
    /// The routing key it was delivered with (Celery's `delivery_info["routing_key"]`).
    pub(crate) routing_key: &'a str,
    /// This worker's node name (`celeriac@host`).
    pub(crate) worker: &'a str,
    /// Whether the task is registered in this worker.
    pub(crate) registered: bool,
    /// `result_extended` is on.
    pub(crate) extended: bool,
}

/// What the results of `message` carry besides their state and value.
pub(crate) fn request_meta(message: &TaskMessage, received: Received<'_>) -> RequestMeta {
    if !received.registered {
        return RequestMeta {
            group_id: None,
            parent_id: None,
            extended: received.extended.then(ExtendedMeta::default),
        };
    }
    let headers = &message.headers;
    let not_empty = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
    let extended = received.extended.then(|| {
        let (args, kwargs) = match &message.payload {
            TaskPayload::Json { args, kwargs, .. } => (Some(args.clone()), Some(kwargs.clone())),
            TaskPayload::Bincode(_) => (None, None),
        };
        ExtendedMeta {
            name: Some(headers.task.clone()),
            args,
            kwargs,
            worker: Some(received.worker.to_string()),
            retries: Some(u64::from(headers.retries)),
            queue: Some(received.routing_key.to_string()),
            stamped_headers: headers.stamped_headers.clone(),
            stamps: headers.stamps.clone(),
        }
    });
    RequestMeta {
        group_id: not_empty(&headers.group),
        parent_id: not_empty(&headers.parent_id),
        extended,
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

#[cfg(test)]
mod request_meta_tests {
    use serde_json::{json, Map};

    use super::*;

    fn message() -> TaskMessage {
        let mut kwargs = Map::new();
        kwargs.insert("y".into(), json!(3));
        TaskMessage::new_json("tasks.add", "id-1", vec![json!(2)], kwargs)
    }

    fn received(registered: bool, extended: bool) -> Received<'static> {
        Received {
            routing_key: "celery",
            worker: "celeriac@host",
            registered,
            extended,
        }
    }

    #[test]
    fn the_table() {
        let mut chained = message();
        chained.headers.parent_id = Some("parent".into());
        chained.headers.group = Some("group".into());
        chained.headers.retries = 2;
        let mut blank = message();
        blank.headers.parent_id = Some(String::new());
        blank.headers.group = Some(String::new());
        let full = |retries: u64| ExtendedMeta {
            name: Some("tasks.add".into()),
            args: Some(vec![json!(2)]),
            kwargs: json!({"y": 3}).as_object().cloned(),
            worker: Some("celeriac@host".into()),
            retries: Some(retries),
            queue: Some("celery".into()),
            stamped_headers: None,
            stamps: Map::new(),
        };
        let ids = |group: &str, parent: &str| (Some(group.to_string()), Some(parent.to_string()));
        // (message, registered, extended) -> (group_id, parent_id, extended)
        let rows = [
            (message(), true, false, (None, None), None),
            (message(), true, true, (None, None), Some(full(0))),
            (chained.clone(), true, false, ids("group", "parent"), None),
            (
                chained.clone(),
                true,
                true,
                ids("group", "parent"),
                Some(full(2)),
            ),
            (chained.clone(), false, false, (None, None), None),
            (
                chained,
                false,
                true,
                (None, None),
                Some(ExtendedMeta::default()),
            ),
            (blank, true, false, (None, None), None),
        ];
        for (index, (message, registered, extended, (group_id, parent_id), expected)) in
            rows.into_iter().enumerate()
        {
            let meta = request_meta(&message, received(registered, extended));
            assert_eq!(
                meta,
                RequestMeta {
                    group_id,
                    parent_id,
                    extended: expected
                },
                "row {index}"
            );
        }
    }

    #[test]
    fn bincode_arguments_are_null_and_stamps_are_kept() {
        let mut message = TaskMessage::new_bincode("tasks.add", "id-2", vec![1, 2]);
        message.headers.stamped_headers = Some(vec!["s".into()]);
        message.headers.stamps.insert("s".into(), json!("v"));
        let meta = request_meta(&message, received(true, true));
        let extended = meta.extended.expect("extended");
        assert_eq!((extended.args, extended.kwargs), (None, None));
        assert_eq!(extended.stamped_headers, Some(vec!["s".to_string()]));
        assert_eq!(extended.stamps.get("s"), Some(&json!("v")));
    }
}
