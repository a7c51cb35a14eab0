//! The connection's lifecycle: connecting (to the first node that accepts), watching
//! lapin's recovery, reconnecting with the `ReconnectPolicy`, declaring queues again,
//! telling subscribers, closing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use lapin::{Channel, Connection, Event};
use tokio::sync::watch;

use super::config::AmqpConfig;
use super::connect::{connect_once, warn_if_tls_unused};
use super::failover::{pause_before, Nodes};
use super::link::{ChannelSlot, Link, LinkState};
use super::operations::{declare, flush_ack_tasks};
use super::redact::redact_url;
use super::{AmqpBrokerActor, HEALTH_CHECK, LAPIN_RECOVERY_GRACE};
use crate::broker::{CloseBroker, ConnectionEvent, QueueSpec, SubscribeConnection};
use crate::error::BrokerError;

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
            let url = watch::Sender::new(url);
            let link = Link::new(receiver, url.subscribe());
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

    pub(super) fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    /// The channel of the consumer with this tag, if it is open.
    pub(super) fn consumer_channel(&self, consumer_tag: &str) -> Option<Channel> {
        self.consumer_channels
            .get(consumer_tag)
            .map(|(channel, _, _)| channel.clone())
    }

    /// Closes given-up connections that lapin brought back, and forgets those that are
    /// over for good.
    pub(super) fn close_abandoned(&mut self, ctx: &mut Context<Self>) {
        let mut back = Vec::new();
        self.abandoned.retain(|(connection, node)| {
            let status = connection.status();
            if status.connected() {
                back.push((connection.clone(), node.clone()));
                false
            } else {
                !(status.closed() || status.errored())
            }
        });
        for (connection, node) in back {
            log::info!(
                "closing the connection to {node}, given up earlier, that lapin recovered after all"
            );
            ctx.spawn(
                async move {
                    if let Err(error) = connection.close(200, "replaced".into()).await {
                        log::debug!("closing the replaced connection to {node}: {error}");
                    }
                }
                .into_actor(self),
            );
        }
    }

    /// Tells subscribers the connection is down, once per outage.
    pub(super) fn report_down(&mut self, reason: String) {
        if !self.reported_down {
            self.reported_down = true;
            self.emit(ConnectionEvent::Down { reason });
        }
    }

    /// Tells subscribers the connection is back, if they were told it was down.
    pub(super) fn report_up(&mut self) {
        if self.reported_down {
            self.reported_down = false;
            self.emit(ConnectionEvent::Up);
        }
    }

    pub(super) fn emit(&self, event: ConnectionEvent) {
        for listener in &self.listeners {
            listener.do_send(event.clone());
        }
    }

    /// Starts reconnecting when lapin has given up on the connection.
    pub(super) fn check_health(&mut self, ctx: &mut Context<Self>) {
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

    pub(super) fn reconnect(&mut self, ctx: &mut Context<Self>, reason: String) {
        log::warn!(
            "broker connection to {} lost ({reason}); reconnecting",
            *self.url.borrow()
        );
        self.reconnecting = true;
        self.recovering_since = None;
        let given_up = self.state.send_replace(LinkState::Down(reason.clone()));
        if let LinkState::Up(connection) = given_up {
            // lapin may still bring it back, consumers included: it is closed if it does.
            self.abandoned.push((connection, self.url.borrow().clone()));
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
                    let now = nodes.current_redacted();
                    let lost = actor.url.send_replace(now.clone());
                    actor.nodes = nodes;
                    if now == lost {
                        log::info!("reconnected to the broker at {now}");
                    } else {
                        log::info!("failed over to the broker at {now} (was {lost})");
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
    pub(super) fn redeclare(&self, ctx: &mut Context<Self>) {
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
                        log::warn!(
                            "declaring queue \"{}\" again at {}: {error}",
                            spec.name,
                            slot.node()
                        );
                    }
                }
            }
            .into_actor(self),
        );
    }
}

/// Connects to the first node of `config.url` that accepts, trying each once in order.
pub(super) async fn connect_first(config: &AmqpConfig) -> Result<(Connection, Nodes), BrokerError> {
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

impl StreamHandler<Event> for AmqpBrokerActor {
    fn handle(&mut self, event: Event, _ctx: &mut Context<Self>) {
        match event {
            Event::Connected => {
                log::info!("broker connection to {} is up", *self.url.borrow());
                self.recovering_since = None;
                self.report_up();
            }
            Event::ConnectionBlocked(reason) => {
                log::warn!(
                    "the broker at {} blocked the connection: {reason}",
                    *self.url.borrow()
                );
            }
            Event::ConnectionUnblocked => {
                log::info!(
                    "the broker at {} unblocked the connection",
                    *self.url.borrow()
                );
            }
            Event::Error(error) => {
                log::warn!("broker connection event at {}: {error}", *self.url.borrow());
            }
            other => log::debug!(
                "broker connection event at {}: {other:?}",
                *self.url.borrow()
            ),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The events stream ends with the connection; the actor stays to answer `Closed`.
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
        let url = self.url.borrow().clone();
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
