//! An HTTP load client for zero-downtime checks: GET requests to an app's
//! `/version` from this machine, each over a new TCP connection (so each is
//! routed afresh, e.g. through kube-proxy's DNAT of a Service's ClusterIP),
//! while a deploy runs. Bounded in time and in count; it reports what was
//! sent, what failed (the first few errors), the versions that answered and
//! the longest gap between successful responses.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// How many errors a [`Report`] keeps word for word.
const KEPT_ERRORS: usize = 5;

/// How hard and how long to send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in flight at once (one connection each).
    pub concurrency: usize,
    /// The pause each sender keeps between the starts of its requests.
    pub interval: Duration,
    /// No request starts after this long.
    pub duration: Duration,
    /// No more requests than this in all.
    pub requests: u64,
    /// A request that takes longer has failed.
    pub timeout: Duration,
}

impl Default for Limits {
    /// 2 senders, one request every 20 ms each, for at most 5 minutes and
    /// 20 000 requests; 5 s per request.
    fn default() -> Self {
        Limits {
            concurrency: 2,
            interval: Duration::from_millis(20),
            duration: Duration::from_secs(300),
            requests: 20_000,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests sent.
    pub sent: u64,
    /// Requests that got no `200` with a version: refused, reset, timed out,
    /// another status, another body.
    pub failed: u64,
    /// The first few failures, as they happened.
    pub errors: Vec<String>,
    /// Each version that answered and how often, in the order first seen.
    pub versions: Vec<(String, u64)>,
    /// The longest time between two successful responses.
    pub longest_gap: Duration,
    /// When the last successful response came.
    last_success: Option<Instant>,
}

impl Report {
    /// Whether `version` answered at least once.
    pub fn saw(&self, version: &str) -> bool {
        self.versions.iter().any(|(v, _)| v == version)
    }

    fn success(&mut self, version: String) {
        let now = Instant::now();
        if let Some(last) = self.last_success {
            self.longest_gap = self.longest_gap.max(now - last);
        }
        self.last_success = Some(now);
        match self.versions.iter_mut().find(|(v, _)| *v == version) {
            Some((_, n)) => *n += 1,
            None => self.versions.push((version, 1)),
        }
    }

    fn failure(&mut self, error: String) {
        self.failed += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(error);
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(v, n)| format!("{v} ×{n}"))
            .collect();
        write!(
            f,
            "{} sent, {} failed, longest gap between successes {} ms; versions: {}",
            self.sent,
            self.failed,
            self.longest_gap.as_millis(),
            versions.join(", ")
        )?;
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// Load being sent; [`Load::stop`] ends it and gives the report.
pub struct Load {
    report: Arc<Mutex<Report>>,
    stop: CancellationToken,
    senders: JoinSet<()>,
}

impl Load {
    /// Start sending `GET url` within `limits`. The answer must be `200`
    /// with a JSON body `{"version": "..."}`.
    pub fn start(url: &str, limits: Limits) -> Load {
        let client = reqwest::Client::builder()
            .no_proxy()
            // no idle connection is kept, so every request opens its own
            .pool_max_idle_per_host(0)
            .timeout(limits.timeout)
            .build()
            .expect("an HTTP client");
        let report = Arc::new(Mutex::new(Report::default()));
        let stop = CancellationToken::new();
        let started = Instant::now();
        let mut senders = JoinSet::new();
        for _ in 0..limits.concurrency {
            let (client, url, report, stop) =
                (client.clone(), url.to_owned(), report.clone(), stop.clone());
            senders.spawn(async move {
                let mut tick = tokio::time::interval(limits.interval);
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    if started.elapsed() >= limits.duration {
                        return;
                    }
                    {
                        let mut report = report.lock().unwrap();
                        if report.sent >= limits.requests {
                            return;
                        }
                        report.sent += 1;
                    }
                    let answer = version(&client, &url).await;
                    let mut report = report.lock().unwrap();
                    match answer {
                        Ok(version) => report.success(version),
                        Err(error) => report.failure(error),
                    }
                }
            });
        }
        Load {
            report,
            stop,
            senders,
        }
    }

    /// What was seen so far.
    pub fn report(&self) -> Report {
        self.report.lock().unwrap().clone()
    }

    /// Stop sending, let the requests in flight finish, and report.
    pub async fn stop(mut self) -> Report {
        self.stop.cancel();
        while let Some(joined) = self.senders.join_next().await {
            joined.expect("a load sender panicked");
        }
        self.report()
    }
}

/// One `GET url` on a connection of its own, as [`Load`] sends them.
pub async fn once(url: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Limits::default().timeout)
        .build()
        .expect("an HTTP client");
    version(&client, url).await
}

/// One `GET url`: the version it answered, or what went wrong.
async fn version(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client
        .get(url)
        .header(reqwest::header::CONNECTION, "close")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {}", chain(&e)))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: {status}: {}", body.trim()));
    }
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("GET {url}: no version in {:?}", body.trim()))
}

/// An error with its causes, e.g. "error sending request: connection refused".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
