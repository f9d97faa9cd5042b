//! Moments as people read them: the local time to the second and how long
//! ago it was (`2026-12-05 23:20:08 (3m ago)`). JSON keeps RFC 3339.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// `rfc3339` in the system's time zone (`TZ`, else `/etc/localtime`, else
/// UTC) with its age at `now`; text that is not a time is shown as it is.
pub fn with_age(rfc3339: &str, now: Timestamp) -> String {
    with_age_in(rfc3339, now, &TimeZone::system())
}

/// [`with_age`] in the time zone `zone`.
fn with_age_in(rfc3339: &str, now: Timestamp, zone: &TimeZone) -> String {
    let Ok(moment) = rfc3339.parse::<Timestamp>() else {
        return rfc3339.to_owned();
    };
    let local = moment.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M:%S");
    let seconds = now.as_second() - moment.as_second();
    let age = crate::duration::display(Duration::from_secs(seconds.unsigned_abs()));
    if seconds >= 0 {
        format!("{local} ({age} ago)")
    } else {
        // A clock ahead of this one's.
        format!("{local} (in {age})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_local_to_the_second_with_their_age() {
        let now: Timestamp = "2026-12-05T23:23:08Z".parse().unwrap();
        let paris = TimeZone::fixed(jiff::tz::offset(1));
        assert_eq!(
            with_age_in("2026-12-05T23:20:08.123Z", now, &TimeZone::UTC),
            "2026-12-05 23:20:08 (3m ago)"
        );
        assert_eq!(
            with_age_in("2026-12-05T23:20:08Z", now, &paris),
            "2026-12-06 00:20:08 (3m ago)"
        );
        assert_eq!(
            with_age_in("2026-12-04T21:20:00Z", now, &TimeZone::UTC),
            "2026-12-04 21:20:00 (1d2h ago)"
        );
        assert_eq!(
            with_age_in("2026-12-05T23:23:10Z", now, &TimeZone::UTC),
            "2026-12-05 23:23:10 (in 2s)"
        );
        assert_eq!(with_age_in("yesterday", now, &TimeZone::UTC), "yesterday");
    }
}
