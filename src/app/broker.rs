//! Connecting to the broker a `Config` names: RabbitMQ, or the embedded in-process broker.

use actix::Actor;

use crate::actors::{AmqpBrokerActor, AmqpConfig, BrokerClient, BrokerError, MemoryBrokerActor};

use super::Config;

/// Connects to `config.broker_url`, or starts an embedded in-process broker when it is
/// `None`. Must run inside an actix system. Fails with a clear error after
/// `config.connect_timeout` when RabbitMQ cannot be reached, at once when an `amqps://`
/// broker's certificate does not verify (the error names the broker, password masked, and
/// rustls's reason) or the TLS files cannot be read. Errors never show the password.
pub async fn connect_broker(config: &Config) -> Result<BrokerClient, BrokerError> {
    match &config.broker_url {
        None => Ok(BrokerClient::new(&MemoryBrokerActor::new().start())),
        Some(url) => {
            let amqp = AmqpConfig {
                url: url.clone(),
                connection_name: config.connection_name.clone(),
                connect_timeout: config.connect_timeout,
                send_timeout: config.send_timeout,
                reconnect: config.reconnect.clone(),
                heartbeat: config.broker_heartbeat,
                tls: config.broker_tls.clone(),
            };
            Ok(BrokerClient::new(&AmqpBrokerActor::connect(amqp).await?))
        }
    }
}
