//! `WorkerSystem`: builds and starts the actors of a worker for a set of queues and tasks,
//! and stops them in order.
//!
//! Start order: queues declared, executor pool, dispatcher, consumer supervisor, one
//! consumer per queue. Async task code runs on the worker's arbiter, beside the consumers
//! (no thread hop per task); blocking work belongs in `BlockingTask`s, which run on the
//! blocking pool. `Config::pool_on_own_thread` moves async task code to an arbiter of its
//! own instead, so that a CPU-heavy async task cannot stall the consumers.
//! Stop order (warm): consumers cancelled, ETA tasks requeued, waiting jobs requeued,
//! running tasks finish, every message settled, broker connection closed.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::watch;

use super::control::{node_info, pidbox_queue, ControlHooks, PidboxActor};
use super::dispatcher::{BeginDrain, Dispatcher, WaitIdle};
use super::eta::{EtaScheduler, HoldLimits};
use super::events::{EventSink, TaskEvent};
use super::pipeline::{RunningTasks, Services, WorkerDefaults};
use super::results::{BackendKind, Destination, ResultStore};
use super::state::WorkerState;
use super::window::{AdaptiveWindow, Bounds};
use super::WorkerError;
use crate::actors::broker::FlushAcks;
use crate::actors::executor::{Drain, GetPoolStatus, PoolStatus};
use crate::actors::supervisor::{StopConsumers, SubscribeSupervisor, Supervise};
use crate::actors::{
    BrokerClient, ConsumerSpec, ConsumerSupervisor, ExecutorPool, OutboundMessage, QueueSpec,
    RestartPolicy, SupervisorEvent,
};
use crate::app::{Config, Producer, QueueConfig};
use crate::backend::redis::{RedisBackendConfig, RedisResults};
use crate::monitor::publisher::{EventPublisher, StopEvents};
use crate::monitor::TaskEvents;
use crate::task::{AppState, Blocking, BlockingTask, Task, TaskRegistry};

/// How long a warm stop waits for the last task events and worker-offline.
const STOP_EVENTS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Configures a `WorkerSystem`.
pub struct WorkerBuilder {
    broker: BrokerClient,
    config: Config,
    queues: Vec<String>,
    registry: TaskRegistry,
    restart_policy: RestartPolicy,
    task_listeners: Vec<Recipient<TaskEvent>>,
    supervisor_listeners: Vec<Recipient<SupervisorEvent>>,
    /// Whether `stop` closes the broker connection (off when the broker is shared).
    close_broker_on_stop: bool,
    /// Application state for the tasks, by type.
    app_data: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// A Beat to run alongside (Celery's `worker -B`).
    beat: Option<crate::beat::Beat>,
}

impl WorkerBuilder {
    /// Runs `beat` in this worker (Celery's `worker -B`): it starts with the worker, on its
    /// broker connection, and stops first when the worker stops. Several workers may run the
    /// same beat: one leads.
    pub fn beat(mut self, beat: crate::beat::Beat) -> Self {
        self.beat = Some(beat);
        self
    }

    /// Consumes a queue declared with `config` (priorities, quorum, dead-lettering);
    /// producers built from the same `Config` should list it in `Config::queues` too.
    pub fn queue_config(mut self, config: QueueConfig) -> Self {
        self.queues.push(config.name.clone());
        self.config.queues.retain(|known| known.name != config.name);
        self.config.queues.push(config);
        self
    }

    /// Registers a blocking task: it runs on the blocking thread pool.
    pub fn register_blocking<T: BlockingTask>(self) -> Self {
        self.register::<Blocking<T>>()
    }

    /// Shares `value` with every task, which reads it with `ctx.data::<T>()` (one value per
    /// type; a second registration of the same type replaces the first).
    pub fn app_data<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.app_data.insert(TypeId::of::<T>(), Arc::new(value));
        self
    }
    /// Consumes `queue` too (the default queue of the config when none is given).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(queue.into());
        self
    }

    /// Registers task `T`.
    pub fn register<T: Task>(mut self) -> Self {
        self.registry.register::<T>();
        self
    }

    /// Sets how failed consumers are restarted.
    pub fn restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.restart_policy = policy;
        self
    }

    /// Sends every `TaskEvent` to `listener`.
    pub fn on_task_event(mut self, listener: Recipient<TaskEvent>) -> Self {
        self.task_listeners.push(listener);
        self
    }

    /// Sends every consumer `SupervisorEvent` to `listener`.
    pub fn on_supervisor_event(mut self, listener: Recipient<SupervisorEvent>) -> Self {
        self.supervisor_listeners.push(listener);
        self
    }

    /// Whether `stop` closes the broker connection (default true). Turn it off when a
    /// producer in the same process keeps using the broker.
    pub fn close_broker_on_stop(mut self, close: bool) -> Self {
        self.close_broker_on_stop = close;
        self
    }

    /// Declares the queues and starts the actors. Must run inside an actix system.
    pub async fn start(mut self) -> Result<WorkerSystem, WorkerError> {
        if self.queues.is_empty() {
            self.queues.push(self.config.default_queue.clone());
        }
        if self.registry.names().is_empty() {
            return Err(WorkerError::NoTasks);
        }
        let backend = BackendKind::parse(self.config.result_backend.as_deref())
            .map_err(|backend| WorkerError::UnsupportedResultBackend { backend })?;
        let destination = match backend {
            BackendKind::Disabled => Destination::Disabled,
            BackendKind::Rpc => Destination::Rpc,
            // Connected (and PINGed) now: a wrong address or password fails the start clearly.
            BackendKind::Redis => Destination::Redis(Box::new(
                RedisResults::connect(RedisBackendConfig::from_config(&self.config)?).await?,
            )),
        };
        // The pidbox actor stores REVOKED for revoked tasks not running here.
        let control_results = match &destination {
            Destination::Redis(results) => Some(results.as_ref().clone()),
            _ => None,
        };
        let specs: Vec<QueueSpec> = self
            .queues
            .iter()
            .map(|queue| self.config.queue_spec(queue))
            .collect();
        // First: a second live worker of the same name is refused before it takes tasks.
        let pidbox = pidbox_queue(&self.config.hostname);
        self.broker
            .declare_queue(pidbox.clone())
            .await
            .map_err(|error| node_name_in_use(&self.config.hostname, error))?;
        for spec in &specs {
            self.broker.declare_queue(spec.clone()).await?;
        }
        let concurrency = self.config.concurrency;
        let (pool, pool_arbiter) = if self.config.pool_on_own_thread {
            let arbiter = Arbiter::new();
            let pool = ExecutorPool::start_in_arbiter(&arbiter.handle(), move |_| {
                ExecutorPool::new(concurrency)
            });
            (pool, Some(arbiter))
        } else {
            (ExecutorPool::new(concurrency).start(), None)
        };
        let defaults = WorkerDefaults {
            acks_late: self.config.acks_late,
            acks_on_failure_or_timeout: self.config.acks_on_failure_or_timeout,
            time_limit: self.config.time_limit,
            soft_time_limit: self.config.soft_time_limit,
            decode: self.config.decode_policy(),
            ignore_result: self.config.ignore_result,
            store_errors_even_if_ignored: self.config.store_errors_even_if_ignored,
            track_started: self.config.track_started,
        };
        let running = RunningTasks::default();
        let revoked = match &self.config.state_db {
            Some(path) => super::state_db::load(path, super::state::now_epoch()),
            None => Default::default(),
        };
        // Worker events always; task events while the switch is on (Celery's -E), which the
        // enable_events / disable_events commands flip.
        let task_events = TaskEvents::new(self.config.send_events);
        let worker_state = Arc::new(WorkerState::new(
            &self.config.hostname,
            revoked,
            task_events.clone(),
        ));
        let node = node_info(&self.config, &self.registry, &specs);
        let producer = Arc::new(Producer::new(self.broker.clone(), &self.config));
        let state = AppState::new(std::mem::take(&mut self.app_data));
        let registry = Arc::new(self.registry.clone());
        let publisher = EventPublisher::new(
            self.broker.clone(),
            &self.config.hostname,
            task_events.clone(),
            worker_state.clock().clone(),
        )
        .start();
        let mut listeners = std::mem::take(&mut self.task_listeners);
        listeners.push(publisher.clone().recipient());
        let events = EventSink::new(listeners, task_events.clone());
        let broker = self.broker.clone();
        let policy = self.restart_policy.clone();
        let eta_limits = HoldLimits {
            horizon: self.config.eta_horizon,
            count: self.config.eta_task_limit,
            bytes: self.config.eta_task_bytes_limit,
        };
        let hostname = self.config.hostname.clone();
        let mut supervisor_slot = None;
        let dispatcher = Dispatcher::create(|ctx| {
            let supervisor =
                ConsumerSupervisor::new(broker.clone(), ctx.address().recipient(), policy).start();
            supervisor_slot = Some(supervisor.clone());
            // No multiplier set: the window adapts to the tasks' run times.
            let window = self.config.prefetch_multiplier.is_none().then(|| {
                Arc::new(AdaptiveWindow::new(
                    Bounds::for_concurrency(concurrency),
                    supervisor.clone().recipient(),
                ))
            });
            Dispatcher::new(Services {
                registry,
                pool: pool.clone(),
                events,
                results: ResultStore::new(
                    destination,
                    broker.clone(),
                    &hostname,
                    self.config.result_extended,
                ),
                eta: EtaScheduler::new(broker, supervisor, eta_limits),
                defaults,
                state,
                producer,
                running: running.clone(),
                worker_state: worker_state.clone(),
                window,
            })
        });
        let supervisor = supervisor_slot.ok_or(WorkerError::Broker(
            crate::actors::BrokerError::Mailbox("the consumer supervisor did not start".into()),
        ))?;
        let (gave_up_tx, gave_up) = watch::channel(None);
        let watcher = GiveUpWatch {
            gave_up: gave_up_tx,
        }
        .start();
        supervisor
            .send(SubscribeSupervisor(watcher.clone().recipient()))
            .await?;
        for listener in self.supervisor_listeners {
            supervisor.send(SubscribeSupervisor(listener)).await?;
        }
        let prefetch = self.config.prefetch();
        for spec in specs {
            // Quorum queues refuse channel-wide QoS, so their window cannot be widened.
            let quorum = matches!(
                spec.arguments.inner().get("x-queue-type"),
                Some(crate::actors::amqp::AMQPValue::LongString(kind)) if kind.to_string() == "quorum"
            );
            supervisor
                .send(Supervise(ConsumerSpec {
                    queue: spec.name.clone(),
                    prefetch,
                    declare: Some(spec),
                    global_qos: !quorum,
                }))
                .await?;
        }
        let (shutdown_tx, shutdown) = watch::channel(false);
        let control = PidboxActor::new(
            worker_state.clone(),
            node,
            ControlHooks {
                broker: self.broker.clone(),
                supervisor: supervisor.clone(),
                shutdown: shutdown_tx,
                state_db: self.config.state_db.clone(),
                config: self.config.clone(),
                heartbeat: publisher.clone().recipient(),
                results: control_results,
            },
        )
        .start();
        let pidbox_supervisor = ConsumerSupervisor::new(
            self.broker.clone(),
            control.recipient(),
            self.restart_policy.clone(),
        )
        .start();
        pidbox_supervisor
            .send(SubscribeSupervisor(watcher.recipient()))
            .await?;
        pidbox_supervisor
            .send(Supervise(ConsumerSpec {
                queue: pidbox.name.clone(),
                prefetch: PIDBOX_PREFETCH,
                declare: Some(pidbox),
                global_qos: false,
            }))
            .await?;
        log::info!(
            "worker started: queues {:?}, tasks {:?}, concurrency {}, prefetch {}{}",
            self.queues,
            self.registry.names(),
            concurrency,
            prefetch,
            if self.config.prefetch_multiplier.is_none() {
                " (adaptive)"
            } else {
                ""
            }
        );
        let beat = self
            .beat
            .map(|beat| beat.start(self.broker.clone(), &self.config));
        Ok(WorkerSystem {
            beat,
            broker: self.broker,
            supervisor,
            dispatcher,
            pool,
            pool_arbiter,
            gave_up,
            close_broker_on_stop: self.close_broker_on_stop,
            running,
            shutdown_timeout: self.config.shutdown_timeout,
            pidbox_supervisor,
            shutdown,
            worker_state,
            state_db: self.config.state_db.clone(),
            task_events,
            publisher,
        })
    }
}

/// The pidbox consumer's prefetch window (requests are acked as soon as they arrive).
const PIDBOX_PREFETCH: u16 = 16;

/// A 405 RESOURCE_LOCKED on the pidbox queue: another live worker has this node name.
fn node_name_in_use(hostname: &str, error: crate::actors::BrokerError) -> WorkerError {
    let text = error.to_string();
    if text.contains("RESOURCE_LOCKED") || text.contains("405") {
        WorkerError::NodeNameInUse {
            hostname: hostname.to_string(),
        }
    } else {
        WorkerError::Broker(error)
    }
}

/// Records the first consumer the supervisor gave up on.
struct GiveUpWatch {
    gave_up: watch::Sender<Option<(String, String)>>,
}

impl Actor for GiveUpWatch {
    type Context = Context<Self>;
}

impl Handler<SupervisorEvent> for GiveUpWatch {
    type Result = ();

    fn handle(&mut self, event: SupervisorEvent, _: &mut Context<Self>) {
        if let SupervisorEvent::GaveUp { queue, reason } = event {
            self.gave_up.send_if_modified(|current| {
                if current.is_none() {
                    *current = Some((queue, reason));
                    true
                } else {
                    false
                }
            });
        }
    }
}

/// A running worker.
pub struct WorkerSystem {
    /// The Beat running in this worker, if any (stopped first).
    beat: Option<crate::beat::BeatHandle>,
    broker: BrokerClient,
    supervisor: Addr<ConsumerSupervisor>,
    dispatcher: Addr<Dispatcher>,
    pool: Addr<ExecutorPool>,
    /// The arbiter task code runs on, when it has one of its own; stopped last.
    pool_arbiter: Option<Arbiter>,
    /// Set when the supervisor gave up on a consumer: the worker then has to exit.
    gave_up: watch::Receiver<Option<(String, String)>>,
    close_broker_on_stop: bool,
    /// Early-acked deliveries still running: published again by a cold shutdown.
    running: RunningTasks,
    /// How long a warm shutdown may take before it turns cold.
    shutdown_timeout: std::time::Duration,
    /// Supervises the pidbox (remote control) consumer.
    pidbox_supervisor: Addr<ConsumerSupervisor>,
    /// Turns true on the remote `shutdown` command.
    shutdown: watch::Receiver<bool>,
    /// What remote control reads (and revoke writes).
    worker_state: Arc<WorkerState>,
    /// Where the revoked ids are saved on stop.
    state_db: Option<std::path::PathBuf>,
    /// Whether task events are sent.
    task_events: TaskEvents,
    /// Publishes the worker's events; sends `worker-offline` at a warm stop.
    publisher: Addr<EventPublisher>,
}

impl WorkerSystem {
    /// Stops the Beat running in this worker, if any (it releases the lead).
    async fn stop_beat(&self) {
        if let Some(beat) = &self.beat {
            if let Err(error) = beat.clone().stop().await {
                log::warn!("stopping the worker's beat: {error}");
            }
        }
    }

    /// A worker consuming through `broker`, configured by `config`.
    pub fn builder(broker: BrokerClient, config: &Config) -> WorkerBuilder {
        WorkerBuilder {
            broker,
            config: config.clone(),
            queues: Vec::new(),
            registry: TaskRegistry::new(),
            restart_policy: RestartPolicy::default(),
            task_listeners: Vec::new(),
            supervisor_listeners: Vec::new(),
            close_broker_on_stop: true,
            app_data: HashMap::new(),
            beat: None,
        }
    }

    /// The consumer supervisor (to subscribe to its events; with the `fault-injection`
    /// feature, to break consumers).
    pub fn supervisor(&self) -> &Addr<ConsumerSupervisor> {
        &self.supervisor
    }

    /// Resolves when the remote `shutdown` command arrives (`run_until_signal` stops then).
    pub async fn shutdown_requested(&self) {
        let mut remote = self.shutdown.clone();
        let _ = remote.wait_for(|asked| *asked).await;
    }

    /// Writes the revoked ids to the state db, if there is one.
    fn save_state(&self) {
        if let Some(path) = &self.state_db {
            if let Err(error) = super::state_db::save(path, &self.worker_state.revoked_entries()) {
                log::error!("cannot write the state db {}: {error}", path.display());
            }
        }
    }

    /// The run-time switch of this worker's task events (`Config::send_events` at start):
    /// `enable()`, `disable()`, `enabled()`.
    pub fn task_events(&self) -> TaskEvents {
        self.task_events.clone()
    }

    /// How busy the executor pool is.
    pub async fn pool_status(&self) -> Result<PoolStatus, WorkerError> {
        Ok(self.pool.send(GetPoolStatus).await?)
    }

    /// Fault injection: closes the channel of `queue`'s consumer with a channel error.
    ///
    /// Only with the `fault-injection` feature: test-only, not part of the default API.
    #[cfg(feature = "fault-injection")]
    pub async fn break_consumer(&self, queue: &str) -> Result<(), WorkerError> {
        Ok(self
            .supervisor
            .send(crate::actors::supervisor::BreakConsumer {
                queue: queue.to_string(),
            })
            .await??)
    }

    /// Runs until SIGINT or SIGTERM, then stops: the first signal starts a warm shutdown
    /// (see `stop`); a second signal, or a warm shutdown longer than the configured
    /// `shutdown_timeout`, turns it cold (see `stop_cold`). Fails when a consumer could not
    /// be kept running (its supervisor gave up): the process should then exit non-zero.
    pub async fn run_until_signal(self) -> Result<(), WorkerError> {
        let mut terminate =
            actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate())
                .map_err(|error| WorkerError::Signal(error.to_string()))?;
        let mut gave_up = self.gave_up.clone();
        let mut remote = self.shutdown.clone();
        let outcome = tokio::select! {
            _ = remote.wait_for(|asked| *asked) => {
                log::info!("shutdown asked by remote control: warm shutdown");
                Ok(())
            }
            _ = actix_rt::signal::ctrl_c() => {
                log::info!("SIGINT received: warm shutdown (a second signal makes it cold)");
                Ok(())
            }
            _ = terminate.recv() => {
                log::info!("SIGTERM received: warm shutdown (a second signal makes it cold)");
                Ok(())
            }
            changed = gave_up.wait_for(Option::is_some) => {
                let (queue, reason) = changed
                    .ok()
                    .and_then(|value| value.clone())
                    .unwrap_or_default();
                Err(WorkerError::ConsumerGaveUp { queue, reason })
            }
        };
        let cold = Cold {
            broker: self.broker.clone(),
            supervisor: self.supervisor.clone(),
            running: self.running.clone(),
        };
        let timeout = self.shutdown_timeout;
        let warm = self.stop();
        tokio::pin!(warm);
        tokio::select! {
            stopped = tokio::time::timeout(timeout, &mut warm) => match stopped {
                Ok(stopped) => stopped?,
                Err(_) => {
                    log::warn!("warm shutdown took longer than {timeout:?}: cold shutdown");
                    cold.stop().await?;
                }
            },
            _ = actix_rt::signal::ctrl_c() => {
                log::warn!("second signal: cold shutdown");
                cold.stop().await?;
            }
            _ = terminate.recv() => {
                log::warn!("second signal: cold shutdown");
                cold.stop().await?;
            }
        }
        outcome
    }

    /// Warm shutdown: stops consuming, requeues what has not started, lets running tasks
    /// finish, settles every message, then closes the broker connection.
    pub async fn stop(self) -> Result<(), WorkerError> {
        self.stop_beat().await;
        self.pidbox_supervisor.send(StopConsumers).await?;
        self.supervisor.send(StopConsumers).await?;
        self.save_state();
        self.dispatcher.send(BeginDrain).await?;
        self.pool.send(Drain).await?;
        self.dispatcher.send(WaitIdle).await?;
        // Every message is settled: make sure the batched acks have reached the broker.
        self.broker.flush_acks.send(FlushAcks).await?;
        // Buffered task events, then worker-offline; a broker that is away does not hold
        // the stop for more than a few seconds (events are best effort).
        if tokio::time::timeout(STOP_EVENTS_WAIT, self.publisher.send(StopEvents))
            .await
            .is_err()
        {
            log::warn!("worker-offline not sent within {STOP_EVENTS_WAIT:?}: the broker is away");
        }
        if self.close_broker_on_stop {
            self.broker.close().await?;
        }
        if let Some(arbiter) = &self.pool_arbiter {
            arbiter.stop();
        }
        log::info!("worker stopped");
        Ok(())
    }

    /// Cold shutdown: stops at once. Tasks still running that were acked when they started
    /// are published again to their queue; everything unacked goes back to its queue when
    /// the connection closes. A task that was about to finish may so run twice
    /// (at-least-once); none is lost.
    pub async fn stop_cold(self) -> Result<(), WorkerError> {
        self.stop_beat().await;
        self.save_state();
        Cold {
            broker: self.broker.clone(),
            supervisor: self.supervisor.clone(),
            running: self.running.clone(),
        }
        .stop()
        .await?;
        if let Some(arbiter) = &self.pool_arbiter {
            arbiter.stop();
        }
        Ok(())
    }
}

/// What a cold shutdown needs.
struct Cold {
    broker: BrokerClient,
    supervisor: Addr<ConsumerSupervisor>,
    running: RunningTasks,
}

impl Cold {
    async fn stop(self) -> Result<(), WorkerError> {
        self.supervisor.send(StopConsumers).await?;
        let running = self.running.take();
        let count = running.len();
        let republished = running.iter().map(|delivery| {
            self.broker.publish(OutboundMessage {
                exchange: String::new(),
                routing_key: delivery.queue.clone(),
                properties: delivery.properties.clone(),
                body: delivery.body.clone(),
            })
        });
        for (outcome, delivery) in futures::future::join_all(republished)
            .await
            .into_iter()
            .zip(&running)
        {
            if let Err(error) = outcome {
                log::error!(
                    "cold shutdown: could not put a running task back in queue \"{}\": {error}",
                    delivery.queue
                );
            }
        }
        log::warn!("cold shutdown: {count} running task(s) put back in their queues");
        self.broker.close().await?;
        Ok(())
    }
}
