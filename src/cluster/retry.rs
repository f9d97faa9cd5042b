//! When a Kubernetes API request that failed is sent again: the retry
//! policy of berth's client (see [`client`](super::client)).
//!
//! A request is retried only where sending it twice cannot do harm:
//! - nothing reached the server (connection refused, reset or timed out
//!   while connecting) or the server turned it away before doing anything
//!   (429 Too Many Requests, 503 Service Unavailable): every method;
//! - the connection broke after the request was sent (reset, closed before
//!   the answer, read timeout), or the server answered 500, 502 or 504:
//!   only requests that are safe to repeat (GET, HEAD, server-side apply
//!   and merge PATCHes, DELETE). A create (POST) or a replace (PUT, guarded
//!   by its resourceVersion) may have taken effect already, and its caller
//!   is told instead.
//!
//! Delays grow exponentially from [`FIRST_DELAY`] to [`MAX_DELAY`] with
//! jitter (or follow the server's `Retry-After`), and a request gives up
//! once it has been failing for [`BUDGET`]: the error then says so. Once a
//! request of the client gave up, and until the server answers again, the
//! next ones give up after [`AFTER_GIVING_UP`], so a server that stays down
//! ends a command within about one budget, not one budget per request it
//! still sends (recording the failure, releasing the lock).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use rand::RngExt;
use tokio::time::Instant;
use tower::BoxError;
use tower::retry::Policy;

/// The delay before the first retry.
const FIRST_DELAY: Duration = Duration::from_millis(200);
/// The longest delay between two tries.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// How long one request may keep failing before berth gives up on it: an
/// API server restart takes a few seconds to a minute.
pub const BUDGET: Duration = Duration::from_secs(60);
/// How long a request keeps trying once another request of the client gave
/// up and the server has not answered since.
pub const AFTER_GIVING_UP: Duration = Duration::from_secs(15);

/// berth's retry policy: one per request (tower clones it for each).
#[derive(Clone, Debug)]
pub struct Retry {
    first_failure: Option<Instant>,
    attempts: u32,
    budget: Duration,
    /// Shared by every request of the client: a request gave up, and the
    /// server has not answered since.
    silent: Arc<AtomicBool>,
}

impl Retry {
    /// The policy every berth client uses.
    pub fn new() -> Retry {
        Retry::with_budget(BUDGET)
    }

    /// A policy giving up after `budget` of failures.
    pub fn with_budget(budget: Duration) -> Retry {
        Retry {
            first_failure: None,
            attempts: 0,
            budget,
            silent: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The server answered (whatever it said): it is up.
    fn answered(&self) {
        self.silent.store(false, Ordering::SeqCst);
    }

    /// The delay before the next try, or `None` once the budget is spent
    /// ([`AFTER_GIVING_UP`] while another request has given up).
    fn next_delay(&mut self, wanted: Option<Duration>) -> Option<Duration> {
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        let budget = if self.silent.load(Ordering::SeqCst) {
            self.budget.min(AFTER_GIVING_UP)
        } else {
            self.budget
        };
        let exponential = FIRST_DELAY
            .saturating_mul(1 << self.attempts.min(16))
            .min(MAX_DELAY);
        let jittered = exponential.mul_f64(rand::rng().random_range(0.5..=1.0));
        let delay = wanted.unwrap_or(jittered);
        if first.elapsed() + delay > budget {
            self.silent.store(true, Ordering::SeqCst);
            return None;
        }
        self.attempts += 1;
        Some(delay)
    }
}

impl Default for Retry {
    fn default() -> Retry {
        Retry::new()
    }
}

/// How a try failed, as far as retrying it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Nothing was done: safe to send again whatever the request.
    NotDone,
    /// It may have been done: safe to send again only if repeating it is.
    MaybeDone,
    /// Not a transient failure.
    Final,
}

/// Whether sending `method` twice does what sending it once does.
fn repeatable(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::DELETE,
    ]
    .contains(method)
}

/// How an answer with `status` failed.
fn of_status(status: StatusCode) -> Failure {
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Failure::NotDone,
        StatusCode::INTERNAL_SERVER_ERROR
        | StatusCode::BAD_GATEWAY
        | StatusCode::GATEWAY_TIMEOUT => Failure::MaybeDone,
        _ => Failure::Final,
    }
}

/// How a transport error failed: only the network's own failures are
/// transient, not TLS or credential errors.
fn of_error(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut connecting = false;
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            connecting |= e.is_connect();
        }
        if let Some(e) = e.downcast_ref::<hyper::Error>()
            && (e.is_incomplete_message() || e.is_canceled() || e.is_closed())
        {
            return Failure::MaybeDone;
        }
        // HTTP/2's error hides its I/O cause from `source()` (only
        // `get_io` reaches it): a reset while reading an answer's body over
        // HTTP/2 would otherwise look final.
        // A stream the server refused was not processed (RFC 9113 8.7);
        // any other stream or connection error may come after it was.
        if let Some(e) = e.downcast_ref::<h2::Error>() {
            return match (e.get_io(), e.reason()) {
                (Some(io), _) => of_io(io.kind(), connecting),
                (None, Some(h2::Reason::REFUSED_STREAM)) => Failure::NotDone,
                (None, _) => Failure::MaybeDone,
            };
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            return of_io(e.kind(), connecting);
        }
        source = e.source();
    }
    Failure::Final
}

/// What an I/O error of `kind` says about the request: a connection that
/// was never made (or broke while `connecting`) did not carry it.
fn of_io(kind: std::io::ErrorKind, connecting: bool) -> Failure {
    use std::io::ErrorKind::*;
    match kind {
        ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable => {
            Failure::NotDone
        }
        ConnectionReset | ConnectionAborted | TimedOut | NotConnected if connecting => {
            Failure::NotDone
        }
        ConnectionReset | ConnectionAborted | TimedOut | NotConnected | BrokenPipe
        | UnexpectedEof => Failure::MaybeDone,
        _ => Failure::Final,
    }
}

/// Whether `error` is a broken connection that berth's client did not
/// retry itself (a create or a replace that may have taken effect), as
/// opposed to an answer, a refusal or a request already retried to the end.
pub fn transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::HyperError(e) => of_error(e) != Failure::Final,
        kube::Error::Service(e) => !e.is::<GaveUp>() && of_error(e.as_ref()) != Failure::Final,
        _ => false,
    }
}

/// The [`GaveUp`] a Kubernetes request ended in, if it did: berth's
/// client retried it for the whole budget and the server never answered.
pub fn gave_up(error: &kube::Error) -> Option<&GaveUp> {
    match error {
        kube::Error::Service(e) => e.downcast_ref::<GaveUp>(),
        _ => None,
    }
}

/// The [`GaveUp`] a watch's request ended in, if it did.
pub fn watch_gave_up(error: &kube::runtime::watcher::Error) -> Option<&GaveUp> {
    use kube::runtime::watcher::Error;
    match error {
        Error::InitialListFailed(e) | Error::WatchStartFailed(e) | Error::WatchFailed(e) => {
            gave_up(e)
        }
        _ => None,
    }
}

/// How long a wait's watches have been giving up: a watch retries after
/// its request gave up, so a wait ends only once the API server has not
/// answered for a [`BUDGET`] since the first give-up (two minutes of
/// silence in all), which a slow restart (a graceful shutdown draining its
/// streams for a minute) does not reach.
#[derive(Debug, Default)]
pub struct Silence {
    since: Option<std::time::Instant>,
}

impl Silence {
    /// A watch's request gave up: whether the wait should end now.
    pub fn gave_up(&mut self) -> bool {
        self.since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            >= BUDGET
    }

    /// A watch delivered something: the server answers.
    pub fn answered(&mut self) {
        self.since = None;
    }
}

/// The error of a request berth gave up on after retrying it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the API server did not answer (tried {tries} times over {}): {cause}",
    crate::duration::display(*elapsed)
)]
pub struct GaveUp {
    tries: u32,
    elapsed: Duration,
    /// The last try's error and its causes, e.g. `client error (Connect):
    /// tcp connect error: Connection refused (os error 111)`.
    cause: String,
}

/// `error` and its causes, joined by `: `.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}

/// The server's `Retry-After` in seconds, if it sent one.
fn retry_after<Res>(response: &Response<Res>) -> Option<Duration> {
    let seconds = response.headers().get(http::header::RETRY_AFTER)?;
    seconds.to_str().ok()?.parse().ok().map(Duration::from_secs)
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for Retry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let (failure, wanted) = match result {
            Ok(response) if of_status(response.status()) == Failure::Final => {
                self.answered();
                return None;
            }
            Ok(response) => (of_status(response.status()), retry_after(response)),
            Err(error) => (of_error(error.as_ref()), None),
        };
        let retry = match failure {
            Failure::NotDone => true,
            Failure::MaybeDone => repeatable(request.method()),
            Failure::Final => false,
        };
        if !retry {
            return None;
        }
        match self.next_delay(wanted) {
            Some(delay) => {
                let why = match result {
                    Ok(response) => response.status().to_string(),
                    Err(error) => causes(error.as_ref()),
                };
                tracing::debug!(
                    "retrying {} {} in {delay:?} (try {}): {why}",
                    request.method(),
                    request.uri().path(),
                    self.attempts + 1
                );
                Some(tokio::time::sleep(delay))
            }
            None => {
                if let Err(error) = result {
                    *error = Box::new(GaveUp {
                        tries: self.attempts + 1,
                        elapsed: self.first_failure.map(|f| f.elapsed()).unwrap_or_default(),
                        cause: causes(error.as_ref()),
                    });
                }
                None
            }
        }
    }

    fn clone_request(&mut self, request: &Request<Body>) -> Option<Request<Body>> {
        let body = request.body().try_clone()?;
        let mut copy = Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone())
            .version(request.version())
            .body(body)
            .ok()?;
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "test")
    }

    #[test]
    fn refused_is_not_done_and_a_reset_after_sending_may_be() {
        assert_eq!(
            of_error(&io(std::io::ErrorKind::ConnectionRefused)),
            Failure::NotDone
        );
        assert_eq!(
            of_error(&io(std::io::ErrorKind::ConnectionReset)),
            Failure::MaybeDone
        );
        assert_eq!(
            of_error(&io(std::io::ErrorKind::InvalidData)),
            Failure::Final
        );
    }

    #[test]
    fn http2_stream_errors_say_whether_the_request_was_processed() {
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert_eq!(of_error(&refused), Failure::NotDone);
        let cancelled = h2::Error::from(h2::Reason::CANCEL);
        assert_eq!(of_error(&cancelled), Failure::MaybeDone);
        let protocol = h2::Error::from(h2::Reason::PROTOCOL_ERROR);
        assert_eq!(of_error(&protocol), Failure::MaybeDone);
    }

    #[test]
    fn only_repeatable_methods_are_retried_when_the_request_may_have_been_done() {
        assert_eq!(of_status(StatusCode::SERVICE_UNAVAILABLE), Failure::NotDone);
        assert_eq!(of_status(StatusCode::BAD_GATEWAY), Failure::MaybeDone);
        assert_eq!(of_status(StatusCode::CONFLICT), Failure::Final);
        assert!(repeatable(&Method::PATCH));
        assert!(!repeatable(&Method::POST));
        assert!(!repeatable(&Method::PUT));
    }

    #[test]
    fn delays_grow_with_jitter_and_stop_at_the_budget() {
        let mut policy = Retry::with_budget(Duration::from_secs(3));
        let delays: Vec<Duration> = std::iter::from_fn(|| policy.next_delay(None))
            .take(10)
            .collect();
        assert!(delays[0] >= FIRST_DELAY / 2 && delays[0] <= FIRST_DELAY);
        assert!(delays.iter().all(|d| *d <= MAX_DELAY));
        // no time passed, so every try fits until one delay exceeds 3 s
        assert!(delays.len() >= 4, "{delays:?}");
        assert_eq!(policy.next_delay(Some(Duration::from_secs(4))), None);
    }

    #[test]
    fn once_a_request_gave_up_the_next_ones_give_up_sooner_until_an_answer() {
        let policy = Retry::with_budget(Duration::from_secs(60));
        let mut first = policy.clone();
        assert!(first.next_delay(Some(Duration::from_secs(30))).is_some());
        assert_eq!(first.next_delay(Some(Duration::from_secs(61))), None);
        // the server stays silent: a later request has AFTER_GIVING_UP
        let mut second = policy.clone();
        assert!(second.next_delay(Some(Duration::from_secs(14))).is_some());
        let mut third = policy.clone();
        assert_eq!(third.next_delay(Some(Duration::from_secs(16))), None);
        // once the server answered, a new failure has the whole budget
        policy.answered();
        let mut fourth = policy.clone();
        assert!(fourth.next_delay(Some(Duration::from_secs(30))).is_some());
    }
}
