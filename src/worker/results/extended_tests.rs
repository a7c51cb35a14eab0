//! What a worker stores with `result_extended`, byte for byte against what Celery 5.7's
//! worker stored for the same tasks (tests/fixtures/redis-backend/extended.json): the
//! published bytes, and the stored documents' values and key order.

use serde_json::{json, Map, Value};

use super::*;
use crate::backend::redis::document::encode;
use crate::protocol::repr;

const WORKER: &str = "probe_worker@vm";

fn fixture() -> Value {
    let text = include_str!("../../../tests/fixtures/redis-backend/extended.json");
    serde_json::from_str(text).expect("the fixture is JSON")
}

/// The stored JSON document of a fixture case.
fn stored(case: &str) -> Value {
    let fixture = fixture();
    let (_, entry) = fixture[case]
        .as_object()
        .expect("a case is an object of keys")
        .iter()
        .next()
        .expect("one key per case");
    entry["json"].clone()
}

/// The address of a message of `task` with `args`, as a worker named like Celery's
/// fixture worker received it from the `probe_celery` queue.
fn address(task: &str, id: &str, args: Vec<Value>, registered: bool) -> ResultAddress {
    let message = TaskMessage::new_json(task, id, args, Map::new());
    ResultAddress {
        task_id: id.to_string(),
        reply_to: None,
        correlation_id: id.to_string(),
        meta: request_meta(
            &message,
            Received {
                routing_key: "probe_celery",
                worker: WORKER,
                registered,
                extended: true,
            },
        ),
    }
}

#[test]
fn started_and_success_are_the_bytes_celery_publishes() {
    let fixture = fixture();
    let messages = fixture["pubsub_messages_for_success"]
        .as_array()
        .expect("a list of messages");
    let id = "00000000-0000-4000-b000-000000000001";
    let to = address("probe.add", id, vec![json!(2), json!(3)], true);
    let started = to.document(ResultMessage::started(id, 9508, WORKER));
    assert_eq!(
        encode(&started).expect("encodes"),
        messages[0].as_str().unwrap()
    );
    let mut success = to.document(ResultMessage::success(id, json!(5)));
    success.date_done = Some("2026-11-23T21:04:05.149735+00:00".into());
    assert_eq!(
        encode(&success).expect("encodes"),
        messages[1].as_str().unwrap()
    );
}

#[test]
fn stored_documents_are_the_bytes_celery_stores() {
    let cases = [
        ("failure", "probe.fail", vec![json!("boom")], 2),
        (
            "failure_custom",
            "probe.fail_custom",
            vec![json!(42), json!("detail")],
            3,
        ),
        ("started", "probe.sleep", vec![json!(3)], 4),
    ];
    for (case, task, args, n) in cases {
        let json = stored(case);
        let id = format!("00000000-0000-4000-b000-00000000000{n}");
        let to = address(task, &id, args, true);
        let mut ours = match json["status"].as_str() {
            Some("STARTED") => ResultMessage::started(&id, 9508, WORKER),
            _ => {
                let exception = ExceptionInfo::from_value(&json["result"]).expect("exception");
                ResultMessage::exception(
                    &id,
                    TaskState::Failure,
                    &exception,
                    json["traceback"].as_str().map(str::to_string),
                )
            }
        };
        ours.date_done = json["date_done"].as_str().map(str::to_string);
        let ours: Value =
            serde_json::from_str(&encode(&to.document(ours)).expect("encodes")).expect("JSON");
        assert_eq!(ours, json, "{case}: same document");
        // (Map equality ignores the order: compare it too.)
        let keys: Vec<&String> = ours.as_object().expect("object").keys().collect();
        let celery: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys, celery, "{case}: same key order");
    }
}

#[test]
fn an_unknown_task_has_null_request_fields_and_no_ids() {
    let id = "00000000-0000-4000-b000-000000000009";
    let mut message = TaskMessage::new_json("probe.nope", id, vec![json!(1)], Map::new());
    message.headers.parent_id = Some("parent".into());
    let to = ResultAddress {
        task_id: id.into(),
        reply_to: None,
        correlation_id: id.into(),
        meta: request_meta(
            &message,
            Received {
                routing_key: "probe_celery",
                worker: WORKER,
                registered: false,
                extended: true,
            },
        ),
    };
    let error = TaskError::not_registered("probe.nope");
    let mut document = to.document(ResultMessage::exception(
        id,
        TaskState::Failure,
        &exception_of(&error),
        None,
    ));
    document.date_done = Some("2026-11-23T21:04:13.167287+00:00".into());
    let text = encode(&document).expect("encodes");
    assert!(
        text.ends_with(
            r#""date_done": "2026-11-23T21:04:13.167287+00:00", "name": null, "args": null, "kwargs": null, "worker": null, "retries": null, "queue": null, "task_id": "00000000-0000-4000-b000-000000000009"}"#
        ),
        "{text}"
    );
}

#[test]
fn without_result_extended_documents_have_only_the_ids() {
    let id = "id-1";
    let mut message = TaskMessage::new_json("tasks.add", id, vec![json!(1)], Map::new());
    message.headers.group = Some("g".into());
    message.headers.retries = 1;
    let meta = request_meta(
        &message,
        Received {
            routing_key: "celery",
            worker: &format!("celeriac@{}", repr::hostname()),
            registered: true,
            extended: false,
        },
    );
    let to = ResultAddress {
        task_id: id.into(),
        reply_to: None,
        correlation_id: id.into(),
        meta,
    };
    let mut document = to.document(ResultMessage::success(id, json!(2)));
    document.date_done = Some("2026-11-23T21:04:13.167287+00:00".into());
    assert_eq!(
        encode(&document).expect("encodes"),
        r#"{"status": "SUCCESS", "result": 2, "traceback": null, "children": [], "date_done": "2026-11-23T21:04:13.167287+00:00", "group_id": "g", "task_id": "id-1"}"#
    );
}
