//! Running a prepared task in an executor slot, within its time limits: the job decides
//! whether it may still run when it gets its slot ([`Start`]), tells the pipeline (which
//! acks early meanwhile), runs, and its end becomes an [`Ending`].

use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;
use futures::future::{AbortHandle, Abortable, Aborted, BoxFuture};
use futures::FutureExt;
use serde_json::Value;

use super::disposition::Ending;
use crate::actors::executor::{Execute, ExecutionReport};
use crate::actors::ExecutorPool;
use crate::task::TaskError;

/// What a task finds when it gets its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// It runs.
    Run,
    /// Its channel closed while it waited: the broker redelivers it, so running it here
    /// would run it twice.
    ChannelGone,
    /// Revoked while it waited.
    Revoked,
    /// Expired while it waited.
    Expired,
}

impl Start {
    /// Checked in this order, as Celery checks revocation and expiry before it executes a
    /// request.
    pub(super) fn decide(channel_usable: bool, revoked: bool, expired: bool) -> Start {
        if !channel_usable {
            Start::ChannelGone
        } else if revoked {
            Start::Revoked
        } else if expired {
            Start::Expired
        } else {
            Start::Run
        }
    }
}

/// The time limits of one run.
pub(super) struct Limits {
    /// Past it, the pool drops the run.
    pub(super) hard: Option<Duration>,
    /// Past it, the task is told (and cancelled a grace period later without a hard limit).
    pub(super) soft: Option<Duration>,
    /// Tells the task its soft limit has passed.
    pub(super) soft_signal: Option<tokio::sync::watch::Sender<bool>>,
}

/// Runs `prepared` in a slot of `pool`. `gate` is asked when the slot is given;
/// `on_start` runs alongside the task once it started (early ack, STARTED), with the
/// handle that terminates it (`None` for a blocking task), and what it returns is kept
/// until the run ends.
pub(super) async fn run_in_slot<G>(
    pool: &Addr<ExecutorPool>,
    prepared: BoxFuture<'static, Result<Value, TaskError>>,
    limits: Limits,
    abortable: bool,
    gate: impl FnOnce() -> Start + Send + 'static,
    on_start: impl AsyncFnOnce(Option<AbortHandle>) -> G,
) -> Ending {
    let (start_tx, start_rx) = oneshot::channel();
    let (end_tx, end_rx) = oneshot::channel();
    let (abort, registration) = AbortHandle::new_pair();
    let Limits {
        hard,
        soft,
        soft_signal,
    } = limits;
    let job = async move {
        let start = gate();
        let _ = start_tx.send(start);
        if start != Start::Run {
            return;
        }
        let running = async move {
            match soft {
                Some(soft) if hard.is_none_or(|hard| soft < hard) => {
                    within_soft_limit(prepared, soft, hard, soft_signal).await
                }
                _ => prepared.await,
            }
        };
        let end = match Abortable::new(running, registration).await {
            Ok(outcome) => Ending::Ran(outcome),
            Err(Aborted) => Ending::Terminated,
        };
        let _ = end_tx.send(end);
    }
    .boxed();
    let execution = pool.send(Execute {
        job,
        hard_limit: hard,
        on_start: None,
    });
    let started = async {
        let start = start_rx.await.ok();
        let kept = match start {
            Some(Start::Run) => Some(on_start(abortable.then_some(abort)).await),
            _ => None,
        };
        (start, kept)
    };
    let (report, (start, kept)) = futures::join!(execution, started);
    drop(kept);
    ending_of(start, report.ok(), end_rx.await.ok(), hard)
}

/// How a run in a slot ended: from what it found at its start, the pool's report and the
/// job's own ending.
fn ending_of(
    start: Option<Start>,
    report: Option<ExecutionReport>,
    end: Option<Ending>,
    hard: Option<Duration>,
) -> Ending {
    match start {
        // Never started (the worker is stopping): back to the queue, unacked.
        None => return Ending::Requeued,
        Some(Start::ChannelGone) => return Ending::ChannelGone,
        Some(Start::Revoked) => return Ending::Revoked,
        Some(Start::Expired) => return Ending::Expired,
        Some(Start::Run) => {}
    }
    match report {
        Some(ExecutionReport::Completed) => end.unwrap_or_else(|| {
            Ending::Ran(Err(TaskError::runtime_error(
                "the task ended without an outcome",
            )))
        }),
        Some(ExecutionReport::Panicked(panic)) => Ending::Ran(Err(TaskError::panicked(panic))),
        Some(ExecutionReport::TimedOut) => Ending::Ran(Err(TaskError::new(
            "TimeLimitExceeded",
            "billiard.exceptions",
            format!(
                "hard time limit ({}s) exceeded",
                hard.map_or(0.0, |limit| limit.as_secs_f64())
            ),
        ))),
        Some(ExecutionReport::Cancelled) | None => Ending::Requeued,
    }
}

/// How long a run may go on after its soft limit when it has no hard limit.
const SOFT_LIMIT_GRACE: Duration = Duration::from_secs(1);

/// Runs `run`; at `soft` it signals the task (`TaskContext::soft_limit_reached`) and lets
/// it go on until its hard limit (then the pool drops it: `TimeLimitExceeded`), or, without
/// one, for `SOFT_LIMIT_GRACE` before cancelling it with `SoftTimeLimitExceeded`.
async fn within_soft_limit(
    run: BoxFuture<'static, Result<Value, TaskError>>,
    soft: Duration,
    hard: Option<Duration>,
    signal: Option<tokio::sync::watch::Sender<bool>>,
) -> Result<Value, TaskError> {
    let mut run = run;
    if let Ok(outcome) = tokio::time::timeout(soft, &mut run).await {
        return outcome;
    }
    if let Some(signal) = signal {
        signal.send_replace(true);
    }
    if hard.is_some() {
        // The pool drops the run at its hard limit (TimeLimitExceeded).
        return run.await;
    }
    match tokio::time::timeout(SOFT_LIMIT_GRACE, run).await {
        Ok(outcome) => outcome,
        Err(_) => Err(TaskError::new(
            "SoftTimeLimitExceeded",
            "celery.exceptions",
            format!("soft time limit ({}s) exceeded", soft.as_secs_f64()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_checks_the_channel_then_revocation_then_expiry() {
        // (channel usable, revoked, expired) -> start
        let rows = [
            ((true, false, false), Start::Run),
            ((false, true, true), Start::ChannelGone),
            ((true, true, true), Start::Revoked),
            ((true, false, true), Start::Expired),
        ];
        for ((usable, revoked, expired), expected) in rows {
            assert_eq!(Start::decide(usable, revoked, expired), expected);
        }
    }

    #[test]
    fn endings_of_a_run() {
        let ok = || Some(Ending::Ran(Ok(Value::Null)));
        let hard = Some(Duration::from_secs(2));
        let name = |ending: Ending| match ending {
            Ending::Ran(Ok(_)) => "ok".to_string(),
            Ending::Ran(Err(error)) => error.exc_type,
            Ending::Requeued => "requeued".into(),
            Ending::ChannelGone => "gone".into(),
            Ending::Revoked => "revoked".into(),
            Ending::Expired => "expired".into(),
            other => format!("{other:?}"),
        };
        let completed = Some(ExecutionReport::Completed);
        let rows = [
            (None, completed.clone(), ok(), "requeued"),
            (Some(Start::ChannelGone), completed.clone(), None, "gone"),
            (Some(Start::Revoked), completed.clone(), None, "revoked"),
            (Some(Start::Expired), completed.clone(), None, "expired"),
            (Some(Start::Run), completed.clone(), ok(), "ok"),
            (Some(Start::Run), completed, None, "RuntimeError"),
            (
                Some(Start::Run),
                Some(ExecutionReport::Panicked("boom".into())),
                None,
                "TaskPanicked",
            ),
            (
                Some(Start::Run),
                Some(ExecutionReport::TimedOut),
                None,
                "TimeLimitExceeded",
            ),
            (
                Some(Start::Run),
                Some(ExecutionReport::Cancelled),
                None,
                "requeued",
            ),
            (Some(Start::Run), None, None, "requeued"),
        ];
        for (index, (start, report, end, expected)) in rows.into_iter().enumerate() {
            assert_eq!(
                name(ending_of(start, report, end, hard)),
                expected,
                "row {index}"
            );
        }
    }
}
