//! Everything that happens to one delivery: decode, look the task up, skip it if expired,
//! hold or defer it if it has an ETA, run it in the executor pool within its time limits,
//! then settle the message and store the result according to the outcome: success,
//! failure, retry, reject or ignore, with early or late acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures::channel::oneshot;
use futures::FutureExt;
use serde_json::Value;

use super::eta::{hold_until, EtaDecision, EtaScheduler};
use super::events::{EventSink, TaskEventKind};
use super::result_rules::{result_rules, ResultRules, ResultSettings};
use super::results::{exception_of, ResultAddress, ResultStore};
use super::retry::republish_for_retry;
use super::workflow::Workflow;
use crate::actors::executor::{Execute, ExecutionReport};
use crate::actors::{Delivery, ExecutorPool, Settlement};
use crate::app::Producer;
use crate::log_text::{clip, clip_display};
use crate::protocol::{DecodePolicy, ExceptionInfo, TaskMessage, TaskState};
use crate::task::{
    AppState, ErasedTask, ErrorAction, RetryAt, TaskContext, TaskError, TaskRegistry,
};

/// Worker-wide settings a task's own options override.
#[derive(Debug, Clone)]
pub(crate) struct WorkerDefaults {
    /// Acknowledge after the run.
    pub(crate) acks_late: bool,
    /// With late acks, ack failures (else reject them without requeue).
    pub(crate) acks_on_failure_or_timeout: bool,
    /// Hard time limit.
    pub(crate) time_limit: Option<Duration>,
    /// Soft time limit.
    pub(crate) soft_time_limit: Option<Duration>,
    /// Content types accepted and the body size limit (as received and decompressed);
    /// messages outside it are rejected without requeue.
    pub(crate) decode: DecodePolicy,
    /// Store no results (but errors, with `store_errors_even_if_ignored`).
    pub(crate) ignore_result: bool,
    /// Store errors even when results are ignored.
    pub(crate) store_errors_even_if_ignored: bool,
    /// Store STARTED when a task starts.
    pub(crate) track_started: bool,
}

/// Deliveries acked early whose task is still running, by a per-worker number: a cold
/// shutdown publishes them again so that they are not lost.
#[derive(Clone, Default)]
pub(crate) struct RunningTasks {
    next: Arc<std::sync::atomic::AtomicU64>,
    running: Arc<std::sync::Mutex<std::collections::HashMap<u64, Arc<Delivery>>>>,
}

impl RunningTasks {
    /// Records a running, acked delivery; it is forgotten when the guard drops.
    fn track(&self, delivery: &Arc<Delivery>) -> RunningGuard {
        let number = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut running) = self.running.lock() {
            running.insert(number, delivery.clone());
        }
        RunningGuard {
            tasks: self.clone(),
            number,
        }
    }

    /// The deliveries acked early and still running.
    pub(crate) fn take(&self) -> Vec<Arc<Delivery>> {
        self.running
            .lock()
            .map(|mut running| running.drain().map(|(_, delivery)| delivery).collect())
            .unwrap_or_default()
    }
}

/// Forgets a running delivery when its run ends.
struct RunningGuard {
    tasks: RunningTasks,
    number: u64,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if let Ok(mut running) = self.tasks.running.lock() {
            running.remove(&self.number);
        }
    }
}

/// What every delivery needs besides itself.
pub(crate) struct Services {
    pub(crate) registry: Arc<TaskRegistry>,
    pub(crate) pool: Addr<ExecutorPool>,
    pub(crate) events: EventSink,
    pub(crate) results: ResultStore,
    pub(crate) eta: EtaScheduler,
    pub(crate) defaults: WorkerDefaults,
    pub(crate) state: AppState,
    /// Lets tasks send tasks (`TaskContext::send`) and republishes retries.
    pub(crate) producer: Arc<Producer>,
    /// Early-acked deliveries still running (for a cold shutdown).
    pub(crate) running: RunningTasks,
    /// What remote control sees: requests held, totals, revoked ids, rate limits.
    pub(crate) worker_state: Arc<super::state::WorkerState>,
}

/// Settles a delivery, logging (not failing) when its channel is gone: the broker then
/// redelivers the message.
pub(crate) async fn settle(delivery: &Delivery, settlement: Settlement, task_id: Option<&str>) {
    if let Err(error) = delivery.acker.settle(settlement).await {
        log::warn!(
            "could not settle message {} from queue \"{}\" ({settlement:?}): {error}",
            task_id.unwrap_or("?"),
            delivery.queue
        );
    }
}

/// The effective limits: the message's `timelimit` header, else the task's options, else
/// the worker's defaults. Values that are not positive are ignored.
fn time_limits(
    message: &TaskMessage,
    task: &dyn ErasedTask,
    defaults: &WorkerDefaults,
) -> (Option<Duration>, Option<Duration>) {
    let header = |seconds: Option<f64>| {
        seconds
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    };
    let options = task.options();
    (
        header(message.headers.timelimit.0)
            .or(options.time_limit)
            .or(defaults.time_limit),
        header(message.headers.timelimit.1)
            .or(options.soft_time_limit)
            .or(defaults.soft_time_limit),
    )
}

/// The outcome of a run the pool completed; `None` when it never started.
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

/// One delivery being processed, with what its outcome handling needs.
struct Request<'a> {
    delivery: &'a Arc<Delivery>,
    services: &'a Services,
    id: String,
    name: String,
    /// Where results go; `None` when none is stored.
    address: Option<ResultAddress>,
    /// Which results are stored.
    rules: ResultRules,
    /// Whether the message is still unacked when the run ends.
    acks_late: bool,
    /// Callbacks, errbacks, chain and chord around the task; `None` for a lone task.
    workflow: Option<Workflow>,
    acks_on_failure: bool,
}

impl Request<'_> {
    fn emit(&self, kind: TaskEventKind) {
        self.services
            .events
            .emit(Some(&self.id), Some(&self.name), &self.delivery.queue, kind);
    }

    async fn settle(&self, settlement: Settlement) {
        settle(self.delivery, settlement, Some(&self.id)).await;
    }

    async fn store_exception(&self, state: TaskState, exception: &ExceptionInfo) {
        if let Some(address) = self.address.as_ref().filter(|_| self.rules.errors) {
            self.services
                .results
                .exception(address, state, exception)
                .await;
        }
    }

    /// Stores a final failure (or revocation), then tells the workflow around the task:
    /// its chord, the rest of its chain, its errbacks.
    async fn store_final_exception(&self, state: TaskState, exception: &ExceptionInfo) {
        self.store_exception(state, exception).await;
        if let Some(workflow) = &self.workflow {
            workflow.failed(self.services, state, exception).await;
        }
    }

    /// A failure for good: FAILURE result, then the message is acked (or, with late acks
    /// and `acks_on_failure_or_timeout` off, rejected without requeue).
    async fn fail(&self, task: Option<(&dyn ErasedTask, &TaskContext)>, error: TaskError) {
        if error.exc_type == "TaskPanicked" {
            log::error!(
                "task {}[{}] panicked: {}",
                self.name,
                self.id,
                clip(&error.message)
            );
        } else {
            log::warn!(
                "task {}[{}] failed: {}",
                self.name,
                self.id,
                clip_display(&error)
            );
        }
        self.store_final_exception(TaskState::Failure, &exception_of(&error))
            .await;
        if let Some((task, context)) = task {
            task.on_failure(context, &error);
        }
        if self.acks_late {
            let settlement = if self.acks_on_failure {
                Settlement::Ack
            } else {
                Settlement::Reject { requeue: false }
            };
            self.settle(settlement).await;
        }
        self.emit(TaskEventKind::Failed { error });
    }
}

/// Rejects, without requeue, a message that cannot be read as a task (too large,
/// malformed), logging it with whatever identity its headers give.
async fn reject_unreadable(delivery: &Delivery, services: &Services, reason: String) {
    let (id, name) = TaskMessage::peek_identity(&delivery.properties);
    log::error!(
        "rejecting message {} (task {}) from queue \"{}\": {}",
        clip(id.as_deref().unwrap_or("without id")),
        clip(name.as_deref().unwrap_or("unknown")),
        delivery.queue,
        clip(&reason)
    );
    settle(
        delivery,
        Settlement::Reject { requeue: false },
        id.as_deref(),
    )
    .await;
    services.events.emit(
        id.as_deref(),
        name.as_deref(),
        &delivery.queue,
        TaskEventKind::Rejected { reason },
    );
}

/// Everything that happens to one delivery.
pub(crate) async fn process(
    delivery: Delivery,
    services: Arc<Services>,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    let delivery = Arc::new(delivery);
    let policy = &services.defaults.decode;
    let message = match TaskMessage::decode_with(&delivery.properties, &delivery.body, policy) {
        Ok(message) => message,
        Err(error) => {
            reject_unreadable(&delivery, &services, error.to_string()).await;
            return;
        }
    };
    let task = services.registry.get(&message.headers.task);
    let options = task.as_ref().map(|task| task.options().clone());
    let rules = result_rules(ResultSettings {
        backend: services.results.enabled(),
        task_ignores: options
            .as_ref()
            .and_then(|o| o.ignore_result)
            .unwrap_or(services.defaults.ignore_result),
        message_ignores: message.headers.ignore_result == Some(true),
        store_errors_even_if_ignored: options
            .as_ref()
            .and_then(|o| o.store_errors_even_if_ignored)
            .unwrap_or(services.defaults.store_errors_even_if_ignored),
        track_started: options
            .as_ref()
            .and_then(|o| o.track_started)
            .unwrap_or(services.defaults.track_started),
    });
    let request = Request {
        delivery: &delivery,
        services: &services,
        id: message.headers.id.clone(),
        name: message.headers.task.clone(),
        // Built only when some result of this run is stored (three strings per delivery).
        address: (rules.success || rules.errors || rules.started).then(|| {
            services
                .results
                .address(&message, &delivery.routing_key, task.is_some())
        }),
        rules,
        acks_late: options
            .as_ref()
            .and_then(|o| o.acks_late)
            .unwrap_or(services.defaults.acks_late),
        acks_on_failure: options
            .as_ref()
            .and_then(|o| o.acks_on_failure_or_timeout)
            .unwrap_or(services.defaults.acks_on_failure_or_timeout),
        workflow: Workflow::of(&message),
    };

    let Some(task) = task else {
        log::error!(
            "Received unregistered task of type '{}' (id {}) from queue \"{}\": rejected without requeue",
            clip(&request.name),
            clip(&request.id),
            delivery.queue
        );
        request.settle(Settlement::Reject { requeue: false }).await;
        let error = TaskError::not_registered(&request.name);
        request
            .store_final_exception(TaskState::Failure, &exception_of(&error))
            .await;
        request.emit(TaskEventKind::Rejected {
            reason: error.to_string(),
        });
        return;
    };
    if services.events.wants_received() {
        let info = super::events::ReceivedInfo::of(&message);
        request.emit(TaskEventKind::Received(Box::new(info)));
    }

    let tracked = services.worker_state.received(&message, &delivery);
    if revoke_if_revoked(&request).await
        || revoke_if_expired(&request, message.headers.expires).await
    {
        return;
    }
    if let Some(eta) = message.headers.eta.filter(|eta| *eta > Utc::now()) {
        tracked.scheduled(eta, message.priority);
        match services.eta.decide(eta) {
            EtaDecision::Defer => {
                match services.eta.defer(&delivery, eta).await {
                    Ok(wait_queue) => {
                        request.settle(Settlement::Ack).await;
                        request.emit(TaskEventKind::Deferred {
                            eta,
                            wait_queue,
                        });
                        return;
                    }
                    Err(error) => log::error!(
                        "task {}[{}]: could not move it to the wait queue ({error}); holding it in the worker",
                        request.name,
                        request.id
                    ),
                }
                if !hold_until(
                    &services.eta,
                    &delivery,
                    eta,
                    draining.clone(),
                    services.worker_state.wait_revoked(&request.id),
                )
                .await
                {
                    request.settle(Settlement::Reject { requeue: true }).await;
                    request.emit(TaskEventKind::Requeued);
                    return;
                }
            }
            EtaDecision::Hold => {
                if !hold_until(
                    &services.eta,
                    &delivery,
                    eta,
                    draining.clone(),
                    services.worker_state.wait_revoked(&request.id),
                )
                .await
                {
                    request.settle(Settlement::Reject { requeue: true }).await;
                    request.emit(TaskEventKind::Requeued);
                    return;
                }
            }
        }
        if !delivery.acker.is_usable() {
            log::info!(
                "task {}[{}]: its channel closed while it waited for its ETA; the broker redelivers it",
                request.name,
                request.id
            );
            return;
        }
        tracked.reserved();
        if revoke_if_revoked(&request).await
            || revoke_if_expired(&request, message.headers.expires).await
        {
            return;
        }
    }

    // A rate-limited task waits for its token here, holding no executor slot; the
    // consumer's window is widened by one meanwhile (as for a held ETA task), so that
    // tasks of other names keep coming.
    let rate = task
        .options()
        .rate_limit
        .as_deref()
        .and_then(|text| super::rate_limit::Rate::parse(text).ok().flatten());
    let wait = services.worker_state.rate_limit_wait(&request.name, rate);
    if !wait.is_zero() {
        let turn = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        if !hold_until(
            &services.eta,
            &delivery,
            turn,
            draining,
            services.worker_state.wait_revoked(&request.id),
        )
        .await
        {
            request.settle(Settlement::Reject { requeue: true }).await;
            request.emit(TaskEventKind::Requeued);
            return;
        }
        if !delivery.acker.is_usable() {
            return;
        }
        if revoke_if_revoked(&request).await {
            return;
        }
    }

    run(&request, task.as_ref(), message, &tracked).await;
}

/// Acks a revoked task with a REVOKED result (reason "revoked"); true when it was revoked.
async fn revoke_if_revoked(request: &Request<'_>) -> bool {
    if !request.services.worker_state.is_revoked(&request.id) {
        return false;
    }
    log::info!("task {}[{}] revoked: not run", request.name, request.id);
    request.settle(Settlement::Ack).await;
    request
        .store_final_exception(TaskState::Revoked, &ExceptionInfo::revoked("revoked"))
        .await;
    request.emit(TaskEventKind::Revoked {
        reason: "revoked".into(),
    });
    true
}

/// Acks an expired task with a REVOKED result; true when it was expired.
async fn revoke_if_expired(request: &Request<'_>, expires: Option<DateTime<Utc>>) -> bool {
    let Some(expires) = expires.filter(|at| *at <= Utc::now()) else {
        return false;
    };
    log::info!(
        "task {}[{}] expired at {expires}: not run",
        request.name,
        request.id
    );
    request.settle(Settlement::Ack).await;
    request
        .store_final_exception(TaskState::Revoked, &ExceptionInfo::revoked_expired())
        .await;
    request.emit(TaskEventKind::Revoked {
        reason: "expired".into(),
    });
    true
}

/// Runs the task and handles its outcome.
async fn run(
    request: &Request<'_>,
    task: &dyn ErasedTask,
    message: TaskMessage,
    tracked: &super::state::Tracked,
) {
    let services = request.services;
    let message_expires = message.headers.expires;
    let (hard_limit, soft_limit) = time_limits(&message, task, &services.defaults);
    let mut context = TaskContext::from_headers(&message.headers, &request.delivery.queue);
    context.priority = message.priority;
    context.redelivered = request.delivery.redelivered;
    context.state = services.state.clone();
    context.producer = Some(services.producer.clone());
    let soft_signal = soft_limit.map(|_| {
        let (signal, observer) = tokio::sync::watch::channel(false);
        context.soft_limit = Some(observer);
        signal
    });
    let hook_context = context.clone();
    // A v1 message has no headers to update for a retry: keep what re-encoding needs.
    let v1_copy = (message.protocol_version == 1).then(|| message.clone());
    let retries = message.headers.retries;

    let max_decoded_size = services.defaults.decode.max_body_size;
    let prepared = match task.prepare(context, message.payload, max_decoded_size) {
        Ok(prepared) => prepared,
        Err(error) => {
            // Arguments that do not fit are a poison message: FAILURE (naming the argument)
            // for whoever waits on the result, and the message rejected without requeue, so
            // that a dead-letter exchange keeps it.
            log::error!(
                "rejecting task {}[{}] from queue \"{}\": {}",
                request.name,
                request.id,
                request.delivery.queue,
                clip_display(&error)
            );
            request
                .store_final_exception(TaskState::Failure, &exception_of(&error))
                .await;
            task.on_failure(&hook_context, &error);
            request.settle(Settlement::Reject { requeue: false }).await;
            request.emit(TaskEventKind::Failed { error });
            return;
        }
    };

    let (outcome_tx, outcome_rx) = oneshot::channel();
    // A delivery whose channel closed while it waited for a slot is not run: the broker
    // redelivers it (to this worker or another), so running it here would run it twice.
    // Decided when the pool gives the run its slot, before the early ack (which uses up
    // the acker) can happen.
    let channel_gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gone = channel_gone.clone();
    // `revoke(terminate=True)` aborts an async run (a blocking one cannot be interrupted).
    let (abort, registration) = futures::future::AbortHandle::new_pair();
    let terminated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let was_terminated = terminated.clone();
    // Revoked, or expired, while it waited for its slot: not run (checked when the slot is
    // given, as Celery checks both before it executes a request).
    let revoked_at_start = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let expired_at_start = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let expires = message_expires;
    let skip = revoked_at_start.clone();
    let job = async move {
        if gone.load(std::sync::atomic::Ordering::SeqCst)
            || skip.load(std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let running = async move {
            match soft_limit {
                Some(limit) if hard_limit.is_none_or(|hard| limit < hard) => {
                    within_soft_limit(prepared, limit, hard_limit, soft_signal).await
                }
                _ => prepared.await,
            }
        };
        let outcome = match futures::future::Abortable::new(running, registration).await {
            Ok(outcome) => outcome,
            Err(futures::future::Aborted) => {
                was_terminated.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(TaskError::new(
                    "TaskRevokedError",
                    "celery.exceptions",
                    "terminated",
                ))
            }
        };
        let _ = outcome_tx.send(outcome);
    }
    .boxed();
    let abort = (!task.blocking()).then_some(abort);
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let execution = services.pool.send(Execute {
        job,
        hard_limit,
        on_start: Some(Box::new({
            let waiting = request.delivery.clone();
            let gone = channel_gone.clone();
            let state = services.worker_state.clone();
            let id = request.id.clone();
            let revoked = revoked_at_start.clone();
            let expired = expired_at_start.clone();
            move || {
                if !waiting.acker.is_usable() {
                    gone.store(true, std::sync::atomic::Ordering::SeqCst);
                } else if state.is_revoked(&id) {
                    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
                } else if expires.is_some_and(|at| at <= Utc::now()) {
                    // Not run: the job below sees the flag and returns at once.
                    expired.store(true, std::sync::atomic::Ordering::SeqCst);
                    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                let _ = started_tx.send(());
            }
        })),
    });
    let on_start = async {
        if started_rx.await.is_ok()
            && !channel_gone.load(std::sync::atomic::Ordering::SeqCst)
            && !revoked_at_start.load(std::sync::atomic::Ordering::SeqCst)
        {
            tracked.started(!request.acks_late, abort);
            let guard = if request.acks_late {
                None
            } else {
                let guard = services.running.track(request.delivery);
                request.settle(Settlement::Ack).await;
                Some(guard)
            };
            request.emit(TaskEventKind::Started);
            if let Some(address) = request.address.as_ref().filter(|_| request.rules.started) {
                // Stored before the outcome is (the outcome waits for this future).
                services.results.started(address).await;
            }
            guard
        } else {
            None
        }
    };
    let (report, running) = futures::join!(execution, on_start);
    drop(running);
    if channel_gone.load(std::sync::atomic::Ordering::Relaxed) {
        log::info!(
            "task {}[{}] not run: its channel closed before it started; the broker redelivers it",
            request.name,
            request.id
        );
        request.emit(TaskEventKind::Requeued);
        return;
    }

    if expired_at_start.load(std::sync::atomic::Ordering::SeqCst) {
        revoke_if_expired(request, expires).await;
        return;
    }
    if revoked_at_start.load(std::sync::atomic::Ordering::SeqCst) {
        revoke_if_revoked(request).await;
        return;
    }
    let Some(outcome) = outcome_of(report, outcome_rx.await.ok(), hard_limit) else {
        // Never started (the worker is stopping): back to the queue, unacked.
        request.settle(Settlement::Reject { requeue: true }).await;
        request.emit(TaskEventKind::Requeued);
        return;
    };
    if terminated.load(std::sync::atomic::Ordering::SeqCst) {
        log::info!("task {}[{}] terminated (revoked)", request.name, request.id);
        request
            .store_final_exception(TaskState::Revoked, &ExceptionInfo::revoked("terminated"))
            .await;
        if request.acks_late {
            request.settle(Settlement::Ack).await;
        }
        request.emit(TaskEventKind::Revoked {
            reason: "terminated".into(),
        });
        return;
    }
    let error = match outcome {
        Ok(result) => {
            log::info!("task {}[{}] succeeded", request.name, request.id);
            // As Celery: callbacks and the next chain step are sent before the result is
            // stored; the chord is told after.
            if let Some(workflow) = &request.workflow {
                workflow.dispatch(services, &result).await;
            }
            if let Some(address) = request.address.as_ref().filter(|_| request.rules.success) {
                services.results.success(address, result.clone()).await;
            }
            if let Some(workflow) = &request.workflow {
                workflow.succeeded(services, &result).await;
            }
            if request.acks_late {
                request.settle(Settlement::Ack).await;
            }
            request.emit(TaskEventKind::Succeeded { result });
            return;
        }
        Err(error) => error,
    };

    match error.action {
        ErrorAction::Fail => request.fail(Some((task, &hook_context)), error).await,
        ErrorAction::Retry(at) => {
            let max_retries = task.options().max_retries();
            if retries >= max_retries {
                log::warn!(
                    "task {}[{}]: max retries ({max_retries}) exceeded",
                    request.name,
                    request.id
                );
                request.fail(Some((task, &hook_context)), error).await;
                return;
            }
            let eta = match at {
                RetryAt::Eta(eta) => eta,
                RetryAt::After(countdown) => {
                    Utc::now() + chrono::Duration::from_std(countdown).unwrap_or_default()
                }
                RetryAt::Backoff => {
                    let delay = task.options().retry_backoff.delay(retries);
                    Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default()
                }
            };
            retry(request, task, &hook_context, error, eta, v1_copy).await;
        }
        ErrorAction::Reject { requeue } => {
            if request.acks_late {
                request.settle(Settlement::Reject { requeue }).await;
            } else {
                log::warn!(
                    "task {}[{}] asked to reject its message, but it was acknowledged when it started (early ack); use acks_late for Reject to take effect",
                    request.name,
                    request.id
                );
            }
            if !requeue {
                let exception = ExceptionInfo {
                    exc_type: "Reject".into(),
                    exc_module: "celery.exceptions".into(),
                    exc_message: vec![Value::String(error.message.clone()), Value::Bool(false)],
                };
                request
                    .store_exception(TaskState::Failure, &exception)
                    .await;
            }
            request.emit(TaskEventKind::Rejected {
                reason: error.message,
            });
        }
        ErrorAction::Ignore => {
            if request.acks_late {
                request.settle(Settlement::Ack).await;
            }
            request.emit(TaskEventKind::Ignored);
        }
    }
}

/// How long a run may go on after its soft limit when it has no hard limit.
const SOFT_LIMIT_GRACE: Duration = Duration::from_secs(1);

/// Runs `run`; at `soft` it signals the task (`TaskContext::soft_limit_reached`) and lets
/// it go on until its hard limit (then the pool drops it: `TimeLimitExceeded`), or, without
/// one, for `SOFT_LIMIT_GRACE` before cancelling it with `SoftTimeLimitExceeded`.
async fn within_soft_limit(
    run: futures::future::BoxFuture<'static, Result<Value, TaskError>>,
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

/// Publishes the task again (same id, retries + 1, the new eta) to the queue it came from,
/// then stores RETRY and settles the original.
async fn retry(
    request: &Request<'_>,
    task: &dyn ErasedTask,
    context: &TaskContext,
    error: TaskError,
    eta: DateTime<Utc>,
    v1_copy: Option<TaskMessage>,
) {
    let republished = republish_for_retry(
        &request.services.producer,
        request.delivery,
        &request.id,
        eta,
        v1_copy,
    )
    .await;
    if let Err(failure) = republished {
        log::error!(
            "task {}[{}]: the retry could not be published: {}",
            request.name,
            request.id,
            clip_display(&failure)
        );
        if request.acks_late {
            // Unacked: the broker delivers it again and it is retried then.
            request.settle(Settlement::Reject { requeue: true }).await;
            request.emit(TaskEventKind::Requeued);
        } else {
            let lost = TaskError::runtime_error(format!(
                "{error}; its retry could not be published: {failure}"
            ));
            request.fail(Some((task, context)), lost).await;
        }
        return;
    }
    log::info!(
        "task {}[{}] retry {} at {eta}: {}",
        request.name,
        request.id,
        context.retries + 1,
        clip_display(&error)
    );
    request
        .store_exception(TaskState::Retry, &exception_of(&error))
        .await;
    task.on_retry(context, &error);
    if request.acks_late {
        request.settle(Settlement::Ack).await;
    }
    request.emit(TaskEventKind::Retried { eta, error });
}
