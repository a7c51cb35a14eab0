//! kombu's JSON type envelopes (`{"__type__": ..., "__value__": ...}`, PROTOCOL.md 1.4):
//! how Python sends values JSON has no type for. Python decodes them at any depth; so does
//! [`unwrap_envelopes`], into the plain JSON that Rust types deserialize from.

use serde_json::{Map, Value};

/// Replaces every kombu envelope in `value`, at any depth, with plain JSON:
///
/// | `__type__` | `__value__` | becomes |
/// |---|---|---|
/// | `datetime`, `date`, `time` | ISO 8601 string | that string (chrono, `time` crates parse it) |
/// | `decimal` | `"1.50"` | the string (exact; `rust_decimal` and friends parse it) |
/// | `uuid` | `{"hex": "..."}` | the hyphenated UUID string |
/// | `bytes` | UTF-8 text | the text |
/// | `base64` | base64 of bytes | an array of byte values (`Vec<u8>`) |
///
/// An envelope of another type is left as it is.
pub fn unwrap_envelopes(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(unwrap_envelopes),
        Value::Object(map) => {
            if let Some(plain) = unwrap_one(map) {
                *value = plain;
            } else {
                map.values_mut().for_each(unwrap_envelopes);
            }
        }
        _ => {}
    }
}

/// The plain value of an envelope, `None` when `map` is not one we know.
fn unwrap_one(map: &Map<String, Value>) -> Option<Value> {
    if map.len() != 2 {
        return None;
    }
    let kind = map.get("__type__")?.as_str()?;
    let inner = map.get("__value__")?;
    match (kind, inner) {
        ("datetime" | "date" | "time" | "decimal" | "bytes", Value::String(text)) => {
            Some(Value::String(text.clone()))
        }
        ("uuid", Value::Object(fields)) => {
            let hex = fields.get("hex")?.as_str()?;
            uuid::Uuid::try_parse(hex)
                .ok()
                .map(|id| Value::String(id.hyphenated().to_string()))
        }
        ("uuid", Value::String(text)) => uuid::Uuid::try_parse(text)
            .ok()
            .map(|id| Value::String(id.hyphenated().to_string())),
        ("base64", Value::String(text)) => decode_base64(text)
            .map(|bytes| Value::Array(bytes.into_iter().map(Value::from).collect())),
        _ => None,
    }
}

/// Standard base64, with or without padding; `None` on anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unwraps_every_kombu_type_at_any_depth() {
        let mut value = json!([
            {"__type__": "datetime", "__value__": "2024-01-02T03:04:05+00:00"},
            {"nested": [{"__type__": "date", "__value__": "2024-01-02"}]},
            {"__type__": "decimal", "__value__": "1.50"},
            {"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}},
            {"__type__": "bytes", "__value__": "héllo"},
            {"__type__": "base64", "__value__": "AP8Q"},
            {"__type__": "mystery", "__value__": 1},
            {"__type__": "datetime", "__value__": "x", "extra": 1}
        ]);
        unwrap_envelopes(&mut value);
        assert_eq!(
            value,
            json!([
                "2024-01-02T03:04:05+00:00",
                {"nested": ["2024-01-02"]},
                "1.50",
                "12345678-1234-5678-1234-567812345678",
                "héllo",
                [0, 255, 16],
                {"__type__": "mystery", "__value__": 1},
                {"__type__": "datetime", "__value__": "x", "extra": 1}
            ])
        );
    }

    #[test]
    fn base64_with_padding_and_garbage() {
        assert_eq!(decode_base64("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("aGk"), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("a*"), None);
    }
}
