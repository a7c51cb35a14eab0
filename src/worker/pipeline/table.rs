//! The README's task semantics (acknowledgement, results, retries) as a table: each row
//! one ending under one set of options, and the plan `disposition` must give.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::disposition::{disposition, Context, Ending, Hook, Plan, Store, WorkflowStep};
use super::options::EffectiveOptions;
use crate::actors::Settlement;
use crate::task::{RetryBackoff, TaskError};
use crate::worker::TaskEventKind;

/// How the message is settled: `-` not at all (acked early, or its channel is gone).
fn settle_code(plan: &Plan) -> &'static str {
    match plan.settle {
        None => "-",
        Some(Settlement::Ack) => "ack",
        Some(Settlement::Reject { requeue: true }) => "requeue",
        Some(Settlement::Reject { requeue: false }) => "reject",
    }
}

/// What is stored: `-`, `SUCCESS`, or the exception's state and type.
fn store_code(plan: &Plan) -> String {
    match &plan.store {
        None => "-".into(),
        Some(Store::Success(_)) => "SUCCESS".into(),
        Some(Store::Exception(state, exception)) => {
            format!("{}:{}", state.as_str(), exception.exc_type)
        }
    }
}

fn hook_code(plan: &Plan) -> &'static str {
    match plan.hook {
        None => "-",
        Some(Hook::Failure(_)) => "on_failure",
        Some(Hook::Retry(_)) => "on_retry",
    }
}

fn workflow_code(plan: &Plan) -> &'static str {
    match plan.workflow {
        None => "-",
        Some(WorkflowStep::Succeeded(_)) => "succeeded",
        Some(WorkflowStep::Failed(..)) => "failed",
    }
}

/// The event's kind; `Rejected:requeue` for a rejection that put the message back.
fn event_code(plan: &Plan) -> String {
    if let Some(TaskEventKind::Rejected { requeue: true, .. }) = plan.event {
        return "Rejected:requeue".into();
    }
    plan.event.as_ref().map_or("-".into(), |event| {
        let text = format!("{event:?}");
        text.split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

fn options(acks_late: bool, acks_on_failure: bool) -> EffectiveOptions {
    EffectiveOptions {
        acks_late,
        acks_on_failure,
        max_retries: 3,
        retry_backoff: RetryBackoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(600),
            jitter: true,
        },
        ..EffectiveOptions::default()
    }
}

/// (ending, (acks_late, acks_on_failure), retries so far) -> the plan's six columns.
type Row = (Ending, (bool, bool), u32, [&'static str; 6]);

const EARLY: (bool, bool) = (false, true);
const LATE: (bool, bool) = (true, true);
const LATE_NO_ACK_ON_FAILURE: (bool, bool) = (true, false);

fn context(retries: u32) -> Context<'static> {
    Context {
        name: "tasks.t",
        id: "id-1",
        retries,
        now: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
        jitter: 0.5,
        log_level: log::LevelFilter::Trace,
    }
}

#[test]
fn the_semantics_table() {
    let failed = || Ending::Ran(Err(TaskError::runtime_error("boom")));
    let retry = || Ending::Ran(Err(TaskError::runtime_error("again").retryable()));
    let reject = |requeue| Ending::Ran(Err(TaskError::reject("no", requeue)));
    let ignore = || Ending::Ran(Err(TaskError::ignore()));
    let succeeded = || Ending::Ran(Ok(json!(5)));
    // (ending, (acks_late, acks_on_failure), retries so far)
    //   -> (settle, store, republish, hook, workflow, event)
    let rows: Vec<Row> = vec![
        // Acknowledgement: early ack settles nothing after the run.
        (
            succeeded(),
            EARLY,
            0,
            ["-", "SUCCESS", "-", "-", "succeeded", "Succeeded"],
        ),
        (
            succeeded(),
            LATE,
            0,
            ["ack", "SUCCESS", "-", "-", "succeeded", "Succeeded"],
        ),
        (
            failed(),
            EARLY,
            0,
            [
                "-",
                "FAILURE:RuntimeError",
                "-",
                "on_failure",
                "failed",
                "Failed",
            ],
        ),
        (
            failed(),
            LATE,
            0,
            [
                "ack",
                "FAILURE:RuntimeError",
                "-",
                "on_failure",
                "failed",
                "Failed",
            ],
        ),
        // acks_on_failure_or_timeout off: rejected without requeue (dead-lettered).
        (
            failed(),
            LATE_NO_ACK_ON_FAILURE,
            0,
            [
                "reject",
                "FAILURE:RuntimeError",
                "-",
                "on_failure",
                "failed",
                "Failed",
            ],
        ),
        (
            succeeded(),
            LATE_NO_ACK_ON_FAILURE,
            0,
            ["ack", "SUCCESS", "-", "-", "succeeded", "Succeeded"],
        ),
        (
            Ending::Ran(Err(TaskError::panicked("p"))),
            LATE,
            0,
            [
                "ack",
                "FAILURE:TaskPanicked",
                "-",
                "on_failure",
                "failed",
                "Failed",
            ],
        ),
        // Retries: published again, RETRY stored, on_retry; within max_retries only.
        (
            retry(),
            EARLY,
            0,
            [
                "-",
                "RETRY:RuntimeError",
                "republish",
                "on_retry",
                "-",
                "Retried",
            ],
        ),
        (
            retry(),
            LATE,
            2,
            [
                "ack",
                "RETRY:RuntimeError",
                "republish",
                "on_retry",
                "-",
                "Retried",
            ],
        ),
        (
            retry(),
            LATE,
            3,
            [
                "ack",
                "FAILURE:RuntimeError",
                "-",
                "on_failure",
                "failed",
                "Failed",
            ],
        ),
        (
            retry(),
            LATE_NO_ACK_ON_FAILURE,
            3,
            [
                "reject",
                "FAILURE:RuntimeError",
                "-",
                "on_failure",
                "failed",
                "Failed",
            ],
        ),
        // A retry that could not be published: requeued with late acks, else lost (FAILURE).
        (
            Ending::RetryNotPublished {
                error: TaskError::runtime_error("again"),
                failure: "down".into(),
            },
            LATE,
            0,
            ["requeue", "-", "-", "-", "-", "Requeued"],
        ),
        (
            Ending::RetryNotPublished {
                error: TaskError::runtime_error("again"),
                failure: "down".into(),
            },
            EARLY,
            0,
            [
                "-",
                "FAILURE:RuntimeError",
                "-",
                "on_failure",
                "failed",
                "Failed",
            ],
        ),
        // Reject: needs late acks; without requeue a FAILURE `Reject` result. The event
        // says requeue only when the message went back.
        (
            reject(true),
            LATE,
            0,
            ["requeue", "-", "-", "-", "-", "Rejected:requeue"],
        ),
        (
            reject(true),
            EARLY,
            0,
            ["-", "-", "-", "-", "-", "Rejected"],
        ),
        (
            reject(false),
            LATE,
            0,
            ["reject", "FAILURE:Reject", "-", "-", "-", "Rejected"],
        ),
        (
            reject(false),
            EARLY,
            0,
            ["-", "FAILURE:Reject", "-", "-", "-", "Rejected"],
        ),
        // Ignore: acked, nothing stored.
        (ignore(), LATE, 0, ["ack", "-", "-", "-", "-", "Ignored"]),
        (ignore(), EARLY, 0, ["-", "-", "-", "-", "-", "Ignored"]),
        // Not run: revoked and expired tasks are acked with REVOKED, whatever the ack mode.
        (
            Ending::Revoked,
            EARLY,
            0,
            [
                "ack",
                "REVOKED:TaskRevokedError",
                "-",
                "-",
                "failed",
                "Revoked",
            ],
        ),
        (
            Ending::Expired,
            LATE,
            0,
            [
                "ack",
                "REVOKED:TaskRevokedError",
                "-",
                "-",
                "failed",
                "Revoked",
            ],
        ),
        // Terminated while running: REVOKED; acked now only with late acks.
        (
            Ending::Terminated,
            EARLY,
            0,
            [
                "-",
                "REVOKED:TaskRevokedError",
                "-",
                "-",
                "failed",
                "Revoked",
            ],
        ),
        (
            Ending::Terminated,
            LATE,
            0,
            [
                "ack",
                "REVOKED:TaskRevokedError",
                "-",
                "-",
                "failed",
                "Revoked",
            ],
        ),
        // Poison messages: rejected without requeue.
        (
            Ending::Unreadable {
                reason: "bad".into(),
            },
            LATE,
            0,
            ["reject", "-", "-", "-", "-", "Rejected"],
        ),
        (
            Ending::Unregistered,
            EARLY,
            0,
            [
                "reject",
                "FAILURE:NotRegistered",
                "-",
                "-",
                "failed",
                "Rejected",
            ],
        ),
        (
            Ending::BadArguments(TaskError::runtime_error("x")),
            EARLY,
            0,
            [
                "reject",
                "FAILURE:RuntimeError",
                "-",
                "on_failure",
                "failed",
                "Failed",
            ],
        ),
        // ETA: deferred to a wait queue (acked, it lives on there); requeued when stopping.
        (
            Ending::Deferred {
                eta: Utc::now(),
                wait_queue: "q.wait".into(),
            },
            LATE,
            0,
            ["ack", "-", "-", "-", "-", "Deferred"],
        ),
        (
            Ending::Requeued,
            EARLY,
            0,
            ["requeue", "-", "-", "-", "-", "Requeued"],
        ),
        // Channel gone: the broker redelivers it; nothing to settle.
        (
            Ending::ChannelGone,
            LATE,
            0,
            ["-", "-", "-", "-", "-", "Requeued"],
        ),
    ];
    for (index, (ending, (acks_late, acks_on_failure), retries, expected)) in
        rows.into_iter().enumerate()
    {
        let described = format!("{ending:?}");
        let plan = disposition(
            ending,
            &options(acks_late, acks_on_failure),
            context(retries),
        );
        let got = [
            settle_code(&plan).to_string(),
            store_code(&plan),
            if plan.republish.is_some() {
                "republish"
            } else {
                "-"
            }
            .to_string(),
            hook_code(&plan).to_string(),
            workflow_code(&plan).to_string(),
            event_code(&plan),
        ];
        assert_eq!(
            got,
            expected.map(str::to_string),
            "row {index}: {described}, acks_late {acks_late}, acks_on_failure {acks_on_failure}, retries {retries}"
        );
    }
}

#[test]
fn retry_eta_follows_the_countdown_or_the_backoff() {
    let now = context(0).now;
    let at = Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap();
    let retrying = |error: TaskError, retries| {
        disposition(
            Ending::Ran(Err(error)),
            &options(false, true),
            context(retries),
        )
        .republish
    };
    let error = || TaskError::runtime_error("again");
    // (error, retries) -> eta
    let rows = [
        (error().retry_at(at), 0, at),
        (
            error().retry_in(Duration::from_secs(7)),
            0,
            now + chrono::Duration::seconds(7),
        ),
        // Backoff 1 s x 2^2 = 4 s ceiling; jitter 0.5 places it halfway above the 1 s floor.
        (
            error().retryable(),
            2,
            now + chrono::Duration::milliseconds(2500),
        ),
    ];
    for (index, (error, retries, eta)) in rows.into_iter().enumerate() {
        assert_eq!(retrying(error, retries), Some(eta), "row {index}");
    }
}
