//! Beat: a periodic scheduler (Celery's `celery beat`) that sends tasks on intervals and
//! crontab expressions, from code ([`Beat::builder`]) or a TOML file ([`Beat::from_file`]).
//!
//! Many instances may run; one leads (it holds an exclusive RabbitMQ queue, see
//! [`leader`]) and the others take over within a `leader_retry` of its connection dying.
//! The last run of each entry is kept in a RabbitMQ queue ([`state`]), so a restart or a
//! takeover neither skips nor repeats a run; runs missed while no instance was up are sent
//! once ([`due`]). Each run's task id is a UUID v5 of the beat, the entry and the slot
//! ([`run_id`]).
//!
//! | module | what it holds |
//! |---|---|
//! | [`schedule`] | [`Schedule`]: interval and crontab slots, `"10s"` intervals |
//! | [`due`] | the pure decision: what runs now, and when next |
//! | [`entry`] | [`Entry`] and [`run_id`] |
//! | [`file`] | the TOML schedule |
//! | [`state`] | the last runs and their RabbitMQ queue |
//! | [`leader`] | the lock queue |
//! | `actor` | the scheduler actor |

mod actor;
pub mod due;
pub mod entry;
mod error;
pub mod file;
pub mod leader;
pub mod schedule;
pub mod state;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use actix::{Addr, Supervisor};
pub use chrono_tz::Tz;

use self::actor::{BeatActor, IsLeading, Plan, StopBeat};
pub use self::entry::{run_id, Entry};
pub use self::error::BeatError;
pub use self::schedule::Schedule;
use crate::actors::BrokerClient;
use crate::app::{Config, Producer, Signature};

/// The beat name when none is given: its queues are `celeriac.beat.celeriac.*`.
pub const DEFAULT_NAME: &str = "celeriac";

/// How often a follower tries to take the lead by default.
pub const DEFAULT_LEADER_RETRY: Duration = Duration::from_secs(1);

/// A schedule ready to run: a name (instances with the same name share one leader and one
/// state), entries, and how often followers try to lead.
#[derive(Debug, Clone)]
pub struct Beat {
    name: String,
    entries: Vec<Entry>,
    leader_retry: Duration,
}

impl Beat {
    /// Builds a schedule in code.
    pub fn builder() -> BeatBuilder {
        BeatBuilder {
            name: DEFAULT_NAME.to_string(),
            entries: Vec::new(),
            error: None,
            leader_retry: DEFAULT_LEADER_RETRY,
        }
    }

    /// Reads a TOML schedule file (see [`file`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Beat, BeatError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| BeatError::Schedule {
            source_name: path.display().to_string(),
            reason: format!("cannot be read: {error}"),
        })?;
        file::parse(&text, &path.display().to_string())
    }

    /// The name: the lock queue, the state queue and the run ids derive from it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How often a follower tries to take the lead.
    pub fn leader_retry(&self) -> Duration {
        self.leader_retry
    }

    /// The same schedule under another name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same schedule with another leader retry period (zero is taken as 1 ms).
    pub fn with_leader_retry(mut self, retry: Duration) -> Self {
        self.leader_retry = retry.max(Duration::from_millis(1));
        self
    }

    /// Starts the scheduler (supervised) on the current actix system: it sends through a
    /// [`Producer`] on `broker` (routes and queue declarations as `config` says). Leader
    /// election needs RabbitMQ; on the in-process broker the one instance leads.
    pub fn start(self, broker: BrokerClient, config: &Config) -> BeatHandle {
        let producer = Producer::new(broker.clone(), config);
        let plan = Plan {
            name: self.name,
            entries: self.entries,
            leader_retry: self.leader_retry,
        };
        let actor = BeatActor::new(plan, broker, producer);
        // A restarted actor is the same one (Supervised::restarting resets its role).
        let addr = Supervisor::start(move |_| actor);
        BeatHandle { addr }
    }
}

/// Builds a [`Beat`]; the first mistake is reported by [`BeatBuilder::build`].
#[derive(Debug)]
pub struct BeatBuilder {
    name: String,
    entries: Vec<Entry>,
    error: Option<BeatError>,
    leader_retry: Duration,
}

impl BeatBuilder {
    /// The beat's name (default [`DEFAULT_NAME`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How often a follower tries to take the lead (default one second).
    pub fn leader_retry(mut self, retry: Duration) -> Self {
        self.leader_retry = retry.max(Duration::from_millis(1));
        self
    }

    /// Sends `signature` every `period`, at the multiples of `period` since the epoch.
    pub fn every(self, name: impl Into<String>, period: Duration, signature: Signature) -> Self {
        let name = name.into();
        match Schedule::every(period) {
            Some(schedule) => self.entry(Entry {
                name,
                schedule,
                signature,
            }),
            None => self.fail(BeatError::entry(name, "every", "must be longer than zero")),
        }
    }

    /// Sends `signature` when the cron `expression` matches in `timezone`.
    pub fn cron(
        self,
        name: impl Into<String>,
        expression: &str,
        timezone: Tz,
        signature: Signature,
    ) -> Self {
        let name = name.into();
        match Schedule::cron(expression, timezone) {
            Ok(schedule) => self.entry(Entry {
                name,
                schedule,
                signature,
            }),
            Err(reason) => self.fail(BeatError::entry(
                name,
                "cron",
                format!("\"{expression}\": {reason}"),
            )),
        }
    }

    /// Adds an entry. Its signature may not carry callbacks (`with_link`,
    /// `with_link_error`): a run is one message, published with the beat's state.
    pub fn entry(mut self, entry: Entry) -> Self {
        if !entry.signature.link.is_empty() || !entry.signature.link_error.is_empty() {
            let reason = "callbacks (link, link_error) are not supported in a beat entry";
            return self.fail(BeatError::entry(entry.name, "signature", reason));
        }
        self.entries.push(entry);
        self
    }

    fn fail(mut self, error: BeatError) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// The schedule, or its first mistake (an entry name given twice, no entries, an empty
    /// beat name).
    pub fn build(self) -> Result<Beat, BeatError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let problem = |reason: String| BeatError::Schedule {
            source_name: "from code".into(),
            reason,
        };
        if self.name.is_empty() {
            return Err(problem("the beat's name is empty".into()));
        }
        if self.entries.is_empty() {
            return Err(problem("no entries".into()));
        }
        let mut seen = HashSet::new();
        for entry in &self.entries {
            if !seen.insert(entry.name.as_str()) {
                return Err(problem(format!("entry \"{}\" is given twice", entry.name)));
            }
        }
        Ok(Beat {
            name: self.name,
            entries: self.entries,
            leader_retry: self.leader_retry,
        })
    }
}

/// A running scheduler.
#[derive(Debug, Clone)]
pub struct BeatHandle {
    addr: Addr<BeatActor>,
}

impl BeatHandle {
    /// Whether this instance leads now.
    pub async fn is_leading(&self) -> bool {
        self.addr.send(IsLeading).await.unwrap_or(false)
    }

    /// Stops scheduling; a leader saves its state and releases the lock, so another
    /// instance leads at its next try.
    pub async fn stop(self) -> Result<(), BeatError> {
        self.addr
            .send(StopBeat)
            .await
            .map_err(|_| BeatError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_with_callbacks_is_refused() {
        let linked = Signature::new("tasks.a").with_link(Signature::new("tasks.b"));
        let built = Beat::builder()
            .every("a", Duration::from_secs(1), linked)
            .build();
        assert!(
            matches!(built, Err(BeatError::Entry { ref field, .. }) if field == "signature"),
            "{built:?}"
        );
        let plain = Beat::builder()
            .every("a", Duration::from_secs(1), Signature::new("tasks.a"))
            .build();
        assert!(plain.is_ok(), "{plain:?}");
    }
}
