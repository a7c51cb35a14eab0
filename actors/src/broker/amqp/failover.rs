//! Failover across the nodes of a RabbitMQ cluster: Celery's `;`-separated broker URL list
//! (`amqp://a;amqp://b;amqp://c`), tried in order, and round-robin after a failure (kombu's
//! default `failover_strategy`). Pure decisions only: the broker actor does the connecting.

use std::time::Duration;

use super::redact::{redact_url, split_list};
use super::ReconnectPolicy;

/// The node URLs of a broker URL: one URL, or Celery's `;`-separated list. Blank entries
/// are dropped, each URL trimmed; a `;` inside a password does not split (only a `;`
/// followed by `scheme://` does, as in `redact_url`).
pub fn node_urls(url: &str) -> Vec<String> {
    split_list(url)
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect()
}

/// The nodes of the cluster and the one in use: round-robin, as kombu's failover.
#[derive(Clone)]
pub(super) struct Nodes {
    /// The node URLs, in the order given (passwords included: never shown).
    urls: Vec<String>,
    /// The index of the node in use, or tried last.
    current: usize,
}

impl Nodes {
    /// The nodes of `url` (one URL or a `;`-separated list), starting with the first. A
    /// blank URL yields one empty node, whose connection then fails saying the URL is invalid.
    pub(super) fn new(url: &str) -> Self {
        let mut urls = node_urls(url);
        if urls.is_empty() {
            urls.push(String::new());
        }
        Nodes { urls, current: 0 }
    }

    /// How many nodes there are.
    pub(super) fn len(&self) -> usize {
        self.urls.len()
    }

    /// The URL of the node in use.
    pub(super) fn current(&self) -> &str {
        &self.urls[self.current]
    }

    /// The node in use, password masked: what log lines and errors name.
    pub(super) fn current_redacted(&self) -> String {
        redact_url(self.current())
    }

    /// Moves to the next node (after the last, the first again) and answers its URL.
    pub(super) fn advance(&mut self) -> &str {
        self.current = (self.current + 1) % self.urls.len();
        self.current()
    }
}

/// The pause before attempt `attempt` (0-based) of a reconnection over `nodes` nodes, each
/// attempt on the next node: the policy's backoff before each round over the nodes (its
/// `round`-th delay), none between the nodes of a round, so that a live node is reached
/// without waiting out the dead ones' backoff.
pub(super) fn pause_before(policy: &ReconnectPolicy, attempt: u32, nodes: usize) -> Duration {
    let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
    if attempt % nodes == 0 {
        policy.delay(attempt / nodes)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{node_urls, pause_before, Nodes};
    use crate::broker::amqp::ReconnectPolicy;

    #[test]
    fn a_list_is_split_at_each_url() {
        assert_eq!(node_urls("amqp://a"), vec!["amqp://a"]);
        assert_eq!(
            node_urls(" amqp://u:p@a:5672//;amqp://u:p;w@b ;amqps://c"),
            vec!["amqp://u:p@a:5672//", "amqp://u:p;w@b", "amqps://c"]
        );
        assert!(node_urls(" ").is_empty());
    }

    #[test]
    fn nodes_go_round_robin_from_the_first() {
        let mut nodes = Nodes::new("amqp://u:secret@a;amqp://u:secret@b;amqp://u:secret@c");
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes.current(), "amqp://u:secret@a");
        assert_eq!(nodes.current_redacted(), "amqp://u:***@a");
        let order: Vec<String> = (0..4).map(|_| nodes.advance().to_string()).collect();
        assert_eq!(
            order,
            [
                "amqp://u:secret@b",
                "amqp://u:secret@c",
                "amqp://u:secret@a",
                "amqp://u:secret@b"
            ]
        );
        let mut single = Nodes::new("amqp://a");
        assert_eq!(single.advance(), "amqp://a");
        assert_eq!(Nodes::new("").len(), 1);
    }

    #[test]
    fn backoff_comes_before_each_round_not_between_nodes() {
        let policy = ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_attempts: None,
        };
        // (attempt, nodes, the delay's range: policy.delay(round) is base/2..=base)
        let cases = [
            (0, 3, Some(100)),
            (1, 3, None),
            (2, 3, None),
            (3, 3, Some(200)),
            (6, 3, Some(400)),
            (0, 1, Some(100)),
            (1, 1, Some(200)),
            (2, 1, Some(400)),
            (0, 0, Some(100)),
        ];
        for (attempt, nodes, base_ms) in cases {
            let pause = pause_before(&policy, attempt, nodes);
            match base_ms {
                None => assert_eq!(pause, Duration::ZERO, "attempt {attempt} of {nodes}"),
                Some(base) => {
                    let base = Duration::from_millis(base);
                    assert!(
                        pause >= base / 2 && pause <= base,
                        "attempt {attempt} of {nodes}: {pause:?} not in {:?}..={base:?}",
                        base / 2
                    );
                }
            }
        }
    }
}
