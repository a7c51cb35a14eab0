//! Typed task arguments <-> Celery's positional args and kwargs.
//!
//! Python calls a task like a function: `add.delay(2, y=3)` sends
//! `args=[2]`, `kwargs={"y": 3}`. [`decode_args`] maps that onto a Rust type
//! the way Python binds arguments to parameters, and [`encode_args`] goes the
//! other way.

use derive_more::{Display, Error};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::ser::{self, Serialize};
use serde_json::{Map, Value};

use crate::protocol::kombu::EnvelopeAware;
use crate::types::ENVELOPE_TOKEN;

/// Why arguments could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, Display, Error)]
pub enum ArgsError {
    /// A named argument has the wrong type or value.
    #[display("argument {name:?}: {reason}")]
    InvalidArgument {
        /// The argument (field) name.
        name: String,
        /// What serde reported, e.g. `invalid type: string "a", expected i32`.
        reason: String,
    },
    /// A positional argument (of a tuple, a `Vec` or a single value) has the wrong type or value.
    #[display("positional argument {index}: {reason}")]
    InvalidPositional {
        /// 0-based position.
        index: usize,
        /// What serde reported.
        reason: String,
    },
    /// A required named argument was given neither positionally nor as a keyword.
    #[display("missing argument {name:?}")]
    MissingArgument {
        /// The argument (field) name.
        name: String,
    },
    /// Fewer positional arguments than the tuple needs.
    #[display("missing positional arguments: {given} given, takes {takes}")]
    MissingPositional {
        /// How many were given.
        given: usize,
        /// How many the type takes.
        takes: usize,
    },
    /// More positional arguments than the type takes.
    #[display("too many positional arguments: {given} given, takes {takes}")]
    TooManyPositional {
        /// How many were given.
        given: usize,
        /// How many the type takes.
        takes: usize,
    },
    /// The same argument was given positionally and as a keyword.
    #[display("argument {name:?} given both positionally and as a keyword")]
    DuplicateArgument {
        /// The argument (field) name.
        name: String,
    },
    /// A keyword argument that the type has no field for.
    #[display("unexpected keyword argument {name:?}")]
    UnexpectedKeyword {
        /// The keyword.
        name: String,
    },
    /// Keyword arguments were given to a type that takes positional arguments only.
    #[display("keyword arguments not accepted (positional only): {names}")]
    KeywordsNotAccepted {
        /// The keywords given, comma-separated.
        names: String,
    },
    /// Any other decoding error.
    #[display("invalid arguments: {reason}")]
    Invalid {
        /// What serde reported.
        reason: String,
    },
    /// The value could not be encoded as JSON arguments.
    #[display("cannot encode arguments: {reason}")]
    Encode {
        /// What serde reported.
        reason: String,
    },
}

impl de::Error for ArgsError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        ArgsError::Invalid {
            reason: msg.to_string(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        ArgsError::MissingArgument {
            name: field.to_owned(),
        }
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        ArgsError::UnexpectedKeyword {
            name: field.to_owned(),
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        ArgsError::DuplicateArgument {
            name: field.to_owned(),
        }
    }
}

/// Decode a task's typed arguments from what Python sends: positional args, kwargs, or both.
///
/// - `T` a struct with named fields: positional args fill the fields in
///   declaration order, kwargs fill them by name; an argument given both
///   ways is an error; missing fields are errors unless `#[serde(default)]`
///   or `Option`; unknown keywords are errors.
/// - `T` a tuple / tuple struct / `Vec`: positional args only (kwargs must be empty).
/// - `T = ()`: no args.
/// - `T` a map (or a struct with `#[serde(flatten)]`): kwargs only.
/// - `T = serde_json::Value` (or any type using `deserialize_any`): receives `[args, kwargs]`.
/// - any other single value (number, string, enum, [`Kombu<_>`](crate::types::Kombu), ...):
///   exactly one positional arg.
///
/// kombu's typed values (`{"__type__": "datetime", ...}`) are read as the target asks: a
/// [`Kombu<_>`](crate::types::Kombu) reads its type, a `serde_json::Value` keeps the envelope
/// (so echoing it gives Python back the same value), a `String` or number gets the plain
/// JSON (the ISO string, the decimal's text), at any depth.
///
/// Errors name the argument and the expected type, e.g.
/// `argument "x": invalid type: string "a", expected i32`, `missing argument "y"`,
/// `too many positional arguments: 3 given, takes 2`.
pub fn decode_args<T: DeserializeOwned>(
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<T, ArgsError> {
    T::deserialize(ArgsDeserializer { args, kwargs })
}

/// Encode typed arguments for the wire: a struct with named fields ->
/// positional args in field order (kwargs empty); a tuple / `Vec` ->
/// positional; `()` (or `None`) -> no args; a map -> kwargs; any other single
/// value -> one positional arg.
pub fn encode_args<T: Serialize>(value: &T) -> Result<(Vec<Value>, Map<String, Value>), ArgsError> {
    let mut shape = Shape::Single;
    let encoded = value
        .serialize(ShapeSerializer { shape: &mut shape })
        .map_err(|e| ArgsError::Encode {
            reason: e.to_string(),
        })?;
    Ok(match (shape, encoded) {
        (Shape::Unit, _) => (Vec::new(), Map::new()),
        (Shape::Seq, Value::Array(items)) => (items, Map::new()),
        (Shape::Struct, Value::Object(fields)) => {
            (fields.into_iter().map(|(_, v)| v).collect(), Map::new())
        }
        (Shape::Map, Value::Object(kwargs)) => (Vec::new(), kwargs),
        (_, other) => (vec![other], Map::new()),
    })
}

/// A serde deserializer over Celery's `(args, kwargs)`.
struct ArgsDeserializer<'a> {
    args: &'a [Value],
    kwargs: &'a Map<String, Value>,
}

impl ArgsDeserializer<'_> {
    fn no_kwargs(&self) -> Result<(), ArgsError> {
        if self.kwargs.is_empty() {
            Ok(())
        } else {
            Err(ArgsError::KeywordsNotAccepted {
                names: self.kwargs.keys().cloned().collect::<Vec<_>>().join(", "),
            })
        }
    }

    /// The one positional argument of a single-value type.
    fn single(&self) -> Result<Value, ArgsError> {
        self.no_kwargs()?;
        match self.args {
            [value] => Ok(value.clone()),
            [] => Err(ArgsError::MissingPositional { given: 0, takes: 1 }),
            more => Err(ArgsError::TooManyPositional {
                given: more.len(),
                takes: 1,
            }),
        }
    }

    fn positional<'de, V: Visitor<'de>>(
        &self,
        takes: Option<usize>,
        visitor: V,
    ) -> Result<V::Value, ArgsError> {
        self.no_kwargs()?;
        if let Some(takes) = takes {
            let given = self.args.len();
            if given > takes {
                return Err(ArgsError::TooManyPositional { given, takes });
            }
            if given < takes {
                return Err(ArgsError::MissingPositional { given, takes });
            }
        }
        let mut seq = PositionalSeq {
            items: self.args.iter().enumerate(),
        };
        let value = visitor.visit_seq(&mut seq)?;
        match seq.items.next() {
            Some(_) => Err(ArgsError::TooManyPositional {
                given: self.args.len(),
                takes: self.args.len() - seq.items.len() - 1,
            }),
            None => Ok(value),
        }
    }
}

macro_rules! single_value {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgsError> {
            EnvelopeAware(self.single()?)
                .$method(visitor)
                .map_err(|e| ArgsError::InvalidPositional { index: 0, reason: e.to_string() })
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ArgsDeserializer<'_> {
    type Error = ArgsError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgsError> {
        Value::Array(vec![
            Value::Array(self.args.to_vec()),
            Value::Object(self.kwargs.clone()),
        ])
        .deserialize_any(visitor)
        .map_err(|e| ArgsError::Invalid {
            reason: e.to_string(),
        })
    }

    single_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_identifier
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgsError> {
        let no_args = self.args.is_empty() || matches!(self.args, [Value::Null]);
        if no_args && self.kwargs.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgsError> {
        self.no_kwargs()?;
        if self.args.is_empty() {
            visitor.visit_unit()
        } else {
            Err(ArgsError::TooManyPositional {
                given: self.args.len(),
                takes: 0,
            })
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ArgsError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ArgsError> {
        if name == ENVELOPE_TOKEN {
            // A `Kombu<_>` is one value, whatever its envelope looks like.
            return EnvelopeAware(self.single()?)
                .deserialize_newtype_struct(name, visitor)
                .map_err(|e| ArgsError::InvalidPositional {
                    index: 0,
                    reason: e.to_string(),
                });
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgsError> {
        self.positional(None, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ArgsError> {
        self.positional(Some(len), visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ArgsError> {
        self.positional(Some(len), visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgsError> {
        if !self.args.is_empty() {
            return Err(ArgsError::TooManyPositional {
                given: self.args.len(),
                takes: 0,
            });
        }
        let entries: Vec<(String, Value)> = self
            .kwargs
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        visitor.visit_map(NamedMap {
            entries: entries.into_iter(),
            current: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ArgsError> {
        if self.args.len() > fields.len() {
            return Err(ArgsError::TooManyPositional {
                given: self.args.len(),
                takes: fields.len(),
            });
        }
        let mut entries: Vec<(String, Value)> = fields
            .iter()
            .zip(self.args)
            .map(|(field, value)| ((*field).to_owned(), value.clone()))
            .collect();
        for (key, value) in self.kwargs {
            if entries.iter().any(|(name, _)| name == key) {
                return Err(ArgsError::DuplicateArgument { name: key.clone() });
            }
            if !fields.contains(&key.as_str()) {
                return Err(ArgsError::UnexpectedKeyword { name: key.clone() });
            }
            entries.push((key.clone(), value.clone()));
        }
        visitor.visit_map(NamedMap {
            entries: entries.into_iter(),
            current: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ArgsError> {
        EnvelopeAware(self.single()?)
            .deserialize_enum(name, variants, visitor)
            .map_err(|e| ArgsError::InvalidPositional {
                index: 0,
                reason: e.to_string(),
            })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgsError> {
        visitor.visit_unit()
    }
}

/// Named arguments, each value's errors tagged with its name.
struct NamedMap {
    entries: std::vec::IntoIter<(String, Value)>,
    current: Option<(String, Value)>,
}

impl<'de> MapAccess<'de> for NamedMap {
    type Error = ArgsError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ArgsError> {
        match self.entries.next() {
            Some((name, value)) => {
                let key = seed.deserialize(name.as_str().into_deserializer())?;
                self.current = Some((name, value));
                Ok(Some(key))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, ArgsError> {
        let Some((name, value)) = self.current.take() else {
            return Err(ArgsError::Invalid {
                reason: "value requested before key".to_owned(),
            });
        };
        seed.deserialize(EnvelopeAware(value))
            .map_err(|e| ArgsError::InvalidArgument {
                name,
                reason: e.to_string(),
            })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Positional arguments, each value's errors tagged with its index.
struct PositionalSeq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'de> SeqAccess<'de> for PositionalSeq<'_> {
    type Error = ArgsError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, ArgsError> {
        match self.items.next() {
            Some((index, value)) => seed
                .deserialize(EnvelopeAware(value.clone()))
                .map(Some)
                .map_err(|e| ArgsError::InvalidPositional {
                    index,
                    reason: e.to_string(),
                }),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The top-level shape of a value being encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `()`, a unit struct or `None`: no arguments.
    Unit,
    /// A sequence, tuple or tuple struct: positional arguments.
    Seq,
    /// A struct with named fields: positional arguments in field order.
    Struct,
    /// A map: keyword arguments.
    Map,
    /// Anything else: one positional argument.
    Single,
}

use serde_json::value::Serializer as JsonSer;

/// Serializes like `serde_json::value::Serializer` and records the top-level [`Shape`].
struct ShapeSerializer<'a> {
    shape: &'a mut Shape,
}

macro_rules! single_ser {
    ($($method:ident($ty:ty))*) => {$(
        fn $method(self, v: $ty) -> Result<Value, serde_json::Error> {
            *self.shape = Shape::Single;
            ser::Serializer::$method(JsonSer, v)
        }
    )*};
}

impl<'a> ser::Serializer for ShapeSerializer<'a> {
    type Ok = Value;
    type Error = serde_json::Error;
    type SerializeSeq = <JsonSer as ser::Serializer>::SerializeSeq;
    type SerializeTuple = <JsonSer as ser::Serializer>::SerializeTuple;
    type SerializeTupleStruct = <JsonSer as ser::Serializer>::SerializeTupleStruct;
    type SerializeTupleVariant = <JsonSer as ser::Serializer>::SerializeTupleVariant;
    type SerializeMap = <JsonSer as ser::Serializer>::SerializeMap;
    type SerializeStruct = <JsonSer as ser::Serializer>::SerializeStruct;
    type SerializeStructVariant = <JsonSer as ser::Serializer>::SerializeStructVariant;

    single_ser! {
        serialize_bool(bool) serialize_i8(i8) serialize_i16(i16) serialize_i32(i32)
        serialize_i64(i64) serialize_i128(i128) serialize_u8(u8) serialize_u16(u16)
        serialize_u32(u32) serialize_u64(u64) serialize_u128(u128) serialize_f32(f32)
        serialize_f64(f64) serialize_char(char) serialize_str(&str) serialize_bytes(&[u8])
    }

    fn serialize_none(self) -> Result<Value, serde_json::Error> {
        *self.shape = Shape::Unit;
        Ok(Value::Null)
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Value, serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, serde_json::Error> {
        *self.shape = Shape::Unit;
        Ok(Value::Null)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, serde_json::Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<Value, serde_json::Error> {
        *self.shape = Shape::Single;
        ser::Serializer::serialize_unit_variant(JsonSer, name, index, variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Value, serde_json::Error> {
        if name == ENVELOPE_TOKEN {
            // A `Kombu<_>` envelope is one positional argument, not keyword arguments.
            *self.shape = Shape::Single;
            return ser::Serializer::serialize_newtype_struct(JsonSer, name, value);
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, serde_json::Error> {
        *self.shape = Shape::Single;
        ser::Serializer::serialize_newtype_variant(JsonSer, name, index, variant, value)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, serde_json::Error> {
        *self.shape = Shape::Seq;
        ser::Serializer::serialize_seq(JsonSer, len)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, serde_json::Error> {
        *self.shape = Shape::Seq;
        ser::Serializer::serialize_tuple(JsonSer, len)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, serde_json::Error> {
        *self.shape = Shape::Seq;
        ser::Serializer::serialize_tuple_struct(JsonSer, name, len)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, serde_json::Error> {
        *self.shape = Shape::Single;
        ser::Serializer::serialize_tuple_variant(JsonSer, name, index, variant, len)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, serde_json::Error> {
        *self.shape = Shape::Map;
        ser::Serializer::serialize_map(JsonSer, len)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, serde_json::Error> {
        *self.shape = Shape::Struct;
        ser::Serializer::serialize_struct(JsonSer, name, len)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, serde_json::Error> {
        *self.shape = Shape::Single;
        ser::Serializer::serialize_struct_variant(JsonSer, name, index, variant, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Add {
        x: i32,
        y: i32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct WithOptional {
        name: String,
        #[serde(default)]
        count: u32,
        label: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Renamed {
        #[serde(rename = "userId")]
        user_id: u64,
        flag: bool,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pair(i32, String);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Wrapper(Add);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Mode {
        Fast,
        Slow,
    }

    fn args(value: Value) -> Vec<Value> {
        value.as_array().unwrap().clone()
    }

    fn kwargs(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn err<T: DeserializeOwned + std::fmt::Debug>(a: Value, k: Value) -> String {
        decode_args::<T>(&args(a), &kwargs(k))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn struct_from_positional_keyword_and_mixed() {
        let expected = Add { x: 2, y: 3 };
        assert_eq!(
            decode_args::<Add>(&args(json!([2, 3])), &Map::new()).unwrap(),
            expected
        );
        assert_eq!(
            decode_args::<Add>(&[], &kwargs(json!({"y": 3, "x": 2}))).unwrap(),
            expected
        );
        assert_eq!(
            decode_args::<Add>(&args(json!([2])), &kwargs(json!({"y": 3}))).unwrap(),
            expected
        );
    }

    #[test]
    fn struct_errors() {
        assert_eq!(
            err::<Add>(json!(["a", 3]), json!({})),
            "argument \"x\": invalid type: string \"a\", expected i32"
        );
        assert_eq!(
            err::<Add>(json!([1]), json!({"y": 2.5})),
            "argument \"y\": invalid type: floating point `2.5`, expected i32"
        );
        assert_eq!(err::<Add>(json!([2]), json!({})), "missing argument \"y\"");
        assert_eq!(
            err::<Add>(json!([1, 2, 3]), json!({})),
            "too many positional arguments: 3 given, takes 2"
        );
        assert_eq!(
            err::<Add>(json!([1]), json!({"x": 1, "y": 2})),
            "argument \"x\" given both positionally and as a keyword"
        );
        assert_eq!(
            err::<Add>(json!([1, 2]), json!({"z": 1})),
            "unexpected keyword argument \"z\""
        );
    }

    #[test]
    fn optional_and_default_fields() {
        assert_eq!(
            decode_args::<WithOptional>(&args(json!(["a"])), &Map::new()).unwrap(),
            WithOptional {
                name: "a".into(),
                count: 0,
                label: None
            }
        );
        assert_eq!(
            decode_args::<WithOptional>(&args(json!(["a", 4])), &kwargs(json!({"label": "l"})))
                .unwrap(),
            WithOptional {
                name: "a".into(),
                count: 4,
                label: Some("l".into())
            }
        );
        assert_eq!(
            decode_args::<WithOptional>(&args(json!(["a", 4, null])), &Map::new())
                .unwrap()
                .label,
            None
        );
        assert_eq!(
            err::<WithOptional>(json!([]), json!({})),
            "missing argument \"name\""
        );
    }

    #[test]
    fn renamed_fields_use_wire_names() {
        let expected = Renamed {
            user_id: 7,
            flag: true,
        };
        assert_eq!(
            decode_args::<Renamed>(&[], &kwargs(json!({"userId": 7, "flag": true}))).unwrap(),
            expected
        );
        assert_eq!(
            decode_args::<Renamed>(&args(json!([7, true])), &Map::new()).unwrap(),
            expected
        );
        assert_eq!(
            err::<Renamed>(json!([]), json!({"user_id": 7, "flag": true})),
            "unexpected keyword argument \"user_id\""
        );
        assert_eq!(
            encode_args(&expected).unwrap(),
            (args(json!([7, true])), Map::new())
        );
    }

    #[test]
    fn tuples_vecs_and_tuple_structs() {
        assert_eq!(
            decode_args::<(i32, String)>(&args(json!([1, "a"])), &Map::new()).unwrap(),
            (1, "a".to_owned())
        );
        assert_eq!(
            decode_args::<Pair>(&args(json!([1, "a"])), &Map::new()).unwrap(),
            Pair(1, "a".to_owned())
        );
        assert_eq!(
            decode_args::<Vec<u8>>(&args(json!([1, 2, 3])), &Map::new()).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            err::<(i32, String)>(json!([1, 2]), json!({})),
            "positional argument 1: invalid type: integer `2`, expected a string"
        );
        assert_eq!(
            err::<(i32, i32)>(json!([1, 2, 3]), json!({})),
            "too many positional arguments: 3 given, takes 2"
        );
        assert_eq!(
            err::<(i32, i32)>(json!([1]), json!({})),
            "missing positional arguments: 1 given, takes 2"
        );
        assert_eq!(
            err::<(i32, i32)>(json!([1, 2]), json!({"a": 1, "b": 2})),
            "keyword arguments not accepted (positional only): a, b"
        );
    }

    #[test]
    fn unit_and_single_values() {
        decode_args::<()>(&[], &Map::new()).unwrap();
        assert_eq!(
            err::<()>(json!([1]), json!({})),
            "too many positional arguments: 1 given, takes 0"
        );
        assert_eq!(
            decode_args::<i64>(&args(json!([5])), &Map::new()).unwrap(),
            5
        );
        assert_eq!(
            decode_args::<String>(&args(json!(["s"])), &Map::new()).unwrap(),
            "s"
        );
        assert_eq!(
            decode_args::<Mode>(&args(json!(["Slow"])), &Map::new()).unwrap(),
            Mode::Slow
        );
        assert_eq!(
            err::<i64>(json!([]), json!({})),
            "missing positional arguments: 0 given, takes 1"
        );
        assert_eq!(
            err::<i64>(json!(["x"]), json!({})),
            "positional argument 0: invalid type: string \"x\", expected i64"
        );
        assert_eq!(decode_args::<Option<i64>>(&[], &Map::new()).unwrap(), None);
        assert_eq!(
            decode_args::<Option<i64>>(&args(json!([3])), &Map::new()).unwrap(),
            Some(3)
        );
    }

    #[test]
    fn value_gets_args_and_kwargs() {
        let value: Value =
            decode_args(&args(json!([1, "a"])), &kwargs(json!({"k": true}))).unwrap();
        assert_eq!(value, json!([[1, "a"], {"k": true}]));
    }

    #[test]
    fn maps_and_newtypes() {
        let map: BTreeMap<String, i32> =
            decode_args(&[], &kwargs(json!({"a": 1, "b": 2}))).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(
            err::<BTreeMap<String, i32>>(json!([1]), json!({})),
            "too many positional arguments: 1 given, takes 0"
        );
        assert_eq!(
            err::<BTreeMap<String, i32>>(json!([]), json!({"a": "x"})),
            "argument \"a\": invalid type: string \"x\", expected i32"
        );
        assert_eq!(
            decode_args::<Wrapper>(&args(json!([1, 2])), &Map::new()).unwrap(),
            Wrapper(Add { x: 1, y: 2 })
        );
    }

    #[test]
    fn encode_shapes() {
        let none = Map::new();
        assert_eq!(
            encode_args(&Add { x: 2, y: 3 }).unwrap(),
            (args(json!([2, 3])), none.clone())
        );
        assert_eq!(
            encode_args(&(1, "a")).unwrap(),
            (args(json!([1, "a"])), none.clone())
        );
        assert_eq!(
            encode_args(&Pair(1, "a".into())).unwrap(),
            (args(json!([1, "a"])), none.clone())
        );
        assert_eq!(
            encode_args(&vec![1, 2]).unwrap(),
            (args(json!([1, 2])), none.clone())
        );
        assert_eq!(encode_args(&()).unwrap(), (vec![], none.clone()));
        assert_eq!(encode_args(&None::<i32>).unwrap(), (vec![], none.clone()));
        assert_eq!(encode_args(&5).unwrap(), (args(json!([5])), none.clone()));
        assert_eq!(
            encode_args(&"s").unwrap(),
            (args(json!(["s"])), none.clone())
        );
        assert_eq!(
            encode_args(&Mode::Fast).unwrap(),
            (args(json!(["Fast"])), none.clone())
        );
        assert_eq!(
            encode_args(&Wrapper(Add { x: 1, y: 2 })).unwrap(),
            (args(json!([1, 2])), none.clone())
        );
        let mut map = BTreeMap::new();
        map.insert("k", 1);
        assert_eq!(
            encode_args(&map).unwrap(),
            (vec![], kwargs(json!({"k": 1})))
        );
        // a nested struct stays an object inside one positional arg
        assert_eq!(
            encode_args(&(Add { x: 1, y: 2 },)).unwrap(),
            (args(json!([{"x": 1, "y": 2}])), none)
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let value = WithOptional {
            name: "n".into(),
            count: 2,
            label: Some("l".into()),
        };
        let (a, k) = encode_args(&value).unwrap();
        assert_eq!(decode_args::<WithOptional>(&a, &k).unwrap(), value);
        let (a, k) = encode_args(&(1u8, vec!["x".to_owned()])).unwrap();
        assert_eq!(
            decode_args::<(u8, Vec<String>)>(&a, &k).unwrap(),
            (1, vec!["x".to_owned()])
        );
    }

    #[test]
    fn encode_errors() {
        let mut bad = BTreeMap::new();
        bad.insert(vec![1], 1);
        let error = encode_args(&bad).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot encode arguments: "),
            "{error}"
        );
    }
}
