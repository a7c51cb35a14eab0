//! `AmqpBrokerActor`: owns the one lapin connection and mediates every channel operation.
//!
//! lapin runs on a multi-threaded tokio runtime of its own (one per process), not on the
//! actix arbiter that connected: a busy or stopped arbiter then cannot stall or silently
//! hang the connection. lapin's auto-recovery is enabled.
//!
//! | module | what it holds |
//! |---|---|
//! | `connect` | opening one connection: heartbeat, plain or TLS transport, connect timeout |
//! | `failover` | the nodes of a `;`-separated URL list, round-robin, the pause between attempts |
//! | `tls` | [`TlsConfig`]: trusted CAs and client certificate, the rustls connector |
//! | `redact` | [`redact_url`], [`scrub_password`]: passwords kept out of messages and `Debug` |
//! | `link` | the current connection and channels that follow it across reconnections |
//! | [`acks`] | batched acknowledgements per consumer channel |

pub mod acks;
mod connect;
mod exchange;
mod failover;
mod link;
mod redact;
mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, Event};
use tokio::sync::watch;

use self::connect::{connect_once, warn_if_tls_unused};
pub use self::failover::node_urls;
use self::failover::{pause_before, Nodes};
use self::link::{ChannelSlot, Link, LinkState};
pub use self::redact::{redact_url, scrub_password, RedactedUrl};
pub use self::tls::TlsConfig;
use super::{
    CancelConsumer, CloseBroker, CloseConsumer, ConnectionEvent, CountMessages, DeclareQueue,
    DeleteQueue, DeliveryStream, FlushAcks, OpenConsumer, PublishMessage, QueueSpec, SetPrefetch,
    SubscribeConnection,
};
use crate::backoff::{Backoff, Jitter};
use crate::delivery::{Acker, Delivery, OutboundMessage};
use crate::error::BrokerError;

/// How the broker actor reconnects after lapin's own recovery gave up: exponential
/// backoff with jitter, forever unless `max_attempts` says otherwise.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// Delay before the first attempt.
    pub initial_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Give up after this many failed attempts (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt `attempt` (0-based): doubling, capped, with up to 50%
    /// jitter so that many clients do not reconnect in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.backoff().delay(attempt)
    }

    /// The policy's delays as a [`Backoff`] (half jitter).
    pub fn backoff(&self) -> Backoff {
        Backoff {
            min: self.initial_delay,
            max: self.max_delay,
            jitter: Jitter::Half,
        }
    }
}

/// How to reach RabbitMQ. `Debug` masks the URL's password.
#[derive(Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (`%2f` is the default vhost), or `amqps://`
    /// for TLS (port 5671 by default); or the nodes of a cluster as Celery's `;`-separated
    /// list (`amqp://a;amqp://b;amqp://c`, see [`AmqpConfig::with_nodes`]): connecting tries
    /// them in order, and after a loss the next one, round-robin.
    pub url: String,
    /// Shown in RabbitMQ's management UI and `rabbitmqctl list_connections`.
    pub connection_name: String,
    /// How long `connect` (and each reconnection attempt) may take.
    pub connect_timeout: Duration,
    /// How long a publish (or a declaration) may wait for the broker while it is away
    /// before it fails with `BrokerError::Unavailable`.
    pub send_timeout: Duration,
    /// How the connection is rebuilt when lapin's recovery gives up.
    pub reconnect: ReconnectPolicy,
    /// The AMQP heartbeat asked of the broker (whole seconds; the lower of ours and the
    /// broker's wins). A connection silent for two heartbeats is taken as dead and recovered.
    /// Zero asks for none, and lapin then follows the broker's proposal (RabbitMQ: 60 s). A
    /// `heartbeat` in the URL's query takes precedence.
    pub heartbeat: Duration,
    /// Trusted CAs and client certificate for `amqps://` URLs.
    pub tls: TlsConfig,
}

impl AmqpConfig {
    /// A config for `url` with a 10-second connect timeout and a 60-second heartbeat.
    pub fn new(url: impl Into<String>) -> Self {
        AmqpConfig {
            url: url.into(),
            connection_name: "celeriac".into(),
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            reconnect: ReconnectPolicy::default(),
            heartbeat: Duration::from_secs(60),
            tls: TlsConfig::default(),
        }
    }

    /// A config for the nodes of a cluster, tried in order and round-robin after a failure
    /// (the list in code of Celery's `amqp://a;amqp://b`).
    pub fn with_nodes<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls: Vec<String> = nodes
            .into_iter()
            .map(|node| node.as_ref().trim().to_string())
            .collect();
        AmqpConfig::new(urls.join(";"))
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &RedactedUrl(&self.url))
            .field("connection_name", &self.connection_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("reconnect", &self.reconnect)
            .field("heartbeat", &self.heartbeat)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The actor that owns the RabbitMQ connection. Nothing else holds a `Connection`.
///
/// lapin recovers a dropped connection by itself (consumers and channels included); when
/// its recovery gives up, this actor connects again with its `ReconnectPolicy`, declares
/// the queues declared through it again, and tells subscribers. Meanwhile operations wait
/// (publishes and declarations up to `AmqpConfig::send_timeout`).
pub struct AmqpBrokerActor {
    config: AmqpConfig,
    /// The nodes of the broker URL and the one connected to (or tried last).
    nodes: Nodes,
    /// The URL of the node connected to (or tried last), password masked.
    url: String,
    /// Publishes where the connection stands; `link` reads it.
    state: watch::Sender<LinkState>,
    link: Link,
    /// The confirm-mode channel every publish goes through.
    publish_channel: ChannelSlot,
    /// The channel for declarations and deletions.
    topology_channel: ChannelSlot,
    /// The channel of each open consumer, a handle on the consumer and its ack task, by
    /// consumer tag.
    consumer_channels: HashMap<String, (Channel, lapin::Consumer, acks::AckSender)>,
    /// Consumers whose channel failed, kept until the connection closes. lapin 4.12 sends
    /// `basic.cancel` when the last handle on a consumer is dropped; if the channel was
    /// closed by the broker and is already forgotten, that fails with `InvalidChannel`
    /// and lapin then tears down and recovers the whole connection. Keeping one handle
    /// here avoids that; the cost is a few hundred bytes per failed consumer.
    retired_consumers: Vec<lapin::Consumer>,
    /// Queues declared through this actor, declared again after a reconnection.
    declared: HashMap<String, QueueSpec>,
    /// Told when the connection goes down and comes back.
    listeners: Vec<Recipient<ConnectionEvent>>,
    /// A reconnection is under way.
    reconnecting: bool,
    /// Subscribers were told the connection is down (by lapin's recovery or ours).
    reported_down: bool,
    /// Connections given up while lapin was still recovering them. Should lapin bring one
    /// back, its recovered consumers would take messages nobody reads: it is closed then.
    abandoned: Vec<Arc<Connection>>,
    /// Since when lapin has been recovering the current connection (it can hang there).
    recovering_since: Option<Instant>,
    /// Bumped whenever the connection is given up; consumer streams of an older
    /// generation then end with a `ConnectionLost` error, even if lapin left them hanging.
    generation: watch::Sender<u64>,
    /// Set once `CloseBroker` ran: every later request fails with `BrokerError::Closed`.
    closed: bool,
}

/// How often the actor checks whether lapin gave up on the connection.
const HEALTH_CHECK: Duration = Duration::from_millis(250);

/// How long lapin may spend recovering a connection before the actor gives up on it and
/// connects afresh. lapin 4.12 was seen to stay in its recovering state for good after a
/// cut; the actor's own reconnection (forever, with backoff) takes over from there.
const LAPIN_RECOVERY_GRACE: Duration = Duration::from_secs(10);

impl AmqpBrokerActor {
    /// Connects to RabbitMQ and starts the actor on the current arbiter.
    ///
    /// Fails with `BrokerError::ConnectTimeout` when the broker cannot be reached within
    /// `config.connect_timeout`, and with `BrokerError::Connect` when it refuses us.
    ///
    /// With several nodes (a `;`-separated list), each is tried once in order, and the first
    /// that accepts is used; the error then names every node and why it failed.
    pub async fn connect(config: AmqpConfig) -> Result<Addr<Self>, BrokerError> {
        warn_if_tls_unused(&config);
        let (connection, nodes) = connect_first(&config).await?;
        let connection = Arc::new(connection);
        let url = nodes.current_redacted();
        log::info!("connected to the broker at {url}");
        Ok(AmqpBrokerActor::create(|ctx| {
            ctx.set_mailbox_capacity(1024);
            ctx.add_stream(connection.events_listener());
            ctx.run_interval(HEALTH_CHECK, |actor, ctx| actor.check_health(ctx));
            let (state, receiver) = watch::channel(LinkState::Up(connection));
            let link = Link::new(receiver);
            AmqpBrokerActor {
                publish_channel: ChannelSlot::new(link.clone(), true),
                topology_channel: ChannelSlot::new(link.clone(), false),
                link,
                state,
                config,
                nodes,
                url,
                consumer_channels: HashMap::new(),
                retired_consumers: Vec::new(),
                declared: HashMap::new(),
                listeners: Vec::new(),
                reconnecting: false,
                reported_down: false,
                recovering_since: None,
                abandoned: Vec::new(),
                generation: watch::Sender::new(0),
                closed: false,
            }
        }))
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    /// The channel of the consumer with this tag, if it is open.
    fn consumer_channel(&self, consumer_tag: &str) -> Option<Channel> {
        self.consumer_channels
            .get(consumer_tag)
            .map(|(channel, _, _)| channel.clone())
    }

    /// Closes given-up connections that lapin brought back, and forgets those that are
    /// over for good.
    fn close_abandoned(&mut self, ctx: &mut Context<Self>) {
        let mut back = Vec::new();
        self.abandoned.retain(|connection| {
            let status = connection.status();
            if status.connected() {
                back.push(connection.clone());
                false
            } else {
                !(status.closed() || status.errored())
            }
        });
        for connection in back {
            log::info!("closing a connection given up earlier that lapin recovered after all");
            ctx.spawn(
                async move {
                    if let Err(error) = connection.close(200, "replaced".into()).await {
                        log::debug!("closing a replaced connection: {error}");
                    }
                }
                .into_actor(self),
            );
        }
    }

    /// Tells subscribers the connection is down, once per outage.
    fn report_down(&mut self, reason: String) {
        if !self.reported_down {
            self.reported_down = true;
            self.emit(ConnectionEvent::Down { reason });
        }
    }

    /// Tells subscribers the connection is back, if they were told it was down.
    fn report_up(&mut self) {
        if self.reported_down {
            self.reported_down = false;
            self.emit(ConnectionEvent::Up);
        }
    }

    fn emit(&self, event: ConnectionEvent) {
        for listener in &self.listeners {
            listener.do_send(event.clone());
        }
    }

    /// Starts reconnecting when lapin has given up on the connection.
    fn check_health(&mut self, ctx: &mut Context<Self>) {
        self.close_abandoned(ctx);
        if self.closed || self.reconnecting {
            return;
        }
        let (failed, recovering) = match &*self.state.borrow() {
            LinkState::Up(connection) => {
                let status = connection.status();
                (
                    status.errored() || status.closed(),
                    status.reconnecting() || status.connecting(),
                )
            }
            LinkState::Down(_) | LinkState::Closed(_) => (false, false),
        };
        if failed {
            self.reconnect(ctx, "lapin could not recover the connection".to_string());
            return;
        }
        if !recovering {
            self.recovering_since = None;
            return;
        }
        self.report_down("lapin is recovering the connection".to_string());
        if self.nodes.len() > 1 {
            // lapin recovers to the same node; with others to go to, go now (kombu's failover).
            self.reconnect(ctx, "the connection was lost".to_string());
            return;
        }
        let since = *self.recovering_since.get_or_insert_with(Instant::now);
        if since.elapsed() > LAPIN_RECOVERY_GRACE {
            self.reconnect(
                ctx,
                format!("lapin did not recover the connection within {LAPIN_RECOVERY_GRACE:?}"),
            );
        }
    }

    fn reconnect(&mut self, ctx: &mut Context<Self>, reason: String) {
        log::warn!(
            "broker connection to {} lost ({reason}); reconnecting",
            self.url
        );
        self.reconnecting = true;
        self.recovering_since = None;
        let given_up = self.state.send_replace(LinkState::Down(reason.clone()));
        if let LinkState::Up(connection) = given_up {
            // lapin may still bring it back, consumers included: it is closed if it does.
            self.abandoned.push(connection);
        }
        // End the consumer streams of the given-up connection, which lapin may leave hanging.
        self.generation.send_modify(|generation| *generation += 1);
        // The old connection's consumers are gone with it; their actors restart.
        let dead: Vec<_> = self
            .consumer_channels
            .drain()
            .map(|(_, (_, consumer, _))| consumer)
            .collect();
        self.retired_consumers.extend(dead);
        self.report_down(reason);
        let config = self.config.clone();
        let mut nodes = self.nodes.clone();
        let reconnecting = async move {
            let mut attempt = 0u32;
            let other_nodes = nodes.len() > 1;
            loop {
                actix_rt::time::sleep(pause_before(&config.reconnect, attempt, nodes.len())).await;
                // The next node first (the one lost is tried again last), round-robin.
                let node = nodes.advance().to_string();
                match connect_once(&config, &node, other_nodes).await {
                    Ok(connection) => return Ok((Arc::new(connection), nodes)),
                    Err(error) => {
                        attempt += 1;
                        log::warn!(
                            "reconnection attempt {attempt} (node {}) failed: {error}",
                            redact_url(&node)
                        );
                        if config
                            .reconnect
                            .max_attempts
                            .is_some_and(|max| attempt >= max)
                        {
                            return Err(format!("gave up after {attempt} attempts: {error}"));
                        }
                    }
                }
            }
        };
        ctx.spawn(reconnecting.into_actor(self).map(|outcome, actor, ctx| {
            actor.reconnecting = false;
            if actor.closed {
                return;
            }
            match outcome {
                Ok((connection, nodes)) => {
                    let lost = std::mem::replace(&mut actor.url, nodes.current_redacted());
                    actor.nodes = nodes;
                    if actor.url == lost {
                        log::info!("reconnected to the broker at {}", actor.url);
                    } else {
                        log::info!("failed over to the broker at {} (was {lost})", actor.url);
                    }
                    ctx.add_stream(connection.events_listener());
                    actor.state.send_replace(LinkState::Up(connection));
                    actor.retired_consumers.clear();
                    actor.redeclare(ctx);
                    actor.report_up();
                }
                Err(reason) => {
                    log::error!(
                        "the broker at {} stays unreachable: {reason}",
                        redact_url(&actor.config.url)
                    );
                    actor.state.send_replace(LinkState::Closed(reason.clone()));
                    actor.emit(ConnectionEvent::GaveUp { reason });
                }
            }
        }));
    }

    /// Declares again every queue declared through this actor (after a reconnection).
    fn redeclare(&self, ctx: &mut Context<Self>) {
        let specs: Vec<QueueSpec> = self
            .declared
            .values()
            .filter(|spec| !spec.exclusive)
            .cloned()
            .collect();
        let slot = self.topology_channel.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        ctx.spawn(
            async move {
                for spec in specs {
                    if let Err(error) = declare(&slot, &spec, deadline).await {
                        log::warn!("declaring queue \"{}\" again: {error}", spec.name);
                    }
                }
            }
            .into_actor(self),
        );
    }
}

/// Connects to the first node of `config.url` that accepts, trying each once in order.
async fn connect_first(config: &AmqpConfig) -> Result<(Connection, Nodes), BrokerError> {
    let mut nodes = Nodes::new(&config.url);
    let other_nodes = nodes.len() > 1;
    let mut failures = Vec::new();
    for _ in 0..nodes.len() {
        match connect_once(config, nodes.current(), other_nodes).await {
            Ok(connection) => {
                for failure in &failures {
                    log::warn!("skipped a broker node: {failure}");
                }
                return Ok((connection, nodes));
            }
            Err(error) if !other_nodes => return Err(error),
            Err(error) => failures.push(error.to_string()),
        }
        nodes.advance();
    }
    Err(BrokerError::Connect {
        url: redact_url(&config.url),
        reason: format!(
            "none of the {} nodes accepted: {}",
            nodes.len(),
            failures.join("; ")
        ),
    })
}

/// Declares a queue on the topology channel.
async fn declare(
    slot: &ChannelSlot,
    spec: &QueueSpec,
    deadline: Instant,
) -> Result<(), BrokerError> {
    let channel = slot.get(Some(deadline)).await?;
    let options = QueueDeclareOptions {
        passive: false,
        durable: spec.durable,
        exclusive: spec.exclusive,
        auto_delete: spec.auto_delete,
        nowait: false,
    };
    channel
        .queue_declare(spec.name.as_str().into(), options, spec.arguments.clone())
        .await
        .map_err(|error| BrokerError::amqp(format!("queue.declare \"{}\"", spec.name), &error))?;
    for binding in &spec.bindings {
        exchange::declare(slot, &binding.exchange, deadline).await?;
        let channel = slot.get(Some(deadline)).await?;
        channel
            .queue_bind(
                spec.name.as_str().into(),
                binding.exchange.name.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| {
                let what = format!(
                    "queue.bind \"{}\" to \"{}\"",
                    spec.name, binding.exchange.name
                );
                BrokerError::amqp(what, &error)
            })?;
    }
    Ok(())
}

/// Runs `operation` until it succeeds, fails for another reason than a lost connection, or
/// `deadline` passes (then `BrokerError::Unavailable` with the last failure).
async fn retry_until<T, F, Fut>(
    what: &str,
    deadline: Instant,
    mut operation: F,
) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BrokerError>>,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        // An attempt can hang while lapin recovers the connection (a confirm that never
        // comes): each is bounded by what is left of the deadline.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempted = tokio::time::timeout(remaining, operation()).await;
        let failure = match attempted {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(
                error @ (BrokerError::ConnectionLost { .. }
                | BrokerError::Nacked { .. }
                | BrokerError::Unavailable { .. }),
            )) => error,
            Ok(Err(other)) => return Err(other),
            Err(_) => BrokerError::ConnectionLost {
                operation: what.to_string(),
                reason: "no answer from the broker".to_string(),
            },
        };
        attempt += 1;
        let now = Instant::now();
        if now >= deadline {
            let reason = match failure {
                BrokerError::Unavailable { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(BrokerError::Unavailable {
                operation: what.to_string(),
                waited_ms: now.duration_since(started).as_millis(),
                reason,
            });
        }
        log::debug!("{what}: attempt {attempt} failed ({failure}); retrying");
        let pause = Duration::from_millis(50u64.saturating_mul(u64::from(attempt)))
            .min(Duration::from_secs(1))
            .min(deadline - now);
        actix_rt::time::sleep(pause).await;
    }
}

impl Actor for AmqpBrokerActor {
    type Context = Context<Self>;
}

impl StreamHandler<Event> for AmqpBrokerActor {
    fn handle(&mut self, event: Event, _ctx: &mut Context<Self>) {
        match event {
            Event::Connected => {
                log::info!("broker connection to {} is up", self.url);
                self.recovering_since = None;
                self.report_up();
            }
            Event::ConnectionBlocked(reason) => {
                log::warn!("the broker blocked the connection: {reason}")
            }
            Event::ConnectionUnblocked => log::info!("the broker unblocked the connection"),
            Event::Error(error) => log::warn!("broker connection event: {error}"),
            other => log::debug!("broker connection event: {other:?}"),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The events stream ends with the connection; the actor stays to answer `Closed`.
    }
}

/// Publishes one message on the confirm channel and waits for the broker's verdict.
async fn publish_once(
    slot: &ChannelSlot,
    message: &OutboundMessage,
    deadline: Instant,
) -> Result<(), BrokerError> {
    let channel = slot.get(Some(deadline)).await?;
    let operation = || format!("basic.publish to \"{}\"", message.routing_key);
    let confirm = channel
        .basic_publish(
            message.exchange.as_str().into(),
            message.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            &message.body,
            message.properties.clone(),
        )
        .await
        .map_err(|error| BrokerError::amqp(operation(), &error))?;
    match confirm.await {
        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Ack(Some(_returned))) => Err(BrokerError::Unroutable {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
        }),
        Ok(Confirmation::Nack(_)) => Err(BrokerError::Nacked {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
        }),
        Err(error) => Err(BrokerError::amqp(operation(), &error)),
    }
}

impl Handler<PublishMessage> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    /// Publishes and waits for the confirm. A publish that fails because the connection
    /// went away, or that the broker nacks, is published again once the broker is back
    /// (at-least-once), until `send_timeout` has passed.
    fn handle(
        &mut self,
        PublishMessage(message): PublishMessage,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.publish_channel.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        Box::pin(async move {
            let what = format!("publishing to \"{}\"", message.routing_key);
            retry_until(&what, deadline, || publish_once(&slot, &message, deadline)).await
        })
    }
}

impl Handler<DeclareQueue> for AmqpBrokerActor {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, DeclareQueue(spec): DeclareQueue, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(fut::ready(Err(error)));
        }
        let slot = self.topology_channel.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        let declaring = async move {
            let what = format!("declaring queue \"{}\"", spec.name);
            retry_until(&what, deadline, || declare(&slot, &spec, deadline))
                .await
                .map(|()| spec)
        };
        Box::pin(declaring.into_actor(self).map(|declared, actor, _| {
            let spec = declared?;
            actor.declared.insert(spec.name.clone(), spec);
            Ok(())
        }))
    }
}

impl Handler<OpenConsumer> for AmqpBrokerActor {
    type Result = ResponseActFuture<Self, Result<DeliveryStream, BrokerError>>;

    fn handle(&mut self, open: OpenConsumer, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(fut::ready(Err(error)));
        }
        let link = self.link.clone();
        let queue = open.queue.clone();
        let tag = open.consumer_tag.clone();
        let opening = async move {
            let operation = |what: &str| format!("{what} on queue \"{queue}\"");
            // Waits while the broker is away, as long as the actor keeps reconnecting.
            let connection = link.connection(&operation("basic.consume"), None).await?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| BrokerError::amqp(operation("channel.open"), &error))?;
            channel
                .basic_qos(
                    open.prefetch,
                    BasicQosOptions {
                        global: open.global_qos,
                    },
                )
                .await
                .map_err(|error| BrokerError::amqp(operation("basic.qos"), &error))?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|error| BrokerError::amqp(operation("basic.consume"), &error))?;
            Ok::<_, BrokerError>((channel, consumer))
        };
        let queue = open.queue;
        let tag = open.consumer_tag;
        Box::pin(opening.into_actor(self).map(move |opened, actor, _| {
            let (channel, consumer) = opened?;
            let acks = acks::spawn_ack_task(queue.clone());
            actor
                .consumer_channels
                .insert(tag.clone(), (channel, consumer.clone(), acks.clone()));
            let consumer_tag = tag.clone();
            let opened_generation = *actor.generation.borrow();
            let mut generations = actor.generation.subscribe();
            let given_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = given_up.clone();
            let connection_given_up = async move {
                let _ = generations.wait_for(|now| *now != opened_generation).await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            };
            let lost_queue = queue.clone();
            let stream = consumer.map(move |item| match item {
                Ok(delivery) => {
                    let tag = delivery.delivery_tag;
                    // Known to the ack task before anyone can settle it.
                    let _ = acks.send(acks::AckCommand::Delivered {
                        tag,
                        acker: delivery.acker.clone(),
                    });
                    Ok(Delivery {
                        queue: queue.clone(),
                        consumer_tag: consumer_tag.clone(),
                        exchange: delivery.exchange.to_string(),
                        routing_key: delivery.routing_key.to_string(),
                        redelivered: delivery.redelivered,
                        properties: delivery.properties,
                        body: delivery.data,
                        acker: Acker::new(acks::BatchedAcker::new(
                            tag,
                            delivery.acker,
                            acks.clone(),
                        )),
                    })
                }
                Err(error) => Err(BrokerError::amqp(
                    format!("consuming queue \"{queue}\""),
                    &error,
                )),
            });
            let stream = stream.take_until(connection_given_up).chain(
                futures::stream::once(async move {
                    given_up.load(std::sync::atomic::Ordering::SeqCst).then(|| {
                        Err(BrokerError::ConnectionLost {
                            operation: format!("consuming queue \"{lost_queue}\""),
                            reason: "the connection was given up and replaced".into(),
                        })
                    })
                })
                .filter_map(futures::future::ready),
            );
            Ok(Box::pin(stream) as DeliveryStream)
        }))
    }
}

impl Handler<CancelConsumer> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, cancel: CancelConsumer, _: &mut Context<Self>) -> Self::Result {
        // The channel stays open so that deliveries in progress can still be settled; it
        // closes with the connection.
        let channel = self.consumer_channel(&cancel.consumer_tag);
        Box::pin(async move {
            let Some(channel) = channel else {
                return Ok(());
            };
            if !channel.status().connected() {
                return Ok(());
            }
            channel
                .basic_cancel(
                    cancel.consumer_tag.as_str().into(),
                    BasicCancelOptions::default(),
                )
                .await
                .map_err(|error| {
                    BrokerError::amqp(format!("basic.cancel \"{}\"", cancel.consumer_tag), &error)
                })
        })
    }
}

impl Handler<CloseConsumer> for AmqpBrokerActor {
    type Result = ();

    fn handle(&mut self, close: CloseConsumer, ctx: &mut Context<Self>) {
        let Some((channel, consumer, _)) = self.consumer_channels.remove(&close.consumer_tag)
        else {
            return;
        };
        self.retired_consumers.push(consumer);
        if channel.status().connected() {
            ctx.spawn(
                async move {
                    if let Err(error) = channel.close(200, "consumer replaced".into()).await {
                        log::debug!("closing the channel of a failed consumer: {error}");
                    }
                }
                .into_actor(self),
            );
        }
    }
}

impl Handler<SetPrefetch> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, request: SetPrefetch, _: &mut Context<Self>) -> Self::Result {
        let channel = self.consumer_channel(&request.consumer_tag);
        Box::pin(async move {
            let Some(channel) = channel else {
                // The consumer is gone: its successor starts with its own window.
                return Ok(());
            };
            channel
                .basic_qos(request.prefetch, BasicQosOptions { global: true })
                .await
                .map_err(|error| BrokerError::amqp("basic.qos", &error))
        })
    }
}

impl Handler<CountMessages> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<u32, BrokerError>>;

    fn handle(
        &mut self,
        CountMessages(queue): CountMessages,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let link = self.link.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        Box::pin(async move {
            let connection = link
                .connection("queue.declare (passive)", Some(deadline))
                .await?;
            // A passive declare of a missing queue closes its channel: use a channel of its own.
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| BrokerError::amqp("channel.open", &error))?;
            let declared = channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Ok(found) => {
                    let _ = channel.close(200, "OK".into()).await;
                    Ok(found.message_count())
                }
                Err(error) if error.is_amqp_soft_error() => Err(BrokerError::NoSuchQueue(queue)),
                Err(error) => Err(BrokerError::amqp(
                    format!("queue.declare (passive) \"{queue}\""),
                    &error,
                )),
            }
        })
    }
}

impl Handler<DeleteQueue> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<u32, BrokerError>>;

    fn handle(&mut self, DeleteQueue(queue): DeleteQueue, _: &mut Context<Self>) -> Self::Result {
        if let Err(error) = self.check_open() {
            return Box::pin(async move { Err(error) });
        }
        let slot = self.topology_channel.clone();
        let deadline = Instant::now() + self.config.send_timeout;
        self.declared.remove(&queue);
        Box::pin(async move {
            let what = format!("queue.delete \"{queue}\"");
            retry_until(&what, deadline, || async {
                slot.get(Some(deadline))
                    .await?
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|error| BrokerError::amqp(what.clone(), &error))
            })
            .await
        })
    }
}

impl Handler<CloseBroker> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, _: CloseBroker, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Box::pin(async { Ok(()) });
        }
        self.closed = true;
        let mut ack_tasks = Vec::new();
        let consumers: Vec<_> = self
            .consumer_channels
            .drain()
            .map(|(_, (_, consumer, acks))| {
                ack_tasks.push(acks);
                consumer
            })
            .chain(self.retired_consumers.drain(..))
            .collect();
        let current = self
            .state
            .send_replace(LinkState::Closed("closed by the application".into()));
        let url = self.url.clone();
        Box::pin(async move {
            // Acks still batched go out before the connection closes.
            flush_ack_tasks(ack_tasks).await;
            // Dropped once the connection is closed, when lapin no longer sends for them.
            let _consumers = consumers;
            let LinkState::Up(connection) = current else {
                return Ok(());
            };
            let status = connection.status();
            if !status.connected() {
                // Closed, failed, or still being recovered by lapin: nothing to close politely.
                return Ok(());
            }
            connection
                .close(200, "OK".into())
                .await
                .map_err(|error| BrokerError::amqp("connection.close", &error))?;
            log::info!("closed the broker connection to {url}");
            Ok(())
        })
    }
}

/// Sends `Flush` to each ack task and waits for them.
async fn flush_ack_tasks(ack_tasks: Vec<acks::AckSender>) {
    for acks in ack_tasks {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if acks.send(acks::AckCommand::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

impl Handler<FlushAcks> for AmqpBrokerActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: FlushAcks, _: &mut Context<Self>) -> Self::Result {
        let ack_tasks: Vec<_> = self
            .consumer_channels
            .values()
            .map(|(_, _, acks)| acks.clone())
            .collect();
        Box::pin(flush_ack_tasks(ack_tasks))
    }
}

impl Handler<SubscribeConnection> for AmqpBrokerActor {
    type Result = ();

    fn handle(
        &mut self,
        SubscribeConnection(listener): SubscribeConnection,
        _: &mut Context<Self>,
    ) {
        self.listeners.push(listener);
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<super::BreakConsumerChannel> for AmqpBrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(
        &mut self,
        request: super::BreakConsumerChannel,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let channel = self.consumer_channel(&request.consumer_tag);
        Box::pin(async move {
            let channel = channel.ok_or_else(|| BrokerError::Amqp {
                operation: "breaking a consumer channel".into(),
                reason: format!("no consumer with tag \"{}\"", request.consumer_tag),
            })?;
            let missing = format!("celeriac.fault-injection.{}", uuid::Uuid::new_v4());
            let declared = channel
                .queue_declare(
                    missing.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Err(error) if error.is_amqp_soft_error() => Ok(()),
                Err(error) => Err(BrokerError::amqp("breaking a consumer channel", &error)),
                Ok(_) => Err(BrokerError::Amqp {
                    operation: "breaking a consumer channel".into(),
                    reason: format!("queue {missing} unexpectedly exists"),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{AmqpConfig, TlsConfig};

    #[test]
    fn debug_masks_the_password() {
        let mut config = AmqpConfig::new("amqps://user:s3cr%40t@broker:5671/%2f");
        config.tls = TlsConfig {
            ca_file: Some("/etc/celeriac/ca.pem".into()),
            ..TlsConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(
            shown.contains("amqps://user:***@broker:5671/%2f"),
            "{shown}"
        );
        assert!(shown.contains("/etc/celeriac/ca.pem"), "{shown}");
    }
}
