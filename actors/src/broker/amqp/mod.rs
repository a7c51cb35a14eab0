//! `AmqpBrokerActor`: owns the one lapin connection and mediates every channel operation.
//!
//! lapin runs on a multi-threaded tokio runtime of its own (one per process), not on the
//! actix arbiter that connected: a busy or stopped arbiter then cannot stall or silently
//! hang the connection. lapin's auto-recovery is enabled.
//!
//! | module | what it holds |
//! |---|---|
//! | `config` | [`AmqpConfig`], [`ReconnectPolicy`]: how to reach RabbitMQ, how to come back |
//! | `lifecycle` | the actor's connection: connect, watch lapin's recovery, reconnect, close |
//! | `operations` | publish (with confirms), declare, count, delete, flush acks |
//! | `consumers` | a channel per consumer: open, prefetch, cancel, close |
//! | `consumer_count` | how many consumers a queue has (Beat's leader check) |
//! | `purge` | emptying a queue of its ready messages (`celeriac purge`) |
//! | `connect` | opening one connection: heartbeat, plain or TLS transport, connect timeout |
//! | `failover` | the nodes of a `;`-separated URL list, round-robin, the pause between attempts |
//! | `tls` | [`TlsConfig`]: trusted CAs and client certificate, the rustls connector |
//! | `redact` | [`redact_url`], [`scrub_password`]: passwords kept out of messages and `Debug` |
//! | `link` | the current connection and channels that follow it across reconnections |
//! | [`acks`] | batched acknowledgements per consumer channel |
//! | `transaction` | publishes committed together (`tx.select` .. `tx.commit`) on a channel of their own |

pub mod acks;
mod config;
mod connect;
mod consumer_count;
mod consumers;
mod exchange;
mod failover;
mod lifecycle;
mod link;
mod operations;
mod purge;
mod redact;
mod tls;
mod transaction;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use lapin::{Channel, Connection};
use tokio::sync::watch;

pub use self::config::{AmqpConfig, ReconnectPolicy};
pub use self::failover::node_urls;
use self::failover::Nodes;
use self::link::{ChannelSlot, Link, LinkState};
pub use self::redact::{redact_url, scrub_password, RedactedUrl};
pub use self::tls::TlsConfig;
use super::{ConnectionEvent, QueueSpec};

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
    /// The URL of the node connected to (or tried last), password masked; `Link` reads it
    /// for the errors of operations.
    url: watch::Sender<String>,
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
    /// Each with the URL of its node, password masked.
    abandoned: Vec<(Arc<Connection>, String)>,
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

impl Actor for AmqpBrokerActor {
    type Context = Context<Self>;
}
