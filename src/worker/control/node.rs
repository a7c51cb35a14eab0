//! What the replies say about the node that does not change while it runs: the pidbox
//! queue it consumes, its queues as kombu describes them, its broker (no password), pool
//! and configuration.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::commands::NodeInfo;
use crate::actors::amqp::{AMQPValue, FieldTable};
use crate::actors::{ExchangeSpec, QueueBinding, QueueSpec};
use crate::app::Config;
use crate::protocol::amqp::table_to_json;
use crate::protocol::ContentType;
use crate::task::TaskRegistry;

/// The fanout exchange every control request is published to.
pub(crate) const PIDBOX_EXCHANGE: &str = "celery.pidbox";

/// The node's pidbox queue, declared as kombu's `Mailbox` declares it: not durable,
/// exclusive (so a second node of the same name is refused with 405 RESOURCE_LOCKED),
/// auto-delete, `x-message-ttl` 300000 and `x-expires` 10000, bound to `celery.pidbox`.
pub(crate) fn pidbox_queue(hostname: &str) -> QueueSpec {
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(300_000));
    arguments.insert("x-expires".into(), AMQPValue::LongInt(10_000));
    QueueSpec {
        name: format!("{hostname}.{PIDBOX_EXCHANGE}"),
        durable: false,
        exclusive: true,
        auto_delete: true,
        arguments,
        bindings: vec![QueueBinding {
            exchange: pidbox_exchange(),
            routing_key: String::new(),
        }],
    }
}

/// The `celery.pidbox` fanout exchange (not durable), as kombu's `Mailbox` declares it.
pub(crate) fn pidbox_exchange() -> ExchangeSpec {
    ExchangeSpec {
        name: PIDBOX_EXCHANGE.into(),
        kind: "fanout".into(),
        durable: false,
        auto_delete: false,
    }
}

/// The reply exchange (direct, not durable), declared before the first reply to it.
pub(crate) fn reply_exchange(name: &str) -> ExchangeSpec {
    ExchangeSpec {
        name: name.to_string(),
        kind: "direct".into(),
        durable: false,
        auto_delete: false,
    }
}

/// kombu's `Queue.as_dict(recurse=True)` for a task queue as Celery declares it: bound
/// to the direct exchange of the same name with the queue name as key.
pub(crate) fn kombu_queue(spec: &QueueSpec) -> Value {
    let arguments = table_to_json(&spec.arguments);
    json!({
        "name": spec.name,
        "exchange": {
            "name": spec.name,
            "type": "direct",
            "arguments": null,
            "durable": true,
            "passive": false,
            "auto_delete": false,
            "delivery_mode": null,
            "no_declare": false,
        },
        "routing_key": spec.name,
        "queue_arguments": if arguments.is_empty() { Value::Null } else { Value::Object(arguments) },
        "binding_arguments": null,
        "consumer_arguments": null,
        "durable": spec.durable,
        "exclusive": spec.exclusive,
        "auto_delete": spec.auto_delete,
        "no_ack": false,
        "alias": null,
        "bindings": [],
        "no_declare": null,
        "expires": null,
        "message_ttl": null,
        "max_length": null,
        "max_length_bytes": null,
        "max_priority": null,
    })
}

/// The `broker` object of `stats`, read from the first node's URL (a failover list is
/// `amqp://a;amqp://b`); never a password. As kombu's `Connection.info()`, `alternates`
/// lists every node of a failover list (the first included) and is empty for one URL; here
/// each is shown with its password masked.
fn broker_info(config: &Config) -> Value {
    let nodes = crate::actors::broker::amqp::node_urls(&config.broker_url);
    let alternates: Vec<String> = if nodes.len() > 1 {
        nodes
            .iter()
            .map(|url| crate::actors::broker::amqp::redact_url(url))
            .collect()
    } else {
        Vec::new()
    };
    let parsed = nodes.first().and_then(|url| url::Url::parse(url).ok());
    let tls = parsed.as_ref().is_some_and(|url| url.scheme() == "amqps");
    let host = parsed
        .as_ref()
        .and_then(|url| url.host_str().map(str::to_string));
    let port = parsed
        .as_ref()
        .and_then(url::Url::port)
        .unwrap_or(if tls { 5671 } else { 5672 });
    let user = parsed
        .as_ref()
        .map(|url| url.username().to_string())
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "guest".into());
    let vhost = parsed
        .as_ref()
        .map(|url| {
            url.path()
                .trim_start_matches('/')
                .replace("%2f", "/")
                .replace("%2F", "/")
        })
        .filter(|vhost| !vhost.is_empty())
        .unwrap_or_else(|| "/".into());
    json!({
        "hostname": host,
        "userid": user,
        "virtual_host": vhost,
        "port": port,
        "insist": false,
        "ssl": tls,
        "transport": "amqp",
        "connect_timeout": config.connect_timeout.as_secs_f64(),
        "transport_options": {},
        "login_method": "PLAIN",
        "uri_prefix": null,
        "heartbeat": config.broker_heartbeat.as_secs_f64(),
        "failover_strategy": "round-robin",
        "alternates": alternates,
        "credential_provider": null,
    })
}

/// The `report` reply, laid out as Celery's `app.bugreport()` (its `software ->`,
/// `platform ->`, `loader ->` and `settings ->` lines, then the settings); the `celery:`
/// field names celeriac, which speaks Celery 5.7's protocol without being Celery.
fn report(config: &Config, conf: &Map<String, Value>) -> String {
    let results = config.result_backend.as_deref().map_or_else(
        || "disabled".to_string(),
        crate::actors::broker::amqp::redact_url,
    );
    let settings: Vec<String> = conf
        .iter()
        .map(|(key, value)| format!("{key}: {value}"))
        .collect();
    format!(
        "\nsoftware -> celery:celeriac-{version} (Rust, Celery 5.7 protocol)\n\
         platform -> system:{os} arch:{arch}\n\
         loader   -> celeriac (tasks registered in Rust)\n\
         settings -> transport:amqp results:{results}\n\n{settings}\n",
        version = env!("CARGO_PKG_VERSION"),
        os = std::env::consts::OS,
        arch = std::env::consts::ARCH,
        settings = settings.join("\n"),
    )
}

/// Everything the replies need about the node.
pub(crate) fn node_info(
    config: &Config,
    registry: &TaskRegistry,
    queues: &[QueueSpec],
) -> NodeInfo {
    let tasks: BTreeMap<String, Option<String>> = registry
        .names()
        .into_iter()
        .map(|name| {
            let rate = registry
                .get(&name)
                .and_then(|task| task.options().rate_limit.clone());
            (name, rate)
        })
        .collect();
    let pid = std::process::id();
    let limit = |limit: Option<std::time::Duration>| limit.map_or(0.0, |l| l.as_secs_f64());
    let redact = |url: &str| crate::actors::broker::amqp::redact_url(url);
    let mut conf = Map::new();
    conf.insert("broker_url".into(), json!(redact(&config.broker_url)));
    conf.insert(
        "result_backend".into(),
        json!(config.result_backend.as_deref().map(redact)),
    );
    conf.insert("task_default_queue".into(), json!(config.default_queue));
    conf.insert(
        "task_queues".into(),
        Value::Array(queues.iter().map(kombu_queue).collect()),
    );
    conf.insert("task_acks_late".into(), json!(config.acks_late));
    conf.insert("task_track_started".into(), json!(config.track_started));
    conf.insert("task_ignore_result".into(), json!(config.ignore_result));
    conf.insert("worker_concurrency".into(), json!(config.concurrency));
    conf.insert(
        "worker_prefetch_multiplier".into(),
        json!(config.prefetch_multiplier.unwrap_or(4)),
    );
    conf.insert(
        "broker_heartbeat".into(),
        json!(config.broker_heartbeat.as_secs_f64()),
    );
    conf.insert(
        "accept_content".into(),
        Value::Array(
            config
                .accept_content
                .iter()
                .map(|content| match content {
                    ContentType::Json => json!("json"),
                    other => json!(other.mime()),
                })
                .collect(),
        ),
    );
    // Times are UTC on the wire and in the worker.
    conf.insert("enable_utc".into(), json!(true));
    conf.insert("timezone".into(), json!("UTC"));
    // What Celery's worker does with Python's logging and modules, which a Rust worker
    // does not have: no root logger taken over, no colour setting, no module imported.
    conf.insert("worker_hijack_root_logger".into(), json!(false));
    conf.insert("worker_log_color".into(), Value::Null);
    conf.insert("include".into(), json!([]));
    conf.insert("deprecated_settings".into(), json!([]));
    let report = report(config, &conf);
    NodeInfo {
        tasks,
        queues: queues.iter().map(kombu_queue).collect(),
        broker: broker_info(config),
        pool: json!({
            "implementation": "celeriac:ExecutorPool",
            "max-concurrency": config.concurrency,
            "processes": [pid],
            "max-tasks-per-child": "N/A",
            "put-guarded-by-semaphore": false,
            "timeouts": [limit(config.soft_time_limit), limit(config.time_limit)],
        }),
        prefetch_count: u64::from(config.prefetch()),
        conf: Value::Object(conf),
        report,
        pid,
        hostname: config.hostname.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_and_conf_hold_no_password() {
        let config = Config {
            broker_url: "amqp://user:s3cret@broker:5672/%2f".into(),
            result_backend: Some("redis://:hidden@redis:6379/0".into()),
            ..Config::default()
        };
        let node = node_info(&config, &TaskRegistry::new(), &[]);
        // test_inspect.py's test_report looks for this line.
        assert!(
            node.report.contains("\nsoftware -> celery:"),
            "{}",
            node.report
        );
        assert!(node.report.contains("results:redis://"), "{}", node.report);
        let conf = node.conf.to_string();
        for secret in ["s3cret", "hidden"] {
            assert!(!node.report.contains(secret), "{}", node.report);
            assert!(!conf.contains(secret), "{conf}");
        }
        // The keys test_inspect.py's test_conf reads.
        for key in [
            "worker_hijack_root_logger",
            "worker_log_color",
            "accept_content",
            "enable_utc",
            "timezone",
            "broker_url",
            "result_backend",
            "broker_heartbeat",
            "deprecated_settings",
            "include",
        ] {
            assert!(node.conf.get(key).is_some(), "conf has no {key}");
        }
        assert_eq!(node.conf["accept_content"], serde_json::json!(["json"]));
    }

    #[test]
    fn broker_info_reads_the_first_node_and_masks_the_alternates() {
        // (broker_url, hostname, port, virtual_host, alternates)
        let cases: [(&str, &str, u16, &str, &[&str]); 3] = [
            (
                "amqp://u:first-secret@a:5672//;amqp://u:second-secret@b:5673//",
                "a",
                5672,
                "/",
                &["amqp://u:***@a:5672//", "amqp://u:***@b:5673//"],
            ),
            (
                "amqp://u:first-secret@a:5000/prod;amqps://v:second-secret@b;amqp://c",
                "a",
                5000,
                "prod",
                &["amqp://u:***@a:5000/prod", "amqps://v:***@b", "amqp://c"],
            ),
            ("amqp://u:first-secret@a:5672/%2f", "a", 5672, "/", &[]),
        ];
        for (url, host, port, vhost, alternates) in cases {
            let config = Config {
                broker_url: url.into(),
                ..Config::default()
            };
            let info = broker_info(&config);
            assert_eq!(info["hostname"], json!(host), "{url}");
            assert_eq!(info["port"], json!(port), "{url}");
            assert_eq!(info["virtual_host"], json!(vhost), "{url}");
            assert_eq!(info["userid"], json!("u"), "{url}");
            assert_eq!(info["alternates"], json!(alternates), "{url}");
            let text = info.to_string();
            assert!(!text.contains("secret"), "{url}: {text}");
        }
    }
}
