//! Rate limits: Celery's rate strings (`"10/s"`, `"100/m"`, `"1000/h"`, a bare number
//! meaning per second) and a token bucket of capacity one per task name, as Celery's
//! worker keeps (`kombu.utils.limits.TokenBucket(rate, capacity=1)`). Pure: the caller
//! passes the time.

use std::time::{Duration, Instant};

/// Tasks per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

impl Rate {
    /// Parses Celery's rate string; `Ok(None)` for an empty string or zero (no limit).
    pub fn parse(text: &str) -> Result<Option<Rate>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let (count, unit) = text.split_once('/').unwrap_or((text, "s"));
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| format!("ValueError(\"invalid rate limit {text:?}\")"))?;
        let per_seconds = match unit.trim().chars().next() {
            Some('s') => 1.0,
            Some('m') => 60.0,
            Some('h') => 3600.0,
            _ => {
                return Err(format!(
                    "ValueError(\"invalid rate limit unit in {text:?}\")"
                ))
            }
        };
        if !count.is_finite() || count < 0.0 {
            return Err(format!("ValueError(\"invalid rate limit {text:?}\")"));
        }
        Ok((count > 0.0).then(|| Rate(count / per_seconds)))
    }

    /// Tasks per second.
    #[cfg(test)]
    pub fn per_second(&self) -> f64 {
        self.0
    }
}

/// Hands out one token every `1 / rate` seconds, at most one in advance (capacity one):
/// each caller is told how long to wait for its token, in arrival order.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: Rate,
    /// When the next token is free; `None` before the first.
    next_free: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: Rate) -> Self {
        TokenBucket {
            rate,
            next_free: None,
        }
    }

    /// Its rate.
    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes the next token: how long after `now` it becomes the caller's.
    pub(crate) fn take(&mut self, now: Instant) -> Duration {
        let interval = Duration::from_secs_f64(1.0 / self.rate.0);
        let start = self.next_free.map_or(now, |free| free.max(now));
        self.next_free = Some(start + interval);
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_strings() {
        let per_second = |text: &str| Rate::parse(text).map(|rate| rate.map(|r| r.per_second()));
        assert_eq!(per_second("10/s"), Ok(Some(10.0)));
        assert_eq!(per_second("120/m"), Ok(Some(2.0)));
        assert_eq!(per_second("3600/h"), Ok(Some(1.0)));
        assert_eq!(per_second("5"), Ok(Some(5.0)));
        assert_eq!(per_second(""), Ok(None));
        assert_eq!(per_second("0/s"), Ok(None));
        assert!(per_second("ten/s").is_err());
        assert!(per_second("10/x").is_err());
        assert!(per_second("-1/s").is_err());
    }

    #[test]
    fn tokens_are_spaced_by_the_rate() {
        let Ok(Some(rate)) = Rate::parse("10/s") else {
            panic!("10/s parses")
        };
        let mut bucket = TokenBucket::new(rate);
        let t0 = Instant::now();
        let waits: Vec<u128> = (0..4).map(|_| bucket.take(t0).as_millis()).collect();
        assert_eq!(waits, vec![0, 100, 200, 300]);
        // Idle for a while: the bucket holds one token, not more.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(bucket.take(later), Duration::ZERO);
        assert_eq!(bucket.take(later).as_millis(), 100);
    }
}
