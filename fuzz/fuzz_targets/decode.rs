//! Fuzzes the task message decoder: arbitrary bodies under arbitrary content types,
//! compression and header tables. It must return an error, never panic or hang.
#![no_main]

use celeriac::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use celeriac::protocol::TaskMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    let split = rest.len() / 4;
    let (header_bytes, body) = rest.split_at(split);
    let mut headers = FieldTable::default();
    if selector & 1 == 1 {
        headers.insert("task".into(), AMQPValue::LongString("fuzz.task".into()));
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
    let _ = TaskMessage::decode(&properties, body);
});
