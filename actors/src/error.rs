//! The error type of the actors layer.

use derive_more::{Display, Error};

/// What went wrong while talking to the broker or running a job.
///
/// Messages name the operation and the broker's own words, so a log line is enough to act on.
#[derive(Debug, Display, Error, Clone)]
pub enum BrokerError {
    /// The broker could not be reached within the connect timeout.
    #[display("could not connect to the broker at {url} within {timeout_ms} ms ({last_failure})")]
    ConnectTimeout {
        /// The broker URL, without its password.
        url: String,
        /// The configured connect timeout.
        timeout_ms: u128,
        /// The last failed attempt's reason (refused, unreachable...), or "no answer".
        last_failure: String,
    },
    /// The TLS settings cannot be used: a file that cannot be read or holds no certificate
    /// or key, a client certificate without its key.
    #[display("invalid TLS settings for the broker at {url}: {reason}")]
    Tls {
        /// The broker URL, without its password.
        url: String,
        /// What is wrong, naming the file.
        reason: String,
    },
    /// The broker refused the connection or the connection failed while it was being set up.
    #[display("could not connect to the broker at {url}: {reason}")]
    Connect {
        /// The broker URL, without its password.
        url: String,
        /// lapin's or rustls's explanation (refused, access refused, DNS, a certificate that
        /// does not verify...), with the password scrubbed out.
        reason: String,
    },
    /// An AMQP operation failed (channel closed, 404, 406, I/O...).
    #[display("{operation} failed: {reason}")]
    Amqp {
        /// What celeriac was doing, e.g. `queue.declare "celery"`.
        operation: String,
        /// lapin's description of the failure.
        reason: String,
    },
    /// The connection (or the channel with it) went away during the operation: the broker
    /// restarted, the network dropped. Retrying after reconnection can succeed.
    #[display("{operation} failed, the broker connection was lost: {reason}")]
    ConnectionLost {
        /// What celeriac was doing.
        operation: String,
        /// lapin's description of the failure.
        reason: String,
    },
    /// The broker stayed unreachable for longer than the operation may wait.
    #[display("the broker has been unreachable for {waited_ms} ms ({operation}): {reason}")]
    Unavailable {
        /// What celeriac was doing.
        operation: String,
        /// How long it waited.
        waited_ms: u128,
        /// The last failure seen.
        reason: String,
    },
    /// The broker answered a publish with a negative acknowledgement.
    #[display("the broker at {node} nacked the publish to exchange \"{exchange}\" with routing key \"{routing_key}\"")]
    Nacked {
        /// The exchange published to.
        exchange: String,
        /// The routing key published with.
        routing_key: String,
        /// The node that nacked (its URL, password masked).
        node: String,
    },
    /// A mandatory publish matched no queue.
    #[display("no queue is bound to exchange \"{exchange}\" with routing key \"{routing_key}\" at {node} (is the queue declared?)")]
    Unroutable {
        /// The exchange published to.
        exchange: String,
        /// The routing key published with.
        routing_key: String,
        /// The node that returned the message (its URL, password masked).
        node: String,
    },
    /// A queue that an operation needs does not exist.
    #[display("queue \"{_0}\" does not exist")]
    NoSuchQueue(#[error(not(source))] String),
    /// The broker connection was closed (by `CloseBroker` or for good after a failure).
    #[display("the broker connection is closed")]
    Closed,
    /// An actor this call needed has stopped.
    #[display("actor mailbox error: {_0}")]
    Mailbox(#[error(not(source))] String),
}

impl From<actix::MailboxError> for BrokerError {
    fn from(error: actix::MailboxError) -> Self {
        BrokerError::Mailbox(error.to_string())
    }
}

impl BrokerError {
    /// Wraps a lapin error with the operation that failed: `ConnectionLost` when the
    /// connection or its channel went away (worth retrying after reconnection), `Amqp`
    /// otherwise (a channel error such as 404 or 406, a protocol problem).
    pub fn amqp(operation: impl Into<String>, error: &lapin::Error) -> Self {
        let operation = operation.into();
        let reason = error.to_string();
        if is_connection_loss(error) {
            BrokerError::ConnectionLost { operation, reason }
        } else {
            BrokerError::Amqp { operation, reason }
        }
    }

    /// The error with the broker node it happened on (its URL, password masked) in its
    /// `operation`, for `Amqp`, `ConnectionLost` and `Unavailable` (once: an operation that
    /// already names it is kept). The other errors name their URL or node themselves, or
    /// have none (`Closed`, `Mailbox`, `NoSuchQueue`).
    #[must_use]
    pub fn on_node(self, node: &str) -> Self {
        let named = |operation: String| {
            let suffix = format!(" (node {node})");
            if operation.contains(&suffix) {
                operation
            } else {
                operation + &suffix
            }
        };
        match self {
            BrokerError::Amqp { operation, reason } => BrokerError::Amqp {
                operation: named(operation),
                reason,
            },
            BrokerError::ConnectionLost { operation, reason } => BrokerError::ConnectionLost {
                operation: named(operation),
                reason,
            },
            BrokerError::Unavailable {
                operation,
                waited_ms,
                reason,
            } => BrokerError::Unavailable {
                operation: named(operation),
                waited_ms,
                reason,
            },
            other => other,
        }
    }

    /// Whether the failure came from losing the connection (so retrying can succeed).
    pub fn is_connection_loss(&self) -> bool {
        matches!(self, BrokerError::ConnectionLost { .. })
    }
}

/// Whether a lapin error means the connection (or the channel with it) went away, rather
/// than the broker refusing the operation on a live channel.
pub fn is_connection_loss(error: &lapin::Error) -> bool {
    use lapin::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(..)
        | ErrorKind::InvalidChannel(..)
        | ErrorKind::IOError(..)
        | ErrorKind::MissingHeartbeatError => true,
        ErrorKind::ProtocolError(_) => error.is_amqp_hard_error(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::BrokerError;

    #[test]
    fn on_node_names_the_node_once() {
        let node = "amqp://u:***@b:5672/%2f";
        let cases = [
            (
                BrokerError::Amqp {
                    operation: "queue.declare \"q\"".into(),
                    reason: "406".into(),
                },
                "queue.declare \"q\" (node amqp://u:***@b:5672/%2f) failed: 406",
            ),
            (
                BrokerError::ConnectionLost {
                    operation: "basic.publish to \"q\"".into(),
                    reason: "reset".into(),
                },
                "basic.publish to \"q\" (node amqp://u:***@b:5672/%2f) failed, the broker \
                 connection was lost: reset",
            ),
            (
                BrokerError::Unavailable {
                    operation: "publishing to \"q\"".into(),
                    waited_ms: 5,
                    reason: "down".into(),
                },
                "the broker has been unreachable for 5 ms (publishing to \"q\" (node \
                 amqp://u:***@b:5672/%2f)): down",
            ),
            (BrokerError::Closed, "the broker connection is closed"),
        ];
        for (error, expected) in cases {
            assert_eq!(error.clone().on_node(node).to_string(), expected);
            assert_eq!(error.on_node(node).on_node(node).to_string(), expected);
        }
    }
}
