//! Conversions between AMQP field values and JSON, with the type codes
//! py-amqp uses (docs/wire-protocol.md §1.3): `str` as `S`, `int` as `I` (`L` outside
//! the i32 range), `bool` as `t`, `float` as `d`, `None` as `V`, list as `A`,
//! dict as `F`.

use celeriac_actors::amqp::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

use super::error::ProtocolError;

/// An AMQP string value (`S`, long string), the way py-amqp sends `str`.
pub fn string_value(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text.as_bytes().to_vec()))
}

/// An AMQP integer, the way py-amqp sends `int`: `I` (LongInt) when it fits
/// in i32, else `L` (LongLongInt).
pub fn int_value(value: i64) -> AMQPValue {
    match i32::try_from(value) {
        Ok(small) => AMQPValue::LongInt(small),
        Err(_) => AMQPValue::LongLongInt(value),
    }
}

/// An AMQP number for a float: integral values as `I`/`L` (as Python sends
/// an `int`), others as `d` (Double).
pub fn float_value(value: f64) -> AMQPValue {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        int_value(value as i64)
    } else {
        AMQPValue::Double(value)
    }
}

/// A short string for a table key or a property, or an error naming `name`
/// when it is longer than 255 bytes.
pub fn short_string(name: &str, value: &str) -> Result<ShortString, ProtocolError> {
    ShortString::try_new(value).map_err(|e| ProtocolError::InvalidProperty {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Convert a JSON value to an AMQP field value with py-amqp's type codes.
/// `name` is used in error messages (a key longer than 255 bytes cannot be encoded).
pub fn json_to_amqp(name: &str, value: &Value) -> Result<AMQPValue, ProtocolError> {
    Ok(match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(flag) => AMQPValue::Boolean(*flag),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                int_value(int)
            } else {
                AMQPValue::Double(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(text) => string_value(text),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(|item| json_to_amqp(name, item))
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Object(map) => AMQPValue::FieldTable(json_map_to_table(name, map)?),
    })
}

/// Convert a JSON object to an AMQP field table (see [`json_to_amqp`]).
pub fn json_map_to_table(
    name: &str,
    map: &Map<String, Value>,
) -> Result<FieldTable, ProtocolError> {
    let mut table = FieldTable::default();
    for (key, item) in map {
        table.insert(short_string(name, key)?, json_to_amqp(name, item)?);
    }
    Ok(table)
}

/// Convert an AMQP field value to JSON. Strings that are not UTF-8 are
/// converted lossily; decimals and timestamps become numbers.
pub fn amqp_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(flag) => Value::Bool(*flag),
        AMQPValue::ShortShortInt(v) => Value::from(*v),
        AMQPValue::ShortShortUInt(v) => Value::from(*v),
        AMQPValue::ShortInt(v) => Value::from(*v),
        AMQPValue::ShortUInt(v) => Value::from(*v),
        AMQPValue::LongInt(v) => Value::from(*v),
        AMQPValue::LongUInt(v) => Value::from(*v),
        AMQPValue::LongLongInt(v) => Value::from(*v),
        AMQPValue::Timestamp(v) => Value::from(*v),
        AMQPValue::Float(v) => float_json(f64::from(*v)),
        AMQPValue::Double(v) => float_json(*v),
        AMQPValue::DecimalValue(decimal) => {
            float_json(f64::from(decimal.value) / 10f64.powi(i32::from(decimal.scale)))
        }
        AMQPValue::ShortString(text) => Value::String(text.as_str().to_owned()),
        AMQPValue::LongString(text) => {
            Value::String(String::from_utf8_lossy(text.as_bytes()).into_owned())
        }
        AMQPValue::ByteArray(bytes) => {
            Value::String(String::from_utf8_lossy(bytes.as_slice()).into_owned())
        }
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(amqp_to_json).collect())
        }
        AMQPValue::FieldTable(table) => Value::Object(table_to_json(table)),
        AMQPValue::Void => Value::Null,
    }
}

/// Convert an AMQP field table to a JSON object (see [`amqp_to_json`]).
pub fn table_to_json(table: &FieldTable) -> Map<String, Value> {
    table
        .inner()
        .iter()
        .map(|(key, item)| (key.as_str().to_owned(), amqp_to_json(item)))
        .collect()
}

fn float_json(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// Read a header as an optional string: long string, short string or byte
/// array (defensively); `Void` is `None`.
pub fn as_opt_string(name: &str, value: &AMQPValue) -> Result<Option<String>, ProtocolError> {
    let bytes = match value {
        AMQPValue::Void => return Ok(None),
        AMQPValue::ShortString(text) => return Ok(Some(text.as_str().to_owned())),
        AMQPValue::LongString(text) => text.as_bytes(),
        AMQPValue::ByteArray(bytes) => bytes.as_slice(),
        other => return Err(wrong_type(name, "a string", other)),
    };
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|_| ProtocolError::InvalidHeader {
            name: name.to_owned(),
            reason: "string is not valid UTF-8".to_owned(),
        })
}

/// Read a header as an optional integer, from any AMQP integer type (and
/// integral floats); `Void` is `None`.
pub fn as_opt_int(name: &str, value: &AMQPValue) -> Result<Option<i64>, ProtocolError> {
    Ok(Some(match value {
        AMQPValue::Void => return Ok(None),
        AMQPValue::ShortShortInt(v) => i64::from(*v),
        AMQPValue::ShortShortUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::ShortUInt(v) => i64::from(*v),
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::Timestamp(v) => {
            i64::try_from(*v).map_err(|_| wrong_type(name, "an i64 integer", value))?
        }
        AMQPValue::Double(v) if v.fract() == 0.0 && v.abs() < 9.0e18 => *v as i64,
        AMQPValue::Float(v) if v.fract() == 0.0 && v.abs() < 9.0e18 => *v as i64,
        other => return Err(wrong_type(name, "an integer", other)),
    }))
}

/// Read a header as an optional number of seconds (any AMQP number); `Void` is `None`.
pub fn as_opt_f64(name: &str, value: &AMQPValue) -> Result<Option<f64>, ProtocolError> {
    Ok(Some(match value {
        AMQPValue::Double(v) => *v,
        AMQPValue::Float(v) => f64::from(*v),
        AMQPValue::DecimalValue(d) => f64::from(d.value) / 10f64.powi(i32::from(d.scale)),
        other => match as_opt_int(name, other) {
            Ok(Some(int)) => int as f64,
            Ok(None) => return Ok(None),
            Err(_) => return Err(wrong_type(name, "a number", other)),
        },
    }))
}

/// Read a header as an optional bool (`t`; integers 0/1 defensively); `Void` is `None`.
pub fn as_opt_bool(name: &str, value: &AMQPValue) -> Result<Option<bool>, ProtocolError> {
    match value {
        AMQPValue::Void => Ok(None),
        AMQPValue::Boolean(flag) => Ok(Some(*flag)),
        other => match as_opt_int(name, other) {
            Ok(Some(0)) => Ok(Some(false)),
            Ok(Some(1)) => Ok(Some(true)),
            _ => Err(wrong_type(name, "a bool", other)),
        },
    }
}

/// The error for a header whose AMQP type is not the expected one.
pub fn wrong_type(name: &str, expected: &str, got: &AMQPValue) -> ProtocolError {
    ProtocolError::InvalidHeader {
        name: name.to_owned(),
        reason: format!(
            "expected {expected}, got AMQP type '{}'",
            got.get_type().get_id()
        ),
    }
}
