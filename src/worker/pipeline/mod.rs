//! Everything that happens to one delivery, as one linear pipeline read top to bottom in
//! [`process`]: decode → look up → revoked/expired → ETA → rate limit → take a slot →
//! early ack → run under the limits → [`disposition`](disposition::disposition) (a pure
//! decision) → `apply` (the I/O).

mod apply;
mod disposition;
mod options;
mod running;
mod slot;
#[cfg(test)]
mod table;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::eta::{hold_until, EtaDecision, EtaScheduler};
use super::events::{EventSink, TaskEventKind};
use super::results::ResultStore;
use super::window::AdaptiveWindow;
use super::workflow::Workflow;
use crate::actors::{Delivery, ExecutorPool, Settlement};
use crate::app::Producer;
use crate::log_text::clip;
use crate::protocol::{DecodePolicy, TaskMessage};
use crate::task::{AppState, ErasedTask, TaskContext, TaskRegistry};
use apply::Request;
use disposition::Ending;
use options::EffectiveOptions;
pub(crate) use running::RunningTasks;
use slot::{run_in_slot, Limits, Start};

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

/// What every delivery needs besides itself.
pub(crate) struct Services {
    /// The tasks this worker runs, by name.
    pub(crate) registry: Arc<TaskRegistry>,
    /// The executor slots runs take.
    pub(crate) pool: Addr<ExecutorPool>,
    /// Where task events go.
    pub(crate) events: EventSink,
    /// Where results are stored (rpc or Redis), if anywhere.
    pub(crate) results: ResultStore,
    /// Holds ETA tasks in the worker or defers them to wait queues.
    pub(crate) eta: EtaScheduler,
    /// The worker's settings that task options override.
    pub(crate) defaults: WorkerDefaults,
    /// Values shared with every task (`WorkerBuilder::app_data`).
    pub(crate) state: AppState,
    /// Lets tasks send tasks (`TaskContext::send`) and republishes retries.
    pub(crate) producer: Arc<Producer>,
    /// Early-acked deliveries still running (for a cold shutdown).
    pub(crate) running: RunningTasks,
    /// What remote control sees: requests held, totals, revoked ids, rate limits.
    pub(crate) worker_state: Arc<super::state::WorkerState>,
    /// The adaptive prefetch window, when no prefetch multiplier is set: told each run's
    /// time.
    pub(crate) window: Option<Arc<AdaptiveWindow>>,
}

/// Everything that happens to one delivery.
pub(crate) async fn process(
    delivery: Delivery,
    services: Arc<Services>,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    let delivery = Arc::new(delivery);
    let services = &*services;

    // Decode.
    let policy = &services.defaults.decode;
    let message = match TaskMessage::decode_with(&delivery.properties, &delivery.body, policy) {
        Ok(message) => message,
        Err(error) => return reject_unreadable(&delivery, services, error.to_string()).await,
    };

    // Look up, and resolve the options once.
    let task = services.registry.get(&message.headers.task);
    let options = EffectiveOptions::resolve(
        &message,
        task.as_ref().map(|task| task.options()),
        &services.defaults,
        services.results.enabled(),
    );
    let mut request = Request {
        delivery: &delivery,
        services,
        id: Some(message.headers.id.clone()),
        name: Some(message.headers.task.clone()),
        retries: message.headers.retries,
        // Built only when some result of this run is stored (three strings per delivery).
        address: options.stores_anything().then(|| {
            services
                .results
                .address(&message, &delivery.routing_key, task.is_some())
        }),
        options,
        workflow: Workflow::of(&message),
        v1_copy: (message.protocol_version == 1).then(|| message.clone()),
        hooks: None,
    };
    let id = message.headers.id.as_str();
    log::debug!(
        "received task {}[{}] from queue \"{}\"",
        clip(&message.headers.task),
        clip(id),
        delivery.queue
    );
    let Some(task) = task else {
        log::error!(
            "Received unregistered task of type '{}' (id {}) from queue \"{}\": rejected without requeue",
            clip(&message.headers.task),
            clip(id),
            delivery.queue
        );
        return request.finish(Ending::Unregistered).await;
    };
    if services.events.wants_received() {
        let info = super::events::ReceivedInfo::of(&message);
        request.emit(TaskEventKind::Received(Box::new(info)));
    }
    let tracked = services.worker_state.received(&message, &delivery);

    // Revoked or expired on receipt.
    let expires = message.headers.expires;
    if let Some(ending) = not_to_run(services, id, expires) {
        return request.finish(ending).await;
    }

    // ETA: deferred to a wait queue, or held here until due.
    if let Some(eta) = message.headers.eta.filter(|eta| *eta > Utc::now()) {
        tracked.scheduled(eta, message.priority);
        if services.eta.decide(eta, &delivery) == EtaDecision::Defer {
            match services.eta.defer(&delivery, eta).await {
                Ok(wait_queue) => {
                    return request.finish(Ending::Deferred { eta, wait_queue }).await;
                }
                Err(error) => log::error!(
                    "task {}[{id}]: could not move it to the wait queue ({error}); holding it in the worker",
                    message.headers.task,
                ),
            }
        }
        if let Some(ending) = wait(&request, eta, draining.clone()).await {
            return request.finish(ending).await;
        }
        tracked.reserved();
        if let Some(ending) = not_to_run(services, id, expires) {
            return request.finish(ending).await;
        }
    }

    // Rate limit: the task waits for its token here, holding no executor slot; the
    // consumer's window is widened by one meanwhile (as for a held ETA task), so that
    // tasks of other names keep coming.
    let rate_wait = services
        .worker_state
        .rate_limit_wait(&message.headers.task, request.options.rate_limit);
    if !rate_wait.is_zero() {
        let turn = Utc::now() + chrono::Duration::from_std(rate_wait).unwrap_or_default();
        if let Some(ending) = wait(&request, turn, draining).await {
            return request.finish(ending).await;
        }
        if services.worker_state.is_revoked(id) {
            return request.finish(Ending::Revoked).await;
        }
    }

    // Prepare the run: its context, its arguments.
    let mut context = TaskContext::from_headers(&message.headers, &delivery.queue);
    context.priority = message.priority;
    context.redelivered = delivery.redelivered;
    context.state = services.state.clone();
    context.producer = Some(services.producer.clone());
    let soft_signal = request.options.soft_limit.map(|_| {
        let (signal, observer) = tokio::sync::watch::channel(false);
        context.soft_limit = Some(observer);
        signal
    });
    request.hooks = Some((task.as_ref() as &dyn ErasedTask, context.clone()));
    let max_decoded_size = services.defaults.decode.max_body_size;
    let prepared = match task.prepare(context, message.payload, max_decoded_size) {
        Ok(prepared) => prepared,
        Err(error) => return request.finish(Ending::BadArguments(error)).await,
    };

    // Take a slot, ack early when it starts, run under the limits.
    let limits = Limits {
        hard: request.options.hard_limit,
        soft: request.options.soft_limit,
        soft_signal,
    };
    let gate = {
        let delivery = delivery.clone();
        let state = services.worker_state.clone();
        let id = id.to_string();
        move || {
            Start::decide(
                delivery.acker.is_usable(),
                state.is_revoked(&id),
                expires.is_some_and(|at| at <= Utc::now()),
            )
        }
    };
    let started_at = std::sync::OnceLock::new();
    let early_ack = async |abort| {
        let _ = started_at.set(std::time::Instant::now());
        let acks_late = request.options.acks_late;
        tracked.started(!acks_late, abort);
        // Acked early: tracked, so that a cold shutdown publishes it again.
        let guard = (!acks_late).then(|| services.running.track(&delivery));
        if !acks_late {
            request.settle(Settlement::Ack).await;
        }
        request.emit(TaskEventKind::Started);
        if let Some(address) = request.address.as_ref() {
            if request.options.results.started {
                // Stored before the outcome is (the outcome waits for this future).
                services.results.started(address).await;
            }
        }
        guard
    };
    let ending = run_in_slot(
        &services.pool,
        prepared,
        limits,
        !task.blocking(),
        gate,
        early_ack,
    )
    .await;
    if let (Some(window), Some(at)) = (&services.window, started_at.get()) {
        window.ran(at.elapsed());
    }

    // Decide, then carry it out.
    request.finish(ending).await;
}

/// Revoked, or expired, before it ran: how it ends; `None` when it may run.
fn not_to_run(services: &Services, id: &str, expires: Option<DateTime<Utc>>) -> Option<Ending> {
    if services.worker_state.is_revoked(id) {
        Some(Ending::Revoked)
    } else if expires.is_some_and(|at| at <= Utc::now()) {
        Some(Ending::Expired)
    } else {
        None
    }
}

/// Holds the delivery in the worker until `until` (or its revocation); how it ends when it
/// cannot run after that: requeued when the worker began stopping, nothing to settle when
/// its channel closed meanwhile.
async fn wait(
    request: &Request<'_>,
    until: DateTime<Utc>,
    draining: tokio::sync::watch::Receiver<bool>,
) -> Option<Ending> {
    let services = request.services;
    let id = request.id.as_deref().unwrap_or_default();
    let due = hold_until(
        &services.eta,
        request.delivery,
        until,
        draining,
        services.worker_state.wait_revoked(id),
    )
    .await;
    if !due {
        Some(Ending::Requeued)
    } else if !request.delivery.acker.is_usable() {
        Some(Ending::ChannelGone)
    } else {
        None
    }
}

/// Rejects, without requeue, a message that cannot be read as a task (too large,
/// malformed), logging it with whatever identity its headers give.
async fn reject_unreadable(delivery: &Arc<Delivery>, services: &Services, reason: String) {
    let (id, name) = TaskMessage::peek_identity(&delivery.properties);
    log::error!(
        "rejecting message {} (task {}) from queue \"{}\": {}",
        clip(id.as_deref().unwrap_or("without id")),
        clip(name.as_deref().unwrap_or("unknown")),
        delivery.queue,
        clip(&reason)
    );
    let request = Request {
        delivery,
        services,
        id,
        name,
        retries: 0,
        options: EffectiveOptions::default(),
        address: None,
        workflow: None,
        v1_copy: None,
        hooks: None,
    };
    request.finish(Ending::Unreadable { reason }).await;
}
