//! Opening one lapin connection: the URL with the heartbeat asked for, over plain TCP or
//! TLS, on lapin's own runtime, within the connect timeout.
//!
//! The transport is celeriac's own (`Connection::connector`), so that lapin's recovery
//! reconnects with the same TLS settings, and so that a certificate that does not verify
//! fails the connection at once with rustls's reason instead of being retried until the
//! connect timeout. Every failure text goes through `scrub_password`: lapin's error for a
//! malformed URL quotes the URL.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_rs::traits::*;
use async_rs::Runtime;
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use super::failover::node_urls;
use super::redact::{redact_url, scrub_password};
use super::AmqpConfig;
use crate::error::BrokerError;

/// The runtime lapin runs on, shared by every connection of the process.
pub(super) fn lapin_runtime() -> Result<async_rs::TokioRuntime, BrokerError> {
    static RUNTIME: OnceLock<async_rs::TokioRuntime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.clone());
    }
    let runtime = async_rs::Runtime::tokio().map_err(|error| BrokerError::Amqp {
        operation: "starting lapin's runtime".into(),
        reason: error.to_string(),
    })?;
    Ok(RUNTIME.get_or_init(|| runtime).clone())
}

/// Plain TCP, or TLS with a connector built from `TlsConfig`.
#[derive(Clone)]
enum Transport {
    Plain,
    Tls(RustlsConnector),
}

/// The last failure of the transport, seen by `connect_once` while lapin retries.
#[derive(Clone)]
struct Failure {
    /// What went wrong, password scrubbed.
    reason: String,
    /// Retrying cannot help (the certificate does not verify, the handshake was refused).
    fatal: bool,
}

/// Opens one connection to the node at `node` (one URL of `config.url`'s list): lapin on
/// its own runtime, with its auto-recovery tuned to retry quickly for about a minute before
/// the actor's own reconnection takes over. With `other_nodes`, the first failure of the
/// transport (refused, unreachable) ends the attempt at once, so that the caller moves on
/// to the next node instead of waiting out the connect timeout on a dead one.
pub(super) async fn connect_once(
    config: &AmqpConfig,
    node: &str,
    other_nodes: bool,
) -> Result<Connection, BrokerError> {
    let url = redact_url(node);
    let connect_error = |reason: String| BrokerError::Connect {
        url: url.clone(),
        reason: scrub_password(&reason, node),
    };
    let mut uri: AMQPUri = node
        .parse()
        .map_err(|reason| connect_error(format!("invalid broker URL: {reason}")))?;
    ask_for_heartbeat(&mut uri, config.heartbeat);
    let transport = match uri.scheme {
        AMQPScheme::AMQPS => {
            Transport::Tls(config.tls.connector().map_err(|reason| BrokerError::Tls {
                url: url.clone(),
                reason,
            })?)
        }
        AMQPScheme::AMQP => Transport::Plain,
    };
    let runtime = lapin_runtime()?;
    let properties = ConnectionProperties::default()
        .enable_auto_recover()
        .configure_backoff(|backoff| {
            backoff
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(30)
                .with_jitter()
        })
        .with_connection_name(config.connection_name.clone().into());
    let (failures, mut failed) = watch::channel(None::<Failure>);
    let failures = Arc::new(failures);
    let secret_url = node.to_string();
    // lapin's io thread goes on retrying a first connection that failed, for its whole
    // backoff (about a minute): once given up, those retries fail without a network attempt.
    let abandoned = Arc::new(AtomicBool::new(false));
    let given_up = abandoned.clone();
    let open = async move |uri: AMQPUri, runtime: async_rs::TokioRuntime| {
        if given_up.load(Ordering::SeqCst) {
            return Err(lapin::Error::from(io::Error::other(
                "the connection attempt was given up",
            )));
        }
        let opened = open_stream(&transport, &uri, &runtime).await;
        if let Err(error) = &opened {
            failures.send_replace(Some(Failure {
                reason: scrub_password(&error.to_string(), &secret_url),
                // rustls reports certificate and handshake failures as InvalidData; with
                // other nodes to try, any failure is worth moving on.
                fatal: other_nodes || error.kind() == io::ErrorKind::InvalidData,
            }));
        }
        opened.map_err(lapin::Error::from)
    };
    let connecting = Connection::connector(uri, runtime, open, properties);
    let fatal_failure = async {
        match failed
            .wait_for(|failure| failure.as_ref().is_some_and(|failure| failure.fatal))
            .await
        {
            Ok(failure) => failure.as_ref().map(|failure| failure.reason.clone()),
            // lapin dropped the transport: the timeout decides.
            Err(_) => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        connected = tokio::time::timeout(config.connect_timeout, connecting) => match connected {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(connect_error(error.to_string())),
            Err(_) => Err(BrokerError::ConnectTimeout {
                url: url.clone(),
                timeout_ms: config.connect_timeout.as_millis(),
                last_failure: failed
                    .borrow()
                    .as_ref()
                    .map_or_else(|| "no answer".to_string(), |failure| failure.reason.clone()),
            }),
        },
        Some(reason) = fatal_failure => Err(connect_error(reason)),
    };
    if outcome.is_err() {
        abandoned.store(true, Ordering::SeqCst);
    }
    outcome
}

/// Logs a warning when TLS settings come with a plain `amqp://` URL: they are not used,
/// and the connection is not encrypted.
pub(super) fn warn_if_tls_unused(config: &AmqpConfig) {
    if !config.tls.is_set() {
        return;
    }
    for node in node_urls(&config.url) {
        let plain = node
            .parse::<AMQPUri>()
            .is_ok_and(|uri| uri.scheme == AMQPScheme::AMQP);
        if plain {
            log::warn!(
                "TLS settings are NOT used: the broker URL {} is plain amqp://, so the \
                 connection is not encrypted; use amqps:// to connect over TLS",
                redact_url(&node)
            );
        }
    }
}

/// Connects the TCP stream of `uri`, and wraps it in TLS for `amqps://`. The server's
/// certificate must be valid for the URL's host (name or IP address).
async fn open_stream<RK: RuntimeKit + Send + Sync>(
    transport: &Transport,
    uri: &AMQPUri,
    runtime: &Runtime<RK>,
) -> io::Result<AsyncTcpStream<<RK as Reactor>::TcpStream>> {
    let host = uri.authority.host.clone();
    let addresses = runtime.to_socket_addrs((host.clone(), uri.authority.port));
    let stream = AsyncTcpStream::connect(runtime, addresses).await?;
    match transport {
        Transport::Plain => Ok(stream),
        Transport::Tls(connector) => stream.into_rustls(connector, &host).await,
    }
}

/// Asks the broker for heartbeats every `heartbeat` (rounded up to whole seconds), unless
/// the URL names its own `heartbeat`. Zero asks for none, and lapin then takes the broker's
/// proposal (RabbitMQ: 60 s): heartbeats can be turned off only on the broker's side.
fn ask_for_heartbeat(uri: &mut AMQPUri, heartbeat: Duration) {
    if uri.query.heartbeat.is_some() {
        return;
    }
    let seconds = heartbeat.as_secs() + u64::from(heartbeat.subsec_nanos() > 0);
    uri.query.heartbeat = Some(u16::try_from(seconds).unwrap_or(u16::MAX));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ask_for_heartbeat;
    use lapin::uri::AMQPUri;

    fn heartbeat_of(url: &str, heartbeat: Duration) -> Option<u16> {
        let mut uri: AMQPUri = url.parse().expect("a valid URL");
        ask_for_heartbeat(&mut uri, heartbeat);
        uri.query.heartbeat
    }

    #[test]
    fn the_heartbeat_goes_into_the_uri_unless_the_url_has_one() {
        let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
        assert_eq!(heartbeat_of(url, Duration::from_secs(60)), Some(60));
        assert_eq!(heartbeat_of(url, Duration::from_millis(1500)), Some(2));
        assert_eq!(heartbeat_of(url, Duration::ZERO), Some(0));
        assert_eq!(
            heartbeat_of(url, Duration::from_secs(1 << 20)),
            Some(u16::MAX)
        );
        let with_own = "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=5";
        assert_eq!(heartbeat_of(with_own, Duration::from_secs(60)), Some(5));
    }
}
