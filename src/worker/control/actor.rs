//! `PidboxActor`: receives the deliveries of the node's pidbox queue (consumed under a
//! `ConsumerSupervisor` of its own, so it is restarted and declared again after a
//! reconnection), answers each request with the pure functions of `commands`, applies
//! what they decide and publishes the reply.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::commands::{answer_to, marks_revoked, Action, NodeInfo};
use super::node::{kombu_queue, reply_exchange};
use super::request::{decide, ControlRequest, RequestHeaders, Skip};
use crate::actors::amqp::{AMQPValue, BasicProperties, FieldTable, LongString};
use crate::actors::consumer::Deliver;
use crate::actors::supervisor::Supervise;
use crate::actors::{BrokerClient, ConsumerSpec, ConsumerSupervisor, OutboundMessage, Settlement};
use crate::app::Config;
use crate::backend::redis::RedisResults;
use crate::log_text::clip;
use crate::protocol::{ExceptionInfo, ResultMessage, TaskState};
use crate::worker::state::{now_epoch, WorkerState};

/// What the actor acts on besides the state.
pub(crate) struct ControlHooks {
    /// Publishes replies, declares reply exchanges and added queues.
    pub(crate) broker: BrokerClient,
    /// The task consumers' supervisor (`add_consumer`).
    pub(crate) supervisor: Addr<ConsumerSupervisor>,
    /// Set by `shutdown`; `WorkerSystem::run_until_signal` watches it.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Where revoked ids are kept across restarts (`CELERIAC_STATE_DB`).
    pub(crate) state_db: Option<PathBuf>,
    /// For the declarations of queues added at run time.
    pub(crate) config: Config,
    /// Sends a `worker-heartbeat` event (the `heartbeat` command).
    pub(crate) heartbeat: Recipient<crate::monitor::SendHeartbeat>,
    /// The Redis result backend, where `revoke` stores REVOKED for tasks not running here
    /// (`None`: no backend that keeps states).
    pub(crate) results: Option<RedisResults>,
}

/// Stores a REVOKED result for each of `ids` whose stored state allows it
/// (`commands::marks_revoked`); a state that cannot be read (a custom state such as
/// PROGRESS, or Redis failing) leaves the task alone, as Celery does.
async fn store_revoked(results: RedisResults, ids: Vec<String>) {
    for id in ids {
        let stored = match results.document(&id).await {
            Ok(document) => document.map(|document| document.status),
            Err(error) => {
                log::warn!("revoke: the state of {id} is not marked as revoked: {error}");
                continue;
            }
        };
        if !marks_revoked(stored) {
            continue;
        }
        let document = ResultMessage::exception(
            id.as_str(),
            TaskState::Revoked,
            &ExceptionInfo::revoked("revoked"),
            None,
        );
        if let Err(error) = results.store(document).await {
            log::warn!("revoke: cannot store REVOKED for {id}: {error}");
        }
    }
}

/// Answers remote-control requests.
pub(crate) struct PidboxActor {
    state: Arc<WorkerState>,
    node: NodeInfo,
    hooks: Arc<ControlHooks>,
    /// Reply exchanges declared so far.
    declared: HashSet<String>,
}

impl PidboxActor {
    /// An actor answering for `state`'s node.
    pub(crate) fn new(state: Arc<WorkerState>, node: NodeInfo, hooks: ControlHooks) -> Self {
        PidboxActor {
            state,
            node,
            hooks: Arc::new(hooks),
            declared: HashSet::new(),
        }
    }

    /// Applies what a command decided.
    fn apply(&mut self, action: Action, ctx: &mut Context<Self>) {
        match action {
            Action::None => {}
            Action::Revoke { ids, terminate, .. } => {
                let stopped = self.state.revoke(&ids, terminate);
                log::info!(
                    "tasks flagged as revoked: {}{}",
                    clip(&ids.join(", ")),
                    if stopped.is_empty() {
                        String::new()
                    } else {
                        format!(" (terminated: {})", stopped.join(", "))
                    }
                );
                if let Some(path) = self.hooks.state_db.clone() {
                    let entries = self.state.revoked_entries();
                    ctx.spawn(
                        async move {
                            let written = actix_rt::task::spawn_blocking(move || {
                                super::super::state_db::save(&path, &entries)
                                    .map_err(|error| format!("{}: {error}", path.display()))
                            })
                            .await;
                            match written {
                                Ok(Ok(())) => {}
                                Ok(Err(error)) => log::error!("cannot write the state db {error}"),
                                Err(error) => log::error!("cannot write the state db: {error}"),
                            }
                        }
                        .into_actor(self),
                    );
                }
            }
            Action::RateLimit { task, rate } => {
                log::info!(
                    "rate limit of {task}: {}",
                    rate.as_ref().map_or("off", |(text, _)| text.as_str())
                );
                self.state.set_rate_limit(&task, rate);
            }
            Action::TaskEvents(on) => {
                if on {
                    self.state.task_events().enable();
                } else {
                    self.state.task_events().disable();
                }
                log::info!("task events {}", if on { "enabled" } else { "disabled" });
            }
            Action::Heartbeat => {
                log::debug!("heartbeat requested by remote");
                self.hooks.heartbeat.do_send(crate::monitor::SendHeartbeat);
            }
            Action::AddConsumer(queue) => {
                let spec = self.hooks.config.queue_spec(&queue);
                // Listed at once, as Celery's `add_task_queue` selects it before consuming;
                // a queue consumed already is left alone.
                if !self.node.queues.add(kombu_queue(&spec)) {
                    log::info!("add_consumer {queue}: already consuming from it");
                    return;
                }
                let hooks = self.hooks.clone();
                let name = queue.clone();
                ctx.spawn(
                    async move {
                        let quorum = matches!(
                            spec.arguments.inner().get("x-queue-type"),
                            Some(AMQPValue::LongString(kind)) if kind.to_string() == "quorum"
                        );
                        if let Err(error) = hooks.broker.declare_queue(spec.clone()).await {
                            log::error!("add_consumer {queue}: {error}");
                            return false;
                        }
                        let supervised = hooks.supervisor.send(Supervise(ConsumerSpec {
                            queue: queue.clone(),
                            prefetch: hooks.config.prefetch(),
                            declare: Some(spec),
                            global_qos: !quorum,
                        }));
                        match supervised.await {
                            Ok(()) => {
                                log::info!("now consuming from {queue} (add_consumer)");
                                true
                            }
                            Err(error) => {
                                log::error!("add_consumer {queue}: {error}");
                                false
                            }
                        }
                    }
                    .into_actor(self)
                    .map(move |consuming, actor, _| {
                        if !consuming {
                            actor.node.queues.remove(&name);
                        }
                    }),
                );
            }
            Action::CancelConsumer(queue) => {
                if !self.node.queues.remove(&queue) {
                    log::info!("cancel_consumer {queue}: not consuming from it");
                    return;
                }
                let supervisor = self.hooks.supervisor.clone();
                ctx.spawn(
                    async move {
                        let stopped = supervisor
                            .send(crate::actors::supervisor::StopConsumer {
                                queue: queue.clone(),
                            })
                            .await;
                        match stopped {
                            Ok(()) => {
                                log::info!("no longer consuming from {queue} (cancel_consumer)")
                            }
                            Err(error) => log::error!("cancel_consumer {queue}: {error}"),
                        }
                    }
                    .into_actor(self),
                );
            }
            Action::Shutdown => {
                log::warn!("Got shutdown from remote");
                self.hooks.shutdown.send_replace(true);
            }
        }
    }

    /// Publishes `reply` (declaring the reply exchange first, once).
    fn reply(
        &mut self,
        request: &ControlRequest,
        reply: Value,
        clock: u64,
        ctx: &mut Context<Self>,
    ) {
        let Some(reply_to) = request.reply_to.clone() else {
            return;
        };
        let mut body = Map::new();
        body.insert(self.state.hostname().to_string(), reply);
        let body = match serde_json::to_vec(&Value::Object(body)) {
            Ok(body) => body,
            Err(error) => {
                log::error!(
                    "control reply to {}: cannot encode it: {error}",
                    request.method
                );
                return;
            }
        };
        let mut headers = FieldTable::default();
        if let Some(ticket) = &request.ticket {
            headers.insert(
                "ticket".into(),
                AMQPValue::LongString(LongString::from(ticket.as_str())),
            );
        }
        headers.insert(
            "clock".into(),
            AMQPValue::LongLongInt(i64::try_from(clock).unwrap_or(i64::MAX)),
        );
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(1)
            .with_headers(headers);
        let message = OutboundMessage {
            exchange: reply_to.exchange.clone(),
            routing_key: reply_to.routing_key.clone(),
            properties,
            body,
        };
        let declare = self
            .declared
            .insert(reply_to.exchange.clone())
            .then(|| reply_exchange(&reply_to.exchange));
        let broker = self.hooks.broker.clone();
        let method = request.method.clone();
        ctx.spawn(
            async move {
                if let Some(exchange) = declare {
                    if let Err(error) = broker.declare_exchange(exchange).await {
                        log::warn!("control reply to {method}: {error}");
                        return;
                    }
                }
                // The client's reply queue may be gone (it stopped waiting): not an error
                // of ours.
                if let Err(error) = broker.publish(message).await {
                    log::info!("control reply to {method} not delivered: {error}");
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for PidboxActor {
    type Context = Context<Self>;
}

impl Handler<Deliver> for PidboxActor {
    type Result = ();

    fn handle(&mut self, Deliver(delivery): Deliver, ctx: &mut Context<Self>) {
        // Settled at once: a request is handled once or not at all (kombu consumes pidbox
        // queues with no_ack).
        let acker = delivery.acker.clone();
        ctx.spawn(
            async move {
                if let Err(error) = acker.settle(Settlement::Ack).await {
                    log::debug!("control request: ack failed: {error}");
                }
            }
            .into_actor(self),
        );
        let request: ControlRequest = match serde_json::from_slice(&delivery.body) {
            Ok(request) => request,
            Err(error) => {
                log::warn!(
                    "malformed control request dropped ({error}): {}",
                    clip(&String::from_utf8_lossy(&delivery.body))
                );
                return;
            }
        };
        let headers = RequestHeaders::from_table(delivery.properties.headers().as_ref());
        let clock = self.state.tick(headers.clock);
        match decide(&request, &headers, self.state.hostname(), now_epoch()) {
            Ok(()) => {}
            Err(Skip::NotForUs) => return,
            Err(Skip::Expired) => {
                log::info!("control request {} expired: ignored", clip(&request.method));
                return;
            }
            Err(Skip::UnsupportedMatcher(matcher)) => {
                log::warn!(
                    "control request {} uses matcher {matcher:?}: only glob is supported; ignored",
                    clip(&request.method)
                );
                return;
            }
        }
        log::debug!("control request {}", clip(&request.method));
        let answer = answer_to(
            &request.method,
            &request.arguments,
            &self.node,
            &self.state.snapshot(),
        );
        if answer.reply.get("error").is_some() {
            log::warn!(
                "control command {} failed: {}",
                clip(&request.method),
                answer.reply
            );
        }
        // A revoke answers once the results of the tasks not running here are REVOKED
        // (Celery 5.7 replies after `mark_as_revoked`): a client that waited for the reply
        // reads REVOKED.
        let marking = match (&answer.action, &self.hooks.results) {
            (Action::Revoke { mark, .. }, Some(results)) if !mark.is_empty() => {
                Some(store_revoked(results.clone(), mark.clone()))
            }
            _ => None,
        };
        match marking {
            None => {
                self.reply(&request, answer.reply, clock, ctx);
                self.apply(answer.action, ctx);
            }
            Some(marking) => {
                self.apply(answer.action, ctx);
                let reply = answer.reply;
                ctx.spawn(
                    marking
                        .into_actor(self)
                        .map(move |(), actor, ctx| actor.reply(&request, reply, clock, ctx)),
                );
            }
        }
    }
}
