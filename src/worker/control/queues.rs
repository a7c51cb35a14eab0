//! The queues the worker consumes, as `active_queues` reports them: those it started with,
//! then as `add_consumer` / `cancel_consumer` change them (Celery's
//! `consumer.task_consumer.queues`). Pure: the pidbox actor keeps one and starts or stops
//! the consumers.

use serde_json::Value;

/// The task queues consumed, in the order they were added, each as kombu's
/// `Queue.as_dict(recurse=True)` (a JSON object with a `name`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ActiveQueues(Vec<Value>);

impl ActiveQueues {
    /// Whether a queue named `name` is consumed.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|queue| name_of(queue) == Some(name))
    }

    /// Adds `queue` (a kombu queue dict) unless a queue of its name is consumed already, as
    /// Celery's `add_task_queue`; answers whether it was added (and a consumer must start).
    pub(crate) fn add(&mut self, queue: Value) -> bool {
        match name_of(&queue) {
            Some(name) if !self.contains(name) => {
                self.0.push(queue);
                true
            }
            _ => false,
        }
    }

    /// Removes the queue named `name`, as Celery's `cancel_task_queue`; answers whether it
    /// was consumed (and its consumer must stop).
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|queue| name_of(queue) != Some(name));
        self.0.len() != before
    }

    /// The `active_queues` reply.
    pub(crate) fn to_json(&self) -> Value {
        Value::Array(self.0.clone())
    }
}

impl FromIterator<Value> for ActiveQueues {
    fn from_iter<I: IntoIterator<Item = Value>>(queues: I) -> Self {
        let mut active = ActiveQueues::default();
        for queue in queues {
            active.add(queue);
        }
        active
    }
}

fn name_of(queue: &Value) -> Option<&str> {
    queue.get("name").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(queues: &ActiveQueues) -> Vec<String> {
        queues
            .to_json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|queue| queue["name"].as_str().expect("a name").to_string())
            .collect()
    }

    /// Each step: the operation, what it answers, the names listed after it.
    #[test]
    fn add_and_remove_table() {
        let mut queues: ActiveQueues = [json!({"name": "celery"})].into_iter().collect();
        enum Op {
            Add(Value),
            Remove(&'static str),
        }
        let steps = [
            (
                Op::Add(json!({"name": "extra"})),
                true,
                vec!["celery", "extra"],
            ),
            (
                Op::Add(json!({"name": "extra", "x": 1})),
                false,
                vec!["celery", "extra"],
            ),
            (
                Op::Add(json!({"no": "name"})),
                false,
                vec!["celery", "extra"],
            ),
            (Op::Remove("missing"), false, vec!["celery", "extra"]),
            (Op::Remove("celery"), true, vec!["extra"]),
            (Op::Remove("celery"), false, vec!["extra"]),
            (
                Op::Add(json!({"name": "celery"})),
                true,
                vec!["extra", "celery"],
            ),
        ];
        for (step, (op, answer, after)) in steps.into_iter().enumerate() {
            let got = match op {
                Op::Add(queue) => queues.add(queue),
                Op::Remove(name) => queues.remove(name),
            };
            assert_eq!(got, answer, "step {step}");
            assert_eq!(names(&queues), after, "step {step}");
        }
        assert!(queues.contains("extra"));
        assert!(!queues.contains("missing"));
    }

    #[test]
    fn duplicates_at_start_are_listed_once() {
        let queues: ActiveQueues = [json!({"name": "a"}), json!({"name": "a"})]
            .into_iter()
            .collect();
        assert_eq!(names(&queues), ["a"]);
    }
}
