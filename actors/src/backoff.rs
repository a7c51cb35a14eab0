//! [`Backoff`]: the one definition of how long to wait before attempt `n` of something
//! that keeps failing (reconnecting to RabbitMQ or Redis, restarting a consumer, retrying
//! a task): exponential from a minimum, capped at a maximum, with jitter so that many
//! clients that failed together do not try again in step.

use std::time::Duration;

/// How a delay is spread randomly below its exponential ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// None: the ceiling itself.
    None,
    /// Between half the ceiling and the ceiling.
    Half,
    /// Between the minimum and the ceiling (Celery's `retry_jitter`).
    Full,
}

/// Exponential backoff: attempt `n` (0-based) waits up to `min * 2^n`, never more than
/// `max` nor less than `min` (before jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay of the first attempt.
    pub min: Duration,
    /// No delay is longer than this.
    pub max: Duration,
    /// How delays are spread.
    pub jitter: Jitter,
}

impl Backoff {
    /// The delay of attempt `attempt` before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.min.saturating_mul(factor).min(self.max).max(self.min)
    }

    /// The delay of attempt `attempt`, with a random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, fastrand::f64())
    }

    /// The delay of attempt `attempt`, with `fraction` (in [0, 1]) placing it within its
    /// jitter: the same inputs give the same delay.
    pub fn delay_at(&self, attempt: u32, fraction: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let fraction = fraction.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Half => ceiling.mul_f64(0.5 + fraction / 2.0),
            Jitter::Full => self.min + (ceiling - self.min).mul_f64(fraction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let ms = Duration::from_millis;
        let backoff = |jitter| Backoff {
            min: ms(100),
            max: ms(1000),
            jitter,
        };
        // (jitter, attempt, fraction) -> delay in ms
        let rows = [
            (Jitter::None, 0, 0.5, 100),
            (Jitter::None, 3, 0.5, 800),
            (Jitter::None, 4, 0.0, 1000),
            (Jitter::None, u32::MAX, 0.0, 1000),
            (Jitter::Half, 2, 0.0, 200),
            (Jitter::Half, 2, 1.0, 400),
            (Jitter::Half, 9, 0.5, 750),
            (Jitter::Full, 0, 0.7, 100),
            (Jitter::Full, 2, 0.0, 100),
            (Jitter::Full, 2, 0.5, 250),
            (Jitter::Full, 9, 1.0, 1000),
        ];
        for (jitter, attempt, fraction, expected) in rows {
            assert_eq!(
                backoff(jitter).delay_at(attempt, fraction),
                ms(expected),
                "{jitter:?}, attempt {attempt}, fraction {fraction}"
            );
        }
    }

    #[test]
    fn random_delays_stay_within_their_jitter() {
        for jitter in [Jitter::Half, Jitter::Full] {
            let backoff = Backoff {
                min: Duration::from_millis(10),
                max: Duration::from_secs(1),
                jitter,
            };
            for attempt in 0..12 {
                let delay = backoff.delay(attempt);
                assert!(delay <= backoff.ceiling(attempt), "{jitter:?} {attempt}");
                assert!(delay >= backoff.ceiling(attempt) / 2 || jitter == Jitter::Full);
                assert!(delay >= backoff.min / 2);
            }
        }
    }
}
