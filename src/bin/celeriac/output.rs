//! What the subcommands print (pure): Celery's human output of replies
//! (`->  node: OK` and the reply indented), and one line per event.

use std::time::Duration;

use celeriac::ControlReply;
use serde_json::{Map, Value};

/// `1.5s`, `10s`.
pub fn duration(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

/// Celery's status and body of one reply: `{"ok": X}` is OK with X, `{"error": E}` is
/// ERROR with E, a list is one `* item` line each (`- empty -` for none), anything else
/// OK with its JSON.
pub fn status_and_body(reply: &Value) -> (&'static str, String) {
    match reply {
        Value::Object(fields) if fields.contains_key("ok") || fields.contains_key("error") => {
            match (fields.get("ok"), fields.get("error")) {
                (Some(ok), _) => ("OK", indent(&body(ok), 4)),
                (None, Some(error)) => ("ERROR", text(error)),
                (None, None) => ("OK", String::new()),
            }
        }
        other => ("OK", body(other)),
    }
}

/// The body of a value: list items as `* item`, strings bare, the rest pretty JSON.
fn body(value: &Value) -> String {
    match value {
        Value::Array(items) if items.is_empty() => "- empty -".to_string(),
        Value::Array(items) => items
            .iter()
            .map(|item| format!("* {}", text(item)))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// A string bare, anything else as compact JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Every line of `text` indented by `by` spaces.
fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|line| format!("{pad}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The human output of replies, as `celery inspect` prints it: per node `->  node:
/// STATUS` and the body indented, then `N node(s) online.`
pub fn human_replies(replies: &[ControlReply]) -> String {
    let mut out = String::new();
    for reply in replies {
        let (status, body) = status_and_body(&reply.reply);
        out.push_str(&format!("->  {}: {status}\n", reply.node));
        if !body.is_empty() {
            out.push_str(&indent(&body, 4));
            out.push('\n');
        }
    }
    out.push_str(&format!("\n{}", nodes_online(replies.len())));
    out
}

/// `1 node online.`, `2 nodes online.`
pub fn nodes_online(count: usize) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} node{plural} online.")
}

/// `celery inspect --json`: one object `{node: reply, ...}`.
pub fn json_object(replies: &[ControlReply]) -> Value {
    Value::Object(
        replies
            .iter()
            .map(|reply| (reply.node.clone(), reply.reply.clone()))
            .collect::<Map<_, _>>(),
    )
}

/// `celery control --json`: a list of `{node: reply}` objects.
pub fn json_list(replies: &[ControlReply]) -> Value {
    Value::Array(
        replies
            .iter()
            .map(|reply| {
                let mut one = Map::new();
                one.insert(reply.node.clone(), reply.reply.clone());
                Value::Object(one)
            })
            .collect(),
    )
}

/// Fields every event has, left out of its line (the line starts with the others).
const EVENT_HEAD: [&str; 6] = ["hostname", "timestamp", "type", "utcoffset", "pid", "clock"];

/// One line for an event: `TIME HOSTNAME TYPE key=value ...` (time in UTC, RFC 3339;
/// string values quoted as JSON).
pub fn event_line(event: &Value) -> String {
    let field = |name: &str| event.get(name).map(text).unwrap_or_else(|| "?".into());
    let time = event
        .get("timestamp")
        .and_then(Value::as_f64)
        .and_then(|seconds| {
            chrono::DateTime::from_timestamp_micros((seconds * 1_000_000.0).round() as i64)
        })
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "?".into());
    let mut line = format!("{time} {} {}", field("hostname"), field("type"));
    if let Some(fields) = event.as_object() {
        for (name, value) in fields {
            if !EVENT_HEAD.contains(&name.as_str()) {
                line.push_str(&format!(" {name}={value}"));
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(node: &str, reply: Value) -> ControlReply {
        ControlReply {
            node: node.into(),
            reply,
        }
    }

    #[test]
    fn replies_print_as_celery_prints_them() {
        // tests/fixtures/pidbox/cli_outputs.json, "inspect ping (broadcast, text)".
        assert_eq!(
            human_replies(&[reply("probe_worker@vm", json!({"ok": "pong"}))]),
            "->  probe_worker@vm: OK\n        pong\n\n1 node online."
        );
        let cases = [
            (json!(["a.b", "c.d"]), "OK", "* a.b\n* c.d"),
            (json!([]), "OK", "- empty -"),
            (
                json!({"error": "No such command"}),
                "ERROR",
                "No such command",
            ),
            (json!({"clock": 3}), "OK", "{\n  \"clock\": 3\n}"),
            (json!({"ok": "tasks flagged"}), "OK", "    tasks flagged"),
        ];
        for (value, status, body) in cases {
            assert_eq!(
                status_and_body(&value),
                (status, body.to_string()),
                "{value}"
            );
        }
        assert_eq!(nodes_online(2), "2 nodes online.");
        let two = [reply("a@h", json!(1)), reply("b@h", json!(2))];
        assert_eq!(json_object(&two), json!({"a@h": 1, "b@h": 2}));
        assert_eq!(json_list(&two), json!([{"a@h": 1}, {"b@h": 2}]));
    }

    #[test]
    fn an_event_is_one_line() {
        let event = json!({"hostname": "w1@h", "utcoffset": 0, "pid": 7, "clock": 3,
            "uuid": "abc", "result": "5", "runtime": 0.25,
            "timestamp": 1_700_000_000.5, "type": "task-succeeded"});
        assert_eq!(
            event_line(&event),
            "2023-11-14T22:13:20.500Z w1@h task-succeeded uuid=\"abc\" result=\"5\" runtime=0.25"
        );
        assert_eq!(event_line(&json!({})), "? ? ?");
    }
}
