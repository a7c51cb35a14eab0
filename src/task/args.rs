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
/// - any other single value (number, string, enum, ...): exactly one positional arg.
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
            self.single()?
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
        if self.args.is_empty() && self.kwargs.is_empty() {
            visitor.visit_none()
        } else if self.kwargs.is_empty() && matches!(self.args, [Value::Null]) {
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
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ArgsError> {
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
        self.single()?
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
        seed.deserialize(value)
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
            Some((index, value)) => seed.deserialize(value.clone()).map(Some).map_err(|e| {
                ArgsError::InvalidPositional {
                    index,
                    reason: e.to_string(),
                }
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
        _name: &'static str,
        value: &T,
    ) -> Result<Value, serde_json::Error> {
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
