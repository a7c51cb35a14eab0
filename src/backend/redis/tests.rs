//! Unit tests of the Redis backend that need no server: documents against Celery 5.7's
//! (tests/fixtures/redis-backend/basic.json) and the configuration.

use serde_json::Value;

use super::config::RedisBackendConfig;
use super::document::{decode, encode, task_key};
use super::error::RedisBackendError;
use crate::protocol::{ResultMessage, TaskState};

fn fixture() -> Value {
    let text = include_str!("../../../tests/fixtures/redis-backend/basic.json");
    serde_json::from_str(text).expect("the fixture is JSON")
}

/// The single `celery-task-meta-<id>` entry of a fixture case: (key, entry).
fn stored(case: &str) -> (String, Value) {
    let fixture = fixture();
    let object = fixture[case]
        .as_object()
        .expect("a case is an object of keys");
    let (key, entry) = object.iter().next().expect("one key per case");
    (key.clone(), entry.clone())
}

#[test]
fn published_documents_are_written_byte_for_byte_as_celery_writes_them() {
    let fixture = fixture();
    let messages = fixture["pubsub_messages_for_success"]
        .as_array()
        .expect("a list of messages");
    assert_eq!(messages.len(), 2);
    for message in messages {
        let text = message.as_str().expect("a message is a string");
        let document = decode("ignored", text.as_bytes()).expect("Celery's document decodes");
        assert_eq!(encode(&document).expect("encodes"), text);
    }
}

#[test]
fn stored_documents_keep_celerys_keys_order_and_values() {
    for case in ["success", "failure", "failure_custom", "started"] {
        let (key, entry) = stored(case);
        let json = &entry["json"];
        let task_id = json["task_id"].as_str().expect("task_id");
        assert_eq!(key, task_key(task_id), "{case}: the key");
        let ttl = entry["ttl"].as_u64().expect("ttl");
        assert!(ttl > 0 && ttl <= 86_400, "{case}: Celery's TTL {ttl}");
        let python = serde_json::to_string(json).expect("re-serializes");
        let document = decode(task_id, python.as_bytes()).expect("decodes");
        let ours: Value = serde_json::from_str(&encode(&document).expect("encodes")).expect("JSON");
        assert_eq!(&ours, json, "{case}: same document");
        let keys: Vec<&String> = ours.as_object().expect("object").keys().collect();
        let celery: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys, celery, "{case}: same key order");
    }
}

#[test]
fn failure_documents_carry_the_exception() {
    let (_, entry) = stored("failure_custom");
    let bytes = serde_json::to_vec(&entry["json"]).expect("serializes");
    let document = decode("x", &bytes).expect("decodes");
    assert_eq!(document.status, TaskState::Failure);
    let exception = document.exception_info().expect("an exception");
    assert_eq!(exception.exc_type, "ProbeError");
    assert_eq!(exception.exc_module, "probe_app");
}

#[test]
fn non_ascii_is_escaped_as_python_does() {
    let document = ResultMessage::success("t", Value::String("é😀\n".into()));
    let text = encode(&document).expect("encodes");
    assert!(
        text.contains(r#""result": "\u00e9\ud83d\ude00\n""#),
        "{text}"
    );
    assert!(text.is_ascii());
    assert_eq!(decode("t", text.as_bytes()).expect("decodes"), document);
}

#[test]
fn malformed_documents_are_refused_with_the_task_id() {
    let error = decode("abc", b"{\"status\": 1").expect_err("malformed");
    assert!(
        matches!(&error, RedisBackendError::Malformed { task_id, .. } if task_id == "abc"),
        "{error:?}"
    );
    assert!(error.to_string().contains("task abc"), "{error}");
}

#[test]
fn tls_settings_refused_clearly_and_passwords_never_shown() {
    let config =
        RedisBackendConfig::new("rediss://:hunter2@redis.example:6380/0?ssl_cert_reqs=none");
    let error = config.validate().expect_err("no unverified TLS");
    assert!(matches!(error, RedisBackendError::Tls { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("TLS"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{config:?}").contains("hunter2"));
    let config = RedisBackendConfig::new(
        "rediss://:hunter2@redis.example:6380/0?ssl_ca_certs=/nonexistent/hunter2-ca.pem",
    );
    config.validate().expect("well-formed");
    let error = config.client().expect_err("no such CA file");
    let text = error.to_string();
    assert!(text.contains("/nonexistent/hunter2-ca.pem"), "{text}");
    assert!(!text.contains(":hunter2@"), "{text}");
    let error = RedisBackendConfig::new("http://:hunter2@x/0")
        .validate()
        .expect_err("not redis");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn the_config_takes_result_backend_and_result_expires() {
    let config = crate::Config {
        result_backend: Some("redis://:pw@127.0.0.1:6379/1".into()),
        result_expires: std::time::Duration::from_secs(60),
        ..crate::Config::default()
    };
    let backend = RedisBackendConfig::from_config(&config).expect("a redis URL");
    assert_eq!(backend.expires_seconds(), Some(60));
    let forever = crate::Config {
        result_expires: std::time::Duration::ZERO,
        ..config
    };
    let backend = RedisBackendConfig::from_config(&forever).expect("a redis URL");
    assert_eq!(backend.expires_seconds(), None, "0: results never expire");
    assert_eq!(backend.url, "redis://:pw@127.0.0.1:6379/1");
    assert_eq!(crate::Config::default().result_expires.as_secs(), 86_400);
}

#[test]
fn children_null_as_python_store_result_writes_it_reads_as_empty() {
    let text = br#"{"status": "SUCCESS", "result": 42, "traceback": null, "children": null, "date_done": "2026-11-30T05:56:35.610033+00:00", "task_id": "t"}"#;
    let document = decode("t", text).expect("Python's document decodes");
    assert!(document.children.is_empty());
    assert_eq!(document.result, serde_json::json!(42));
}
