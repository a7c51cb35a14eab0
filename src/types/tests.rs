//! `Kombu<T>` against kombu 5.7's own output (tests/fixtures/kombu-types, written by
//! `kombu.utils.json.dumps`) and through celeriac's argument coders.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{Decimal, Kombu};
use crate::task::args::{decode_args, encode_args};

fn fixture(path: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// kombu's JSON text of the fixture case `name`.
fn kombu_text(name: &str) -> String {
    let cases = fixture("kombu-types/typed_values.json");
    let case = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["name"] == name)
        .unwrap_or_else(|| panic!("no fixture case {name}"))
        .clone();
    case["json"].as_str().unwrap().to_owned()
}

/// Decodes kombu's text as `T`, checks the value, and checks that encoding it again gives
/// kombu's text (the same keys in the same order and the same strings; kombu's separators
/// have spaces, serde_json's compact ones do not).
fn round_trip<T>(name: &str, expected: T)
where
    Kombu<T>: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let text = kombu_text(name);
    let decoded: Kombu<T> = serde_json::from_str(&text).unwrap();
    assert_eq!(decoded, Kombu(expected), "{name}: decoded");
    let kombu_compact =
        serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
    assert_eq!(
        serde_json::to_string(&decoded).unwrap(),
        kombu_compact,
        "{name}: encoded"
    );
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

#[test]
fn every_kombu_fixture_decodes_and_encodes_as_kombu_does() {
    round_trip("datetime_utc", utc(2024, 1, 2, 3, 4, 5));
    round_trip(
        "datetime_utc_micros",
        utc(2024, 1, 2, 3, 4, 5) + chrono::Duration::microseconds(123_456),
    );
    let minus_5_30 = FixedOffset::west_opt(5 * 3600 + 30 * 60).unwrap();
    round_trip(
        "datetime_offset",
        minus_5_30.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::microseconds(500),
    );
    round_trip(
        "datetime_naive",
        NaiveDate::from_ymd_opt(2030, 1, 1)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap(),
    );
    round_trip("date", NaiveDate::from_ymd_opt(2024, 1, 2).unwrap());
    round_trip("time", NaiveTime::from_hms_opt(3, 4, 5).unwrap());
    round_trip(
        "time_micros",
        NaiveTime::from_hms_micro_opt(23, 59, 59, 10).unwrap(),
    );
    round_trip("decimal", "1.50".parse::<Decimal>().unwrap());
    round_trip("decimal_exponent", "-1E+2".parse::<Decimal>().unwrap());
    round_trip(
        "uuid",
        Uuid::parse_str("12345678-1234-5678-1234-567812345678").unwrap(),
    );
    round_trip("bytes_utf8", "héllo".as_bytes().to_vec());
    round_trip("bytes_binary", vec![0u8, 255, 16, 128]);
}

#[test]
fn plain_json_is_read_too() {
    let read = |text: &str| serde_json::from_value::<Value>(json!(text)).unwrap();
    let when: Kombu<DateTime<Utc>> =
        serde_json::from_value(read("2024-01-02T05:04:05+02:00")).unwrap();
    assert_eq!(*when, utc(2024, 1, 2, 3, 4, 5));
    let naive_as_utc: Kombu<DateTime<Utc>> =
        serde_json::from_value(read("2024-01-02T03:04:05")).unwrap();
    assert_eq!(*naive_as_utc, utc(2024, 1, 2, 3, 4, 5));
    let id: Kombu<Uuid> =
        serde_json::from_value(read("12345678-1234-5678-1234-567812345678")).unwrap();
    assert_eq!(id.simple().to_string(), "12345678123456781234567812345678");
    let bytes: Kombu<Vec<u8>> = serde_json::from_value(json!([0, 255])).unwrap();
    assert_eq!(*bytes, vec![0, 255]);
    let number: Kombu<Decimal> = serde_json::from_value(json!(2.5)).unwrap();
    assert_eq!(number.as_str(), "2.5");
}

#[test]
fn wrong_envelopes_and_text_are_refused_with_what_was_expected() {
    let error = serde_json::from_value::<Kombu<NaiveDate>>(
        json!({"__type__": "datetime", "__value__": "2024-01-02T03:04:05"}),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("expected a kombu date envelope"), "{error}");
    let error = serde_json::from_value::<Kombu<NaiveDateTime>>(json!("2024-01-02T03:04:05+00:00"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("has a UTC offset"), "{error}");
    let error = serde_json::from_value::<Kombu<Decimal>>(json!("1,5"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a decimal number"), "{error}");
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Typed {
    when: Kombu<DateTime<Utc>>,
    day: Option<Kombu<NaiveDate>>,
    ids: Vec<Kombu<Uuid>>,
}

#[test]
fn task_arguments_read_envelopes_by_target_type() {
    // Python's `send_task('probe.echo', args=[...], kwargs={'when': datetime(...)})`.
    let body = fixture("celery-v2/send_task_rich_types.json")["body"].clone();
    let kwargs: Map<String, Value> = body[1].as_object().unwrap().clone();

    #[derive(Deserialize)]
    struct When<T> {
        when: T,
    }
    let typed: When<Kombu<DateTime<Utc>>> = decode_args(&[], &kwargs).unwrap();
    assert_eq!(*typed.when, utc(2024, 1, 2, 3, 4, 5));
    let plain: When<String> = decode_args(&[], &kwargs).unwrap();
    assert_eq!(plain.when, "2024-01-02T03:04:05+00:00");
    let kept: When<Value> = decode_args(&[], &kwargs).unwrap();
    assert_eq!(kept.when, kwargs["when"]);
    let everything: Value = decode_args(body[0].as_array().unwrap(), &kwargs).unwrap();
    assert_eq!(everything, json!([body[0], body[1]]));

    let args = vec![
        json!({"__type__": "datetime", "__value__": "2024-01-02T03:04:05+00:00"}),
        json!({"__type__": "date", "__value__": "2024-01-02"}),
        json!([{"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}}]),
    ];
    let typed: Typed = decode_args(&args, &Map::new()).unwrap();
    assert_eq!(
        typed.day.as_deref(),
        NaiveDate::from_ymd_opt(2024, 1, 2).as_ref()
    );
    let single: Kombu<NaiveDate> = decode_args(&args[1..2], &Map::new()).unwrap();
    assert_eq!(Some(*single), NaiveDate::from_ymd_opt(2024, 1, 2));
    let strings: (String, String, Vec<String>) = decode_args(&args, &Map::new()).unwrap();
    assert_eq!(strings.2, vec!["12345678-1234-5678-1234-567812345678"]);
    let (bytes,): (Vec<u8>,) = decode_args(
        &[json!({"__type__": "base64", "__value__": "AP8Q"})],
        &Map::new(),
    )
    .unwrap();
    assert_eq!(bytes, vec![0, 255, 16]);
    let error = decode_args::<Typed>(&args[1..], &Map::new())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("argument \"when\": expected a kombu datetime envelope"),
        "{error}"
    );
}

#[test]
fn typed_arguments_and_results_are_encoded_as_envelopes_only_where_typed() {
    let typed = Typed {
        when: Kombu(utc(2024, 1, 2, 3, 4, 5)),
        day: None,
        ids: vec![],
    };
    let (args, kwargs) = encode_args(&typed).unwrap();
    assert!(kwargs.is_empty());
    assert_eq!(
        args,
        vec![
            json!({"__type__": "datetime", "__value__": "2024-01-02T03:04:05+00:00"}),
            Value::Null,
            json!([])
        ]
    );
    let (args, kwargs) = encode_args(&Kombu(vec![0u8, 255])).unwrap();
    assert!(
        kwargs.is_empty(),
        "a single Kombu value is one positional argument"
    );
    assert_eq!(
        args,
        vec![json!({"__type__": "base64", "__value__": "AP8="})]
    );
    let (args, _) = encode_args(&(
        "2024-01-02".to_owned(),
        Kombu(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
    ))
    .unwrap();
    assert_eq!(
        args,
        vec![
            json!("2024-01-02"),
            json!({"__type__": "date", "__value__": "2024-01-02"})
        ]
    );
    // a task's output goes through serde_json::to_value
    assert_eq!(
        serde_json::to_value((Kombu("1.50".parse::<Decimal>().unwrap()), 1)).unwrap(),
        json!([{"__type__": "decimal", "__value__": "1.50"}, 1])
    );
}

#[test]
fn bincode_carries_the_envelope_text() {
    let value = Typed {
        when: Kombu(utc(2024, 1, 2, 3, 4, 5)),
        day: NaiveDate::from_ymd_opt(2024, 1, 2).map(Kombu),
        ids: vec![Kombu(Uuid::nil())],
    };
    let bytes = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
    let (back, _): (Typed, usize) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    assert_eq!(back, value);
}

/// A task whose arguments are typed, for `Signature::of`.
struct Remind;

impl crate::Task for Remind {
    const NAME: &'static str = "tasks.remind";
    type Args = (Kombu<DateTime<Utc>>, String);
    type Output = Kombu<NaiveDate>;
    async fn run(
        _: crate::TaskContext,
        (when, _): Self::Args,
    ) -> Result<Kombu<NaiveDate>, crate::TaskError> {
        Ok(Kombu(when.date_naive()))
    }
}

#[test]
fn a_signature_of_typed_arguments_carries_the_envelopes() {
    let signature =
        crate::Signature::of::<Remind>(&(Kombu(utc(2024, 1, 2, 3, 4, 5)), "2024".to_owned()))
            .unwrap();
    assert_eq!(
        signature.args,
        vec![
            json!({"__type__": "datetime", "__value__": "2024-01-02T03:04:05+00:00"}),
            json!("2024")
        ]
    );
    assert!(signature.kwargs.is_empty());
}
