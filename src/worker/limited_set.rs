//! `LimitedSet`: Celery's bounded set of revoked task ids (`celery.utils.collections`):
//! at most `maxlen` ids, each forgotten `expires` seconds after it was added, oldest
//! evicted first when full. Pure: the caller passes the time.

use std::collections::{HashMap, VecDeque};

/// Celery's `REVOKES_MAX` (`CELERY_WORKER_REVOKES_MAX`).
pub(crate) const REVOKES_MAX: usize = 50_000;
/// Celery's `REVOKE_EXPIRES` in seconds (`CELERY_WORKER_REVOKE_EXPIRES`).
pub(crate) const REVOKE_EXPIRES: f64 = 10_800.0;

/// A bounded set of ids with expiry.
#[derive(Debug, Clone)]
pub(crate) struct LimitedSet {
    maxlen: usize,
    expires: f64,
    /// When each id was (last) added, epoch seconds.
    added: HashMap<String, f64>,
    /// Ids in the order added; may hold stale entries (re-added ids), skipped on read.
    order: VecDeque<(String, f64)>,
}

impl Default for LimitedSet {
    fn default() -> Self {
        LimitedSet::new(REVOKES_MAX, REVOKE_EXPIRES)
    }
}

impl LimitedSet {
    /// An empty set of at most `maxlen` ids kept `expires` seconds each.
    pub(crate) fn new(maxlen: usize, expires: f64) -> Self {
        LimitedSet {
            maxlen,
            expires,
            added: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Adds `id` at time `now` (re-adding refreshes it), then purges.
    pub(crate) fn add(&mut self, id: String, now: f64) {
        self.added.insert(id.clone(), now);
        self.order.push_back((id, now));
        self.purge(now);
    }

    /// Whether `id` is in the set and not expired at `now`.
    pub(crate) fn contains(&self, id: &str, now: f64) -> bool {
        self.added.get(id).is_some_and(|at| now - at < self.expires)
    }

    /// Drops expired ids and, past `maxlen`, the oldest.
    pub(crate) fn purge(&mut self, now: f64) {
        while let Some((id, at)) = self.order.front() {
            let current = self.added.get(id).copied();
            let stale = current != Some(*at);
            let expired = now - at >= self.expires;
            let over = self.added.len() > self.maxlen;
            if stale {
                self.order.pop_front();
            } else if expired || over {
                let id = id.clone();
                self.added.remove(&id);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }

    /// The ids, oldest first.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.entries().into_iter().map(|(id, _)| id).collect()
    }

    /// The ids with when they were added, oldest first.
    pub(crate) fn entries(&self) -> Vec<(String, f64)> {
        self.order
            .iter()
            .filter(|(id, at)| self.added.get(id) == Some(at))
            .cloned()
            .collect()
    }

    /// How many ids it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.added.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expire_and_the_oldest_go_first_when_full() {
        let mut set = LimitedSet::new(3, 100.0);
        for (n, id) in ["a", "b", "c", "d"].iter().enumerate() {
            set.add(id.to_string(), n as f64);
        }
        assert_eq!(set.ids(), vec!["b", "c", "d"]);
        assert!(!set.contains("a", 4.0));
        assert!(set.contains("b", 4.0));
        assert!(
            !set.contains("b", 101.0),
            "expired 100 s after it was added"
        );
        set.purge(102.5);
        assert_eq!(set.ids(), vec!["d"]);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn readding_refreshes_an_id() {
        let mut set = LimitedSet::new(10, 100.0);
        set.add("a".into(), 0.0);
        set.add("b".into(), 1.0);
        set.add("a".into(), 50.0);
        assert_eq!(set.ids(), vec!["b", "a"]);
        set.purge(120.0);
        assert_eq!(set.ids(), vec!["a"]);
        assert!(set.contains("a", 149.0));
    }

    #[test]
    fn celery_defaults() {
        let set = LimitedSet::default();
        assert_eq!((set.maxlen, set.expires), (50_000, 10_800.0));
    }
}
