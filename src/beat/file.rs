//! A schedule from TOML: an optional `name` and `leader_retry`, then `[[entry]]` tables
//! with `name`, `task`, `args`, `kwargs`, `queue`, `every = "10s"` or
//! `cron = "*/5 * * * *"`, and `timezone` (for `cron`; UTC by default). Errors name the
//! entry and the field.

use std::str::FromStr;

use chrono_tz::Tz;
use serde_json::{Map, Value};
use toml::Table;

use super::schedule::{parse_every, Schedule};
use super::{Beat, BeatError, Entry};
use crate::app::Signature;

/// The fields an `[[entry]]` may have.
const ENTRY_FIELDS: &[&str] = &[
    "name", "task", "args", "kwargs", "queue", "every", "cron", "timezone",
];

/// Reads a schedule; `source` (a path, say) names it in errors.
pub fn parse(text: &str, source: &str) -> Result<Beat, BeatError> {
    let schedule_error = |reason: String| BeatError::Schedule {
        source_name: source.to_string(),
        reason,
    };
    let table: Table = text
        .parse()
        .map_err(|error: toml::de::Error| schedule_error(error.to_string()))?;
    let mut builder = Beat::builder();
    for (key, value) in &table {
        match key.as_str() {
            "name" => {
                let name = value
                    .as_str()
                    .ok_or_else(|| schedule_error("`name` must be a string".into()))?;
                builder = builder.name(name);
            }
            "leader_retry" => {
                let retry = value
                    .as_str()
                    .ok_or_else(|| schedule_error("`leader_retry` must be a string".into()))
                    .and_then(|text| parse_every(text).map_err(schedule_error))?;
                builder = builder.leader_retry(retry);
            }
            "entry" => {
                let entries = value.as_array().ok_or_else(|| {
                    schedule_error("`entry` must be an array of tables ([[entry]])".into())
                })?;
                for (index, entry) in entries.iter().enumerate() {
                    let entry = entry.as_table().ok_or_else(|| {
                        schedule_error(format!("entry #{} is not a table", index + 1))
                    })?;
                    builder = builder.entry(parse_entry(entry, index)?);
                }
            }
            other => {
                return Err(schedule_error(format!(
                    "unknown key `{other}` (name, leader_retry, entry)"
                )))
            }
        }
    }
    builder.build().map_err(|error| match error {
        BeatError::Schedule { reason, .. } => schedule_error(reason),
        other => other,
    })
}

/// Reads one `[[entry]]` table (`index` from 0).
fn parse_entry(table: &Table, index: usize) -> Result<Entry, BeatError> {
    let name = match table.get("name") {
        Some(toml::Value::String(name)) if !name.is_empty() => name.clone(),
        Some(_) => {
            return Err(BeatError::entry(
                format!("#{}", index + 1),
                "name",
                "must be a non-empty string",
            ))
        }
        None => {
            return Err(BeatError::entry(
                format!("#{}", index + 1),
                "name",
                "missing",
            ))
        }
    };
    let fail = |field: &str, reason: &str| BeatError::entry(&name, field, reason);
    if let Some(unknown) = table
        .keys()
        .find(|key| !ENTRY_FIELDS.contains(&key.as_str()))
    {
        return Err(fail(
            unknown,
            "unknown field (name, task, args, kwargs, queue, every, cron, timezone)",
        ));
    }
    let string = |field: &str| -> Result<Option<String>, BeatError> {
        match table.get(field) {
            None => Ok(None),
            Some(toml::Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(fail(field, "must be a string")),
        }
    };
    let task = string("task")?.ok_or_else(|| fail("task", "missing"))?;
    let mut signature = Signature::new(task);
    if let Some(args) = table.get("args") {
        let args = match to_json(args) {
            Value::Array(args) => args,
            _ => return Err(fail("args", "must be an array")),
        };
        signature = signature.with_args(args);
    }
    if let Some(kwargs) = table.get("kwargs") {
        let kwargs: Map<String, Value> = match to_json(kwargs) {
            Value::Object(kwargs) => kwargs,
            _ => return Err(fail("kwargs", "must be a table")),
        };
        signature = signature.with_kwargs(kwargs);
    }
    if let Some(queue) = string("queue")? {
        signature = signature.with_queue(queue);
    }
    let timezone = match string("timezone")? {
        None => None,
        Some(zone) => Some(Tz::from_str(&zone).map_err(|_| {
            fail(
                "timezone",
                &format!("unknown time zone \"{zone}\" (an IANA name such as Europe/Paris)"),
            )
        })?),
    };
    let schedule = match (string("every")?, string("cron")?) {
        (Some(every), None) => {
            if timezone.is_some() {
                return Err(fail("timezone", "only for `cron` (intervals are UTC)"));
            }
            let period = parse_every(&every).map_err(|reason| fail("every", &reason))?;
            Schedule::every(period).ok_or_else(|| fail("every", "must be longer than zero"))?
        }
        (None, Some(cron)) => Schedule::cron(&cron, timezone.unwrap_or(Tz::UTC))
            .map_err(|reason| fail("cron", &format!("\"{cron}\": {reason}")))?,
        (Some(_), Some(_)) => return Err(fail("every", "give `every` or `cron`, not both")),
        (None, None) => return Err(fail("every", "missing: give `every` or `cron`")),
    };
    Ok(Entry {
        name,
        schedule,
        signature,
    })
}

/// A TOML value as JSON (dates become their TOML text).
fn to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(number) => Value::from(*number),
        toml::Value::Float(number) => Value::from(*number),
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), to_json(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_file_is_read() {
        let beat = parse(
            r#"
            name = "billing"
            leader_retry = "250ms"

            [[entry]]
            name = "ping"
            task = "tasks.add"
            args = [2, 3]
            kwargs = { z = "x", nested = { a = [1.5, true] } }
            queue = "beat-q"
            every = "10s"

            [[entry]]
            name = "report"
            task = "reports.daily"
            cron = "30 9 * * 1-5"
            timezone = "Europe/Paris"
            "#,
            "test.toml",
        )
        .expect("a valid schedule");
        assert_eq!(beat.name(), "billing");
        assert_eq!(beat.leader_retry(), std::time::Duration::from_millis(250));
        let entries = beat.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].signature.task, "tasks.add");
        assert_eq!(
            entries[0].signature.args,
            vec![Value::from(2), Value::from(3)]
        );
        assert_eq!(
            Value::Object(entries[0].signature.kwargs.clone()),
            serde_json::json!({"z": "x", "nested": {"a": [1.5, true]}})
        );
        assert_eq!(entries[0].signature.queue.as_deref(), Some("beat-q"));
        assert!(matches!(entries[0].schedule, Schedule::Every(period) if period.as_secs() == 10));
        assert!(matches!(
            &entries[1].schedule,
            Schedule::Cron { timezone, .. } if *timezone == chrono_tz::Europe::Paris
        ));
    }

    #[test]
    fn errors_name_the_entry_and_the_field() {
        let entry = |body: &str| format!("[[entry]]\n{body}\n");
        // (file, text the error must contain)
        let table = [
            (
                entry("task = \"t\"\nevery = \"1s\""),
                "\"#1\": field `name`: missing",
            ),
            (
                entry("name = \"a\"\nevery = \"1s\""),
                "\"a\": field `task`: missing",
            ),
            (
                entry("name = \"a\"\ntask = \"t\""),
                "\"a\": field `every`: missing",
            ),
            (
                entry("name = \"a\"\ntask = \"t\"\nevery = \"ten\""),
                "\"a\": field `every`:",
            ),
            (
                entry("name = \"a\"\ntask = \"t\"\ncron = \"*/5 * *\""),
                "\"a\": field `cron`:",
            ),
            (
                entry("name = \"a\"\ntask = \"t\"\ncron = \"* * * * *\"\ntimezone = \"Mars/Base\""),
                "\"a\": field `timezone`: unknown time zone",
            ),
            (
                entry("name = \"a\"\ntask = \"t\"\nevery = \"1s\"\ncron = \"* * * * *\""),
                "not both",
            ),
            (
                entry("name = \"a\"\ntask = \"t\"\nevery = \"1s\"\nargs = 3"),
                "\"a\": field `args`: must be an array",
            ),
            (
                entry("name = \"a\"\ntask = \"t\"\nevery = \"1s\"\nkwargs = [1]"),
                "\"a\": field `kwargs`: must be a table",
            ),
            (
                entry("name = \"a\"\ntask = \"t\"\nevery = \"1s\"\nqueue = 7"),
                "\"a\": field `queue`: must be a string",
            ),
            (
                entry("name = \"a\"\ntask = \"t\"\nevery = \"1s\"\nevry = \"1s\""),
                "\"a\": field `evry`: unknown field",
            ),
            (
                format!(
                    "{}{}",
                    entry("name = \"a\"\ntask = \"t\"\nevery = \"1s\""),
                    entry("name = \"a\"\ntask = \"u\"\nevery = \"2s\"")
                ),
                "\"a\" is given twice",
            ),
            ("colour = 3".to_string(), "unknown key `colour`"),
            ("[[entry]\n".to_string(), "schedule s.toml:"),
            (String::new(), "no entries"),
        ];
        for (text, expected) in table {
            let error = parse(&text, "s.toml").expect_err(&text).to_string();
            assert!(
                error.contains(expected),
                "for {text:?}: {error:?} does not say {expected:?}"
            );
        }
    }
}
