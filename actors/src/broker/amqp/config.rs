//! How to reach RabbitMQ ([`AmqpConfig`]) and how the broker actor reconnects
//! ([`ReconnectPolicy`]).

use std::time::Duration;

use super::redact::RedactedUrl;
use super::tls::TlsConfig;
use crate::backoff::{Backoff, Jitter};

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
