//! `Config`: where the broker is and how producers and workers behave, with Celery's
//! defaults, read from the environment or set in code.

use std::time::Duration;

/// Settings shared by producers and workers.
#[derive(Debug, Clone)]
pub struct Config {
    /// `amqp://user:password@host:port/vhost`; `None` means the embedded in-process broker.
    pub broker_url: Option<String>,
    /// Queue for tasks that name none (Celery's `task_default_queue`).
    pub default_queue: String,
    /// How long connecting to the broker may take before it fails.
    pub connect_timeout: Duration,
    /// Tasks a worker runs at once.
    pub concurrency: usize,
    /// Prefetch window = concurrency x this (Celery's `worker_prefetch_multiplier`).
    pub prefetch_multiplier: usize,
    /// The name shown for this client in RabbitMQ.
    pub connection_name: String,
    /// Where producers get task results (Celery's `result_backend`): `Some("rpc://")`, the
    /// only backend supported, or `None` for no results.
    pub result_backend: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            broker_url: None,
            default_queue: "celery".to_string(),
            connect_timeout: Duration::from_secs(10),
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefetch_multiplier: 4,
            connection_name: "celeriac".to_string(),
            result_backend: None,
        }
    }
}

impl Config {
    /// The defaults, overridden by `CELERIAC_BROKER_URL`, `CELERIAC_DEFAULT_QUEUE`,
    /// `CELERIAC_CONCURRENCY`, `CELERIAC_PREFETCH_MULTIPLIER`,
    /// `CELERIAC_CONNECT_TIMEOUT_MS` and `CELERIAC_RESULT_BACKEND` where set. Values that do not parse are ignored with
    /// a warning.
    pub fn from_env() -> Self {
        let mut config = Config::default();
        if let Some(url) = env_string("CELERIAC_BROKER_URL") {
            config.broker_url = Some(url);
        }
        if let Some(queue) = env_string("CELERIAC_DEFAULT_QUEUE") {
            config.default_queue = queue;
        }
        if let Some(concurrency) = env_number("CELERIAC_CONCURRENCY") {
            config.concurrency = concurrency.max(1) as usize;
        }
        if let Some(multiplier) = env_number("CELERIAC_PREFETCH_MULTIPLIER") {
            config.prefetch_multiplier = multiplier.max(1) as usize;
        }
        if let Some(ms) = env_number("CELERIAC_CONNECT_TIMEOUT_MS") {
            config.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(backend) = env_string("CELERIAC_RESULT_BACKEND") {
            config.result_backend = Some(backend.trim().to_string());
        }
        config
    }

    /// The prefetch window for the configured concurrency (at most 65535, AMQP's limit).
    pub fn prefetch(&self) -> u16 {
        u16::try_from(
            self.concurrency
                .saturating_mul(self.prefetch_multiplier)
                .max(1),
        )
        .unwrap_or(u16::MAX)
    }
}

fn env_string(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn env_number(name: &str) -> Option<u64> {
    let value = env_string(name)?;
    match value.trim().parse() {
        Ok(number) => Some(number),
        Err(_) => {
            log::warn!("ignoring {name}={value:?}: not a whole number");
            None
        }
    }
}
