//! The dispatcher: turns each delivery into a task run. It decodes the message, looks the
//! task up, skips expired ones, holds ETA ones, runs the task in the executor pool and
//! settles the message: acked when the task starts (Celery's default early ack), rejected
//! without requeue when it cannot be run at all, requeued when the worker stops first.

use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use futures::channel::oneshot;
use futures::FutureExt;

use super::events::{EventSink, TaskEventKind};
use crate::actors::consumer::Deliver;
use crate::actors::executor::{Execute, ExecutionReport};
use crate::actors::{Delivery, ExecutorPool, Settlement};
use crate::protocol::TaskMessage;
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
    registry: Arc<TaskRegistry>,
    /// Turns true when the worker stops: held ETA tasks are then requeued.
    draining: tokio::sync::watch::Sender<bool>,
    pool: Addr<ExecutorPool>,
    events: EventSink,
    /// Deliveries received and not settled yet.
    in_flight: usize,
    /// Answered when `in_flight` drops to zero.
    idle_waiters: Vec<oneshot::Sender<()>>,
}

impl Dispatcher {
    pub(crate) fn new(
        registry: Arc<TaskRegistry>,
        pool: Addr<ExecutorPool>,
        events: EventSink,
    ) -> Self {
        Dispatcher {
            registry,
            draining: tokio::sync::watch::Sender::new(false),
            pool,
            events,
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
        let work = process(
            delivery,
            self.registry.clone(),
            self.pool.clone(),
            self.events.clone(),
            self.draining.subscribe(),
        );
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

/// Everything that happens to one delivery.
async fn process(
    delivery: Delivery,
    registry: Arc<TaskRegistry>,
    pool: Addr<ExecutorPool>,
    events: EventSink,
    mut draining: tokio::sync::watch::Receiver<bool>,
) {
    let queue = delivery.queue.clone();
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

    let Some(task) = registry.get(&name) else {
        log::error!(
            "Received unregistered task of type '{name}' (id {id}) from queue \"{queue}\": rejected without requeue"
        );
        settle(&delivery, Settlement::Reject { requeue: false }, Some(&id)).await;
        emit(TaskEventKind::Rejected {
            reason: TaskError::not_registered(&name).to_string(),
        });
        return;
    };

    if let Some(expires) = message.headers.expires {
        if expires <= Utc::now() {
            log::info!("task {name}[{id}] expired at {expires}: not run");
            settle(&delivery, Settlement::Ack, Some(&id)).await;
            emit(TaskEventKind::Revoked {
                reason: "expired".into(),
            });
            return;
        }
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
    }

    let context = TaskContext::from_headers(&message.headers, &queue);
    let run = match task.prepare(context, &message.payload) {
        Ok(run) => run,
        Err(error) => {
            log::error!("task {name}[{id}] failed before it ran: {error}");
            settle(&delivery, Settlement::Ack, Some(&id)).await;
            emit(TaskEventKind::Failed { error });
            return;
        }
    };

    let (outcome_tx, outcome_rx) = oneshot::channel();
    let job = async move {
        let _ = outcome_tx.send(run.await);
    }
    .boxed();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let execution = pool.send(Execute {
        job,
        hard_limit: None,
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

    match report {
        Ok(ExecutionReport::Completed) => match outcome_rx.await {
            Ok(Ok(result)) => {
                log::info!("task {name}[{id}] succeeded");
                emit(TaskEventKind::Succeeded { result });
            }
            Ok(Err(error)) => {
                log::warn!("task {name}[{id}] failed: {error}");
                emit(TaskEventKind::Failed { error });
            }
            Err(_) => emit(TaskEventKind::Failed {
                error: TaskError::runtime_error("the task ended without an outcome"),
            }),
        },
        Ok(ExecutionReport::Panicked(panic)) => {
            log::error!("task {name}[{id}] panicked: {panic}");
            emit(TaskEventKind::Failed {
                error: TaskError::panicked(panic),
            });
        }
        Ok(ExecutionReport::TimedOut) => {
            log::error!("task {name}[{id}] exceeded its hard time limit");
            emit(TaskEventKind::Failed {
                error: TaskError::new(
                    "TimeLimitExceeded",
                    "billiard.exceptions",
                    "hard time limit exceeded",
                ),
            });
        }
        Ok(ExecutionReport::Cancelled) | Err(_) => {
            settle(&delivery, Settlement::Reject { requeue: true }, Some(&id)).await;
            emit(TaskEventKind::Requeued);
        }
    }
}
