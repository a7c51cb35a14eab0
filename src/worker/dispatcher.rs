//! The dispatcher: turns each delivery into a task run. It decodes the message, looks the
//! task up, skips expired ones, holds ETA ones, runs the task in the executor pool and
//! settles the message: acked when the task starts (Celery's default early ack), rejected
//! without requeue when it cannot be run at all, requeued when the worker stops first.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use futures::channel::oneshot;
use futures::FutureExt;
use serde_json::Value;

use super::events::{EventSink, TaskEventKind};
use super::results::{exception_of, ReplyAddress, ResultStore};
use crate::actors::consumer::Deliver;
use crate::actors::executor::{Execute, ExecutionReport};
use crate::actors::{Delivery, ExecutorPool, Settlement};
use crate::protocol::{ExceptionInfo, TaskMessage, TaskState};
use crate::task::{TaskContext, TaskError, TaskRegistry};

/// Answers once every delivery received so far is settled.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WaitIdle;

/// From now on, tasks waiting for their ETA go back to their queue instead of running.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BeginDrain;

/// Routes deliveries to tasks.
pub struct Dispatcher {
    /// The registry, pool, event sink and result store every delivery uses.
    services: Arc<Services>,
    /// Turns true when the worker stops: held ETA tasks are then requeued.
    draining: tokio::sync::watch::Sender<bool>,
    /// Deliveries received and not settled yet.
    in_flight: usize,
    /// Answered when `in_flight` drops to zero.
    idle_waiters: Vec<oneshot::Sender<()>>,
}

impl Dispatcher {
    /// A dispatcher that runs deliveries with `services`.
    pub(crate) fn new(services: Services) -> Self {
        Dispatcher {
            services: Arc::new(services),
            draining: tokio::sync::watch::Sender::new(false),
            in_flight: 0,
            idle_waiters: Vec::new(),
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Deliver> for Dispatcher {
    type Result = ();

    fn handle(&mut self, Deliver(delivery): Deliver, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let work = process(delivery, self.services.clone(), self.draining.subscribe());
        ctx.spawn(work.into_actor(self).map(|_, dispatcher, _| {
            dispatcher.in_flight -= 1;
            if dispatcher.in_flight == 0 {
                for waiter in dispatcher.idle_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }));
    }
}

impl Handler<BeginDrain> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: BeginDrain, _: &mut Context<Self>) {
        self.draining.send_replace(true);
    }
}

impl Handler<WaitIdle> for Dispatcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: WaitIdle, _: &mut Context<Self>) -> Self::Result {
        let (done, idle) = oneshot::channel();
        if self.in_flight == 0 {
            let _ = done.send(());
        } else {
            self.idle_waiters.push(done);
        }
        Box::pin(async move {
            let _ = idle.await;
        })
    }
}

/// Settles a delivery, logging (not failing) when its channel is gone: the broker then
/// redelivers the message.
async fn settle(delivery: &Delivery, settlement: Settlement, task_id: Option<&str>) {
    if let Err(error) = delivery.acker.settle(settlement).await {
        log::warn!(
            "could not settle message {} from queue \"{}\" ({settlement:?}): {error}",
            task_id.unwrap_or("?"),
            delivery.queue
        );
    }
}

/// The outcome of a run that the pool completed, or why it did not complete.
fn outcome_of(
    report: Result<ExecutionReport, MailboxError>,
    outcome: Option<Result<Value, TaskError>>,
    hard_limit: Option<Duration>,
) -> Option<Result<Value, TaskError>> {
    match report {
        Ok(ExecutionReport::Completed) => Some(outcome.unwrap_or_else(|| {
            Err(TaskError::runtime_error(
                "the task ended without an outcome",
            ))
        })),
        Ok(ExecutionReport::Panicked(panic)) => Some(Err(TaskError::panicked(panic))),
        Ok(ExecutionReport::TimedOut) => Some(Err(TaskError::new(
            "TimeLimitExceeded",
            "billiard.exceptions",
            format!(
                "hard time limit ({}s) exceeded",
                hard_limit.map_or(0.0, |limit| limit.as_secs_f64())
            ),
        ))),
        Ok(ExecutionReport::Cancelled) | Err(_) => None,
    }
}

/// The message's time limits `(hard, soft)`, ignoring values that are not positive.
fn time_limits(message: &TaskMessage) -> (Option<Duration>, Option<Duration>) {
    let limit = |seconds: Option<f64>| {
        seconds
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    };
    (
        limit(message.headers.timelimit.0),
        limit(message.headers.timelimit.1),
    )
}

/// What one delivery needs besides itself.
pub(crate) struct Services {
    pub(crate) registry: Arc<TaskRegistry>,
    pub(crate) pool: Addr<ExecutorPool>,
    pub(crate) events: EventSink,
    pub(crate) results: ResultStore,
}

/// Everything that happens to one delivery.
async fn process(
    delivery: Delivery,
    services: Arc<Services>,
    mut draining: tokio::sync::watch::Receiver<bool>,
) {
    let queue = delivery.queue.clone();
    let events = &services.events;
    let message = match TaskMessage::decode(&delivery.properties, &delivery.body) {
        Ok(message) => message,
        Err(error) => {
            let (id, name) = TaskMessage::peek_identity(&delivery.properties);
            log::error!(
                "rejecting message {} (task {}) from queue \"{queue}\": {error}",
                id.as_deref().unwrap_or("without id"),
                name.as_deref().unwrap_or("unknown"),
            );
            settle(
                &delivery,
                Settlement::Reject { requeue: false },
                id.as_deref(),
            )
            .await;
            events.emit(
                id.as_deref(),
                name.as_deref(),
                &queue,
                TaskEventKind::Rejected {
                    reason: error.to_string(),
                },
            );
            return;
        }
    };
    let id = message.headers.id.clone();
    let name = message.headers.task.clone();
    let emit = |kind| events.emit(Some(&id), Some(&name), &queue, kind);
    let reply = ReplyAddress::of(&message);
    let store_failure = |error: TaskError| {
        let reply = reply.clone();
        let results = services.results.clone();
        async move {
            if let Some(reply) = reply {
                results
                    .exception(&reply, TaskState::Failure, &exception_of(&error))
                    .await;
            }
        }
    };

    let Some(task) = services.registry.get(&name) else {
        log::error!(
            "Received unregistered task of type '{name}' (id {id}) from queue \"{queue}\": rejected without requeue"
        );
        settle(&delivery, Settlement::Reject { requeue: false }, Some(&id)).await;
        let error = TaskError::not_registered(&name);
        store_failure(error.clone()).await;
        emit(TaskEventKind::Rejected {
            reason: error.to_string(),
        });
        return;
    };

    // Expiry is checked on receipt and again when an ETA task comes due, as Celery does.
    let expires = message.headers.expires;
    let revoke_if_expired = || async {
        let expires = expires.filter(|at| *at <= Utc::now())?;
        log::info!("task {name}[{id}] expired at {expires}: not run");
        settle(&delivery, Settlement::Ack, Some(&id)).await;
        if let Some(reply) = &reply {
            services
                .results
                .exception(reply, TaskState::Revoked, &ExceptionInfo::revoked_expired())
                .await;
        }
        emit(TaskEventKind::Revoked {
            reason: "expired".into(),
        });
        Some(())
    };
    if revoke_if_expired().await.is_some() {
        return;
    }
    if let Some(eta) = message.headers.eta {
        if let Ok(wait) = (eta - Utc::now()).to_std() {
            tokio::select! {
                () = actix_rt::time::sleep(wait) => {}
                _ = draining.wait_for(|draining| *draining) => {
                    settle(&delivery, Settlement::Reject { requeue: true }, Some(&id)).await;
                    emit(TaskEventKind::Requeued);
                    return;
                }
            }
        }
        if revoke_if_expired().await.is_some() {
            return;
        }
    }

    let (hard_limit, soft_limit) = time_limits(&message);
    let mut context = TaskContext::from_headers(&message.headers, &queue);
    context.priority = message.priority;
    let run = match task.prepare(context, message.payload) {
        Ok(run) => run,
        Err(error) => {
            log::error!("task {name}[{id}] failed before it ran: {error}");
            settle(&delivery, Settlement::Ack, Some(&id)).await;
            store_failure(error.clone()).await;
            emit(TaskEventKind::Failed { error });
            return;
        }
    };

    let (outcome_tx, outcome_rx) = oneshot::channel();
    let job = async move {
        let outcome = match soft_limit {
            Some(limit) if hard_limit.is_none_or(|hard| limit < hard) => {
                match tokio::time::timeout(limit, run).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(TaskError::new(
                        "SoftTimeLimitExceeded",
                        "celery.exceptions",
                        format!("soft time limit ({}s) exceeded", limit.as_secs_f64()),
                    )),
                }
            }
            _ => run.await,
        };
        let _ = outcome_tx.send(outcome);
    }
    .boxed();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let execution = services.pool.send(Execute {
        job,
        hard_limit,
        on_start: Some(Box::new(move || {
            let _ = started_tx.send(());
        })),
    });
    let early_ack = async {
        if started_rx.await.is_ok() {
            settle(&delivery, Settlement::Ack, Some(&id)).await;
            emit(TaskEventKind::Started);
        }
    };
    let (report, ()) = futures::join!(execution, early_ack);

    match outcome_of(report, outcome_rx.await.ok(), hard_limit) {
        Some(Ok(result)) => {
            log::info!("task {name}[{id}] succeeded");
            if let Some(reply) = &reply {
                services.results.success(reply, result.clone()).await;
            }
            emit(TaskEventKind::Succeeded { result });
        }
        Some(Err(error)) => {
            if error.exc_type == "TaskPanicked" {
                log::error!("task {name}[{id}] panicked: {}", error.message);
            } else {
                log::warn!("task {name}[{id}] failed: {error}");
            }
            store_failure(error.clone()).await;
            emit(TaskEventKind::Failed { error });
        }
        None => {
            settle(&delivery, Settlement::Reject { requeue: true }, Some(&id)).await;
            emit(TaskEventKind::Requeued);
        }
    }
}
