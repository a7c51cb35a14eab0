//! Documents with the request's fields, against Celery 5.7's: `result_extended`
//! (tests/fixtures/redis-backend/extended.json) and `group_id` / `parent_id`
//! (tests/fixtures/redis-backend/basic.json).

use serde_json::{json, Value};

use super::{decode, encode};
use crate::protocol::TaskState;

fn fixture(name: &str) -> Value {
    let text = match name {
        "extended" => include_str!("../../../../tests/fixtures/redis-backend/extended.json"),
        _ => include_str!("../../../../tests/fixtures/redis-backend/basic.json"),
    };
    serde_json::from_str(text).expect("the fixture is JSON")
}

/// The stored JSON document of a fixture case (one `celery-task-meta-<id>` key).
fn stored(name: &str, case: &str) -> Value {
    let fixture = fixture(name);
    let (_, entry) = fixture[case]
        .as_object()
        .expect("a case is an object of keys")
        .iter()
        .next()
        .expect("one key per case");
    entry["json"].clone()
}

#[test]
fn extended_documents_published_by_celery_are_rewritten_byte_for_byte() {
    let fixture = fixture("extended");
    let messages = fixture["pubsub_messages_for_success"]
        .as_array()
        .expect("a list of messages");
    assert_eq!(messages.len(), 2, "STARTED and SUCCESS");
    for message in messages {
        let text = message.as_str().expect("a message is a string");
        let document = decode("ignored", text.as_bytes()).expect("Celery's document decodes");
        assert!(document.extended.is_some(), "extended fields read: {text}");
        assert_eq!(encode(&document).expect("encodes"), text);
    }
}

#[test]
fn stored_documents_keep_their_keys_order_and_values() {
    let cases = [
        ("extended", "success"),
        ("extended", "failure"),
        ("extended", "failure_custom"),
        ("extended", "started"),
        ("basic", "chord_body_result"),
        ("basic", "chord_header_result"),
        ("basic", "group_member_result"),
    ];
    for (name, case) in cases {
        let json = stored(name, case);
        let text = serde_json::to_string(&json).expect("re-serializes");
        let document = decode("ignored", text.as_bytes()).expect("decodes");
        let ours: Value = serde_json::from_str(&encode(&document).expect("encodes")).expect("JSON");
        assert_eq!(ours, json, "{name} {case}: same document");
        let keys: Vec<&String> = ours.as_object().expect("object").keys().collect();
        let celery: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys, celery, "{name} {case}: same key order");
    }
}

#[test]
fn the_request_fields_are_read() {
    let json = stored("extended", "failure_custom");
    let document = decode("x", json.to_string().as_bytes()).expect("decodes");
    assert_eq!(document.status, TaskState::Failure);
    let extended = document.extended.expect("extended fields");
    assert_eq!(extended.name.as_deref(), Some("probe.fail_custom"));
    assert_eq!(extended.args, Some(vec![json!(42), json!("detail")]));
    assert_eq!(extended.kwargs, Some(serde_json::Map::new()));
    assert_eq!(extended.worker.as_deref(), Some("probe_worker@vm"));
    assert_eq!(extended.retries, Some(0));
    assert_eq!(extended.queue.as_deref(), Some("probe_celery"));

    let json = stored("basic", "chord_body_result");
    let document = decode("x", json.to_string().as_bytes()).expect("decodes");
    assert_eq!(
        document.extended, None,
        "a document without `name` is not extended"
    );
    assert_eq!(document.group_id.as_deref(), json["group_id"].as_str());
    assert_eq!(document.parent_id.as_deref(), json["parent_id"].as_str());
    assert!(document.parent_id.is_some());
}

#[test]
fn null_request_fields_are_kept_as_celery_writes_them_for_unknown_tasks() {
    let text = r#"{"status": "FAILURE", "result": {"exc_type": "NotRegistered", "exc_message": ["nope"], "exc_module": "celery.exceptions"}, "traceback": null, "children": [], "date_done": "2026-11-23T21:04:13.167287+00:00", "name": null, "args": null, "kwargs": null, "worker": null, "retries": null, "queue": null, "task_id": "t"}"#;
    let document = decode("t", text.as_bytes()).expect("decodes");
    assert_eq!(document.extended, Some(Default::default()));
    assert_eq!(encode(&document).expect("encodes"), text);
}
