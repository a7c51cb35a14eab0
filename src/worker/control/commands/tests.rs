//! The replies against Celery 5.7's, captured (tests/fixtures/pidbox/).

use chrono::TimeZone;
use serde_json::{json, Map, Value};

use super::*;
use crate::worker::state::{Held, RequestInfo, Snapshot};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/pidbox/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture");
    let document: Value = serde_json::from_str(&text).expect("json");
    document["body"]["probe_worker@vm"].clone()
}

/// The keys of an object, recursively, with the JSON type of each leaf.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    // The arguments are whatever the task got.
                    let leaf = if key == "args" || key == "kwargs" {
                        json!("arguments")
                    } else {
                        shape(value)
                    };
                    (key.clone(), leaf)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
    }
}

fn info(id: &str, started: bool) -> RequestInfo {
    RequestInfo {
        id: id.into(),
        name: "probe.add".into(),
        args: json!([1, 2]),
        kwargs: json!({}),
        hostname: "probe_worker@vm".into(),
        time_start: started.then_some(1795467722.45),
        acknowledged: started,
        exchange: String::new(),
        routing_key: "probe_celery".into(),
        priority: 0,
        redelivered: false,
        worker_pid: started.then_some(5331),
    }
}

fn node() -> NodeInfo {
    let mut tasks = BTreeMap::new();
    tasks.insert("probe.add".to_string(), None);
    tasks.insert("probe.limited".to_string(), Some("10/s".to_string()));
    tasks.insert("celery.chord_unlock".to_string(), None);
    NodeInfo {
        tasks,
        ..NodeInfo::default()
    }
}

fn busy() -> Snapshot {
    let eta = chrono::Utc
        .with_ymd_and_hms(2026, 11, 23, 21, 3, 2)
        .single();
    Snapshot {
        held: vec![
            Held {
                info: info("a", true),
                phase: Phase::Active { blocking: false },
            },
            Held {
                info: info("r", false),
                phase: Phase::Reserved,
            },
            Held {
                info: info("s", false),
                phase: Phase::Scheduled {
                    eta: eta.expect("a date"),
                },
            },
            Held {
                info: info("b", true),
                phase: Phase::Active { blocking: true },
            },
        ],
        clock: 7,
        ..Snapshot::default()
    }
}

fn reply(method: &str, arguments: Value, state: &Snapshot) -> Answer {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    answer_to(method, &arguments, &node(), state)
}

#[test]
fn replies_have_celerys_shapes() {
    let state = busy();
    let none = Map::new();
    let _ = none;
    assert_eq!(
        reply("ping", json!({}), &state).reply,
        fixture("reply_ping")
    );
    assert_eq!(
        shape(&reply("active", json!({}), &state).reply[0]),
        shape(&fixture("reply_active_busy")[0])
    );
    assert_eq!(
        shape(&reply("reserved", json!({}), &state).reply[0]),
        shape(&fixture("reply_reserved_busy")[0])
    );
    assert_eq!(
        shape(&reply("scheduled", json!({}), &state).reply[0]),
        shape(&fixture("reply_scheduled_busy")[0])
    );
    assert_eq!(
        reply("scheduled", json!({}), &state).reply[0]["eta"],
        fixture("reply_scheduled_busy")[0]["eta"]
            .as_str()
            .map(|eta| eta.replace(".367963", ".000000"))
            .map_or(Value::Null, Value::from)
    );
    let query = reply("query_task", json!({"ids": ["a", "s"]}), &state).reply;
    assert_eq!(query["a"][0], json!("active"));
    assert_eq!(query["s"][0], json!("scheduled"));
    assert_eq!(
        shape(&query["a"][1]),
        shape(&fixture("reply_active_busy")[0])
    );
    assert_eq!(
        reply("query_task", json!({"ids": ["zzz"]}), &state).reply,
        json!({})
    );
    assert_eq!(reply("clock", json!({}), &state).reply, json!({"clock": 7}));
    assert_eq!(
        reply("no_such_command", json!({}), &state).reply,
        fixture("reply_no_such_command")
    );
    assert_eq!(
        reply("registered", json!({"taskinfoitems": []}), &state).reply,
        json!(["probe.add", "probe.limited [rate_limit=10/s]"])
    );
}

#[test]
fn registered_shows_the_asked_attributes() {
    let state = busy();
    // `inspect().registered('name')`, as test_inspect.py's test_registered asks.
    assert_eq!(
        reply("registered", json!({"taskinfoitems": ["name"]}), &state).reply,
        json!([
            "probe.add [name=probe.add]",
            "probe.limited [name=probe.limited]"
        ])
    );
    // Unknown and private attributes are left out, as Celery leaves out `None` ones.
    assert_eq!(
        reply(
            "registered",
            json!({"taskinfoitems": ["rate_limit", "_secret", "exchange"]}),
            &state
        )
        .reply,
        json!(["probe.add", "probe.limited [rate_limit=10/s]"])
    );
    let with_builtins = reply("registered", json!({"builtins": true}), &state).reply;
    assert_eq!(with_builtins[0], json!("celery.chord_unlock"));
    // A rate limit set at run time wins over the task's option.
    let limited = Snapshot {
        rate_limits: [("probe.add".to_string(), Some("2/m".to_string()))].into(),
        ..Snapshot::default()
    };
    assert_eq!(
        reply("registered", json!({}), &limited).reply[0],
        json!("probe.add [rate_limit=2/m]")
    );
}

#[test]
fn hello_merges_and_answers_revoked_ids() {
    let state = Snapshot {
        revoked: vec!["old".into()],
        clock: 9,
        ..Snapshot::default()
    };
    // Celery 5.7's shape: `{id: [stamp, seq, id]}`.
    let answer = reply(
        "hello",
        json!({"from_node": "other@host", "revoked": {"new": [1.0, 0, "new"], "old": [1.0, 1, "old"]}}),
        &state,
    );
    assert_eq!(answer.reply, json!({"revoked": ["old", "new"], "clock": 9}));
    assert_eq!(
        answer.action,
        Action::Revoke {
            ids: vec!["new".into(), "old".into()],
            terminate: false,
            mark: Vec::new(),
        }
    );
    let empty = reply("hello", json!({"from_node": "other@host"}), &state);
    assert_eq!(empty.reply, json!({"revoked": ["old"], "clock": 9}));
    assert_eq!(empty.action, Action::None);
    // From this node itself: no answer.
    let own = NodeInfo {
        hostname: "me@host".into(),
        ..node()
    };
    let arguments = json!({"from_node": "me@host"});
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    assert_eq!(
        answer_to("hello", &arguments, &own, &state).reply,
        Value::Null
    );
}

#[test]
fn report_and_scheduled_priority() {
    let node = NodeInfo {
        report: "software -> celery:celeriac".into(),
        ..node()
    };
    assert_eq!(
        answer_to("report", &Map::new(), &node, &Snapshot::default()).reply,
        json!({"ok": "software -> celery:celeriac"})
    );
    // Celery's ETA timer entries all carry priority 6.
    assert_eq!(
        reply("scheduled", json!({}), &busy()).reply[0]["priority"],
        json!(6)
    );
}

#[test]
fn revoke_replies_and_actions() {
    let state = busy();
    let answer = reply(
        "revoke",
        json!({"task_id": ["00000000-0000-4000-9000-000000000011"]}),
        &state,
    );
    assert_eq!(
        answer.reply,
        json!({"ok": "tasks {'00000000-0000-4000-9000-000000000011'} flagged as revoked"})
    );
    assert_eq!(
        answer.action,
        Action::Revoke {
            ids: vec!["00000000-0000-4000-9000-000000000011".into()],
            terminate: false,
            mark: vec!["00000000-0000-4000-9000-000000000011".into()],
        }
    );
    let single = reply("revoke", json!({"task_id": "x"}), &state);
    assert_eq!(
        single.reply,
        json!({"ok": "tasks {'x'} flagged as revoked"})
    );
    let unknown = reply(
        "revoke",
        json!({"task_id": ["x"], "terminate": true}),
        &state,
    );
    assert_eq!(unknown.reply, json!({"ok": "terminate: tasks unknown"}));
    // The set is written as Python writes it, quotes included.
    assert_eq!(
        reply("revoke", json!({"task_id": "it's"}), &state).reply,
        json!({"ok": "tasks {\"it's\"} flagged as revoked"})
    );
    let running = reply(
        "revoke",
        json!({"task_id": ["a"], "terminate": true}),
        &state,
    );
    assert_eq!(running.reply, json!({"ok": "terminate: a"}));
    // Only the ids not running here get a REVOKED result ("r" is reserved, "a" active).
    let some_running = reply("revoke", json!({"task_id": ["a", "r", "x"]}), &state);
    assert!(
        matches!(&some_running.action, Action::Revoke { mark, .. } if *mark == ["r", "x"]),
        "{:?}",
        some_running.action
    );
    let blocking = reply(
        "revoke",
        json!({"task_id": ["a", "b"], "terminate": true}),
        &state,
    );
    let text = blocking.reply["ok"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.starts_with("terminate: a; b cannot be interrupted"),
        "{text}"
    );
}

#[test]
fn rate_limit_replies() {
    let state = Snapshot::default();
    let set = reply(
        "rate_limit",
        json!({"task_name": "probe.add", "rate_limit": "10/s"}),
        &state,
    );
    assert_eq!(set.reply, json!({"ok": "new rate limit set successfully"}));
    assert!(
        matches!(set.action, Action::RateLimit { ref task, rate: Some(_) } if task == "probe.add")
    );
    let off = reply(
        "rate_limit",
        json!({"task_name": "probe.add", "rate_limit": null}),
        &state,
    );
    assert_eq!(off.reply, json!({"ok": "rate limit disabled successfully"}));
    let unknown = reply(
        "rate_limit",
        json!({"task_name": "nope", "rate_limit": "1/s"}),
        &state,
    );
    assert_eq!(unknown.reply, json!({"error": "unknown task"}));
    assert_eq!(unknown.action, Action::None);
    let bad = reply(
        "rate_limit",
        json!({"task_name": "probe.add", "rate_limit": "x/s"}),
        &state,
    );
    assert!(bad.reply["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Invalid rate limit string"));
}

#[test]
fn events_switch_replies() {
    let off = Snapshot::default();
    let on = Snapshot {
        task_events: true,
        ..Snapshot::default()
    };
    assert_eq!(
        reply("enable_events", json!({}), &off).reply,
        json!({"ok": "task events enabled"})
    );
    assert_eq!(
        reply("enable_events", json!({}), &on).reply,
        json!({"ok": "task events already enabled"})
    );
    assert_eq!(
        reply("disable_events", json!({}), &on).reply,
        json!({"ok": "task events disabled"})
    );
    assert_eq!(reply("heartbeat", json!({}), &on).reply, Value::Null);
    assert_eq!(reply("heartbeat", json!({}), &on).action, Action::Heartbeat);
}

#[test]
fn revoke_stores_revoked_only_over_states_not_started_elsewhere() {
    use crate::protocol::TaskState::*;
    for (stored, marks) in [
        (None, true),
        (Some(Pending), true),
        (Some(Received), true),
        (Some(Retry), true),
        (Some(Rejected), true),
        (Some(Started), false),
        (Some(Success), false),
        (Some(Failure), false),
        (Some(Revoked), false),
        (Some(Ignored), false),
    ] {
        assert_eq!(marks_revoked(stored), marks, "{stored:?}");
    }
}
