//! Events built here against events a Celery 5.7 worker sent (tests/fixtures/events/,
//! captured from RabbitMQ): same fields, same values, same order.

use serde_json::{json, Map, Value};

use super::*;
use crate::worker::ReceivedInfo;
use chrono::Timelike;

/// A captured event: its delivery, properties, headers and (first) event.
fn fixture(name: &str) -> Value {
    let text = match name {
        "worker-online" => include_str!("../../../tests/fixtures/events/worker-online.json"),
        "worker-heartbeat" => include_str!("../../../tests/fixtures/events/worker-heartbeat.json"),
        "worker-offline" => include_str!("../../../tests/fixtures/events/worker-offline.json"),
        "task-received" => include_str!("../../../tests/fixtures/events/task-received.json"),
        "task-started" => include_str!("../../../tests/fixtures/events/task-started.json"),
        "task-succeeded" => include_str!("../../../tests/fixtures/events/task-succeeded.json"),
        "task-failed" => include_str!("../../../tests/fixtures/events/task-failed.json"),
        "task-failed.not_registered" => {
            include_str!("../../../tests/fixtures/events/task-failed.not_registered.json")
        }
        "task-retried" => include_str!("../../../tests/fixtures/events/task-retried.json"),
        "task-revoked" => include_str!("../../../tests/fixtures/events/task-revoked.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).expect("fixture is JSON")
}

/// The fixture's event, and the origin and stamp to build the same one.
fn expected(name: &str) -> (Map<String, Value>, Origin, Stamp) {
    let captured = fixture(name);
    let event = captured["event"].as_object().expect("an event").clone();
    let origin = Origin {
        hostname: event["hostname"].as_str().expect("hostname").into(),
        pid: event["pid"].as_u64().expect("pid") as u32,
    };
    let stamp = Stamp {
        clock: event["clock"].as_u64().expect("clock"),
        timestamp: event["timestamp"].as_f64().expect("timestamp"),
        utcoffset: event["utcoffset"].as_f64().expect("utcoffset"),
    };
    (event, origin, stamp)
}

fn keys(map: &Map<String, Value>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

/// Same keys in the same order, same values except those named in `differ`.
fn assert_same(built: &Map<String, Value>, captured: &Map<String, Value>, differ: &[&str]) {
    assert_eq!(keys(built), keys(captured), "field order");
    for (key, value) in captured {
        if !differ.contains(&key.as_str()) {
            assert_eq!(&built[key], value, "field {key}");
        }
    }
}

fn event_of(id: &str, name: &str, kind: TaskEventKind) -> TaskEvent {
    TaskEvent {
        task_id: Some(id.into()),
        task_name: Some(name.into()),
        queue: "celery".into(),
        kind,
    }
}

#[test]
fn worker_events_match_celery() {
    for (name, event_type) in [
        ("worker-online", WorkerEventType::Online),
        ("worker-heartbeat", WorkerEventType::Heartbeat),
        ("worker-offline", WorkerEventType::Offline),
    ] {
        let (captured, origin, stamp) = expected(name);
        let loadavg = captured["loadavg"].as_array().expect("loadavg");
        let counters = WorkerCounters {
            active: captured["active"].as_u64().expect("active") as usize,
            processed: captured["processed"].as_u64().expect("processed"),
            loadavg: [0, 1, 2].map(|i| loadavg[i].as_f64().expect("a float")),
        };
        let built = worker_event(event_type, &origin, stamp, counters);
        // celeriac names itself, as Celery names itself py-celery.
        assert_same(&built, &captured, &["sw_ident", "sw_ver"]);
        assert_eq!(built["sw_ident"], "celeriac");
        assert_eq!(built["sw_ver"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            routing_key(event_type.name()),
            fixture(name)["delivery_info"]["routing_key"]
        );
    }
}

#[test]
fn task_events_match_celery() {
    let received = ReceivedInfo {
        args: "[2, 3]".into(),
        kwargs: "{}".into(),
        root_id: Some("00000000-0000-4000-9000-000000000001".into()),
        parent_id: None,
        retries: 0,
        eta: None,
        expires: None,
    };
    let cases: Vec<(&str, TaskEventKind, Option<f64>, &[&str])> = vec![
        (
            "task-received",
            TaskEventKind::Received(Box::new(received)),
            None,
            &[],
        ),
        ("task-started", TaskEventKind::Started, None, &[]),
        (
            "task-succeeded",
            TaskEventKind::Succeeded { result: json!(5) },
            Some(0.012351438999985476),
            &[],
        ),
        (
            "task-failed",
            TaskEventKind::Failed {
                error: TaskError::value_error("boom"),
            },
            None,
            // A celeriac task has no Python frames: only the traceback's last line.
            &["traceback"],
        ),
        (
            "task-failed.not_registered",
            TaskEventKind::Rejected {
                reason: TaskError::not_registered("probe.no_such_task").to_string(),
                requeue: false,
            },
            None,
            &[],
        ),
        (
            "task-retried",
            TaskEventKind::Retried {
                eta: chrono::Utc::now(),
                error: TaskError::runtime_error("transient"),
            },
            None,
            &["traceback"],
        ),
        (
            "task-revoked",
            TaskEventKind::Revoked {
                reason: "expired".into(),
                signum: None,
            },
            None,
            &[],
        ),
    ];
    for (name, kind, runtime, differ) in cases {
        let (captured, origin, stamp) = expected(name);
        let id = captured["uuid"].as_str().expect("uuid");
        let event = event_of(id, "probe.add", kind);
        let built = task_event(&event, runtime, &origin, stamp).expect("an event");
        assert_same(&built, &captured, differ);
        let wire = fixture(name);
        assert_eq!(
            wire["delivery_info"]["routing_key"], TASK_BATCH_ROUTING_KEY,
            "{name}"
        );
        assert!(
            wire["body"].is_array(),
            "{name}: task events travel as a list"
        );
    }
}

#[test]
fn failures_carry_the_last_line_of_a_traceback() {
    let (captured, ..) = expected("task-failed");
    let last = captured["traceback"]
        .as_str()
        .and_then(|text| text.lines().last())
        .expect("a traceback");
    assert_eq!(traceback(&TaskError::value_error("boom")).trim_end(), last);
    assert_eq!(
        traceback(&TaskError::panicked("oops")),
        "rust.TaskPanicked: oops\n"
    );
    assert_eq!(
        exception_repr(&TaskError::panicked("a\nb")),
        "TaskPanicked('a\\nb')"
    );
}

/// What Celery sends for each of the worker's task outcomes.
#[test]
fn outcome_table() {
    let error = TaskError::value_error("x");
    let table: Vec<(TaskEventKind, Option<&str>)> = vec![
        (TaskEventKind::Started, Some("task-started")),
        (
            TaskEventKind::Succeeded {
                result: Value::Null,
            },
            Some("task-succeeded"),
        ),
        (
            TaskEventKind::Failed {
                error: error.clone(),
            },
            Some("task-failed"),
        ),
        (
            TaskEventKind::Retried {
                eta: chrono::Utc::now(),
                error,
            },
            Some("task-retried"),
        ),
        (
            TaskEventKind::Revoked {
                reason: "revoked".into(),
                signum: None,
            },
            Some("task-revoked"),
        ),
        (
            TaskEventKind::Rejected {
                reason: "bad body".into(),
                requeue: false,
            },
            Some("task-rejected"),
        ),
        (
            TaskEventKind::Rejected {
                reason: TaskError::not_registered("x").to_string(),
                requeue: false,
            },
            Some("task-failed"),
        ),
        (TaskEventKind::Requeued, None),
        (TaskEventKind::Ignored, None),
        (
            TaskEventKind::Deferred {
                eta: chrono::Utc::now(),
                wait_queue: "w".into(),
            },
            None,
        ),
    ];
    for (kind, event_type) in table {
        let fields = task_fields(&kind, Some("t"), None);
        assert_eq!(fields.as_ref().map(|(t, _)| *t), event_type, "{kind:?}");
        assert_eq!(sends_event(&kind), event_type.is_some(), "{kind:?}");
    }
    let (_, revoked) = task_fields(
        &TaskEventKind::Revoked {
            reason: "revoked".into(),
            signum: None,
        },
        None,
        None,
    )
    .expect("an event");
    assert_eq!(revoked["expired"], false);
    // task-rejected: `uuid` then `requeue`, the flag the message was rejected with
    // (Celery's `Request.reject(requeue)`).
    for requeue in [false, true] {
        let event = event_of(
            "id-r",
            "t",
            TaskEventKind::Rejected {
                reason: "bad".into(),
                requeue,
            },
        );
        let origin = Origin {
            hostname: "celeriac@h".into(),
            pid: 1,
        };
        let stamp = Stamp {
            clock: 3,
            timestamp: 1.0,
            utcoffset: 0.0,
        };
        let built = task_event(&event, None, &origin, stamp).expect("an event");
        assert_eq!(built["type"], "task-rejected");
        assert_eq!(built["uuid"], "id-r");
        assert_eq!(built["requeue"], requeue);
        let own: Vec<&str> = keys(&built)
            .into_iter()
            .skip_while(|key| *key != "uuid")
            .collect();
        assert_eq!(
            own,
            ["uuid", "requeue", "timestamp", "type"],
            "task-rejected's fields in Celery's order (as task-revoked.json's)"
        );
    }
    let nameless = TaskEvent {
        task_id: None,
        ..event_of("x", "t", TaskEventKind::Started)
    };
    let origin = Origin {
        hostname: "n@h".into(),
        pid: 1,
    };
    let stamp = Stamp {
        clock: 1,
        timestamp: 0.0,
        utcoffset: 0.0,
    };
    assert!(task_event(&nameless, None, &origin, stamp).is_none());
}

/// `task-revoked` as Celery's `Request._announce_revoked` sends it: `terminated` and `signum`
/// only for a run stopped by `revoke(terminate=True)`, `expired` only for an expired task.
#[test]
fn revoked_fields_table() {
    let cases = [
        ("revoked", None, json!([false, null, false])),
        ("expired", None, json!([false, null, true])),
        ("terminated", Some(15), json!([true, 15, false])),
        ("terminated", Some(9), json!([true, 9, false])),
    ];
    for (reason, signum, expected) in cases {
        let kind = TaskEventKind::Revoked {
            reason: reason.into(),
            signum,
        };
        let (event_type, fields) = task_fields(&kind, Some("t"), None).expect("an event");
        assert_eq!(event_type, "task-revoked");
        assert_eq!(
            keys(&fields),
            ["terminated", "signum", "expired"],
            "{reason}: field order"
        );
        let got = json!([fields["terminated"], fields["signum"], fields["expired"]]);
        assert_eq!(got, expected, "{reason} {signum:?}");
    }
}

#[test]
fn received_dates_are_python_isoformat() {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T21:02:06.713483Z")
        .expect("a date")
        .with_timezone(&chrono::Utc);
    assert_eq!(iso(at), "2026-11-23T21:02:06.713483+00:00");
    let whole = at.with_nanosecond(0).expect("a date");
    assert_eq!(iso(whole), "2026-11-23T21:02:06+00:00");
}

#[test]
fn properties_are_celerys() {
    let captured = fixture("worker-heartbeat");
    let built = properties("probe_worker@vm");
    assert_eq!(
        built.content_type().as_ref().map(|t| t.as_str()),
        captured["properties"]["content_type"].as_str()
    );
    assert_eq!(
        built.content_encoding().as_ref().map(|t| t.as_str()),
        captured["properties"]["content_encoding"].as_str()
    );
    assert_eq!(*built.delivery_mode(), Some(1));
    assert_eq!(*built.priority(), Some(0));
    let headers = built.headers().as_ref().expect("headers");
    assert_eq!(
        headers.inner().get("hostname"),
        Some(&AMQPValue::LongString(LongString::from(
            b"probe_worker@vm".to_vec()
        )))
    );
}
