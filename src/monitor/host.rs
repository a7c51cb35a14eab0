//! Facts about this machine that Celery's events carry.

/// The 1, 5 and 15 minute load averages, rounded up to 2 decimals as Celery's
/// `load_average()` does; zeros when `/proc/loadavg` cannot be read.
pub fn load_average() -> [f64; 3] {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| parse_loadavg(&text))
        .unwrap_or([0.0; 3])
}

/// The first three numbers of `/proc/loadavg`, rounded up to 2 decimals.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(|field| field.parse::<f64>());
    let mut out = [0.0; 3];
    for slot in &mut out {
        let value = fields.next()?.ok()?;
        *slot = (value * 100.0).ceil() / 100.0;
    }
    Some(out)
}

/// Hours *west* of UTC, as Python's `celery.utils.time.utcoffset()`: `0.0` on UTC hosts,
/// `-2.0` at UTC+2 (receivers correct timestamps with it).
pub fn utcoffset() -> f64 {
    let east = chrono::Local::now().offset().local_minus_utc();
    utcoffset_of(east)
}

/// [`utcoffset`] for a zone `east_seconds` east of UTC (never `-0.0`).
pub fn utcoffset_of(east_seconds: i32) -> f64 {
    f64::from(-east_seconds) / 3600.0 + 0.0
}

/// The operating system's name, as Python's `platform.system()` (`Linux`).
pub fn system() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "windows" => "Windows",
        "freebsd" => "FreeBSD",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_average_is_parsed_and_rounded_up() {
        assert_eq!(
            parse_loadavg("5.47 4.47 2.38 3/512 1234\n"),
            Some([5.47, 4.47, 2.38])
        );
        assert_eq!(parse_loadavg("0.001 1 2"), Some([0.01, 1.0, 2.0]));
        assert_eq!(parse_loadavg("1.0 x 2"), None);
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn utcoffset_is_hours_west_of_utc() {
        for (east, west) in [(0, 0.0), (7200, -2.0), (-18000, 5.0), (19800, -5.5)] {
            let offset = utcoffset_of(east);
            assert_eq!(offset, west, "{east} s east");
            assert!(!offset.is_sign_negative() || offset != 0.0, "no -0.0");
        }
        assert_eq!(serde_json::json!(utcoffset_of(0)).to_string(), "0.0");
    }
}
