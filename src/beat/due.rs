//! When an entry runs: a pure decision from its schedule, its last run and the time now.
//!
//! - never run (no last run, and no baseline: the scheduler passes the time it started
//!   leading for entries that never ran): nothing now, the first run at the next slot;
//! - the latest slot at or before now is later than the last run: run it now, once, even
//!   when several slots were missed (one catch-up run, not a burst);
//! - otherwise: nothing now, the next run at the first slot after the last run (a last run
//!   in the future, from a host whose clock is ahead, is not run again).

use chrono::{DateTime, Utc};

use super::schedule::Schedule;

/// What to do for one entry now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The slot to send now, if any: the run is named after this time.
    pub run: Option<DateTime<Utc>>,
    /// The slot after that (`None`: never again).
    pub next: Option<DateTime<Utc>>,
    /// How many slots were skipped before `run` (missed while no scheduler was up).
    pub skipped: u64,
}

/// Decides for an entry with `schedule` whose last run was `last`, at `now`.
pub fn decide(schedule: &Schedule, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Due {
    let Some(last) = last else {
        return Due {
            run: None,
            next: schedule.next_after(now),
            skipped: 0,
        };
    };
    match schedule.latest_at_or_before(now) {
        Some(latest) if latest > last => Due {
            run: Some(latest),
            next: schedule.next_after(latest),
            skipped: skipped_between(schedule, last, latest),
        },
        _ => Due {
            run: None,
            next: schedule.next_after(last),
            skipped: 0,
        },
    }
}

/// The slots strictly between `last` and `latest`, counted up to a bound (for a log line).
fn skipped_between(schedule: &Schedule, last: DateTime<Utc>, latest: DateTime<Utc>) -> u64 {
    const COUNT_AT_MOST: u64 = 10_000;
    if let Schedule::Every(period) = schedule {
        let span = (latest - last).num_milliseconds().max(0) as u128;
        return u64::try_from(span / period.as_millis().max(1))
            .unwrap_or(u64::MAX)
            .saturating_sub(1);
    }
    let mut count = 0;
    let mut slot = last;
    while count < COUNT_AT_MOST {
        match schedule.next_after(slot) {
            Some(next) if next < latest => {
                count += 1;
                slot = next;
            }
            _ => break,
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a test time")
            .with_timezone(&Utc)
    }

    fn opt(text: &str) -> Option<DateTime<Utc>> {
        (!text.is_empty()).then(|| at(text))
    }

    #[test]
    fn interval_decisions() {
        let every = Schedule::every(Duration::from_secs(10)).expect("non-zero");
        // (last run, now, run now, next, skipped)
        let table = [
            // Never run: wait for the next slot, send nothing for the past.
            ("", "2026-01-01T00:00:03Z", "", "2026-01-01T00:00:10Z", 0),
            // Just ran: wait.
            (
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:03Z",
                "",
                "2026-01-01T00:00:10Z",
                0,
            ),
            // Due exactly now.
            (
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:20Z",
                0,
            ),
            // Woken a little late: the slot keeps its own time.
            (
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:10.040Z",
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:20Z",
                0,
            ),
            // Down for a minute: one catch-up run for the latest slot, five skipped.
            (
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:01:05Z",
                "2026-01-01T00:01:00Z",
                "2026-01-01T00:01:10Z",
                5,
            ),
            // A last run in the future (another host's clock is ahead): not run again.
            (
                "2026-01-01T00:00:20Z",
                "2026-01-01T00:00:19Z",
                "",
                "2026-01-01T00:00:30Z",
                0,
            ),
            // The last run is the latest slot: nothing (a restart does not resend it).
            (
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:19.999Z",
                "",
                "2026-01-01T00:00:20Z",
                0,
            ),
        ];
        assert_decisions(&every, &table);
    }

    /// Each row: (last run, now, the run due, the next run, runs skipped); "" is none.
    fn assert_decisions(schedule: &Schedule, table: &[(&str, &str, &str, &str, u64)]) {
        for &(last, now, run, next, skipped) in table {
            let due = decide(schedule, opt(last), at(now));
            assert_eq!(
                due,
                Due {
                    run: opt(run),
                    next: opt(next),
                    skipped
                },
                "last {last:?}, now {now}"
            );
        }
    }

    #[test]
    fn crontab_decisions() {
        let five = Schedule::cron("*/5 * * * *", chrono_tz::Tz::UTC).expect("valid");
        let table = [
            ("", "2026-01-01T10:07:00Z", "", "2026-01-01T10:10:00Z", 0),
            (
                "2026-01-01T10:05:00Z",
                "2026-01-01T10:07:00Z",
                "",
                "2026-01-01T10:10:00Z",
                0,
            ),
            (
                "2026-01-01T10:05:00Z",
                "2026-01-01T10:10:00Z",
                "2026-01-01T10:10:00Z",
                "2026-01-01T10:15:00Z",
                0,
            ),
            // Down from 10:05 to 11:02: one run for 11:00, the 10:10..10:55 slots skipped.
            (
                "2026-01-01T10:05:00Z",
                "2026-01-01T11:02:00Z",
                "2026-01-01T11:00:00Z",
                "2026-01-01T11:05:00Z",
                10,
            ),
        ];
        assert_decisions(&five, &table);
    }
}
