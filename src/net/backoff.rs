//! How berth waits between tries of a request to a service that failed in
//! a way that may pass (a refused or reset connection, a timeout, a 5xx,
//! throttling): the registries and GitHub. S3 has the SDK's own retries
//! (see [`crate::s3`]).

use std::time::Duration;

use backon::ExponentialBuilder;

/// Retries after the first try.
pub const RETRIES: usize = 4;

/// The waits between tries: 0.5 s, 1 s, 2 s, 4 s, each stretched at random
/// by up to as much again (7.5-15 s in all), so a service back within 7 s
/// is reached, and one down for good is reported within about 15 s.
pub fn waits() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(4))
        .with_max_times(RETRIES)
        .with_jitter()
}
