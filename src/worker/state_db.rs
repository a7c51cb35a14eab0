//! The state db (Celery's `--statedb`, `CELERIAC_STATE_DB`): the revoked ids survive a
//! restart. celeriac's own format, one JSON document:
//! `{"format": "celeriac-state-db", "version": 1, "revoked": [["<task id>", <epoch seconds
//! revoked>], ...]}`, oldest first, written whole to `<file>.tmp` then renamed over the
//! file. Entries older than Celery's `REVOKE_EXPIRES` are dropped when read.

use std::path::Path;

use serde_json::{json, Value};

use super::limited_set::LimitedSet;

/// Reads the revoked ids of the state db at `path`, purged at `now`. A missing file is an
/// empty set; an unreadable one is logged and taken as empty (the worker still starts).
pub(crate) fn load(path: &Path, now: f64) -> LimitedSet {
    let mut set = LimitedSet::default();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return set,
        Err(error) => {
            log::warn!(
                "state db {}: cannot read it ({error}); starting without revoked ids",
                path.display()
            );
            return set;
        }
    };
    match parse(&text) {
        Some(entries) => {
            for (id, at) in entries {
                set.add(id, at);
            }
            set.purge(now);
        }
        None => log::warn!(
            "state db {}: not a celeriac state db; starting without revoked ids",
            path.display()
        ),
    }
    set
}

/// The entries of a state db document; `None` when it is not one.
fn parse(text: &str) -> Option<Vec<(String, f64)>> {
    let document: Value = serde_json::from_str(text).ok()?;
    if document.get("format")?.as_str()? != "celeriac-state-db" {
        return None;
    }
    let entries = document.get("revoked")?.as_array()?;
    Some(
        entries
            .iter()
            .filter_map(|entry| {
                let pair = entry.as_array()?;
                Some((pair.first()?.as_str()?.to_string(), pair.get(1)?.as_f64()?))
            })
            .collect(),
    )
}

/// The document for `entries`.
fn render(entries: &[(String, f64)]) -> String {
    json!({"format": "celeriac-state-db", "version": 1, "revoked": entries}).to_string()
}

/// Writes the state db (blocking: call it off the async threads).
pub(crate) fn save(path: &Path, entries: &[(String, f64)]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, render(entries))?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_drops_expired_ids() {
        let dir = std::env::temp_dir().join(format!("celeriac-statedb-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("state.db");
        assert!(load(&path, 0.0).ids().is_empty(), "missing file: empty");
        save(&path, &[("old".into(), 0.0), ("new".into(), 20_000.0)]).expect("saved");
        assert_eq!(load(&path, 20_001.0).ids(), vec!["new"]);
        std::fs::write(&path, "{not json").expect("written");
        assert!(load(&path, 0.0).ids().is_empty(), "garbage: empty");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
