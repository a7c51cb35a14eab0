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

/// How a task queue is declared. Producers and workers must declare a queue identically
/// (and as Python does, for a shared queue), or RabbitMQ refuses with 406.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue name.
    pub name: String,
    /// `x-max-priority` (Celery's `task_queue_max_priority`): priorities 0..=N are honoured.
    pub max_priority: Option<u8>,
    /// A quorum queue (`x-queue-type: quorum`, Celery's `task_default_queue_type`).
    pub quorum: bool,
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
        if let Some(max) = self.max_priority {
            arguments.insert("x-max-priority".into(), AMQPValue::LongInt(i32::from(max)));
        }
        if self.quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
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

/// The declaration of `queue`: its `QueueConfig` among `queues`, else a plain durable one.
pub fn queue_spec(queues: &[QueueConfig], queue: &str) -> QueueSpec {
    queues
        .iter()
        .find(|config| config.name == queue)
        .map_or_else(|| QueueSpec::durable(queue), QueueConfig::spec)
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
        assert!(queue_spec(&[], "plain").arguments.inner().is_empty());
    }
}
