//! Durations as people write them on the command line and in berth.yaml:
//! `90s`, `10m`, `1h`, `1h30m`, `2d`, parsed ([`parse`]) and shown
//! ([`display`], [`display_seconds`]) the same way everywhere berth prints one.

use std::time::Duration;

/// The longest duration berth accepts anywhere: a year and a day. Longer
/// waits are mistakes, and capping here keeps every later `now + duration`
/// and `as i64` far from overflow.
pub const MAX: Duration = Duration::from_secs(366 * 86_400);

/// Parse a duration written as `90s`, `10m`, `1h`, `1h30m` or `2d`, from
/// 0s to [`MAX`] (for settings where none is meaningful: a grace period, a
/// minimum age).
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_within(text, "0s")
}

/// Parse a duration as [`parse`] does, refusing zero: from 1s to [`MAX`].
/// For every wait, timeout and hold (a deploy that times out at once, a
/// Lease or pod deadline of 0 the API server refuses). Every duration
/// flag and berth.yaml setting stays below the API's limit for Lease
/// durations and `activeDeadlineSeconds` (2147483647 seconds), as [`MAX`] does.
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let duration = parse_within(text, "1s")?;
    if duration.is_zero() {
        return Err(format!(
            "'{text}' is no time; give from 1s to 366d, e.g. 10m"
        ));
    }
    Ok(duration)
}

/// [`parse`], its messages naming the range from `min` to 366d.
fn parse_within(text: &str, min: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "'{text}' is not a duration; write it like 90s, 10m, 1h or 1h30m, from {min} to 366d"
        )
    };
    let too_long = || {
        format!(
            "'{text}' is too long; the longest duration berth accepts is 366d (a year): give from {min} to 366d"
        )
    };
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        if digits.is_empty() {
            return Err(invalid());
        }
        // All digits, so the only way to fail is a number too big for u64.
        let n: u64 = digits.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .filter(|&s| s <= MAX.as_secs())
            .ok_or_else(too_long)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

/// `duration` as people read it, in at most two units: `2.3s` (tenths
/// below 10 seconds), `14s`, `2m30s`, `2m`, `1h`, `1h5m`, `2d3h`. Never
/// `3599s`: `59m59s`.
pub fn display(duration: Duration) -> String {
    if duration < Duration::from_secs(10) {
        // Tenths, rounded; `9.96s` would round up to `10.0s`, so whole seconds there.
        let tenths = (duration.as_secs_f64() * 10.0).round() as u64;
        if tenths < 100 {
            return if tenths.is_multiple_of(10) {
                format!("{}s", tenths / 10)
            } else {
                format!("{}.{}s", tenths / 10, tenths % 10)
            };
        }
    }
    let s = duration.as_secs_f64().round() as u64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, m) => pair(m, "m", sec, "s"),
        (0, h, m) => pair(h, "h", m, "m"),
        (d, h, _) => pair(d, "d", h, "h"),
    }
}

/// [`display`] of a number of seconds (as release records and reports keep
/// them); negative or not a number shows as `0s`.
pub fn display_seconds(seconds: f64) -> String {
    display(Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_display_in_at_most_two_units() {
        let shown = |s: u64| display(Duration::from_secs(s));
        assert_eq!(shown(0), "0s");
        assert_eq!(shown(14), "14s");
        assert_eq!(shown(60), "1m");
        assert_eq!(shown(150), "2m30s");
        assert_eq!(shown(3599), "59m59s");
        assert_eq!(shown(3600), "1h");
        assert_eq!(shown(3900), "1h5m");
        assert_eq!(shown(90_000), "1d1h");
        assert_eq!(display_seconds(2.34), "2.3s");
        assert_eq!(display_seconds(9.96), "10s");
        assert_eq!(display_seconds(0.04), "0s");
        assert_eq!(display_seconds(-3.0), "0s");
        assert_eq!(display_seconds(f64::NAN), "0s");
        assert_eq!(display_seconds(59.6), "1m");
    }

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        for bad in ["", "10", "m", "10x", "1h30", "h5m", "-5s", "1.5h"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("write it like"), "{bad}: {err}");
        }
    }

    #[test]
    fn zero_is_refused_where_a_positive_duration_is_needed() {
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for zero in ["0s", "0m", "0h0s", "00d"] {
            let err = parse_positive(zero).unwrap_err();
            assert!(err.contains("from 1s to 366d"), "{zero}: {err}");
        }
        assert_eq!(parse_positive("1s"), Ok(Duration::from_secs(1)));
        let err = parse_positive("100y").unwrap_err();
        assert!(err.contains("from 1s to 366d"), "{err}");
    }

    #[test]
    fn the_maximum_fits_every_api_field_a_duration_goes_to() {
        assert!(MAX.as_secs() <= i32::MAX as u64);
    }

    #[test]
    fn durations_above_a_year_name_the_maximum() {
        assert_eq!(parse("366d"), Ok(MAX));
        for huge in [
            "367d",
            "366d1s",
            "18446744073709551615s",
            "99999999999999999999h",
            "9000000000000000000d",
        ] {
            let err = parse(huge).unwrap_err();
            assert!(err.contains("366d"), "{huge}: {err}");
        }
    }
}
