//! Fuzzes the whole receive path of a worker: arbitrary bodies under arbitrary content
//! types, compression and header tables are decoded under a size limit, then, for a
//! registered task, their arguments are decoded (JSON or bincode). It must return an
//! error, never panic, hang or allocate what the input declares.
#![no_main]

use std::collections::BTreeMap;

use celeriac::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use celeriac::protocol::{ContentType, DecodePolicy, TaskMessage};
use celeriac::{Task, TaskContext, TaskError, TaskRegistry};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

/// The size limit the decoder runs under (64 KiB).
const LIMIT: usize = 64 * 1024;

/// Arguments with strings, vectors, maps and options.
#[derive(Serialize, Deserialize)]
struct RichArgs {
    name: String,
    values: Vec<u64>,
    nested: Vec<Vec<String>>,
    table: Option<BTreeMap<String, f64>>,
}

struct Rich;

impl Task for Rich {
    const NAME: &'static str = "fuzz.rich";
    type Args = RichArgs;
    type Output = ();
    async fn run(_: TaskContext, _: RichArgs) -> Result<(), TaskError> {
        Ok(())
    }
}

struct Pair;

impl Task for Pair {
    const NAME: &'static str = "fuzz.pair";
    type Args = (i64, String);
    type Output = ();
    async fn run(_: TaskContext, _: (i64, String)) -> Result<(), TaskError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    let split = rest.len() / 4;
    let (header_bytes, body) = rest.split_at(split);
    let mut headers = FieldTable::default();
    if selector & 1 == 1 {
        let task = if selector & 8 == 8 { Rich::NAME } else { Pair::NAME };
        headers.insert("task".into(), AMQPValue::LongString(task.into()));
        headers.insert("id".into(), AMQPValue::LongString(header_bytes.to_vec().into()));
    }
    if selector & 2 == 2 {
        headers.insert(
            "compression".into(),
            AMQPValue::LongString("application/x-gzip".into()),
        );
    }
    if selector & 4 == 4 {
        headers.insert("eta".into(), AMQPValue::LongString(header_bytes.to_vec().into()));
    }
    let content_type = match selector >> 4 {
        0 => "application/json",
        1 => "application/x-bincode",
        2 => "text/plain",
        _ => "application/json; charset=utf-8",
    };
    let properties = BasicProperties::default()
        .with_content_type(content_type.into())
        .with_headers(headers);
    let policy = DecodePolicy {
        max_body_size: LIMIT,
        accept: vec![ContentType::Json, ContentType::Bincode],
    };
    let Ok(message) = TaskMessage::decode_with(&properties, body, &policy) else {
        return;
    };
    let mut registry = TaskRegistry::new();
    registry.register::<Rich>();
    registry.register::<Pair>();
    if let Some(task) = registry.get(&message.headers.task) {
        let context = TaskContext::from_headers(&message.headers, "fuzz");
        let _ = task.prepare(context, message.payload, LIMIT);
    }
});
