//! [`Entry`]: one periodic task, and the deterministic id of each of its runs.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::schedule::Schedule;
use crate::app::Signature;

/// One periodic task: what to send and when.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unique within its beat; the last run is kept under this name.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// What each run sends (its id is replaced by the run's id).
    pub signature: Signature,
}

/// The task id of the run of `entry` (in beat `beat`) scheduled at `slot`: a UUID v5 of
/// the three, so every instance names a run alike, and a run sent twice (say, by a leader
/// killed between sending it and storing it) is recognisable as the same run.
pub fn run_id(beat: &str, entry: &str, slot: DateTime<Utc>) -> String {
    let name = format!(
        "celeriac-beat\u{0}{beat}\u{0}{entry}\u{0}{}",
        slot.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_depend_on_beat_entry_and_slot_only() {
        let slot = DateTime::from_timestamp_millis(1_790_000_000_000).expect("valid");
        let later = DateTime::from_timestamp_millis(1_790_000_001_000).expect("valid");
        let id = run_id("b", "e", slot);
        assert_eq!(id, run_id("b", "e", slot));
        assert_ne!(id, run_id("b", "e", later));
        assert_ne!(id, run_id("b", "f", slot));
        assert_ne!(id, run_id("c", "e", slot));
        // No ambiguity from where a separator falls.
        assert_ne!(run_id("b.x", "e", slot), run_id("b", "x.e", slot));
        assert!(Uuid::parse_str(&id).is_ok());
    }
}
