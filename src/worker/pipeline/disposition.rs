//! What to do when a delivery's processing ends, decided by a pure function: from how it
//! ended ([`Ending`]) and the options it ran with to a [`Plan`] of settlement, stored
//! result, retry publication, hook, workflow step and event, which `apply` carries out.
//! Every row of the README's acknowledgement, results and retry semantics is a case of the
//! table test below.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::super::events::TaskEventKind;
use super::super::results::exception_of;
use super::options::EffectiveOptions;
use crate::actors::Settlement;
use crate::protocol::{ExceptionInfo, TaskState};
use crate::task::{ErrorAction, RetryAt, TaskError};

/// How the processing of one delivery ended.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    /// The message cannot be read as a task (too large, malformed).
    Unreadable {
        /// Why.
        reason: String,
    },
    /// No task of this name is registered.
    Unregistered,
    /// Revoked before it ran.
    Revoked,
    /// Expired before it ran.
    Expired,
    /// Moved to a wait queue for its ETA.
    Deferred {
        /// When it is due.
        eta: DateTime<Utc>,
        /// The wait queue.
        wait_queue: String,
    },
    /// Given back to its queue unacked: the worker is stopping.
    Requeued,
    /// Its channel closed before it ran: the broker redelivers it, nothing to settle.
    ChannelGone,
    /// Its arguments do not fit the task (a poison message).
    BadArguments(TaskError),
    /// `revoke(terminate=True)` stopped the run.
    Terminated,
    /// The run ended with this outcome.
    Ran(Result<Value, TaskError>),
    /// The run asked for a retry, which could not be published.
    RetryNotPublished {
        /// The task's error.
        error: TaskError,
        /// Why publishing failed.
        failure: String,
    },
}

impl Ending {
    /// A short name for logs: how the delivery ended, without its values.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Ending::Unreadable { .. } => "unreadable",
            Ending::Unregistered => "unregistered",
            Ending::Revoked => "revoked",
            Ending::Expired => "expired",
            Ending::Deferred { .. } => "deferred to a wait queue",
            Ending::Requeued => "requeued",
            Ending::ChannelGone => "channel gone",
            Ending::BadArguments(_) => "bad arguments",
            Ending::Terminated => "terminated",
            Ending::Ran(Ok(_)) => "succeeded",
            Ending::Ran(Err(_)) => "failed",
            Ending::RetryNotPublished { .. } => "retry not published",
        }
    }
}

/// What is stored for the task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Store {
    /// SUCCESS with this value (when the results rules store successes).
    Success(Value),
    /// An exception in this state (when the rules store errors).
    Exception(TaskState, ExceptionInfo),
}

/// What the workflow around the task (callbacks, chain, chord) is told.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WorkflowStep {
    /// It succeeded: callbacks and the next chain step go out before the result is stored,
    /// the chord is told after.
    Succeeded(Value),
    /// It failed for good or was revoked (after the result is stored).
    Failed(TaskState, ExceptionInfo),
}

/// Which of the task's hooks is called.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Hook {
    /// `on_failure`.
    Failure(TaskError),
    /// `on_retry`.
    Retry(TaskError),
}

/// Everything that follows the end of a delivery's processing, in the order `apply`
/// carries it out: republish, workflow dispatch, store, workflow, hook, settle, event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Lines for the log.
    pub(crate) log: Vec<(log::Level, String)>,
    /// Publish the task again for a retry, due at this instant (before anything else; if
    /// that fails, `Ending::RetryNotPublished` decides instead).
    pub(crate) republish: Option<DateTime<Utc>>,
    /// The result to store (subject to the run's result rules).
    pub(crate) store: Option<Store>,
    /// The workflow step.
    pub(crate) workflow: Option<WorkflowStep>,
    /// The hook to call.
    pub(crate) hook: Option<Hook>,
    /// How the message is settled; `None` when it was settled already (early ack) or
    /// cannot be (its channel is gone).
    pub(crate) settle: Option<Settlement>,
    /// The task event to send.
    pub(crate) event: Option<TaskEventKind>,
}

impl Plan {
    fn new(settle: Option<Settlement>, event: TaskEventKind) -> Self {
        Plan {
            log: Vec::new(),
            republish: None,
            store: None,
            workflow: None,
            hook: None,
            settle,
            event: Some(event),
        }
    }

    /// Adds a log line (`None`: its level is off, so it was not built).
    fn log(mut self, line: Option<(log::Level, String)>) -> Self {
        self.log.extend(line);
        self
    }

    /// Stores the exception and tells the workflow the task ended with it.
    fn final_exception(mut self, state: TaskState, exception: ExceptionInfo) -> Self {
        self.store = Some(Store::Exception(state, exception.clone()));
        self.workflow = Some(WorkflowStep::Failed(state, exception));
        self
    }
}

/// What the pure decision needs besides the ending and the options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The task's name.
    pub(crate) name: &'a str,
    /// The task's id.
    pub(crate) id: &'a str,
    /// Retries the message had already.
    pub(crate) retries: u32,
    /// Now, for retry countdowns.
    pub(crate) now: DateTime<Utc>,
    /// A number in [0, 1) that places a backoff delay within its jitter.
    pub(crate) jitter: f64,
    /// The most detailed level logged (`log::max_level()`): lines below it are not built,
    /// so that a task that succeeds formats nothing while `info` is off.
    pub(crate) log_level: log::LevelFilter,
}

impl Context<'_> {
    /// A log line at `level`, built only when that level is logged.
    fn line(
        &self,
        level: log::Level,
        text: impl FnOnce() -> String,
    ) -> Option<(log::Level, String)> {
        (level <= self.log_level).then(|| (level, text()))
    }
}

/// `name[id]`, the way log lines name a task (written, not allocated).
struct Label<'a>(&'a str, &'a str);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

const REJECT: Option<Settlement> = Some(Settlement::Reject { requeue: false });
const REQUEUE: Option<Settlement> = Some(Settlement::Reject { requeue: true });
const ACK: Option<Settlement> = Some(Settlement::Ack);

/// The plan for a delivery whose processing ended with `ending`.
pub(crate) fn disposition(ending: Ending, options: &EffectiveOptions, context: Context) -> Plan {
    let label = &Label(context.name, context.id);
    // A settlement due after the run only: with early acks the message is acked already.
    let late = |settlement: Settlement| options.acks_late.then_some(settlement);
    match ending {
        Ending::Unreadable { reason } => Plan::new(
            REJECT,
            TaskEventKind::Rejected {
                reason,
                requeue: false,
            },
        ),
        Ending::Unregistered => {
            let error = TaskError::not_registered(context.name);
            Plan::new(
                REJECT,
                TaskEventKind::Rejected {
                    reason: error.to_string(),
                    requeue: false,
                },
            )
            .final_exception(TaskState::Failure, exception_of(&error))
        }
        Ending::Revoked => revoked(ACK, "revoked", None, ExceptionInfo::revoked("revoked")).log(
            context.line(log::Level::Info, || {
                format!("task {label} revoked: not run")
            }),
        ),
        Ending::Expired => revoked(ACK, "expired", None, ExceptionInfo::revoked_expired()).log(
            context.line(log::Level::Info, || {
                format!("task {label} expired: not run")
            }),
        ),
        Ending::Terminated => revoked(
            late(Settlement::Ack),
            "terminated",
            Some(SIGTERM),
            ExceptionInfo::revoked("terminated"),
        )
        .log(context.line(log::Level::Info, || {
            format!("task {label} terminated (revoked)")
        })),
        Ending::Deferred { eta, wait_queue } => {
            Plan::new(ACK, TaskEventKind::Deferred { eta, wait_queue })
        }
        Ending::Requeued => Plan::new(REQUEUE, TaskEventKind::Requeued),
        Ending::ChannelGone => {
            let line = context.line(log::Level::Info, || {
                format!(
                    "task {label} not run: its channel closed before it started; \
                     the broker redelivers it"
                )
            });
            Plan::new(None, TaskEventKind::Requeued).log(line)
        }
        Ending::BadArguments(error) => {
            // A poison message: FAILURE (naming the argument) for whoever waits on the
            // result, and rejected without requeue so that a dead-letter exchange keeps it.
            let mut plan = Plan::new(
                REJECT,
                TaskEventKind::Failed {
                    error: error.clone(),
                },
            )
            .final_exception(TaskState::Failure, exception_of(&error))
            .log(context.line(log::Level::Error, || {
                let error = crate::log_text::clip_display(&error);
                format!("rejecting task {label}: {error}")
            }));
            plan.hook = Some(Hook::Failure(error));
            plan
        }
        Ending::Ran(Ok(result)) => {
            let mut plan = Plan::new(
                late(Settlement::Ack),
                TaskEventKind::Succeeded {
                    result: result.clone(),
                },
            )
            .log(context.line(log::Level::Info, || format!("task {label} succeeded")));
            plan.store = Some(Store::Success(result.clone()));
            plan.workflow = Some(WorkflowStep::Succeeded(result));
            plan
        }
        Ending::Ran(Err(error)) => match error.action {
            ErrorAction::Fail => fail(error, options, label),
            ErrorAction::Retry(_) if context.retries >= options.max_retries => {
                let exceeded = format!(
                    "task {label}: max retries ({}) exceeded",
                    options.max_retries
                );
                let mut plan = fail(error, options, label);
                plan.log.insert(0, (log::Level::Warn, exceeded));
                plan
            }
            ErrorAction::Retry(at) => {
                let eta = match at {
                    RetryAt::Eta(eta) => eta,
                    RetryAt::After(countdown) => context.now + to_chrono(countdown),
                    RetryAt::Backoff => {
                        let delay = options
                            .retry_backoff
                            .delay_at(context.retries, context.jitter);
                        context.now + to_chrono(delay)
                    }
                };
                let mut plan = Plan::new(
                    late(Settlement::Ack),
                    TaskEventKind::Retried {
                        eta,
                        error: error.clone(),
                    },
                )
                .log(context.line(log::Level::Info, || {
                    let (retry, error) =
                        (context.retries + 1, crate::log_text::clip_display(&error));
                    format!("task {label} retry {retry} at {eta}: {error}")
                }));
                plan.republish = Some(eta);
                plan.store = Some(Store::Exception(TaskState::Retry, exception_of(&error)));
                plan.hook = Some(Hook::Retry(error));
                plan
            }
            ErrorAction::Reject { requeue } => {
                let mut plan = Plan::new(
                    late(Settlement::Reject { requeue }),
                    TaskEventKind::Rejected {
                        reason: error.message.clone(),
                        // Back in its queue only if it was still unacknowledged.
                        requeue: requeue && options.acks_late,
                    },
                );
                if !options.acks_late {
                    plan = plan.log(context.line(log::Level::Warn, || {
                        format!(
                            "task {label} asked to reject its message, but it was \
                             acknowledged when it started (early ack); use acks_late for \
                             Reject to take effect"
                        )
                    }));
                }
                if !requeue {
                    plan.store = Some(Store::Exception(
                        TaskState::Failure,
                        ExceptionInfo {
                            exc_type: "Reject".into(),
                            exc_module: "celery.exceptions".into(),
                            exc_message: vec![Value::String(error.message), Value::Bool(false)],
                        },
                    ));
                }
                plan
            }
            ErrorAction::Ignore => Plan::new(late(Settlement::Ack), TaskEventKind::Ignored),
        },
        Ending::RetryNotPublished { error, failure } => {
            let log = format!(
                "task {label}: the retry could not be published: {}",
                crate::log_text::clip(&failure)
            );
            if options.acks_late {
                // Unacked: the broker delivers it again and it is retried then.
                Plan::new(REQUEUE, TaskEventKind::Requeued).log(Some((log::Level::Error, log)))
            } else {
                let lost = TaskError::runtime_error(format!(
                    "{error}; its retry could not be published: {failure}"
                ));
                let mut plan = fail(lost, options, label);
                plan.log.insert(0, (log::Level::Error, log));
                plan
            }
        }
    }
}

/// A failure for good: FAILURE result, `on_failure`, and with late acks the message acked
/// (or, with `acks_on_failure_or_timeout` off, rejected without requeue).
fn fail(error: TaskError, options: &EffectiveOptions, label: &Label<'_>) -> Plan {
    let settle = options.acks_late.then_some(if options.acks_on_failure {
        Settlement::Ack
    } else {
        Settlement::Reject { requeue: false }
    });
    let log = if error.exc_type == "TaskPanicked" {
        (
            log::Level::Error,
            format!(
                "task {label} panicked: {}",
                crate::log_text::clip(&error.message)
            ),
        )
    } else {
        (
            log::Level::Warn,
            format!(
                "task {label} failed: {}",
                crate::log_text::clip_display(&error)
            ),
        )
    };
    let mut plan = Plan::new(
        settle,
        TaskEventKind::Failed {
            error: error.clone(),
        },
    )
    .final_exception(TaskState::Failure, exception_of(&error));
    plan.log.push(log);
    plan.hook = Some(Hook::Failure(error));
    plan
}

/// The signal Celery reports a terminated task stopped by (`revoke(terminate=True)` without
/// a `signal`): SIGTERM.
const SIGTERM: i32 = 15;

/// Not run, or stopped (by `signum`): REVOKED for good, with `reason`.
fn revoked(
    settle: Option<Settlement>,
    reason: &str,
    signum: Option<i32>,
    exception: ExceptionInfo,
) -> Plan {
    Plan::new(
        settle,
        TaskEventKind::Revoked {
            reason: reason.into(),
            signum,
        },
    )
    .final_exception(TaskState::Revoked, exception)
}

fn to_chrono(delay: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(delay).unwrap_or_default()
}
