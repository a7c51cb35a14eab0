//! kombu's JSON type envelopes (`{"__type__": ..., "__value__": ...}`, docs/wire-protocol.md §1.4):
//! how Python sends values JSON has no type for. Python decodes them at any depth. In Rust
//! the target type decides: argument decoding hands a `serde_json::Value` the envelope
//! unchanged, [`crate::types::Kombu`] reads it as its type, and a plain target (`String`,
//! `Vec<u8>`, ...) gets the plain JSON of [`unwrap_envelopes`].

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
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

/// `value` with a top-level envelope replaced by its plain JSON (nested ones stay).
fn plain(value: Value) -> Value {
    if let Value::Object(map) = &value {
        if let Some(plain) = unwrap_one(map) {
            return plain;
        }
    }
    value
}

/// A JSON value to deserialize from, whose kombu envelopes are read as the target asks:
/// `deserialize_any` (a `serde_json::Value`, [`crate::types::Kombu`]) sees the envelope
/// unchanged; a string, number, bytes or sequence target sees its plain JSON
/// ([`unwrap_envelopes`]), at any depth of structs, maps, sequences and options. Enums
/// get their value with every envelope unwrapped.
pub(crate) struct EnvelopeAware(pub(crate) Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for EnvelopeAware {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Visits the items of a sequence, each one envelope-aware.
fn visit_items<'de, V: Visitor<'de>>(
    items: Vec<Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut seq = SeqDeserializer::new(items.into_iter().map(EnvelopeAware));
    let value = visitor.visit_seq(&mut seq)?;
    seq.end()?;
    Ok(value)
}

/// Visits the entries of an object, each value envelope-aware.
fn visit_entries<'de, V: Visitor<'de>>(
    entries: Map<String, Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut map = MapDeserializer::new(
        entries
            .into_iter()
            .map(|(key, value)| (key, EnvelopeAware(value))),
    );
    let value = visitor.visit_map(&mut map)?;
    map.end()?;
    Ok(value)
}

/// Scalar targets: the plain JSON of an envelope.
macro_rules! plain_target {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
            de::Deserializer::$method(plain(self.0), visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for EnvelopeAware {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        de::Deserializer::deserialize_any(self.0, visitor)
    }

    plain_target! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_identifier
        deserialize_unit
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        de::Deserializer::deserialize_unit_struct(plain(self.0), name, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            value => visitor.visit_some(EnvelopeAware(value)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match plain(self.0) {
            Value::Array(items) => visit_items(items, visitor),
            other => de::Deserializer::deserialize_seq(other, visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match plain(self.0) {
            Value::Object(entries) => visit_entries(entries, visitor),
            other => de::Deserializer::deserialize_map(other, visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match plain(self.0) {
            Value::Object(entries) => visit_entries(entries, visitor),
            Value::Array(items) => visit_items(items, visitor),
            other => de::Deserializer::deserialize_struct(other, name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        let mut value = self.0;
        unwrap_envelopes(&mut value);
        de::Deserializer::deserialize_enum(value, name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_unit()
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
