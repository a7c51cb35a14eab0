//! ISO 8601 datetimes as Celery writes and reads them (docs/wire-protocol.md §1.5).

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Format a datetime the way Celery does: RFC 3339 with an explicit `+00:00`
/// offset and microseconds, e.g. `2026-11-23T20:58:52.579881+00:00`.
pub fn format_datetime(value: &DateTime<Utc>) -> String {
    value.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Parse an ISO 8601 datetime as `dateutil.isoparse` would.
///
/// Accepts an offset (`+00:00`, `+0200`, `Z`), up to 9 fractional digits,
/// a space instead of `T`, and naive values (no offset), which are read as
/// UTC like the Celery worker does. A bare date is midnight UTC.
/// Returns `None` when the text is not a datetime.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let trimmed = text.trim();
    let mut normalized = trimmed.to_owned();
    // "2030-01-01 12:00:00" -> "2030-01-01T12:00:00"
    if normalized.len() > 10 && normalized.is_char_boundary(10) && normalized.is_char_boundary(11) {
        let sep = &normalized[10..11];
        if sep == " " || sep == "t" {
            normalized.replace_range(10..11, "T");
        }
    }
    if let Ok(aware) = DateTime::parse_from_rfc3339(&normalized) {
        return Some(aware.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(aware) = DateTime::parse_from_str(&normalized, format) {
            return Some(aware.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&normalized, format) {
            return Some(naive.and_utc());
        }
    }
    NaiveDate::parse_from_str(&normalized, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
            + chrono::Duration::microseconds(i64::from(us))
    }

    #[test]
    fn parses_celery_formats() {
        let expected = utc(2026, 11, 23, 20, 58, 52, 579881);
        for text in [
            "2026-11-23T20:58:52.579881+00:00",
            "2026-11-23T20:58:52.579881Z",
            "2026-11-23T20:58:52.579881z",
            "2026-11-23 20:58:52.579881+00:00",
            "2026-11-23T22:58:52.579881+02:00",
            "2026-11-23T22:58:52.579881+0200",
            "2026-11-23T20:58:52.579881",
            "2026-11-23 20:58:52.579881",
        ] {
            assert_eq!(parse_datetime(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn nine_fraction_digits_and_short_forms() {
        let parsed = parse_datetime("2026-11-23T20:58:52.579881123+00:00").unwrap();
        assert_eq!(parsed.timestamp_subsec_nanos(), 579_881_123);
        assert_eq!(
            parse_datetime("2030-01-01T12:00:00"),
            Some(utc(2030, 1, 1, 12, 0, 0, 0))
        );
        assert_eq!(
            parse_datetime("2030-01-01T12:00"),
            Some(utc(2030, 1, 1, 12, 0, 0, 0))
        );
        assert_eq!(
            parse_datetime("2030-01-01"),
            Some(utc(2030, 1, 1, 0, 0, 0, 0))
        );
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "xyz",
            "",
            "2030-13-01T00:00:00",
            "12:00:00",
            "2030-01-01Tnoon",
        ] {
            assert_eq!(parse_datetime(text), None, "{text}");
        }
    }

    #[test]
    fn formats_like_python_isoformat() {
        let value = utc(2026, 11, 23, 20, 58, 52, 579881);
        assert_eq!(format_datetime(&value), "2026-11-23T20:58:52.579881+00:00");
        assert_eq!(parse_datetime(&format_datetime(&value)), Some(value));
    }
}
