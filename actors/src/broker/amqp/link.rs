//! The link to RabbitMQ: the current connection, which the broker actor replaces when it
//! reconnects, and channels that follow it. Operations wait here while the connection is
//! down or lapin is recovering it, up to their own deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use tokio::sync::watch;

use crate::error::BrokerError;

/// Where the connection stands.
#[derive(Clone)]
pub(super) enum LinkState {
    /// Connected (possibly being recovered by lapin: check its status).
    Up(Arc<Connection>),
    /// Lost; the broker actor is reconnecting.
    Down(String),
    /// Closed for good: by `CloseBroker`, or because reconnecting gave up.
    Closed(String),
}

/// How often a waiting operation looks again at a connection lapin is recovering (lapin
/// does not announce the end of a recovery).
const POLL: Duration = Duration::from_millis(50);

/// A cloneable view of the current connection.
#[derive(Clone)]
pub(super) struct Link {
    state: watch::Receiver<LinkState>,
    /// The URL of the node in use (or tried last), password masked: what errors name.
    node: watch::Receiver<String>,
}

impl Link {
    pub(super) fn new(state: watch::Receiver<LinkState>, node: watch::Receiver<String>) -> Self {
        Link { state, node }
    }

    /// The URL of the node in use (or tried last), password masked.
    pub(super) fn node(&self) -> String {
        self.node.borrow().clone()
    }

    /// Waits until `connection` is no longer the current one: the broker actor gave it up
    /// (and is reconnecting, maybe to another node) or closed. lapin may keep a given-up
    /// connection recovering for good, and what was owed on it (a publish's confirm) with it.
    pub(super) async fn replaced(&self, connection: &Arc<Connection>) {
        let mut state = self.state.clone();
        let _ = state
            .wait_for(
                |current| !matches!(current, LinkState::Up(now) if Arc::ptr_eq(now, connection)),
            )
            .await;
    }

    /// `result`, its error naming the node in use (`BrokerError::on_node`): what each
    /// operation of the broker actor answers.
    pub(super) fn named<T>(&self, result: Result<T, BrokerError>) -> Result<T, BrokerError> {
        result.map_err(|error| error.on_node(&self.node()))
    }

    /// The connection once it is usable. Waits while it is down or being recovered, until
    /// `deadline` (`None`: as long as the broker actor keeps reconnecting).
    pub(super) async fn connection(
        &self,
        operation: &str,
        deadline: Option<Instant>,
    ) -> Result<Arc<Connection>, BrokerError> {
        let started = Instant::now();
        let mut state = self.state.clone();
        loop {
            let current = state.borrow_and_update().clone();
            let reason = match current {
                LinkState::Up(connection) => {
                    let status = connection.status();
                    if status.connected() {
                        return Ok(connection);
                    }
                    if status.reconnecting() || status.connecting() {
                        "the connection is being recovered".to_string()
                    } else {
                        "the connection failed".to_string()
                    }
                }
                LinkState::Down(reason) => reason,
                LinkState::Closed(reason) => {
                    return Err(BrokerError::Amqp {
                        operation: operation.to_string(),
                        reason: format!("the broker connection is closed: {reason}"),
                    }
                    .on_node(&self.node()))
                }
            };
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Err(BrokerError::Unavailable {
                    operation: operation.to_string(),
                    waited_ms: now.duration_since(started).as_millis(),
                    reason,
                }
                .on_node(&self.node()));
            }
            let pause = deadline.map_or(POLL, |deadline| POLL.min(deadline - now));
            let _ = tokio::time::timeout(pause, state.changed()).await;
        }
    }
}

/// A channel and the connection it belongs to.
type OwnedChannel = (Arc<Connection>, Channel);

/// A channel that is opened on first use and opened again after it was closed, or when
/// the connection was replaced.
#[derive(Clone)]
pub(super) struct ChannelSlot {
    link: Link,
    /// Whether the channel is put in publisher-confirm mode.
    confirms: bool,
    /// The current channel and the connection it belongs to.
    channel: Arc<tokio::sync::Mutex<Option<OwnedChannel>>>,
}

impl ChannelSlot {
    pub(super) fn new(link: Link, confirms: bool) -> Self {
        ChannelSlot {
            link,
            confirms,
            channel: Arc::default(),
        }
    }

    /// The URL of the node in use (or tried last), password masked.
    pub(super) fn node(&self) -> String {
        self.link.node()
    }

    /// The open channel, or a new one (on the current connection) when the previous one
    /// was closed by a channel error or belonged to a replaced connection.
    pub(super) async fn get(&self, deadline: Option<Instant>) -> Result<Channel, BrokerError> {
        self.get_owned(deadline).await.map(|(_, channel)| channel)
    }

    /// Waits until `connection` is no longer the current one (`Link::replaced`).
    pub(super) async fn replaced(&self, connection: &Arc<Connection>) {
        self.link.replaced(connection).await;
    }

    /// The channel of `get`, with the connection it belongs to.
    pub(super) async fn get_owned(
        &self,
        deadline: Option<Instant>,
    ) -> Result<OwnedChannel, BrokerError> {
        let connection = self.link.connection("channel.open", deadline).await?;
        let mut slot = self.channel.lock().await;
        if let Some((owner, channel)) = slot.as_ref() {
            let status = channel.status();
            if Arc::ptr_eq(owner, &connection)
                && (status.connected() || status.reconnecting() || status.initializing())
            {
                return Ok((connection, channel.clone()));
            }
        }
        let channel = connection
            .create_channel()
            .await
            .map_err(|error| BrokerError::amqp("channel.open", &error).on_node(&self.node()))?;
        if self.confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|error| {
                    BrokerError::amqp("confirm.select", &error).on_node(&self.node())
                })?;
        }
        *slot = Some((connection.clone(), channel.clone()));
        Ok((connection, channel))
    }
}
