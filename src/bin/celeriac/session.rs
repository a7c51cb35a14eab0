//! The configuration the subcommands share and the broker connection they open.

use celeriac::{connect_broker, BrokerClient, Config, Producer};

use crate::error::CliError;

/// `Config::from_env()`, with `--broker` over `CELERIAC_BROKER_URL`.
pub fn config(broker: Option<&str>) -> Config {
    let mut config = Config::from_env();
    if let Some(url) = broker {
        config.broker_url = url.trim().to_string();
    }
    config
}

/// A connection to the broker and a producer on it; the error line names the broker
/// without its password.
pub async fn connect(config: &Config) -> Result<(BrokerClient, Producer), CliError> {
    let broker = connect_broker(config).await.map_err(CliError::failed)?;
    let producer = Producer::new(broker.clone(), config);
    Ok((broker, producer))
}

/// Closes the connection; a failure to close is only logged (the work is done).
pub async fn close(broker: &BrokerClient) {
    if let Err(error) = broker.close().await {
        log::warn!("closing the broker connection: {error}");
    }
}
