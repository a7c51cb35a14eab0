//! [`BeatError`]: what can go wrong reading a schedule or running the scheduler.

use crate::actors::BrokerError;
use crate::app::SendError;

/// A schedule that cannot be used, or a scheduler that cannot talk to the broker.
#[derive(Debug, derive_more::Display, derive_more::Error, derive_more::From)]
pub enum BeatError {
    /// One field of one entry is wrong (an entry without a name is named by its position).
    #[display("schedule entry \"{entry}\": field `{field}`: {reason}")]
    #[from(skip)]
    Entry {
        /// The entry's name, or `#N` (1-based) when it has none.
        entry: String,
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The schedule as a whole is wrong: unreadable file, TOML syntax, a name given twice.
    #[display("schedule {source_name}: {reason}")]
    #[from(skip)]
    Schedule {
        /// Where the schedule came from (a file path, or "from code").
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The broker refused or lost an operation (declare, publish, consume).
    #[display("beat: {_0}")]
    Broker(BrokerError),
    /// Sending a run's task failed.
    #[display("beat: {_0}")]
    Send(SendError),
    /// The stored last runs could not be read.
    #[display("beat state: {reason}")]
    #[from(skip)]
    State {
        /// What is wrong with it.
        reason: String,
    },
    /// The scheduler actor is gone.
    #[display("the beat scheduler is not running")]
    #[from(skip)]
    Stopped,
}

impl BeatError {
    /// An error about `field` of `entry`.
    pub(crate) fn entry(
        entry: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        BeatError::Entry {
            entry: entry.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
