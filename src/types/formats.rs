//! How each Rust type is written as kombu writes the Python type (`isoformat()`,
//! `str(Decimal)`, `{"hex": ...}`, UTF-8 text or base64), and read back.

use base64::Engine;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use serde_json::Value;

use super::Decimal;

/// A Rust type with a kombu JSON envelope: what [`Kombu<T>`](super::Kombu) needs.
pub trait KombuType: Sized {
    /// kombu's `__type__` and `__value__` for this value, exactly as kombu writes them.
    fn to_kombu(&self) -> (&'static str, Value);

    /// Reads an envelope's `__value__` (`marker` is its `__type__`) or, when `marker` is
    /// `None`, plain JSON; the error says what was expected.
    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String>;
}

/// The text of a string envelope (or plain string) whose `__type__` must be `expected`.
fn text<'a>(expected: &str, marker: Option<&str>, value: &'a Value) -> Result<&'a str, String> {
    if let Some(marker) = marker {
        if marker != expected {
            return Err(format!(
                "expected a kombu {expected} envelope, got __type__ {marker:?}"
            ));
        }
    }
    value
        .as_str()
        .ok_or_else(|| format!("expected a {expected} as an ISO string, got {value}"))
}

/// Python's `isoformat()` fraction: `.ffffff` when there are microseconds, else nothing.
fn micros(time: &impl Timelike) -> String {
    match time.nanosecond() % 1_000_000_000 / 1000 {
        0 => String::new(),
        us => format!(".{us:06}"),
    }
}

/// Python's `isoformat()` offset: `+HH:MM`, or `+HH:MM:SS` when it has seconds.
fn offset(offset: &FixedOffset) -> String {
    let total = offset.local_minus_utc();
    let sign = if total < 0 { '-' } else { '+' };
    let total = total.unsigned_abs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    if seconds == 0 {
        format!("{sign}{hours:02}:{minutes:02}")
    } else {
        format!("{sign}{hours:02}:{minutes:02}:{seconds:02}")
    }
}

/// `datetime.isoformat()` of a naive datetime.
fn naive_iso(value: &NaiveDateTime) -> String {
    format!("{}{}", value.format("%Y-%m-%dT%H:%M:%S"), micros(value))
}

/// An ISO datetime with an offset (RFC 3339, `T` or space) or without (read as UTC, as
/// Celery reads a naive eta).
fn parse_datetime(text: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%::z"))
        .or_else(|_| parse_naive_datetime(text).map(|naive| naive.and_utc().fixed_offset()))
        .map_err(|_| format!("not an ISO 8601 datetime: {text:?}"))
}

/// An ISO datetime without an offset.
fn parse_naive_datetime(text: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .map_err(|_| format!("not a naive ISO 8601 datetime: {text:?}"))
}

impl KombuType for DateTime<FixedOffset> {
    fn to_kombu(&self) -> (&'static str, Value) {
        let iso = format!(
            "{}{}",
            naive_iso(&self.naive_local()),
            offset(self.offset())
        );
        ("datetime", Value::String(iso))
    }

    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String> {
        parse_datetime(text("datetime", marker, value)?)
    }
}

impl KombuType for DateTime<Utc> {
    fn to_kombu(&self) -> (&'static str, Value) {
        self.fixed_offset().to_kombu()
    }

    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String> {
        DateTime::<FixedOffset>::from_kombu(marker, value).map(|time| time.to_utc())
    }
}

impl KombuType for NaiveDateTime {
    fn to_kombu(&self) -> (&'static str, Value) {
        ("datetime", Value::String(naive_iso(self)))
    }

    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String> {
        let text = text("datetime", marker, value)?;
        parse_naive_datetime(text).map_err(|error| {
            if parse_datetime(text).is_ok() {
                format!("{text:?} has a UTC offset: take a DateTime<FixedOffset> or DateTime<Utc>")
            } else {
                error
            }
        })
    }
}

impl KombuType for NaiveDate {
    fn to_kombu(&self) -> (&'static str, Value) {
        ("date", Value::String(self.format("%Y-%m-%d").to_string()))
    }

    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String> {
        let text = text("date", marker, value)?;
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| format!("not an ISO 8601 date: {text:?}"))
    }
}

impl KombuType for NaiveTime {
    fn to_kombu(&self) -> (&'static str, Value) {
        let iso = format!("{}{}", self.format("%H:%M:%S"), micros(self));
        ("time", Value::String(iso))
    }

    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String> {
        let text = text("time", marker, value)?;
        NaiveTime::parse_from_str(text, "%H:%M:%S%.f")
            .map_err(|_| format!("not a naive ISO 8601 time: {text:?}"))
    }
}

impl KombuType for Decimal {
    fn to_kombu(&self) -> (&'static str, Value) {
        ("decimal", Value::String(self.as_str().to_owned()))
    }

    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String> {
        match (marker, value) {
            (None, Value::Number(number)) => number.to_string().parse(),
            _ => text("decimal", marker, value)?.parse(),
        }
        .map_err(|error: super::DecimalError| error.to_string())
    }
}

impl KombuType for uuid::Uuid {
    fn to_kombu(&self) -> (&'static str, Value) {
        let hex = self.simple().to_string();
        ("uuid", serde_json::json!({ "hex": hex }))
    }

    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String> {
        if let Some(marker) = marker.filter(|marker| *marker != "uuid") {
            return Err(format!(
                "expected a kombu uuid envelope, got __type__ {marker:?}"
            ));
        }
        let text = match value {
            Value::Object(fields) => fields.get("hex").and_then(Value::as_str),
            Value::String(text) => Some(text.as_str()),
            _ => None,
        }
        .ok_or_else(|| format!("expected a UUID as {{\"hex\": ...}} or a string, got {value}"))?;
        uuid::Uuid::try_parse(text).map_err(|error| format!("not a UUID: {text:?}: {error}"))
    }
}

impl KombuType for Vec<u8> {
    fn to_kombu(&self) -> (&'static str, Value) {
        match std::str::from_utf8(self) {
            Ok(text) => ("bytes", Value::String(text.to_owned())),
            Err(_) => (
                "base64",
                Value::String(base64::engine::general_purpose::STANDARD.encode(self)),
            ),
        }
    }

    fn from_kombu(marker: Option<&str>, value: &Value) -> Result<Self, String> {
        match (marker, value) {
            (Some("bytes") | None, Value::String(text)) => Ok(text.as_bytes().to_vec()),
            (Some("base64"), Value::String(text)) => {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                    .map_err(|error| format!("not base64: {error}"))
            }
            (None, Value::Array(items)) => items
                .iter()
                .map(|item| item.as_u64().and_then(|byte| u8::try_from(byte).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| format!("expected an array of bytes (0-255), got {value}")),
            (Some(marker), _) => Err(format!(
                "expected a kombu bytes or base64 envelope of a string, got __type__ {marker:?} with {value}"
            )),
            (None, _) => Err(format!(
                "expected bytes as a string or an array of bytes, got {value}"
            )),
        }
    }
}
