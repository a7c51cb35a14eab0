//! Where tasks go: task routes by glob pattern (Celery's `task_routes`), and how each queue
//! is declared (priorities, quorum queues, dead-lettering), identically by producers and
//! workers, and as Python Celery declares them.

use crate::actors::amqp::{AMQPValue, FieldTable};
use crate::actors::QueueSpec;

/// Sends tasks whose name matches `pattern` (`*` any run of characters, `?` one
/// character, as Celery's glob routes) to `queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRoute {
    /// The glob, e.g. `reports.*`.
    pub pattern: String,
    /// The queue.
    pub queue: String,
}

impl TaskRoute {
    /// A route from `pattern` to `queue`.
    pub fn new(pattern: impl Into<String>, queue: impl Into<String>) -> Self {
        TaskRoute {
            pattern: pattern.into(),
            queue: queue.into(),
        }
    }

    /// Whether `task` matches the pattern.
    pub fn matches(&self, task: &str) -> bool {
        wildmatch::WildMatch::new(&self.pattern).matches(task)
    }

    /// Parses `pattern=queue,pattern=queue` (the `CELERIAC_TASK_ROUTES` format).
    pub fn parse_list(text: &str) -> Result<Vec<TaskRoute>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| match entry.split_once('=') {
                Some((pattern, queue))
                    if !pattern.trim().is_empty() && !queue.trim().is_empty() =>
                {
                    Ok(TaskRoute::new(pattern.trim(), queue.trim()))
                }
                _ => Err(format!("route {entry:?} is not of the form pattern=queue")),
            })
            .collect()
    }
}

/// The queue of the first route matching `task`.
pub fn route<'a>(routes: &'a [TaskRoute], task: &str) -> Option<&'a str> {
    routes
        .iter()
        .find(|route| route.matches(task))
        .map(|route| route.queue.as_str())
}

/// The type of the task queues a configuration declares when it says nothing else about
/// them (Celery 5.5's `task_default_queue_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// A classic queue (RabbitMQ's default, and Celery's).
    #[default]
    Classic,
    /// A quorum queue (`x-queue-type: quorum`): replicated over the nodes of a cluster, a
    /// new leader elected when the leader's node is lost. No `x-max-priority`, and no
    /// channel-wide QoS (a worker then keeps a fixed prefetch window per consumer).
    Quorum,
}

impl QueueType {
    /// Parses `classic` or `quorum` (any case), as `CELERIAC_DEFAULT_QUEUE_TYPE` holds.
    pub fn parse(text: &str) -> Result<QueueType, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            other => Err(format!(
                "queue type {other:?} is neither \"classic\" nor \"quorum\""
            )),
        }
    }
}

/// How a task queue is declared. Producers and workers must declare a queue identically
/// (and as Python does, for a shared queue), or RabbitMQ refuses with 406.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue name.
    pub name: String,
    /// `x-max-priority` (Celery's `task_queue_max_priority`): priorities 0..=N are honoured.
    pub max_priority: Option<u8>,
    /// A quorum queue (`x-queue-type: quorum`, Celery's `task_default_queue_type`). A
    /// quorum queue is declared without `x-max-priority` (RabbitMQ refuses it there).
    pub quorum: bool,
    /// For a quorum queue, `x-delivery-limit`: a message delivered this many times and
    /// returned again (its consumer's channel or connection lost, or a requeue) is
    /// dead-lettered, or dropped when the queue has no dead-letter exchange.
    pub delivery_limit: Option<u32>,
    /// Rejected (and expired) messages go to this exchange instead of being dropped.
    pub dead_letter_exchange: Option<String>,
    /// The routing key dead-lettered messages are published with.
    pub dead_letter_routing_key: Option<String>,
}

impl QueueConfig {
    /// A plain durable queue, as Celery declares `celery`.
    pub fn new(name: impl Into<String>) -> Self {
        QueueConfig {
            name: name.into(),
            max_priority: None,
            quorum: false,
            delivery_limit: None,
            dead_letter_exchange: None,
            dead_letter_routing_key: None,
        }
    }

    /// With `x-max-priority`.
    pub fn with_max_priority(mut self, max_priority: u8) -> Self {
        self.max_priority = Some(max_priority);
        self
    }

    /// As a quorum queue.
    pub fn quorum(mut self) -> Self {
        self.quorum = true;
        self
    }

    /// As a quorum queue whose messages are dead-lettered after `limit` returns
    /// (`x-delivery-limit`).
    pub fn with_delivery_limit(mut self, limit: u32) -> Self {
        self.quorum = true;
        self.delivery_limit = Some(limit);
        self
    }

    /// Dead-letters rejected messages to `exchange` with `routing_key`.
    pub fn with_dead_letter(
        mut self,
        exchange: impl Into<String>,
        routing_key: impl Into<String>,
    ) -> Self {
        self.dead_letter_exchange = Some(exchange.into());
        self.dead_letter_routing_key = Some(routing_key.into());
        self
    }

    /// The declaration, with arguments typed as py-amqp types them (ints as `I`, strings
    /// as long strings).
    pub fn spec(&self) -> QueueSpec {
        let mut arguments = FieldTable::default();
        if let Some(max) = self.max_priority.filter(|_| !self.quorum) {
            arguments.insert("x-max-priority".into(), AMQPValue::LongInt(i32::from(max)));
        }
        if self.quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            if let Some(limit) = self.delivery_limit {
                let limit = i32::try_from(limit).unwrap_or(i32::MAX);
                arguments.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
            }
        }
        if let Some(exchange) = &self.dead_letter_exchange {
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(exchange.as_str().into()),
            );
        }
        if let Some(key) = &self.dead_letter_routing_key {
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(key.as_str().into()),
            );
        }
        QueueSpec {
            arguments,
            bindings: Vec::new(),
            ..QueueSpec::durable(&self.name)
        }
    }
}

/// The declaration of `queue`: its `QueueConfig` among `queues`, else a durable queue of
/// `default_type`. `delivery_limit` applies to every quorum queue that sets none itself.
pub fn queue_spec(
    queues: &[QueueConfig],
    queue: &str,
    default_type: QueueType,
    delivery_limit: Option<u32>,
) -> QueueSpec {
    let mut config = queues
        .iter()
        .find(|config| config.name == queue)
        .cloned()
        .unwrap_or_else(|| QueueConfig {
            quorum: default_type == QueueType::Quorum,
            ..QueueConfig::new(queue)
        });
    if config.quorum && config.delivery_limit.is_none() {
        config.delivery_limit = delivery_limit;
    }
    config.spec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_glob_wins() {
        let routes = TaskRoute::parse_list("reports.*=reports, *.urgent=fast, mail.?end=mail")
            .expect("parses");
        assert_eq!(route(&routes, "reports.monthly"), Some("reports"));
        assert_eq!(route(&routes, "reports.urgent"), Some("reports"));
        assert_eq!(route(&routes, "billing.urgent"), Some("fast"));
        assert_eq!(route(&routes, "mail.send"), Some("mail"));
        assert_eq!(route(&routes, "mail.sender"), None);
        assert!(TaskRoute::parse_list("no-equals").is_err());
    }

    #[test]
    fn declarations_carry_the_arguments_python_sends() {
        let spec = QueueConfig::new("prio").with_max_priority(10).spec();
        assert!(spec.durable && !spec.auto_delete && !spec.exclusive);
        assert_eq!(
            spec.arguments.inner().get("x-max-priority"),
            Some(&AMQPValue::LongInt(10))
        );
        let quorum = QueueConfig::new("q")
            .quorum()
            .with_dead_letter("dlx", "dead")
            .spec();
        assert_eq!(
            quorum.arguments.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(quorum.arguments.inner().len(), 3);
        assert!(queue_spec(&[], "plain", QueueType::Classic, Some(3))
            .arguments
            .inner()
            .is_empty());
    }

    /// The arguments of `queue`'s declaration, as `name=value` sorted.
    fn arguments_of(spec: &QueueSpec) -> Vec<String> {
        let mut shown: Vec<String> = spec
            .arguments
            .inner()
            .iter()
            .map(|(name, value)| match value {
                AMQPValue::LongString(text) => format!("{name}={text}"),
                AMQPValue::LongInt(number) => format!("{name}={number}"),
                other => format!("{name}={other:?}"),
            })
            .collect();
        shown.sort();
        shown
    }

    #[test]
    fn the_default_queue_type_and_delivery_limit_apply_to_unconfigured_queues() {
        let configured = [
            QueueConfig::new("prio").with_max_priority(5),
            QueueConfig::new("q5").with_delivery_limit(5),
            QueueConfig::new("dlx")
                .quorum()
                .with_dead_letter("", "dead"),
        ];
        let quorum = ["x-queue-type=quorum"];
        let limited = ["x-delivery-limit=3", "x-queue-type=quorum"];
        // (queue, default type, delivery limit, arguments)
        let cases: [(&str, QueueType, Option<u32>, &[&str]); 9] = [
            ("other", QueueType::Classic, None, &[]),
            ("other", QueueType::Classic, Some(3), &[]),
            ("other", QueueType::Quorum, None, &quorum),
            ("other", QueueType::Quorum, Some(3), &limited),
            ("prio", QueueType::Quorum, Some(3), &["x-max-priority=5"]),
            (
                "q5",
                QueueType::Classic,
                Some(3),
                &["x-delivery-limit=5", "x-queue-type=quorum"],
            ),
            (
                "q5",
                QueueType::Quorum,
                None,
                &["x-delivery-limit=5", "x-queue-type=quorum"],
            ),
            (
                "dlx",
                QueueType::Classic,
                Some(3),
                &[
                    "x-dead-letter-exchange=",
                    "x-dead-letter-routing-key=dead",
                    "x-delivery-limit=3",
                    "x-queue-type=quorum",
                ],
            ),
            (
                "dlx",
                QueueType::Classic,
                None,
                &[
                    "x-dead-letter-exchange=",
                    "x-dead-letter-routing-key=dead",
                    "x-queue-type=quorum",
                ],
            ),
        ];
        for (queue, default_type, limit, expected) in cases {
            let spec = queue_spec(&configured, queue, default_type, limit);
            assert!(
                spec.durable && !spec.auto_delete && !spec.exclusive,
                "{queue}"
            );
            assert_eq!(
                arguments_of(&spec),
                expected.to_vec(),
                "{queue} with {default_type:?} and {limit:?}"
            );
        }
        // RabbitMQ refuses x-max-priority on a quorum queue.
        let both = QueueConfig::new("both")
            .with_max_priority(9)
            .quorum()
            .spec();
        assert_eq!(arguments_of(&both), ["x-queue-type=quorum"]);
    }

    #[test]
    fn queue_types_parse_as_celery_names_them() {
        assert_eq!(QueueType::parse("quorum"), Ok(QueueType::Quorum));
        assert_eq!(QueueType::parse(" Classic "), Ok(QueueType::Classic));
        assert!(QueueType::parse("stream").is_err());
        assert_eq!(QueueType::default(), QueueType::Classic);
    }
}
