//! Which GitHub failures are worth another try, and how long to wait
//! first: a rate limit says so itself (`Retry-After`, or
//! `x-ratelimit-remaining: 0` with `x-ratelimit-reset`), within a bound;
//! a 5xx or a lost connection gets [`crate::net::backoff`]'s waits.

use std::time::Duration;

use http::HeaderMap;

/// The longest rate-limit wait berth sits out; a longer one fails with the
/// time the limit lifts.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(300);
/// How many rate limits in a row one request waits out.
pub const RATE_LIMIT_RETRIES: usize = 3;
/// A 429 that names no wait is waited this long.
const UNNAMED_WAIT: Duration = Duration::from_secs(10);

/// What to do after a failed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A rate limit: wait this long (as GitHub asked), then try again.
    RateLimited(Duration),
    /// A failure that may pass (5xx, a refused or reset connection): back off.
    Transient,
    /// A failure that another try would repeat.
    Stop,
}

/// What `error` calls for.
pub fn next(error: &octocrab::Error) -> Next {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let asked = source
                .headers
                .as_ref()
                .and_then(|headers| rate_limit_wait(headers, now()));
            match (status, asked) {
                (403 | 429, Some(wait)) => Next::RateLimited(wait),
                (429, None) => Next::RateLimited(UNNAMED_WAIT),
                (500.., _) => Next::Transient,
                _ => Next::Stop,
            }
        }
        octocrab::Error::Hyper { .. }
        | octocrab::Error::Reqwest { .. }
        | octocrab::Error::Service { .. } => Next::Transient,
        _ => Next::Stop,
    }
}

/// The wait a rate-limited answer's headers ask for, at `now` (seconds
/// since the epoch): `Retry-After` seconds, or until `x-ratelimit-reset`
/// (plus a second for clock skew) when `x-ratelimit-remaining` is 0.
pub fn rate_limit_wait(headers: &HeaderMap, now: u64) -> Option<Duration> {
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    match (number("x-ratelimit-remaining"), number("x-ratelimit-reset")) {
        (Some(0), Some(reset)) => Some(Duration::from_secs(reset.saturating_sub(now) + 1)),
        _ => None,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn retry_after_is_waited_as_said() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(rate_limit_wait(&h, 1000), Some(Duration::from_secs(7)));
    }

    #[test]
    fn an_exhausted_limit_is_waited_until_its_reset() {
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1030"),
        ]);
        assert_eq!(rate_limit_wait(&h, 1000), Some(Duration::from_secs(31)));
        // A reset already past (clock skew) still waits a moment.
        assert_eq!(rate_limit_wait(&h, 2000), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_limit_with_requests_left_or_no_headers_asks_no_wait() {
        let h = headers(&[
            ("x-ratelimit-remaining", "10"),
            ("x-ratelimit-reset", "1030"),
        ]);
        assert_eq!(rate_limit_wait(&h, 1000), None);
        assert_eq!(rate_limit_wait(&HeaderMap::new(), 1000), None);
        let garbled = headers(&[("retry-after", "soon")]);
        assert_eq!(rate_limit_wait(&garbled, 1000), None);
    }
}
