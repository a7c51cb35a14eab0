//! Property-based fuzzing of the protocol (proptest, with the stable toolchain; the
//! cargo-fuzz target is in fuzz/): decoding arbitrary input never panics, what celeriac
//! encodes decodes to the same message, and the whole receive path (content type, size
//! limit, decompression, argument decoding for registered tasks, JSON and bincode) never
//! panics nor allocates more than a small multiple of the size limit, whatever the input
//! declares.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;

use celeriac::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use celeriac::protocol::{ContentType, DecodePolicy, TaskMessage, TaskPayload, PARSED_SIZE_FACTOR};
use celeriac::{Task, TaskContext, TaskError, TaskRegistry};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Records, per thread, the largest single allocation asked for: the receive path must
/// never allocate what a message declares before checking it.
struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated and not yet freed by this thread (frees from other threads are
    /// not seen: the receive path frees on the thread that allocated).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` since the last reset.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn record(grown: isize, size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + grown);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize, layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as isize), 0);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size as isize - layout.size() as isize, new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Resets the per-thread counters; `peak_since_reset` then tells the most memory held
/// at once by this thread above what it held at the reset.
fn reset_counters() {
    LARGEST.with(|largest| largest.set(0));
    let live = LIVE.with(|live| live.get());
    PEAK.with(|peak| peak.set(live));
}

fn peak_since_reset(live_at_reset: isize) -> usize {
    (PEAK.with(|peak| peak.get()) - live_at_reset).max(0) as usize
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// The size limit of the receive-path properties below.
const LIMIT: usize = 64 * 1024;

/// The largest single allocation the receive path may make under `LIMIT`: a body grown
/// by doubling up to `LIMIT` + 1 bytes (so under 2 x `LIMIT` + slack), bincode claims up to
/// `LIMIT`, and the inflater's fixed state (tens of KiB).
const LARGEST_ALLOWED: usize = 2 * LIMIT + 128 * 1024;

/// Arguments with strings, vectors, maps and options: what bincode length prefixes and
/// JSON shapes can go wrong in.
#[derive(Debug, Serialize, Deserialize)]
struct RichArgs {
    name: String,
    values: Vec<u64>,
    nested: Vec<Vec<String>>,
    table: Option<BTreeMap<String, f64>>,
    flag: bool,
}

/// A task per argument shape, registered for the receive-path properties.
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

struct Anything;

impl Task for Anything {
    const NAME: &'static str = "fuzz.anything";
    type Args = Value;
    type Output = ();
    async fn run(_: TaskContext, _: Value) -> Result<(), TaskError> {
        Ok(())
    }
}

fn registry() -> TaskRegistry {
    let mut registry = TaskRegistry::new();
    registry.register::<Rich>();
    registry.register::<Pair>();
    registry.register::<Anything>();
    registry
}

/// What a worker does with a delivery before running it: decode under the policy, look
/// the task up, decode its arguments. Returns the largest single allocation it made.
fn receive(properties: &BasicProperties, body: &[u8]) -> usize {
    receive_measured(properties, body).0
}

/// As `receive`, and also the most memory it held at once.
fn receive_measured(properties: &BasicProperties, body: &[u8]) -> (usize, usize) {
    let policy = DecodePolicy {
        max_body_size: LIMIT,
        accept: vec![ContentType::Json, ContentType::Bincode],
    };
    let registry = registry();
    let live_at_reset = LIVE.with(|live| live.get());
    reset_counters();
    if let Ok(message) = TaskMessage::decode_with(properties, body, &policy) {
        if let Some(task) = registry.get(&message.headers.task) {
            let context = TaskContext::from_headers(&message.headers, "fuzz");
            let _ = task.prepare(context, message.payload, policy.max_body_size);
        }
    }
    (
        LARGEST.with(|largest| largest.get()),
        peak_since_reset(live_at_reset),
    )
}

/// The most memory the receive path may hold at once for one message: the decompressed
/// body (up to `LIMIT`), its parsed form (up to `PARSED_SIZE_FACTOR` x `LIMIT`), the
/// arguments decoded from it (no larger than the parsed form's strings and numbers, so up
/// to `LIMIT` more) and fixed overheads (the inflater's state, the registry).
const PEAK_ALLOWED: usize = (PARSED_SIZE_FACTOR + 2) * LIMIT + 128 * 1024;

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("compresses");
    encoder.finish().expect("compresses")
}

/// Properties of a v2 message for `task` with `content_type`, compressed or not.
fn task_properties(task: &str, content_type: &str, compressed: bool) -> BasicProperties {
    let mut table = FieldTable::default();
    table.insert("task".into(), AMQPValue::LongString(task.into()));
    table.insert("id".into(), AMQPValue::LongString("fuzz-id".into()));
    if compressed {
        table.insert(
            "compression".into(),
            AMQPValue::LongString("application/x-gzip".into()),
        );
    }
    BasicProperties::default()
        .with_content_type(content_type.into())
        .with_headers(table)
}

/// Bincode bodies: arbitrary bytes, bytes behind a hostile length prefix (`0xFD` + a u64,
/// or `0xFC` + a u32), or a valid encoding with bytes appended.
fn bincode_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..32)).prop_map(|(length, tail)| {
            let mut body = vec![0xFD];
            body.extend_from_slice(&length.to_le_bytes());
            body.extend_from_slice(&tail);
            body
        }),
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..32)).prop_map(|(length, tail)| {
            let mut body = vec![0xFC];
            body.extend_from_slice(&length.to_le_bytes());
            body.extend_from_slice(&tail);
            body
        }),
        (
            ".{0,20}",
            any::<i64>(),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(text, number, tail)| {
                let mut body =
                    bincode::serde::encode_to_vec((number, text), bincode::config::standard())
                        .expect("encodes");
                body.extend_from_slice(&tail);
                body
            }),
    ]
}

fn task_names() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(Rich::NAME),
        Just(Pair::NAME),
        Just(Anything::NAME),
        Just("fuzz.unknown"),
    ]
}

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

    #[test]
    fn the_receive_path_handles_any_json_arguments(
        task in task_names(),
        args in prop::collection::vec(json_value(), 0..5),
        kwargs in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..5),
        compressed in any::<bool>(),
    ) {
        let kwargs: Map<String, Value> = kwargs.into_iter().collect();
        let body = serde_json::to_vec(&(args, kwargs, Value::Null)).expect("encodes");
        let body = if compressed { zlib(&body) } else { body };
        let largest = receive(&task_properties(task, "application/json", compressed), &body);
        prop_assert!(largest <= LARGEST_ALLOWED, "allocated {largest} bytes at once");
    }

    #[test]
    fn the_receive_path_handles_any_bincode_body(
        task in task_names(),
        body in bincode_body(),
        compressed in any::<bool>(),
    ) {
        let body = if compressed { zlib(&body) } else { body };
        let properties = task_properties(task, "application/x-bincode", compressed);
        let largest = receive(&properties, &body);
        prop_assert!(largest <= LARGEST_ALLOWED, "allocated {largest} bytes at once");
    }

    #[test]
    fn the_receive_path_handles_any_compressed_bytes(
        task in task_names(),
        content_type in prop_oneof![Just("application/json"), Just("application/x-bincode")],
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let largest = receive(&task_properties(task, content_type, true), &body);
        prop_assert!(largest <= LARGEST_ALLOWED, "allocated {largest} bytes at once");
    }

}

proptest! {
    // Each case inflates up to 1 MiB: fewer cases keep the suite fast.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn compression_bombs_stop_at_the_limit(
        byte in any::<u8>(),
        inflated in (LIMIT + 1)..(16 * LIMIT),
        content_type in prop_oneof![Just("application/json"), Just("application/x-bincode")],
    ) {
        let body = zlib(&vec![byte; inflated]);
        let properties = task_properties(Anything::NAME, content_type, true);
        let policy = DecodePolicy {
            max_body_size: LIMIT,
            accept: vec![ContentType::Json, ContentType::Bincode],
        };
        let error = TaskMessage::decode_with(&properties, &body, &policy)
            .expect_err("a body that inflates past the limit is refused");
        prop_assert!(error.to_string().contains("more than the size limit"), "{}", error);
        let largest = receive(&properties, &body);
        prop_assert!(largest <= LARGEST_ALLOWED, "allocated {largest} bytes at once");
    }
}

/// JSON bodies just under the size limit whose parsed form is as large as JSON allows:
/// tiny values, empty containers, many object keys, and each compressed.
#[test]
fn json_bodies_just_under_the_limit_cost_a_bounded_multiple_of_it() {
    let fill = |unit: &str| {
        let count = (LIMIT - 64) / unit.len();
        unit.repeat(count)
    };
    let keys = {
        let mut object = String::from("{");
        let mut index = 0;
        while object.len() < LIMIT - 64 {
            object.push_str(&format!("\"{index:x}\":0,"));
            index += 1;
        }
        object.push_str("\"end\":0}");
        object
    };
    let shapes = [
        ("zeros", format!("[[{}0], {{}}, null]", fill("0,"))),
        ("empty objects", format!("[[{}0], {{}}, null]", fill("{},"))),
        ("empty arrays", format!("[[{}0], {{}}, null]", fill("[],"))),
        (
            "empty strings",
            format!("[[{}0], {{}}, null]", fill("\"\",")),
        ),
        ("object keys", format!("[[], {keys}, null]")),
        (
            "one long string",
            format!("[[\"{}\"], {{}}, null]", "s".repeat(LIMIT - 64)),
        ),
    ];
    for (name, body) in shapes {
        assert!(body.len() <= LIMIT, "{name}: {} bytes", body.len());
        for task in [Anything::NAME, Rich::NAME, Pair::NAME] {
            for compressed in [false, true] {
                let bytes = if compressed {
                    zlib(body.as_bytes())
                } else {
                    body.clone().into_bytes()
                };
                let properties = task_properties(task, "application/json", compressed);
                let (largest, peak) = receive_measured(&properties, &bytes);
                assert!(
                    peak <= PEAK_ALLOWED,
                    "{name} ({task}, compressed {compressed}): held {peak} bytes at once, \
                     over {PEAK_ALLOWED}"
                );
                assert!(
                    largest <= LARGEST_ALLOWED,
                    "{name}: allocated {largest} at once"
                );
            }
        }
    }
}

#[test]
fn a_declared_length_of_one_tebibyte_is_refused_before_it_is_allocated() {
    let mut body = vec![0xFD];
    body.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let largest = receive(
        &task_properties(Pair::NAME, "application/x-bincode", false),
        &body,
    );
    assert!(
        largest <= LARGEST_ALLOWED,
        "allocated {largest} bytes at once"
    );
}

#[test]
fn refused_content_types_are_named() {
    let properties = task_properties(Pair::NAME, "application/x-bincode", false);
    let error = TaskMessage::decode_with(&properties, b"\x01", &DecodePolicy::default())
        .expect_err("bincode is refused by default");
    assert_eq!(
        error.to_string(),
        "content type \"application/x-bincode\" is not accepted (accepted: application/json)"
    );
}
