//! [`Schedule`]: when an entry is due. Interval slots are aligned to the Unix epoch (every
//! instance computes the same slots); crontab slots follow a cron expression in a time
//! zone (croner, chrono-tz).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// When an entry runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every period, at the multiples of the period since the Unix epoch (`10s` fires at
    /// :00, :10, :20...; `1h` on the hour, UTC).
    Every(Duration),
    /// At the times a cron expression matches, read in a time zone.
    Cron {
        /// The expression as given (`*/5 * * * *`; an optional leading seconds field).
        expression: String,
        /// The parsed expression.
        cron: Box<croner::Cron>,
        /// The zone the expression's fields are read in.
        timezone: Tz,
    },
}

impl Schedule {
    /// An interval schedule; `None` for a zero period.
    pub fn every(period: Duration) -> Option<Self> {
        (period.as_millis() > 0).then_some(Schedule::Every(period))
    }

    /// A crontab schedule, or why the expression cannot be read.
    pub fn cron(expression: &str, timezone: Tz) -> Result<Self, String> {
        let cron = croner::Cron::from_str(expression).map_err(|error| error.to_string())?;
        Ok(Schedule::Cron {
            expression: expression.to_string(),
            cron: Box::new(cron),
            timezone,
        })
    }

    /// The first slot strictly after `time` (`None`: the expression never matches again).
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(period) => {
                let period = period_millis(*period);
                let slot = time.timestamp_millis().div_euclid(period).checked_add(1)?;
                DateTime::from_timestamp_millis(slot.checked_mul(period)?)
            }
            Schedule::Cron { cron, timezone, .. } => cron
                .find_next_occurrence(&timezone.from_utc_datetime(&time.naive_utc()), false)
                .ok()
                .map(|next| next.with_timezone(&Utc)),
        }
    }

    /// The last slot at or before `time` (`None`: there is none).
    pub fn latest_at_or_before(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(period) => {
                let period = period_millis(*period);
                let slot = time.timestamp_millis().div_euclid(period);
                DateTime::from_timestamp_millis(slot.checked_mul(period)?)
            }
            Schedule::Cron { cron, timezone, .. } => cron
                .find_previous_occurrence(&timezone.from_utc_datetime(&time.naive_utc()), true)
                .ok()
                .map(|previous| previous.with_timezone(&Utc)),
        }
    }
}

/// A period in whole milliseconds, at least one.
fn period_millis(period: Duration) -> i64 {
    i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Reads an interval such as `500ms`, `10s`, `5m`, `2h`, `1d` (one number, one unit).
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" is not a number followed by ms, s, m, h or d"))?;
    let unit_millis = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown unit \"{other}\" in \"{text}\" (ms, s, m, h or d)"
            ))
        }
    };
    let millis = number
        .checked_mul(unit_millis)
        .ok_or_else(|| format!("\"{text}\" is too long"))?;
    if millis == 0 {
        return Err("an interval must be longer than zero".into());
    }
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn intervals_are_read_with_their_unit() {
        let table: &[(&str, Result<u64, ()>)] = &[
            ("500ms", Ok(500)),
            ("10s", Ok(10_000)),
            ("5m", Ok(300_000)),
            ("2h", Ok(7_200_000)),
            ("1d", Ok(86_400_000)),
            (" 3s ", Ok(3_000)),
            ("0s", Err(())),
            ("10", Err(())),
            ("s", Err(())),
            ("10 parsecs", Err(())),
            ("-1s", Err(())),
        ];
        for (text, expected) in table {
            let got = parse_every(text)
                .map(|period| period.as_millis() as u64)
                .map_err(|_| ());
            assert_eq!(&got, expected, "parse_every({text:?})");
        }
    }

    #[test]
    fn interval_slots_are_aligned_to_the_epoch() {
        let every = Schedule::every(Duration::from_secs(10)).expect("non-zero");
        let table = [
            // (time, next slot after it, latest slot at or before it)
            (
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:00Z",
            ),
            (
                "2026-01-01T00:00:03.5Z",
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:00Z",
            ),
            (
                "2026-01-01T00:00:09.999Z",
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:00Z",
            ),
        ];
        for (time, next, latest) in table {
            assert_eq!(
                every.next_after(at(time)),
                Some(at(next)),
                "next after {time}"
            );
            assert_eq!(
                every.latest_at_or_before(at(time)),
                Some(at(latest)),
                "latest at or before {time}"
            );
        }
        assert!(Schedule::every(Duration::ZERO).is_none());
    }

    #[test]
    fn cron_slots_follow_the_time_zone() {
        // 09:30 every day, Kolkata time (UTC+05:30): 04:00 UTC.
        let daily = Schedule::cron("30 9 * * *", chrono_tz::Asia::Kolkata).expect("valid");
        let table = [
            (
                "2026-03-01T03:59:59Z",
                "2026-03-01T04:00:00Z",
                "2026-02-28T04:00:00Z",
            ),
            (
                "2026-03-01T04:00:00Z",
                "2026-03-02T04:00:00Z",
                "2026-03-01T04:00:00Z",
            ),
        ];
        for (time, next, latest) in table {
            assert_eq!(
                daily.next_after(at(time)),
                Some(at(next)),
                "next after {time}"
            );
            assert_eq!(
                daily.latest_at_or_before(at(time)),
                Some(at(latest)),
                "latest at or before {time}"
            );
        }
        let five = Schedule::cron("*/5 * * * *", Tz::UTC).expect("valid");
        assert_eq!(
            five.next_after(at("2026-03-01T10:07:12Z")),
            Some(at("2026-03-01T10:10:00Z"))
        );
        assert!(Schedule::cron("61 * * * *", Tz::UTC).is_err());
        assert!(Schedule::cron("every day", Tz::UTC).is_err());
    }
}
