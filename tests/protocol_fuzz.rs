//! Property-based fuzzing of the protocol (proptest, with the stable toolchain; the
//! cargo-fuzz target is in fuzz/): decoding arbitrary input never panics, and what
//! celeriac encodes decodes to the same message.

use celeriac::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use celeriac::protocol::{TaskMessage, TaskPayload};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e9f64..1.0e9).prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Arbitrary AMQP header values of the types that arrive in practice.
fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    prop_oneof![
        Just(AMQPValue::Void),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f64>().prop_map(AMQPValue::Double),
        ".{0,30}".prop_map(|text| AMQPValue::LongString(text.as_str().into())),
        prop::collection::vec(any::<u8>(), 0..30)
            .prop_map(|bytes| AMQPValue::LongString(bytes.into())),
    ]
}

fn header_names() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("task".to_string()),
        Just("id".to_string()),
        Just("eta".to_string()),
        Just("expires".to_string()),
        Just("retries".to_string()),
        Just("timelimit".to_string()),
        Just("compression".to_string()),
        Just("root_id".to_string()),
        Just("group_index".to_string()),
        "[a-z_]{1,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decoding_arbitrary_input_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..512),
        headers in prop::collection::vec((header_names(), amqp_value()), 0..8),
        content_type in prop_oneof![
            Just(None),
            Just(Some("application/json")),
            Just(Some("application/x-bincode")),
            Just(Some("text/plain")),
        ],
    ) {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert(name.as_str().into(), value);
        }
        let mut properties = BasicProperties::default().with_headers(table);
        if let Some(content_type) = content_type {
            properties = properties.with_content_type(content_type.into());
        }
        let _ = TaskMessage::decode(&properties, &body);
    }

    #[test]
    fn json_bodies_of_any_shape_never_panic(value in json_value()) {
        let mut table = FieldTable::default();
        table.insert("task".into(), AMQPValue::LongString("t".into()));
        table.insert("id".into(), AMQPValue::LongString("i".into()));
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(table);
        let body = serde_json::to_vec(&value).expect("encodes");
        let _ = TaskMessage::decode(&properties, &body);
        // and as a protocol v1 body, without headers
        let _ = TaskMessage::decode(&BasicProperties::default(), &body);
    }

    #[test]
    fn what_celeriac_encodes_decodes_unchanged(
        args in prop::collection::vec(json_value(), 0..5),
        kwargs in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..5),
        retries in 0u32..1000,
        priority in prop::option::of(0u8..10),
    ) {
        let kwargs: Map<String, Value> = kwargs.into_iter().collect();
        let mut message = TaskMessage::new_json("prop.task", "id-1", args.clone(), kwargs.clone());
        message.headers.retries = retries;
        message.priority = priority;
        let (properties, body) = message.encode().expect("encodes");
        let decoded = TaskMessage::decode(&properties, &body).expect("decodes");
        prop_assert_eq!(&decoded, &message);
        let TaskPayload::Json { args: decoded_args, kwargs: decoded_kwargs, .. } = decoded.payload else {
            return Err(TestCaseError::fail("not JSON"));
        };
        prop_assert_eq!(decoded_args, args);
        prop_assert_eq!(decoded_kwargs, kwargs);
    }
}
