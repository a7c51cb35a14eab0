//! Carries out a [`Plan`]: the only place where the end of a delivery's processing does
//! I/O (publish, store, settle, events).

use std::sync::Arc;

use super::super::events::TaskEventKind;
use super::super::results::ResultAddress;
use super::super::retry::republish_for_retry;
use super::super::workflow::Workflow;
use super::disposition::{disposition, Context, Ending, Hook, Plan, Store, WorkflowStep};
use super::options::EffectiveOptions;
use super::Services;
use crate::actors::{Delivery, Settlement};
use crate::protocol::TaskMessage;
use crate::task::{ErasedTask, TaskContext};

/// One delivery being processed: what carrying out its plan needs.
pub(super) struct Request<'a> {
    /// The delivery.
    pub(super) delivery: &'a Arc<Delivery>,
    /// The worker's services.
    pub(super) services: &'a Services,
    /// The task's id, when known.
    pub(super) id: Option<String>,
    /// The task's name, when known.
    pub(super) name: Option<String>,
    /// Retries the message had already.
    pub(super) retries: u32,
    /// The options it runs with.
    pub(super) options: EffectiveOptions,
    /// Where results go; `None` when none is stored.
    pub(super) address: Option<ResultAddress>,
    /// Callbacks, errbacks, chain and chord around the task; `None` for a lone task.
    pub(super) workflow: Option<Workflow>,
    /// A protocol v1 message has no headers to update for a retry: what re-encoding needs.
    pub(super) v1_copy: Option<TaskMessage>,
    /// The task and the context its hooks get, once it was prepared.
    pub(super) hooks: Option<(&'a dyn ErasedTask, TaskContext)>,
}

impl Request<'_> {
    /// Sends a task event about this request.
    pub(super) fn emit(&self, kind: TaskEventKind) {
        self.services.events.emit(
            self.id.as_deref(),
            self.name.as_deref(),
            &self.delivery.queue,
            kind,
        );
    }

    /// Settles the delivery (see [`settle`]).
    pub(super) async fn settle(&self, settlement: Settlement) {
        settle(self.delivery, settlement, self.id.as_deref()).await;
    }

    /// The pure decision's context for this request, now.
    fn context(&self) -> Context<'_> {
        Context {
            name: self.name.as_deref().unwrap_or("unknown"),
            id: self.id.as_deref().unwrap_or("?"),
            retries: self.retries,
            now: chrono::Utc::now(),
            jitter: fastrand::f64(),
            log_level: log::max_level(),
        }
    }

    /// Decides what `ending` means for this request and carries it out.
    pub(super) async fn finish(&self, ending: Ending) {
        log::debug!(
            "task {}[{}]: {}",
            crate::log_text::clip(self.name.as_deref().unwrap_or("unknown")),
            crate::log_text::clip(self.id.as_deref().unwrap_or("?")),
            ending.label()
        );
        let plan = disposition(ending, &self.options, self.context());
        self.apply(plan).await;
    }

    /// Carries out `plan`, in its order: republish, workflow dispatch, store, workflow,
    /// hook, settle, event. A retry that cannot be published is decided again.
    async fn apply(&self, mut plan: Plan) {
        if let Some(eta) = plan.republish.take() {
            let republished = republish_for_retry(
                &self.services.producer,
                self.delivery,
                self.id.as_deref().unwrap_or_default(),
                eta,
                self.v1_copy.clone(),
            )
            .await;
            if let Err(failure) = republished {
                let error = match plan.hook {
                    Some(Hook::Retry(error) | Hook::Failure(error)) => error,
                    None => crate::task::TaskError::runtime_error("retry"),
                };
                let ending = Ending::RetryNotPublished {
                    error,
                    failure: failure.to_string(),
                };
                plan = disposition(ending, &self.options, self.context());
            }
        }
        for (level, line) in &plan.log {
            log::log!(*level, "{line}");
        }
        let services = self.services;
        if let (Some(WorkflowStep::Succeeded(result)), Some(workflow)) =
            (&plan.workflow, &self.workflow)
        {
            // As Celery: callbacks and the next chain step go out before the result is
            // stored; the chord is told after.
            workflow.dispatch(services, result).await;
        }
        if let (Some(store), Some(address)) = (plan.store, &self.address) {
            let rules = self.options.results;
            match store {
                Store::Success(value) if rules.success => {
                    services.results.success(address, value).await;
                }
                Store::Exception(state, exception) if rules.errors => {
                    services.results.exception(address, state, &exception).await;
                }
                _ => {}
            }
        }
        if let (Some(step), Some(workflow)) = (&plan.workflow, &self.workflow) {
            match step {
                WorkflowStep::Succeeded(result) => workflow.succeeded(services, result).await,
                WorkflowStep::Failed(state, exception) => {
                    workflow.failed(services, *state, exception).await;
                }
            }
        }
        if let (Some(hook), Some((task, context))) = (&plan.hook, &self.hooks) {
            match hook {
                Hook::Failure(error) => task.on_failure(context, error),
                Hook::Retry(error) => task.on_retry(context, error),
            }
        }
        if let Some(settlement) = plan.settle {
            self.settle(settlement).await;
        }
        if let Some(event) = plan.event {
            self.emit(event);
        }
    }
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
