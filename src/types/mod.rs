//! Rust values that travel as Python's own types: [`Kombu<T>`] reads and writes kombu's
//! typed JSON envelopes (`{"__type__": "datetime", "__value__": "..."}`), so a Python
//! `datetime`, `date`, `time`, `Decimal`, `UUID` or `bytes` sent to a task arrives typed,
//! and a task's typed result or argument reaches Python as that type again.
//!
//! | Rust | Python | `__type__` |
//! |---|---|---|
//! | `Kombu<chrono::DateTime<Utc>>`, `Kombu<DateTime<FixedOffset>>`, `Kombu<NaiveDateTime>` | `datetime` (aware, aware, naive) | `datetime` |
//! | `Kombu<chrono::NaiveDate>` | `date` | `date` |
//! | `Kombu<chrono::NaiveTime>` | `time` | `time` |
//! | `Kombu<`[`Decimal`]`>` | `Decimal` | `decimal` |
//! | `Kombu<uuid::Uuid>` | `UUID` | `uuid` |
//! | `Kombu<Vec<u8>>` | `bytes` | `bytes` (UTF-8) or `base64` |
//!
//! Reading accepts the envelope and, as before, the plain JSON a Rust producer may send (an
//! ISO string, a decimal string or number, a UUID string, text or an array of bytes).
//! Writing always produces the envelope, only where the type is `Kombu<_>`: a `String`
//! stays a string. In formats that are not human-readable (bincode) the envelope travels
//! as its JSON text.

mod decimal;
mod formats;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

pub use decimal::{Decimal, DecimalError};
pub use formats::KombuType;

/// The newtype-struct name [`Kombu`] serializes and deserializes through: celeriac's
/// argument coders see it and treat the envelope as one value (not as keyword arguments).
pub(crate) const ENVELOPE_TOKEN: &str = "$celeriac::types::Kombu";

/// A value of `T` that travels as kombu's typed JSON envelope, i.e. as Python's own type.
///
/// ```
/// use celeriac::types::Kombu;
/// use chrono::{TimeZone, Utc};
///
/// let when = Kombu(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap());
/// assert_eq!(
///     serde_json::to_string(&when).unwrap(),
///     r#"{"__type__":"datetime","__value__":"2024-01-02T03:04:05+00:00"}"#
/// );
/// let back: Kombu<chrono::DateTime<Utc>> =
///     serde_json::from_str(r#""2024-01-02T03:04:05+00:00""#).unwrap();
/// assert_eq!(back, when);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Kombu<T>(pub T);

impl<T> Kombu<T> {
    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Kombu<T> {
    fn from(value: T) -> Self {
        Kombu(value)
    }
}

impl<T> std::ops::Deref for Kombu<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Kombu<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// `{"__type__": marker, "__value__": value}`, keys in kombu's order.
struct Envelope<'a> {
    /// kombu's `__type__`.
    marker: &'static str,
    /// kombu's `__value__`.
    value: &'a Value,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("__type__", self.marker)?;
        map.serialize_entry("__value__", self.value)?;
        map.end()
    }
}

impl<T: KombuType> Serialize for Kombu<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (marker, value) = self.0.to_kombu();
        let envelope = Envelope {
            marker,
            value: &value,
        };
        if serializer.is_human_readable() {
            serializer.serialize_newtype_struct(ENVELOPE_TOKEN, &envelope)
        } else {
            let text = serde_json::to_string(&envelope).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(&text)
        }
    }
}

impl<'de, T: KombuType> Deserialize<'de> for Kombu<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = if deserializer.is_human_readable() {
            deserializer.deserialize_newtype_struct(ENVELOPE_TOKEN, AnyValue)?
        } else {
            let text = String::deserialize(deserializer)?;
            serde_json::from_str(&text).map_err(de::Error::custom)?
        };
        from_json(&value).map(Kombu).map_err(de::Error::custom)
    }
}

/// Reads an envelope (its `__type__` checked) or plain JSON into `T`.
fn from_json<T: KombuType>(value: &Value) -> Result<T, String> {
    if let Value::Object(map) = value {
        if let (2, Some(Value::String(marker)), Some(inner)) =
            (map.len(), map.get("__type__"), map.get("__value__"))
        {
            return T::from_kombu(Some(marker), inner);
        }
    }
    T::from_kombu(None, value)
}

/// Deserializes whatever JSON is there, through the newtype wrapper or not.
struct AnyValue;

impl<'de> Visitor<'de> for AnyValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a kombu typed value or its plain JSON")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<Value, D::Error> {
        Value::deserialize(inner)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
    }
}

#[cfg(test)]
mod tests;
