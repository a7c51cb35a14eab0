//! Protocol tests against the golden Celery 5.7 fixtures in `tests/fixtures/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use celeriac_actors::amqp::{AMQPValue, BasicProperties, FieldArray, FieldTable, LongString};
use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::amqp::string_value;
use super::time::parse_datetime;
use super::*;

// ---------------------------------------------------------------- helpers

fn fixtures_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

/// Every `*.json` file of a fixture directory, sorted, as (file name, JSON).
fn fixture_files(sub: &str) -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(fixtures_dir(sub))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {sub}");
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

fn fixture(sub: &str, name: &str) -> Value {
    let path = fixtures_dir(sub).join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn base64_decode(text: &str) -> Vec<u8> {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("bad base64 character {c}"),
        }
    }
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= sextet(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// An AMQP value for a fixture header, with the type code of `header_types`.
fn typed_value(value: &Value, ty: &Value) -> AMQPValue {
    match ty {
        Value::String(code) => match (code.as_str(), value) {
            ("S", Value::String(text)) => string_value(text),
            ("I", Value::Number(n)) => {
                AMQPValue::LongInt(i32::try_from(n.as_i64().unwrap()).unwrap())
            }
            ("L" | "l", Value::Number(n)) => AMQPValue::LongLongInt(n.as_i64().unwrap()),
            ("d", Value::Number(n)) => AMQPValue::Double(n.as_f64().unwrap()),
            ("t", Value::Bool(flag)) => AMQPValue::Boolean(*flag),
            ("V", Value::Null) => AMQPValue::Void,
            other => panic!("unhandled header type {other:?}"),
        },
        Value::Object(map) if map.contains_key("A") => {
            let items = value.as_array().unwrap();
            let types = map["A"].as_array().unwrap();
            assert_eq!(items.len(), types.len());
            AMQPValue::FieldArray(FieldArray::from(
                items
                    .iter()
                    .zip(types)
                    .map(|(item, ty)| typed_value(item, ty))
                    .collect::<Vec<_>>(),
            ))
        }
        Value::Object(map) if map.contains_key("F") => {
            let AMQPValue::FieldTable(table) = typed_table(value, &map["F"]) else {
                unreachable!()
            };
            AMQPValue::FieldTable(table)
        }
        other => panic!("unhandled header type {other}"),
    }
}

fn typed_table(values: &Value, types: &Value) -> AMQPValue {
    let mut table = FieldTable::default();
    for (key, value) in values.as_object().unwrap() {
        table.insert(key.as_str().into(), typed_value(value, &types[key]));
    }
    AMQPValue::FieldTable(table)
}

/// The AMQP type tree of a value, in the fixtures' `header_types` notation.
fn type_tree(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::FieldArray(items) => {
            json!({"A": items.as_slice().iter().map(type_tree).collect::<Vec<_>>()})
        }
        AMQPValue::FieldTable(table) => json!({"F": table_types(table)}),
        AMQPValue::LongLongInt(_) => json!("L"),
        other => json!(other.get_type().get_id().to_string()),
    }
}

fn table_types(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), type_tree(v)))
            .collect(),
    )
}

/// BasicProperties and body bytes of a fixture delivery.
fn delivery(fx: &Value) -> (BasicProperties, Vec<u8>) {
    let p = &fx["properties"];
    let mut props = BasicProperties::default();
    if let Some(v) = p["content_type"].as_str() {
        props = props.with_content_type(v.into());
    }
    if let Some(v) = p["content_encoding"].as_str() {
        props = props.with_content_encoding(v.into());
    }
    if let Some(v) = p["delivery_mode"].as_u64() {
        props = props.with_delivery_mode(v as u8);
    }
    if let Some(v) = p["priority"].as_u64() {
        props = props.with_priority(v as u8);
    }
    if let Some(v) = p["correlation_id"].as_str() {
        props = props.with_correlation_id(v.into());
    }
    if let Some(v) = p["reply_to"].as_str() {
        props = props.with_reply_to(v.into());
    }
    if let Some(v) = p["expiration"].as_str() {
        props = props.with_expiration(v.into());
    }
    let AMQPValue::FieldTable(headers) = typed_table(&fx["headers"], &fx["header_types"]) else {
        unreachable!()
    };
    props = props.with_headers(headers);
    (props, base64_decode(fx["body_raw_b64"].as_str().unwrap()))
}

fn decode_fixture(name: &str) -> TaskMessage {
    let (props, body) = delivery(&fixture("celery-v2", name));
    TaskMessage::decode(&props, &body).unwrap()
}

fn json_parts(msg: &TaskMessage) -> (&Vec<Value>, &Map<String, Value>, &Value) {
    match &msg.payload {
        TaskPayload::Json {
            args,
            kwargs,
            embed,
        } => (args, kwargs, embed),
        TaskPayload::Bincode(_) => panic!("expected a JSON payload"),
    }
}

fn opt_time(value: &Value) -> Option<chrono::DateTime<Utc>> {
    value.as_str().map(|text| parse_datetime(text).unwrap())
}

fn headers_with(task: Option<&str>, id: Option<&str>) -> BasicProperties {
    let mut table = FieldTable::default();
    if let Some(task) = task {
        table.insert("task".into(), string_value(task));
    }
    if let Some(id) = id {
        table.insert("id".into(), string_value(id));
    }
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(table)
}

// ---------------------------------------------------------------- decoding fixtures

#[test]
fn decodes_every_celery_fixture() {
    for (name, fx) in fixture_files("celery-v2") {
        let (props, body) = delivery(&fx);
        let msg = TaskMessage::decode(&props, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = &fx["properties"];
        assert_eq!(
            msg.correlation_id.as_deref(),
            p["correlation_id"].as_str(),
            "{name}"
        );
        assert_eq!(msg.reply_to.as_deref(), p["reply_to"].as_str(), "{name}");
        assert_eq!(
            msg.priority.map(u64::from),
            p["priority"].as_u64(),
            "{name}"
        );
        assert_eq!(
            u64::from(msg.delivery_mode),
            p["delivery_mode"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            msg.expiration_ms,
            p["expiration"].as_str().map(|ms| ms.parse().unwrap()),
            "{name}"
        );
        assert_eq!(msg.content_type, ContentType::Json, "{name}");
        let (args, kwargs, embed) = json_parts(&msg);
        let h = &msg.headers;
        if fx["header_types"].as_object().unwrap().is_empty() {
            // protocol v1: everything is in the body object
            let b = &fx["body"];
            assert_eq!(msg.protocol_version, 1, "{name}");
            assert_eq!(h.task, b["task"].as_str().unwrap());
            assert_eq!(h.id, b["id"].as_str().unwrap());
            assert_eq!(args, b["args"].as_array().unwrap());
            assert_eq!(kwargs, b["kwargs"].as_object().unwrap());
            assert_eq!(h.eta, opt_time(&b["eta"]));
            assert_eq!(h.expires, opt_time(&b["expires"]));
            assert_eq!(embed["callbacks"], b["callbacks"]);
            continue;
        }
        let fh = &fx["headers"];
        let b = fx["body"].as_array().unwrap();
        assert_eq!(msg.protocol_version, 2, "{name}");
        assert_eq!(h.lang, "py");
        assert_eq!(h.task, fh["task"].as_str().unwrap(), "{name}");
        assert_eq!(h.id, fh["id"].as_str().unwrap(), "{name}");
        assert_eq!(h.shadow.as_deref(), fh["shadow"].as_str(), "{name}");
        assert_eq!(h.eta, opt_time(&fh["eta"]), "{name}");
        assert_eq!(h.expires, opt_time(&fh["expires"]), "{name}");
        assert_eq!(h.group.as_deref(), fh["group"].as_str(), "{name}");
        assert_eq!(h.group_index, fh["group_index"].as_i64(), "{name}");
        assert_eq!(
            u64::from(h.retries),
            fh["retries"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(h.timelimit.0, fh["timelimit"][0].as_f64(), "{name}");
        assert_eq!(h.timelimit.1, fh["timelimit"][1].as_f64(), "{name}");
        assert_eq!(h.root_id.as_deref(), fh["root_id"].as_str(), "{name}");
        assert_eq!(h.parent_id.as_deref(), fh["parent_id"].as_str(), "{name}");
        assert_eq!(h.argsrepr.as_deref(), fh["argsrepr"].as_str(), "{name}");
        assert_eq!(h.kwargsrepr.as_deref(), fh["kwargsrepr"].as_str(), "{name}");
        assert_eq!(h.origin.as_deref(), fh["origin"].as_str(), "{name}");
        assert_eq!(h.ignore_result, fh["ignore_result"].as_bool(), "{name}");
        assert_eq!(
            h.replaced_task_nesting,
            fh["replaced_task_nesting"].as_i64()
        );
        assert_eq!(&Value::Object(h.stamps.clone()), &fh["stamps"], "{name}");
        assert_eq!(args, b[0].as_array().unwrap(), "{name}");
        assert_eq!(kwargs, b[1].as_object().unwrap(), "{name}");
        assert_eq!(embed, &b[2], "{name}");
        assert_eq!(
            TaskMessage::peek_identity(&props),
            (Some(h.id.clone()), Some(h.task.clone())),
            "{name}"
        );
    }
}

#[test]
fn plain_args_kwargs() {
    let msg = decode_fixture("plain_args_kwargs.json");
    assert_eq!(msg.headers.task, "probe.add");
    assert_eq!(msg.headers.id, "00000000-0000-4000-8000-000000000001");
    let (args, kwargs, embed) = json_parts(&msg);
    assert_eq!(args, &vec![json!(2)]);
    assert_eq!(Value::Object(kwargs.clone()), json!({"y": 3}));
    assert_eq!(embed, &empty_embed());
    assert_eq!(msg.headers.retries, 0);
    assert_eq!(msg.headers.timelimit, (None, None));
    assert_eq!(msg.priority, Some(0));
    assert_eq!(
        msg.reply_to.as_deref(),
        Some("d16dfcab-8ce6-32c8-b9ac-774ccc9fe0d9")
    );
    assert!(msg.headers.extra.is_empty());
    assert_eq!(msg.headers.stamped_headers, None);
}

#[test]
fn eta_expires_and_expiration() {
    let msg = decode_fixture("eta_expires_datetime.json");
    let eta = Utc.with_ymd_and_hms(2026, 11, 23, 20, 59, 22).unwrap()
        + chrono::Duration::microseconds(581_651);
    assert_eq!(msg.headers.eta, Some(eta));
    assert_eq!(
        msg.headers.expires,
        Some(eta + chrono::Duration::seconds(3540))
    );
    assert_eq!(msg.expiration_ms, Some(3_599_999));
    assert_eq!(
        decode_fixture("expires_seconds.json").expiration_ms,
        Some(300_000)
    );
    assert!(decode_fixture("countdown_30s.json").headers.eta.is_some());
}

#[test]
fn naive_eta_is_utc() {
    let msg = decode_fixture("eta_naive_datetime.json");
    assert_eq!(
        msg.headers.eta,
        Some(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap())
    );
}

#[test]
fn shadow_timelimit_ignore_result_priority_transient() {
    let msg = decode_fixture("shadow_timelimit_ignore_result.json");
    assert_eq!(msg.headers.shadow.as_deref(), Some("probe.add.shadowed"));
    assert_eq!(msg.headers.timelimit, (Some(60.0), Some(50.0)));
    assert_eq!(msg.headers.ignore_result, Some(true));
    assert_eq!(
        decode_fixture("send_task_rich_types.json")
            .headers
            .ignore_result,
        None
    );
    assert_eq!(decode_fixture("priority_7.json").priority, Some(7));
    assert_eq!(
        decode_fixture("explicit_exchange_transient.json").delivery_mode,
        1
    );
    // the chord_unlock task was published without a priority property
    assert_eq!(decode_fixture("chord_unlock_backend.0.json").priority, None);
}

#[test]
fn groups_and_stamps() {
    let msg = decode_fixture("group_2.1.json");
    assert!(msg.headers.group.is_some());
    assert_eq!(msg.headers.group_index, Some(1));
    let msg = decode_fixture("stamped.json");
    assert_eq!(
        msg.headers.stamped_headers,
        Some(vec!["probe_stamp".to_owned()])
    );
    assert_eq!(
        Value::Object(msg.headers.stamps),
        json!({"probe_stamp": "s1"})
    );
}

#[test]
fn rich_types_pass_through() {
    let msg = decode_fixture("send_task_rich_types.json");
    let (args, kwargs, _) = json_parts(&msg);
    assert_eq!(
        Value::Array(args.clone()),
        json!([1, 2.5, "três", null, true, [1, 2], {"k": "v"}])
    );
    assert_eq!(kwargs["when"]["__type__"], "datetime");
}

#[test]
fn custom_headers_kept_in_extra() {
    let msg = decode_fixture("custom_headers.json");
    let extra = &msg.headers.extra;
    assert_eq!(extra.len(), 3, "{extra:?}");
    assert_eq!(extra["x-probe"], string_value("hello"));
    assert_eq!(extra["tenant"], AMQPValue::LongInt(42));
    assert_eq!(
        type_tree(&extra["nested"]),
        json!({"F": {"a": {"A": ["I", "S"]}}})
    );
    // and re-sent as is
    let (props, _) = msg.encode().unwrap();
    let table = props.headers().as_ref().unwrap().inner();
    assert_eq!(table.get("x-probe"), Some(&string_value("hello")));
    assert_eq!(table.get("tenant"), Some(&AMQPValue::LongInt(42)));
    assert_eq!(table.get("nested"), Some(&extra["nested"]));
}

#[test]
fn compressed_body() {
    let fx = fixture("celery-v2", "compression_gzip.json");
    let (props, body) = delivery(&fx);
    assert_eq!(&body[..2], &[0x78, 0x9c]);
    let msg = TaskMessage::decode(&props, &body).unwrap();
    let (args, _, _) = json_parts(&msg);
    assert_eq!(args, &vec![json!(2), json!(3)]);
    assert!(!msg.headers.extra.contains_key("compression"));
}

#[test]
fn protocol_v1_message() {
    let msg = decode_fixture("protocol_v1_message.json");
    assert_eq!(msg.protocol_version, 1);
    assert_eq!(msg.headers.task, "probe.add");
    assert_eq!(msg.headers.id, "00000000-0000-4000-8000-0000000000f1");
    let (args, kwargs, embed) = json_parts(&msg);
    assert_eq!(args, &vec![json!(2)]);
    assert_eq!(Value::Object(kwargs.clone()), json!({"y": 3}));
    assert_eq!(embed["callbacks"][0]["task"], "probe.mul");
    assert_eq!(embed["chain"], Value::Null);
    assert!(msg.headers.eta.is_some());
    // encoding always writes protocol v2
    let (props, body) = msg.encode().unwrap();
    let again = TaskMessage::decode(&props, &body).unwrap();
    assert_eq!(again.protocol_version, 2);
    assert_eq!(again.payload, msg.payload);
}

// ---------------------------------------------------------------- encoding

#[test]
fn round_trip_every_fixture_with_python_header_types() {
    for (name, fx) in fixture_files("celery-v2") {
        let (props, body) = delivery(&fx);
        let msg = TaskMessage::decode(&props, &body).unwrap();
        let (props2, body2) = msg.encode().unwrap();
        let again = TaskMessage::decode(&props2, &body2).unwrap();
        let mut expected = msg.clone();
        expected.protocol_version = 2;
        assert_eq!(again, expected, "{name}");
        let body_json: Value = serde_json::from_slice(&body2).unwrap();
        assert_eq!(body_json.as_array().map(Vec::len), Some(3), "{name}");
        if msg.protocol_version == 2 {
            let mut expected_types = fx["header_types"].clone();
            expected_types
                .as_object_mut()
                .unwrap()
                .remove("compression");
            assert_eq!(
                table_types(props2.headers().as_ref().unwrap()),
                expected_types,
                "{name}"
            );
        }
        assert_eq!(
            props2.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            props2.content_encoding().as_ref().map(|s| s.as_str()),
            Some("utf-8")
        );
    }
}

#[test]
fn new_json_encodes_like_python() {
    let mut kwargs = Map::new();
    kwargs.insert("y".to_owned(), json!(3));
    let mut msg = TaskMessage::new_json("probe.add", "id-1", vec![json!(2)], kwargs);
    msg.reply_to = Some("reply-queue".to_owned());
    msg.priority = Some(3);
    msg.expiration_ms = Some(300_000);
    msg.headers.eta = Some(Utc.with_ymd_and_hms(2026, 11, 23, 20, 58, 52).unwrap());
    msg.headers.timelimit = (Some(60.0), Some(2.5));
    msg.headers.group_index = Some(3_000_000_000);
    let (props, body) = msg.encode().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!([[2], {"y": 3}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}])
    );
    assert_eq!(props.correlation_id().as_ref().unwrap().as_str(), "id-1");
    assert_eq!(props.reply_to().as_ref().unwrap().as_str(), "reply-queue");
    assert_eq!(*props.priority(), Some(3));
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(props.expiration().as_ref().unwrap().as_str(), "300000");
    let table = props.headers().as_ref().unwrap().inner();
    assert_eq!(table["lang"], string_value("rust"));
    assert_eq!(table["root_id"], string_value("id-1"));
    assert_eq!(
        table["eta"],
        string_value("2026-11-23T20:58:52.000000+00:00")
    );
    assert_eq!(type_tree(&table["timelimit"]), json!({"A": ["I", "d"]}));
    assert_eq!(type_tree(&table["group_index"]), json!("L"));
    assert_eq!(type_tree(&table["retries"]), json!("I"));
    assert_eq!(type_tree(&table["ignore_result"]), json!("t"));
    assert_eq!(table["ignore_result"], AMQPValue::Boolean(false));
    assert_eq!(table["argsrepr"], string_value("(2,)"));
    assert_eq!(table["kwargsrepr"], string_value("{'y': 3}"));
    assert!(
        matches!(&table["origin"], AMQPValue::LongString(origin) if origin.to_string().starts_with("gen"))
    );
    assert_eq!(type_tree(&table["stamps"]), json!({"F": {}}));
    assert_eq!(TaskMessage::decode(&props, &body).unwrap(), msg);
}

#[test]
fn bincode_round_trip() {
    let encoded =
        bincode::serde::encode_to_vec((2i64, "x".to_owned()), bincode::config::standard()).unwrap();
    let msg = TaskMessage::new_bincode("rust.task", "id-2", encoded.clone());
    let (props, body) = msg.encode().unwrap();
    assert_eq!(body, encoded);
    assert_eq!(
        props.content_type().as_ref().unwrap().as_str(),
        "application/x-bincode"
    );
    assert_eq!(
        props.content_encoding().as_ref().unwrap().as_str(),
        "binary"
    );
    let decoded = TaskMessage::decode(&props, &body).unwrap();
    assert_eq!(decoded, msg);
    let TaskPayload::Bincode(bytes) = decoded.payload else {
        panic!("expected bincode")
    };
    let ((n, s), _): ((i64, String), usize) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    assert_eq!((n, s.as_str()), (2, "x"));
}

#[test]
fn encode_rejects_mismatched_payload_and_long_reply_to() {
    let mut msg = TaskMessage::new_json("t", "i", vec![], Map::new());
    msg.content_type = ContentType::Bincode;
    assert!(msg.encode().is_err());
    let mut msg = TaskMessage::new_json("t", "i", vec![], Map::new());
    msg.reply_to = Some("r".repeat(300));
    let err = msg.encode().unwrap_err().to_string();
    assert!(err.contains("reply_to"), "{err}");
}

#[test]
fn content_type_mime() {
    assert_eq!(ContentType::Json.mime(), "application/json");
    assert_eq!(ContentType::Bincode.mime(), "application/x-bincode");
    assert_eq!(
        ContentType::from_mime("application/json"),
        Some(ContentType::Json)
    );
    assert_eq!(
        ContentType::from_mime("application/json; charset=utf-8"),
        Some(ContentType::Json)
    );
    assert_eq!(
        ContentType::from_mime("application/x-bincode"),
        Some(ContentType::Bincode)
    );
    assert_eq!(ContentType::from_mime("text/plain"), None);
    assert_eq!(ContentType::default(), ContentType::Json);
}

// ---------------------------------------------------------------- bad input

fn decode_err(props: &BasicProperties, body: &[u8]) -> String {
    TaskMessage::decode(props, body).unwrap_err().to_string()
}

#[test]
fn minimal_message_and_missing_content_type() {
    let props = headers_with(Some("probe.add"), Some("id-3"));
    let msg = TaskMessage::decode(&props, b"[[2,3],{},null]").unwrap();
    assert_eq!(msg.headers.lang, "");
    assert_eq!(msg.headers.root_id, None);
    assert_eq!(msg.delivery_mode, 2);
    assert_eq!(json_parts(&msg).2, &Value::Null);
    let no_type = BasicProperties::default().with_headers(props.headers().clone().unwrap());
    assert!(TaskMessage::decode(&no_type, b"[[2,3],{},{}]").is_ok());
}

#[test]
fn bad_bodies() {
    let props = headers_with(Some("probe.add"), Some("id-4"));
    let err = decode_err(&props, b"[[2,3],{}");
    assert!(err.starts_with("body is not valid JSON: "), "{err}");
    assert_eq!(
        decode_err(&props, b"[[2,3],{}]"),
        "malformed body: body is a JSON array of 2 elements, expected 3 [args, kwargs, embed]"
    );
    assert_eq!(
        decode_err(&props, br#"{"a": 1}"#),
        "malformed body: body is a JSON object, expected a 3-element array [args, kwargs, embed]"
    );
    assert_eq!(
        decode_err(&props, br#"["x", {}, {}]"#),
        "malformed body: args (body[0]) is a JSON string, expected an array"
    );
    assert_eq!(
        decode_err(&props, br#"[[], [], {}]"#),
        "malformed body: kwargs (body[1]) is a JSON array of 0 elements, expected an object"
    );
}

#[test]
fn unknown_content_type() {
    let props =
        headers_with(Some("probe.add"), Some("id-5")).with_content_type("text/plain".into());
    assert_eq!(
        decode_err(&props, b"[[],{},{}]"),
        "unsupported content type \"text/plain\""
    );
}

#[test]
fn missing_id_and_task() {
    let props = headers_with(Some("probe.add"), None);
    assert_eq!(decode_err(&props, b"[[],{},{}]"), "missing header \"id\"");
    let props = headers_with(None, Some("id-6"));
    assert_eq!(decode_err(&props, b"[[],{},{}]"), "missing header \"task\"");
    assert_eq!(
        decode_err(&props, b"\"hello\""),
        "not a task message: no \"task\" header and the body is a JSON string, not a protocol v1 task object"
    );
    assert_eq!(
        TaskMessage::peek_identity(&props),
        (Some("id-6".to_owned()), None)
    );
    assert_eq!(
        TaskMessage::peek_identity(&BasicProperties::default()),
        (None, None)
    );
}

#[test]
fn bad_header_values() {
    let mut props = headers_with(Some("probe.add"), Some("id-7"));
    let mut table = props.headers().clone().unwrap();
    table.insert("eta".into(), string_value("xyz"));
    props = props.with_headers(table.clone());
    assert_eq!(
        decode_err(&props, b"[[],{},{}]"),
        "eta \"xyz\" is not an ISO 8601 datetime"
    );
    table.insert("eta".into(), AMQPValue::Void);
    table.insert("retries".into(), string_value("1"));
    props = props.with_headers(table);
    assert_eq!(
        decode_err(&props, b"[[],{},{}]"),
        "header \"retries\": expected an integer, got AMQP type 'S'"
    );
}

#[test]
fn lenient_header_types() {
    let mut table = FieldTable::default();
    table.insert("task".into(), AMQPValue::ShortString("probe.add".into()));
    table.insert("id".into(), AMQPValue::ByteArray(b"id-8".to_vec().into()));
    table.insert("retries".into(), AMQPValue::ShortShortUInt(3));
    table.insert("group_index".into(), AMQPValue::LongLongInt(1));
    table.insert(
        "timelimit".into(),
        AMQPValue::FieldArray(vec![AMQPValue::Double(1.5), AMQPValue::ShortInt(2)].into()),
    );
    table.insert("eta".into(), string_value("2030-01-01 12:00:00Z"));
    let props = BasicProperties::default().with_headers(table);
    let msg = TaskMessage::decode(&props, b"[[],{},{}]").unwrap();
    assert_eq!(msg.headers.id, "id-8");
    assert_eq!(msg.headers.retries, 3);
    assert_eq!(msg.headers.group_index, Some(1));
    assert_eq!(msg.headers.timelimit, (Some(1.5), Some(2.0)));
    assert_eq!(
        msg.headers.eta,
        Some(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap())
    );
}

#[test]
fn gzip_garbage() {
    let mut table = headers_with(Some("probe.add"), Some("id-9"))
        .headers()
        .clone()
        .unwrap();
    table.insert("compression".into(), string_value("application/x-gzip"));
    let props = BasicProperties::default().with_headers(table.clone());
    let err = decode_err(&props, b"definitely not zlib");
    assert!(
        err.starts_with("cannot decompress body (application/x-gzip): "),
        "{err}"
    );
    table.insert("compression".into(), string_value("application/x-lzma"));
    let props = BasicProperties::default().with_headers(table);
    assert_eq!(
        decode_err(&props, b"x"),
        "unsupported compression \"application/x-lzma\""
    );
}

#[test]
fn bincode_without_task_header_is_refused() {
    let props = BasicProperties::default()
        .with_content_type("application/x-bincode".into())
        .with_headers(FieldTable::default());
    assert_eq!(decode_err(&props, b"\x01\x02"), "missing header \"task\"");
}

#[test]
fn long_string_non_utf8_is_an_error() {
    let mut table = FieldTable::default();
    table.insert(
        "task".into(),
        AMQPValue::LongString(LongString::from(vec![0xff, 0xfe])),
    );
    table.insert("id".into(), string_value("x"));
    let props = BasicProperties::default().with_headers(table);
    assert_eq!(
        decode_err(&props, b"[[],{},{}]"),
        "header \"task\": string is not valid UTF-8"
    );
}

// ---------------------------------------------------------------- results

#[test]
fn every_rpc_result_decodes() {
    let mut count = 0;
    for (name, fx) in fixture_files("rpc-results") {
        let deliveries = match fx {
            Value::Array(items) => items,
            single => vec![single],
        };
        for d in deliveries {
            let body = base64_decode(d["body_raw_b64"].as_str().unwrap());
            let result = ResultMessage::from_json(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            // (the "body" field of chain_first_step_fails has a cut traceback: use the raw bytes)
            let raw: Value = serde_json::from_slice(&body).unwrap();
            let expected = &raw;
            assert_eq!(expected["status"], d["body"]["status"], "{name}");
            assert_eq!(json!(result.status), expected["status"], "{name}");
            assert_eq!(
                result.task_id,
                expected["task_id"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(result.result, expected["result"], "{name}");
            assert_eq!(result.traceback.as_deref(), expected["traceback"].as_str());
            assert_eq!(result.date_done.as_deref(), expected["date_done"].as_str());
            assert_eq!(
                result.date_done.is_some(),
                result.status.is_ready(),
                "{name}"
            );
            assert_eq!(
                d["properties"]["correlation_id"].as_str(),
                Some(result.task_id.as_str()),
                "{name}"
            );
            if result.status.is_exception() {
                let exc = result.exception_info().unwrap();
                assert!(!exc.exc_module.is_empty(), "{name}");
            }
            // re-encoding gives the same document
            let again: Value = serde_json::from_slice(&result.to_json().unwrap()).unwrap();
            assert_eq!(&again, expected, "{name}");
            count += 1;
        }
    }
    assert!(count >= 20, "{count}");
}

#[test]
fn result_details() {
    let fx = fixture("rpc-results", "failure_custom_exc.1.json");
    let body = base64_decode(fx["body_raw_b64"].as_str().unwrap());
    let result = ResultMessage::from_json(&body).unwrap();
    assert_eq!(result.status, TaskState::Failure);
    let exc = result.exception_info().unwrap();
    assert_eq!(exc.exc_type, "ProbeError");
    assert_eq!(exc.exc_module, "probe_app");
    assert_eq!(exc.exc_message, vec![json!(42), json!("detail")]);
    assert_eq!(exc.to_string(), "ProbeError: 42, detail");

    let fx = fixture("rpc-results", "retry.1.json");
    let result =
        ResultMessage::from_json(&base64_decode(fx["body_raw_b64"].as_str().unwrap())).unwrap();
    assert_eq!(result.status, TaskState::Retry);
    assert!(!result.status.is_ready());
    assert!(!result.children.is_empty());

    let fx = fixture("rpc-results", "revoked_expired.json");
    let result =
        ResultMessage::from_json(&base64_decode(fx["body_raw_b64"].as_str().unwrap())).unwrap();
    assert_eq!(
        result.exception_info(),
        Some(ExceptionInfo::revoked_expired())
    );
    assert!(ResultMessage::from_json(b"[1]").is_err());
}

#[test]
fn result_constructors_serialize_with_celery_names() {
    let ok = ResultMessage::success("id-1", json!(5));
    let value: Value = serde_json::from_slice(&ok.to_json().unwrap()).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "status",
            "result",
            "traceback",
            "children",
            "date_done",
            "task_id"
        ]
    );
    assert_eq!(value["status"], "SUCCESS");
    assert!(parse_datetime(value["date_done"].as_str().unwrap()).is_some());
    assert!(value["date_done"].as_str().unwrap().ends_with("+00:00"));

    let started = ResultMessage::started("id-2", 42, "w@h");
    assert_eq!(started.date_done, None);
    assert_eq!(started.result, json!({"pid": 42, "hostname": "w@h"}));

    let exc = ExceptionInfo::new("ValueError", "builtins", "boom");
    let failed = ResultMessage::exception("id-3", TaskState::Failure, &exc, Some("tb".to_owned()));
    let value: Value = serde_json::from_slice(&failed.to_json().unwrap()).unwrap();
    assert_eq!(
        value["result"],
        json!({"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"})
    );
    assert_eq!(value["traceback"], "tb");
}

#[test]
fn task_states() {
    let all = [
        (TaskState::Pending, "PENDING"),
        (TaskState::Received, "RECEIVED"),
        (TaskState::Started, "STARTED"),
        (TaskState::Success, "SUCCESS"),
        (TaskState::Failure, "FAILURE"),
        (TaskState::Retry, "RETRY"),
        (TaskState::Revoked, "REVOKED"),
        (TaskState::Rejected, "REJECTED"),
        (TaskState::Ignored, "IGNORED"),
    ];
    for (state, text) in all {
        assert_eq!(json!(state), json!(text));
        assert_eq!(
            serde_json::from_value::<TaskState>(json!(text)).unwrap(),
            state
        );
        assert_eq!(state.to_string(), text);
    }
    let ready: Vec<_> = all
        .iter()
        .filter(|(s, _)| s.is_ready())
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(ready, ["SUCCESS", "FAILURE", "REVOKED"]);
}

#[test]
fn exception_message_forms() {
    let plain: ExceptionInfo = serde_json::from_value(
        json!({"exc_type": "KeyError", "exc_message": "k", "exc_module": "builtins"}),
    )
    .unwrap();
    assert_eq!(plain.exc_message, vec![json!("k")]);
    let bare: ExceptionInfo = serde_json::from_value(json!({"exc_type": "X"})).unwrap();
    assert_eq!(bare.exc_message, Vec::<Value>::new());
    assert_eq!(bare.exc_module, "");
    assert_eq!(bare.to_string(), "X");
    assert_eq!(ExceptionInfo::from_value(&json!(5)), None);
    assert_eq!(
        ExceptionInfo::not_registered("a.b").to_value(),
        json!({"exc_type": "NotRegistered", "exc_message": ["a.b"], "exc_module": "celery.exceptions"})
    );
}

#[test]
fn extra_headers_cannot_override_modeled_ones() {
    let mut msg = TaskMessage::new_json("t", "i", vec![], Map::new());
    let mut extra = BTreeMap::new();
    extra.insert("task".to_owned(), string_value("evil"));
    extra.insert("compression".to_owned(), string_value("application/x-gzip"));
    extra.insert("x-custom".to_owned(), AMQPValue::Boolean(true));
    msg.headers.extra = extra;
    let (props, body) = msg.encode().unwrap();
    let table = props.headers().as_ref().unwrap().inner();
    assert_eq!(table["task"], string_value("t"));
    assert!(!table.contains_key("compression"));
    let decoded = TaskMessage::decode(&props, &body).unwrap();
    assert_eq!(decoded.headers.extra.len(), 1);
    assert_eq!(decoded.headers.extra["x-custom"], AMQPValue::Boolean(true));
}
