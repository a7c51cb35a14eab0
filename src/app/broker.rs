//! Connecting to the broker a `Config` names: RabbitMQ, or the embedded in-process broker
//! when it says `memory://`.

use actix::Actor;

use crate::actors::{AmqpBrokerActor, AmqpConfig, BrokerClient, BrokerError, MemoryBrokerActor};

use super::config::MEMORY_BROKER_URL;
use super::Config;

/// Connects to `config.broker_url`: RabbitMQ for `amqp://` and `amqps://` URLs, an
/// embedded in-process broker for `memory://`. Must run inside an actix system. Fails with a
/// clear error after `config.connect_timeout` when RabbitMQ cannot be reached, at once when
/// an `amqps://` broker's certificate does not verify (the error names the broker, password
/// masked, and rustls's reason) or the TLS files cannot be read. Errors never show the
/// password.
pub async fn connect_broker(config: &Config) -> Result<BrokerClient, BrokerError> {
    match config.broker_url.as_str() {
        MEMORY_BROKER_URL => {
            log::info!("using the embedded in-process broker (memory://): tasks do not outlive this process");
            Ok(BrokerClient::new(&MemoryBrokerActor::new().start()))
        }
        url => {
            let amqp = AmqpConfig {
                url: url.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn memory_selects_the_in_process_broker() {
        let config = Config {
            broker_url: MEMORY_BROKER_URL.to_string(),
            ..Config::default()
        };
        let broker = connect_broker(&config).await.expect("no network needed");
        broker
            .declare_queue(crate::actors::QueueSpec::durable("memory-test"))
            .await
            .expect("the in-process broker answers");
    }
}
