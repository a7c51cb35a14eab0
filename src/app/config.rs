//! `Config`: where the broker is and how producers and workers behave, with Celery's
//! defaults, read from the environment or set in code.

use std::time::Duration;

use crate::actors::broker::amqp::RedactedUrl;
use crate::actors::TlsConfig;

use super::routing::{QueueConfig, QueueType, TaskRoute};
use crate::protocol::{ContentType, DecodePolicy, DEFAULT_MAX_BODY_SIZE};

/// The broker a configuration names when it names none: Celery's default, a RabbitMQ on
/// this machine with the `guest` user.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@localhost:5672//";

/// The `broker_url` that selects the embedded in-process broker.
pub const MEMORY_BROKER_URL: &str = "memory://";

/// Settings shared by producers and workers. `Debug` masks the passwords of the URLs.
#[derive(Clone)]
pub struct Config {
    /// Where the broker is: `amqp://user:password@host:port/vhost` (`%2f` or a second `/`
    /// is the default vhost `/`), `amqps://` for TLS (port 5671 by default), or `memory://`
    /// for the embedded in-process broker (one process only: tasks sent there vanish when the
    /// process exits). Defaults to Celery's default, [`DEFAULT_BROKER_URL`]. The nodes of a
    /// cluster are Celery's `;`-separated list (`amqp://a;amqp://b;amqp://c`, or
    /// [`Config::with_broker_urls`]): tried in order, and the next one after a loss.
    pub broker_url: String,
    /// Trusted CAs and client certificate for an `amqps://` broker (Celery's
    /// `broker_use_ssl`). Certificate and host name are always verified.
    pub broker_tls: TlsConfig,
    /// The AMQP heartbeat asked of the broker (Celery's `broker_heartbeat`): a connection
    /// silent for two heartbeats is taken as dead and recovered. Zero asks for none; lapin
    /// then follows the broker's proposal (RabbitMQ: 60 s).
    pub broker_heartbeat: Duration,
    /// Queue for tasks that name none (Celery's `task_default_queue`).
    pub default_queue: String,
    /// How long connecting to the broker may take before it fails.
    pub connect_timeout: Duration,
    /// How long a send may wait for a broker that is away (reconnecting) before it fails
    /// with a clear error. A send that returned `Ok` was confirmed by the broker.
    pub send_timeout: Duration,
    /// How the connection is rebuilt after it was lost (forever, by default).
    pub reconnect: crate::actors::ReconnectPolicy,
    /// Messages with a larger body, as received or once decompressed, are rejected without
    /// requeue (inflating stops as soon as it is passed); bincode arguments may not claim
    /// more memory than this either.
    pub max_message_size: usize,
    /// The content types a worker accepts (Celery's `accept_content`): JSON only by
    /// default. `application/x-bincode` is for Rust-to-Rust traffic and must be opted in
    /// (`CELERIAC_ACCEPT_CONTENT=json,bincode`). Messages of other types are rejected
    /// without requeue.
    pub accept_content: Vec<ContentType>,
    /// How long a warm shutdown lets running tasks finish before it turns cold.
    pub shutdown_timeout: Duration,
    /// Run async task code on a thread (actix arbiter) of its own rather than beside the
    /// consumers. Off by default: each task then avoids two thread hops (measured: drain
    /// throughput 0.88 instead of 0.76 x raw lapin); turn it on when async tasks may hog
    /// the CPU (blocking work belongs in `BlockingTask`s either way).
    pub pool_on_own_thread: bool,
    /// Tasks a worker runs at once.
    pub concurrency: usize,
    /// `Some(m)`: a fixed prefetch window of concurrency x m (Celery's
    /// `worker_prefetch_multiplier`). `None` (the default): an adaptive window that starts
    /// at concurrency x 4, grows while tasks are short (up to 1000) and shrinks back when
    /// they run long; see the worker's `window` module and README "Configuration".
    pub prefetch_multiplier: Option<usize>,
    /// The name shown for this client in RabbitMQ.
    pub connection_name: String,
    /// The worker's node name, as Celery's `-n`: `name@host` (default
    /// `celeriac@<host name>`); what monitoring and remote control call the worker, and the
    /// `hostname` of STARTED results. See [`node_name`].
    pub hostname: String,
    /// A file keeping the worker's revoked task ids across restarts (Celery's
    /// `--statedb`); `None` keeps them in memory only. Format: see the worker's state db.
    pub state_db: Option<std::path::PathBuf>,
    /// The result backend (Celery's `result_backend`): `None` stores no results;
    /// `Some("rpc://")` makes workers publish results to each message's reply queue and
    /// producers (`Producer::from_config`) declare one; `Some("redis://[:password@]host:port/db")`
    /// stores them in Redis as Celery does, readable from any process
    /// ([`RedisResults`](crate::RedisResults)).
    pub result_backend: Option<String>,
    /// How long stored results live in a key-value backend such as Redis (Celery's
    /// `result_expires`, one day by default): the TTL of each `celery-task-meta-<id>` key;
    /// zero: results never expire (Celery's `result_expires = None` or `0`).
    pub result_expires: Duration,
    /// Stored results also carry the task's request (Celery's `result_extended`, default
    /// false, app-wide as in Celery): `name`, `args`, `kwargs`, `worker`, `retries` and
    /// `queue` (the routing key), in every document a worker stores (STARTED too).
    pub result_extended: bool,
    /// Store no SUCCESS results, nor errors unless `store_errors_even_if_ignored` (Celery's
    /// `task_ignore_result`, default false); tasks may override it.
    pub ignore_result: bool,
    /// Store errors even for tasks that ignore results (Celery's
    /// `task_store_errors_even_if_ignored`, default false); tasks may override it.
    pub store_errors_even_if_ignored: bool,
    /// Store a STARTED result when a task starts (Celery's `task_track_started`, default
    /// false); tasks may override it.
    pub track_started: bool,
    /// Send task events (`task-received`, `task-started`, `task-succeeded`...) on the
    /// `celeryev` exchange, as Celery's `-E` / `worker_send_task_events` (default false).
    /// Worker events (online, heartbeat, offline) are sent either way. Can be switched at
    /// run time with `WorkerSystem::task_events`.
    pub send_events: bool,
    /// Task routes by glob, first match wins (Celery's `task_routes`).
    pub task_routes: Vec<TaskRoute>,
    /// Queues that are not declared plain (priorities, quorum, dead-lettering).
    pub queues: Vec<QueueConfig>,
    /// The type of task queues not in `queues` (Celery 5.5's `task_default_queue_type`;
    /// Celery applies it to its default queue only, and `task_create_missing_queue_type` to
    /// the others: set both to `quorum` on Python peers sharing the queues).
    pub default_queue_type: QueueType,
    /// `x-delivery-limit` of the quorum queues declared without one of their own: a
    /// message returned to the queue this many times (its worker died with it, say) is
    /// dead-lettered, or dropped without a dead-letter exchange. `None`: RabbitMQ's default
    /// (unlimited before RabbitMQ 4.0, 20 since).
    pub quorum_delivery_limit: Option<u32>,
    /// Acknowledge messages after the run rather than when it starts (Celery's
    /// `task_acks_late`, default false); tasks may override it.
    pub acks_late: bool,
    /// With `acks_late`, ack failed and timed-out runs (true, Celery's default) or reject
    /// them without requeue (false); tasks may override it.
    pub acks_on_failure_or_timeout: bool,
    /// Default hard time limit of every task (Celery's `task_time_limit`).
    pub time_limit: Option<Duration>,
    /// Default soft time limit of every task (Celery's `task_soft_time_limit`).
    pub soft_time_limit: Option<Duration>,
    /// ETA tasks due further ahead than this are not held unacked in the worker (RabbitMQ
    /// would close the channel after its `consumer_timeout`, 30 minutes by default): they
    /// wait in a wait queue of the broker and come back to be looked at again.
    pub eta_horizon: Duration,
    /// At most this many ETA tasks are held in the worker (each raising the prefetch window
    /// by one); more go to the wait queue (Celery's `worker_eta_task_limit`).
    pub eta_task_limit: usize,
    /// At most this many bytes of ETA tasks are held in the worker (each counted for its
    /// body, properties and headers, from their lengths); a task that would pass it goes to
    /// the wait queue, as past `eta_task_limit`. Default 64 MiB
    /// (`CELERIAC_ETA_TASK_BYTES_LIMIT`).
    pub eta_task_bytes_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            broker_url: DEFAULT_BROKER_URL.to_string(),
            broker_tls: TlsConfig::default(),
            broker_heartbeat: Duration::from_secs(60),
            default_queue: "celery".to_string(),
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            reconnect: crate::actors::ReconnectPolicy::default(),
            max_message_size: DEFAULT_MAX_BODY_SIZE,
            accept_content: vec![ContentType::Json],
            shutdown_timeout: Duration::from_secs(60),
            pool_on_own_thread: false,
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefetch_multiplier: None,
            connection_name: "celeriac".to_string(),
            hostname: node_name("celeriac"),
            state_db: None,
            result_backend: None,
            result_expires: Duration::from_secs(86_400),
            result_extended: false,
            ignore_result: false,
            store_errors_even_if_ignored: false,
            track_started: false,
            send_events: false,
            task_routes: Vec::new(),
            queues: Vec::new(),
            default_queue_type: QueueType::Classic,
            quorum_delivery_limit: None,
            acks_late: false,
            acks_on_failure_or_timeout: true,
            time_limit: None,
            soft_time_limit: None,
            eta_horizon: Duration::from_secs(10 * 60),
            eta_task_limit: 10_000,
            eta_task_bytes_limit: 64 << 20,
        }
    }
}

impl Config {
    /// The defaults, overridden by `CELERIAC_BROKER_URL`, `CELERIAC_DEFAULT_QUEUE`,
    /// `CELERIAC_CONCURRENCY`, `CELERIAC_PREFETCH_MULTIPLIER`,
    /// `CELERIAC_CONNECT_TIMEOUT_MS`, `CELERIAC_RESULT_BACKEND`, `CELERIAC_RESULT_EXPIRES_S`,
    /// `CELERIAC_RESULT_EXTENDED`,
    /// `CELERIAC_TASK_ROUTES` (`pattern=queue,...`), `CELERIAC_ACKS_LATE`,
    /// `CELERIAC_IGNORE_RESULT`, `CELERIAC_STORE_ERRORS_EVEN_IF_IGNORED`,
    /// `CELERIAC_TRACK_STARTED`, `CELERIAC_SEND_EVENTS`, `CELERIAC_HOSTNAME`,
    /// `CELERIAC_STATE_DB`, `CELERIAC_SEND_TIMEOUT_MS`,
    /// `CELERIAC_MAX_MESSAGE_SIZE`, `CELERIAC_ETA_TASK_BYTES_LIMIT`,
    /// `CELERIAC_ACCEPT_CONTENT` (`json,bincode`),
    /// `CELERIAC_SHUTDOWN_TIMEOUT_S`, `CELERIAC_BROKER_HEARTBEAT_S`,
    /// `CELERIAC_DEFAULT_QUEUE_TYPE` (`classic|quorum`), `CELERIAC_QUORUM_DELIVERY_LIMIT` and
    /// `CELERIAC_BROKER_TLS_CA` / `_CERT` / `_KEY` where set. Values that do not parse are
    /// ignored with a warning; TLS files are read (and a certificate without its key
    /// refused) when connecting.
    pub fn from_env() -> Self {
        let mut config = Config::default();
        if let Some(routes) = env_string("CELERIAC_TASK_ROUTES") {
            match TaskRoute::parse_list(&routes) {
                Ok(routes) => config.task_routes = routes,
                Err(error) => log::warn!("ignoring CELERIAC_TASK_ROUTES: {error}"),
            }
        }
        if let Some(ms) = env_number("CELERIAC_SEND_TIMEOUT_MS") {
            config.send_timeout = Duration::from_millis(ms);
        }
        if let Some(bytes) = env_number("CELERIAC_MAX_MESSAGE_SIZE") {
            config.max_message_size = bytes as usize;
        }
        if let Some(bytes) = env_number("CELERIAC_ETA_TASK_BYTES_LIMIT") {
            config.eta_task_bytes_limit = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(names) = env_string("CELERIAC_ACCEPT_CONTENT") {
            match parse_content_types(&names) {
                Ok(accept) => config.accept_content = accept,
                Err(error) => log::warn!("ignoring CELERIAC_ACCEPT_CONTENT: {error}"),
            }
        }
        if let Some(seconds) = env_number("CELERIAC_SHUTDOWN_TIMEOUT_S") {
            config.shutdown_timeout = Duration::from_secs(seconds);
        }
        if let Some(acks_late) = env_flag("CELERIAC_ACKS_LATE") {
            config.acks_late = acks_late;
        }
        if let Some(ignore) = env_flag("CELERIAC_IGNORE_RESULT") {
            config.ignore_result = ignore;
        }
        if let Some(store) = env_flag("CELERIAC_STORE_ERRORS_EVEN_IF_IGNORED") {
            config.store_errors_even_if_ignored = store;
        }
        if let Some(extended) = env_flag("CELERIAC_RESULT_EXTENDED") {
            config.result_extended = extended;
        }
        if let Some(track) = env_flag("CELERIAC_TRACK_STARTED") {
            config.track_started = track;
        }
        if let Some(send) = env_flag("CELERIAC_SEND_EVENTS") {
            config.send_events = send;
        }
        if let Some(name) = env_string("CELERIAC_HOSTNAME") {
            config.hostname = node_name(&name);
        }
        if let Some(path) = env_string("CELERIAC_STATE_DB") {
            config.state_db = Some(std::path::PathBuf::from(path));
        }
        if let Some(url) = env_string("CELERIAC_BROKER_URL") {
            config.broker_url = url.trim().to_string();
        }
        if let Some(kind) = env_string("CELERIAC_DEFAULT_QUEUE_TYPE") {
            match QueueType::parse(&kind) {
                Ok(kind) => config.default_queue_type = kind,
                Err(error) => log::warn!("ignoring CELERIAC_DEFAULT_QUEUE_TYPE: {error}"),
            }
        }
        if let Some(limit) = env_number("CELERIAC_QUORUM_DELIVERY_LIMIT") {
            config.quorum_delivery_limit = Some(u32::try_from(limit.max(1)).unwrap_or(u32::MAX));
        }
        if let Some(seconds) = env_number("CELERIAC_BROKER_HEARTBEAT_S") {
            config.broker_heartbeat = Duration::from_secs(seconds);
        }
        config.broker_tls = TlsConfig {
            ca_file: env_string("CELERIAC_BROKER_TLS_CA").map(Into::into),
            cert_file: env_string("CELERIAC_BROKER_TLS_CERT").map(Into::into),
            key_file: env_string("CELERIAC_BROKER_TLS_KEY").map(Into::into),
        };
        if let Some(queue) = env_string("CELERIAC_DEFAULT_QUEUE") {
            config.default_queue = queue;
        }
        if let Some(concurrency) = env_number("CELERIAC_CONCURRENCY") {
            config.concurrency = concurrency.max(1) as usize;
        }
        if let Some(multiplier) = env_number("CELERIAC_PREFETCH_MULTIPLIER") {
            config.prefetch_multiplier = Some(multiplier.max(1) as usize);
        }
        if let Some(ms) = env_number("CELERIAC_CONNECT_TIMEOUT_MS") {
            config.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(backend) = env_string("CELERIAC_RESULT_BACKEND") {
            config.result_backend = Some(backend.trim().to_string());
        }
        if let Some(seconds) = env_number("CELERIAC_RESULT_EXPIRES_S") {
            // 0: results never expire, as Celery's `result_expires = None` or `0`.
            config.result_expires = Duration::from_secs(seconds);
        }
        config
    }

    /// What a worker of this configuration reads: `accept_content` up to
    /// `max_message_size`.
    pub fn decode_policy(&self) -> DecodePolicy {
        DecodePolicy {
            max_body_size: self.max_message_size,
            accept: self.accept_content.clone(),
        }
    }

    /// The prefetch window consumers open with (at most 65535, AMQP's limit): concurrency
    /// x the multiplier, or x 4 (the adaptive window's floor) when it is not set.
    pub fn prefetch(&self) -> u16 {
        u16::try_from(
            self.concurrency
                .saturating_mul(self.prefetch_multiplier.unwrap_or(4))
                .max(1),
        )
        .unwrap_or(u16::MAX)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("broker_url", &RedactedUrl(&self.broker_url))
            .field("broker_tls", &self.broker_tls)
            .field("broker_heartbeat", &self.broker_heartbeat)
            .field("default_queue", &self.default_queue)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("reconnect", &self.reconnect)
            .field("max_message_size", &self.max_message_size)
            .field("accept_content", &self.accept_content)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("pool_on_own_thread", &self.pool_on_own_thread)
            .field("concurrency", &self.concurrency)
            .field("prefetch_multiplier", &self.prefetch_multiplier)
            .field("connection_name", &self.connection_name)
            .field("hostname", &self.hostname)
            .field("state_db", &self.state_db)
            .field(
                "result_backend",
                &self.result_backend.as_deref().map(RedactedUrl),
            )
            .field("result_expires", &self.result_expires)
            .field("result_extended", &self.result_extended)
            .field("ignore_result", &self.ignore_result)
            .field(
                "store_errors_even_if_ignored",
                &self.store_errors_even_if_ignored,
            )
            .field("track_started", &self.track_started)
            .field("send_events", &self.send_events)
            .field("task_routes", &self.task_routes)
            .field("queues", &self.queues)
            .field("default_queue_type", &self.default_queue_type)
            .field("quorum_delivery_limit", &self.quorum_delivery_limit)
            .field("acks_late", &self.acks_late)
            .field(
                "acks_on_failure_or_timeout",
                &self.acks_on_failure_or_timeout,
            )
            .field("time_limit", &self.time_limit)
            .field("soft_time_limit", &self.soft_time_limit)
            .field("eta_horizon", &self.eta_horizon)
            .field("eta_task_limit", &self.eta_task_limit)
            .field("eta_task_bytes_limit", &self.eta_task_bytes_limit)
            .finish()
    }
}

/// Content types from a comma-separated list of names (`json`, `bincode`, or MIME types).
fn parse_content_types(names: &str) -> Result<Vec<ContentType>, String> {
    let accept = names
        .split(',')
        .filter(|name| !name.trim().is_empty())
        .map(|name| {
            ContentType::from_name(name)
                .ok_or_else(|| format!("unknown content type {name:?} (known: json, bincode)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if accept.is_empty() {
        return Err("no content type named".to_string());
    }
    Ok(accept)
}

fn env_string(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A boolean variable: `1`, `true`, `yes`, `on` are true, anything else false.
fn env_flag(name: &str) -> Option<bool> {
    let value = env_string(name)?;
    Some(matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    ))
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

impl Config {
    /// How `queue` is declared under this configuration.
    pub fn queue_spec(&self, queue: &str) -> crate::actors::QueueSpec {
        super::routing::queue_spec(
            &self.queues,
            queue,
            self.default_queue_type,
            self.quorum_delivery_limit,
        )
    }

    /// This configuration with the nodes of a cluster as its broker: tried in order, and the
    /// next one, round-robin, after a loss (Celery's `amqp://a;amqp://b` as a list).
    pub fn with_broker_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.broker_url = crate::actors::broker::amqp::AmqpConfig::with_nodes(urls).url;
        self
    }

    /// The queue a task goes to when its call names none: the first matching route, else
    /// the task's own default queue, else `default_queue`.
    pub fn route<'a>(&'a self, task: &str, task_default: Option<&'a str>) -> &'a str {
        super::routing::route(&self.task_routes, task)
            .or(task_default)
            .unwrap_or(&self.default_queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::TlsConfig;

    #[test]
    fn debug_masks_every_password() {
        let urls = [
            ("amqp://guest:hunter2@127.0.0.1:5672/%2f", "hunter2"),
            ("amqps://u:p%40ss%3Aw0rd@broker:5671/prod", "p%40ss%3Aw0rd"),
            ("amqp://u:raw@pass:word@broker/%2f", "raw@pass:word"),
            ("amqp://:only-password@broker", "only-password"),
            ("guest:no-scheme-secret@host:5672", "no-scheme-secret"),
            ("amqp://u:first-pw@a;amqp://u:second-pw@b", "first-pw"),
            ("amqp://u:first-pw@a;amqp://u:second-pw@b", "second-pw"),
        ];
        for (url, password) in urls {
            let config = Config {
                broker_url: url.to_string(),
                result_backend: Some("redis://:backend-secret@redis:6379/0".to_string()),
                broker_tls: TlsConfig {
                    ca_file: Some("/etc/ssl/ca.pem".into()),
                    cert_file: Some("/etc/ssl/client.pem".into()),
                    key_file: Some("/etc/ssl/client.key".into()),
                },
                ..Config::default()
            };
            let shown = format!("{config:?}");
            assert!(!shown.contains(password), "{url}: {shown}");
            assert!(!shown.contains("backend-secret"), "{shown}");
            assert!(shown.contains(":***@"), "{shown}");
            assert!(shown.contains("/etc/ssl/client.key"), "{shown}");
            assert!(!format!("{config:#?}").contains(password), "{url}");
        }
    }

    #[test]
    fn a_config_that_names_no_broker_uses_celerys_default_rabbitmq() {
        let config = Config::default();
        assert_eq!(config.broker_url, "amqp://guest:guest@localhost:5672//");
        let uri: lapin::uri::AMQPUri = config.broker_url.parse().expect("lapin reads it");
        assert_eq!(uri.vhost, "/");
        assert_eq!(uri.authority.host, "localhost");
        assert_eq!(uri.authority.port, 5672);
    }

    #[test]
    fn a_list_of_broker_urls_is_celerys_semicolon_list() {
        let config = Config::default().with_broker_urls(["amqp://a:5672//", " amqp://b:5673// "]);
        assert_eq!(config.broker_url, "amqp://a:5672//;amqp://b:5673//");
        assert_eq!(
            crate::actors::broker::amqp::node_urls(&config.broker_url),
            ["amqp://a:5672//", "amqp://b:5673//"]
        );
        assert_eq!(Config::default().default_queue_type, QueueType::Classic);
        assert_eq!(Config::default().quorum_delivery_limit, None);
    }

    #[test]
    fn json_is_the_only_content_accepted_by_default() {
        assert_eq!(Config::default().accept_content, vec![ContentType::Json]);
        assert_eq!(
            parse_content_types("json, bincode").unwrap(),
            vec![ContentType::Json, ContentType::Bincode]
        );
        assert_eq!(
            parse_content_types("application/x-bincode").unwrap(),
            vec![ContentType::Bincode]
        );
        let error = parse_content_types("json,pickle").unwrap_err();
        assert!(error.contains("\"pickle\""), "{error}");
        assert!(parse_content_types(" , ").is_err());
    }
}

/// A node name as Celery's `-n` makes one: `%h` is replaced by this machine's host name,
/// `%n` by its first label and `%d` by the rest (its domain), `%%` by `%`; a name without
/// `@` gets `@<host name>` (`worker1` → `worker1@web-3`).
pub fn node_name(name: &str) -> String {
    let host = crate::protocol::repr::hostname();
    let (short, domain) = host.split_once('.').unwrap_or((host, ""));
    let mut expanded = String::with_capacity(name.len() + host.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            expanded.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => expanded.push_str(host),
            Some('n') => expanded.push_str(short),
            Some('d') => expanded.push_str(domain),
            Some('%') => expanded.push('%'),
            Some(other) => {
                expanded.push('%');
                expanded.push(other);
            }
            None => expanded.push('%'),
        }
    }
    if expanded.contains('@') {
        expanded
    } else {
        format!("{expanded}@{host}")
    }
}

#[cfg(test)]
mod node_name_tests {
    use super::node_name;

    #[test]
    fn node_names_expand_as_celerys() {
        let host = crate::protocol::repr::hostname();
        assert_eq!(node_name("w1@example"), "w1@example");
        assert_eq!(node_name("worker1"), format!("worker1@{host}"));
        assert_eq!(node_name("w@%h"), format!("w@{host}"));
        assert_eq!(node_name("100%%@x"), "100%@x");
        assert_eq!(node_name("celeriac"), format!("celeriac@{host}"));
    }
}
