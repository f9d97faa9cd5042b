//! What GitHub says of a branch's commits: the newest first, and whether
//! each one's required checks passed. Read through octocrab, with a token
//! from `GITHUB_TOKEN` or `GH_TOKEN` and the API at `GITHUB_API_URL` (as
//! GitHub Actions sets it, so GitHub Enterprise works).
//!
//! Every request is tried again when it fails in a way that may pass
//! ([`retry`]): a rate limit (a 429 or 403 carrying `Retry-After`, or
//! `x-ratelimit-remaining: 0` with `x-ratelimit-reset`) is waited out, up
//! to [`retry::MAX_RATE_LIMIT_WAIT`], and berth says so; a 5xx or a lost
//! connection is tried again after [`crate::net::backoff`]'s waits.

mod checks;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use octocrab::Octocrab;
use octocrab::models::CombinedStatus;
use octocrab::models::repos::RepoCommit;
use octocrab::params::repos::Commitish;
use octocrab::service::middleware::retry::RetryConfig;

pub use checks::{Check, CheckState, judge};

use crate::config::GitHub;
use crate::error::{input_error, root_cause};
use crate::output::Output;

/// The public API, when `GITHUB_API_URL` is not set.
const DEFAULT_API: &str = "https://api.github.com";
/// GitHub's largest page.
const PER_PAGE: u8 = 100;

/// One commit of the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The full SHA.
    pub sha: String,
    /// The first line of its message.
    pub title: String,
}

impl Commit {
    /// The SHA as berth shows it to people ([`crate::config::short_sha`]).
    pub fn short(&self) -> &str {
        crate::config::short_sha(&self.sha)
    }
}

/// A GitHub repository, read with the environment's token.
pub struct Repository {
    octocrab: Octocrab,
    owner: String,
    name: String,
    /// `owner/name`, for messages.
    full_name: String,
    /// The API's address, for messages.
    api: String,
    /// Where rate-limit waits and retries are said.
    out: Arc<Output>,
}

impl Repository {
    /// Connect to `github.repo` with the token and API address from the
    /// environment. Rate-limit waits are reported through `out`.
    pub fn from_env(github: &GitHub, out: Arc<Output>) -> anyhow::Result<Repository> {
        let api = std::env::var("GITHUB_API_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_API.to_string());
        let token = ["GITHUB_TOKEN", "GH_TOKEN"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
        let mut builder = Octocrab::builder()
            .base_uri(api.as_str())
            .map_err(|e| {
                input_error(format!(
                    "GITHUB_API_URL {api:?} is not a URL ({e}); set it to the API's address, \
                     e.g. https://api.github.com or https://github.example.com/api/v3"
                ))
            })?
            // berth retries itself ([`Repository::retried`]): octocrab's
            // policy retries 5xx at once and waits out any rate limit, however long.
            .add_retry_config(RetryConfig::None);
        match token {
            Some(token) => builder = builder.personal_token(token.trim().to_string()),
            None => out.warn(
                "neither GITHUB_TOKEN nor GH_TOKEN is set: GitHub allows 60 unauthenticated \
                 requests an hour, and none to private repositories",
            ),
        }
        let octocrab = builder
            .build_with_reqwest(http_client()?)
            .context("setting up the GitHub client")?;
        let (owner, name) = github
            .repo
            .split_once('/')
            .context("github.repo is owner/name")?;
        Ok(Repository {
            octocrab,
            owner: owner.to_string(),
            name: name.to_string(),
            full_name: github.repo.clone(),
            api,
            out,
        })
    }

    /// The newest `depth` commits of `branch`, newest first, following the
    /// `Link` header's next pages.
    pub async fn commits(&self, branch: &str, depth: usize) -> anyhow::Result<Vec<Commit>> {
        let per_page = u8::try_from(depth.min(PER_PAGE.into())).unwrap_or(PER_PAGE);
        let doing = format!("listing the commits of branch {branch}");
        let first = self
            .retried(&doing, || async move {
                self.octocrab
                    .repos(&self.owner, &self.name)
                    .list_commits()
                    .branch(branch)
                    .per_page(per_page)
                    .send()
                    .await
            })
            .await?;
        let mut commits: Vec<Commit> = Vec::new();
        let mut page = Some(first);
        while let Some(mut current) = page {
            commits.extend(current.take_items().into_iter().map(commit));
            if commits.len() >= depth {
                break;
            }
            page = self
                .retried(&doing, || {
                    self.octocrab.get_page::<RepoCommit>(&current.next)
                })
                .await?;
        }
        commits.truncate(depth);
        Ok(commits)
    }

    /// The full SHA of the commit `reference` names (a SHA prefix of at
    /// least 7 hex characters, a branch or a tag), or `None` when GitHub
    /// has no such commit (or the prefix is ambiguous: GitHub answers 422
    /// for both).
    pub async fn commit_sha(&self, reference: &str) -> anyhow::Result<Option<String>> {
        /// The one field read of GitHub's commit object.
        #[derive(serde::Deserialize)]
        struct Sha {
            sha: String,
        }
        let route = format!("/repos/{}/{}/commits/{reference}", self.owner, self.name);
        let route = &route;
        let found = self
            .retried(&format!("reading commit {reference}"), || async move {
                match self.octocrab.get::<Sha, _, ()>(route, None).await {
                    Err(octocrab::Error::GitHub { source, .. })
                        if source.status_code.as_u16() == 422 =>
                    {
                        Ok(None)
                    }
                    answer => answer.map(Some),
                }
            })
            .await?;
        Ok(found.map(|commit| commit.sha))
    }

    /// Every check run and commit status reported on `sha`, all pages.
    pub async fn checks(&self, sha: &str) -> anyhow::Result<Vec<Check>> {
        let (runs, statuses) = tokio::join!(self.check_runs(sha), self.statuses(sha));
        let mut checks = runs?;
        checks.extend(statuses?);
        Ok(checks)
    }

    async fn check_runs(&self, sha: &str) -> anyhow::Result<Vec<Check>> {
        all_pages(|page| async move {
            let answer = self
                .retried(&format!("reading the check runs of {sha}"), || async move {
                    self.octocrab
                        .checks(&self.owner, &self.name)
                        .list_check_runs_for_git_ref(Commitish(sha.to_string()))
                        .per_page(PER_PAGE)
                        .page(page)
                        .send()
                        .await
                })
                .await?;
            let checks = answer.check_runs.iter().map(Check::from_run).collect();
            Ok((checks, answer.total_count))
        })
        .await
    }

    async fn statuses(&self, sha: &str) -> anyhow::Result<Vec<Check>> {
        let route = format!("/repos/{}/{}/commits/{sha}/status", self.owner, self.name);
        let route = &route;
        all_pages(|page| async move {
            let answer: CombinedStatus = self
                .retried(
                    &format!("reading the commit statuses of {sha}"),
                    || async move {
                        self.octocrab
                            .get(
                                route,
                                Some(&[("per_page", u32::from(PER_PAGE)), ("page", page)]),
                            )
                            .await
                    },
                )
                .await?;
            let checks = answer.statuses.iter().map(Check::from_status).collect();
            Ok((checks, u64::try_from(answer.total_count).unwrap_or(0)))
        })
        .await
    }

    /// Run `request` (`doing` something, for messages) until it succeeds,
    /// fails in a way another try would repeat, or its tries run out: a rate
    /// limit is waited out as GitHub asks (at most
    /// [`retry::MAX_RATE_LIMIT_WAIT`], [`retry::RATE_LIMIT_RETRIES`] times), a
    /// 5xx or a lost connection tried again after [`crate::net::backoff`]'s
    /// waits.
    async fn retried<T, F, Fut>(&self, doing: &str, mut request: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = octocrab::Result<T>>,
    {
        use backon::BackoffBuilder;
        let mut waits = crate::net::backoff::waits().build();
        let mut rate_limits_left = retry::RATE_LIMIT_RETRIES;
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match request().await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let status = match &error {
                octocrab::Error::GitHub { source, .. } => source.status_code.to_string(),
                other => root_cause(other),
            };
            let wait = match retry::next(&error) {
                retry::Next::RateLimited(wait) if wait > retry::MAX_RATE_LIMIT_WAIT => {
                    return Err(anyhow::anyhow!(
                        "GitHub at {} rate-limits the token ({status}) for {} more minutes, \
                         longer than berth waits ({} minutes), while {doing} of {}; nothing was \
                         changed: run the command again once the limit lifts, or with a token \
                         whose limit is not spent",
                        self.api,
                        wait.as_secs().div_ceil(60),
                        retry::MAX_RATE_LIMIT_WAIT.as_secs() / 60,
                        self.full_name
                    ));
                }
                retry::Next::RateLimited(wait) if rate_limits_left > 0 => {
                    rate_limits_left -= 1;
                    self.out.warn(&format!(
                        "GitHub rate limit reached ({status}); waiting {} before retrying \
                         ({rate_limits_left} retries left)",
                        crate::duration::display(wait)
                    ));
                    wait
                }
                // A 403 here is the limit, not missing permissions: say so.
                retry::Next::RateLimited(_) => {
                    return Err(anyhow::anyhow!(
                        "GitHub at {} still rate-limits the token ({status}) after {} waits, \
                         while {doing} of {}; nothing was changed: run the command again later, \
                         or with a token whose limit is not spent",
                        self.api,
                        retry::RATE_LIMIT_RETRIES,
                        self.full_name
                    ));
                }
                retry::Next::Transient => match waits.next() {
                    Some(wait) => {
                        self.out.warn(&format!(
                            "GitHub at {} failed while {doing} ({status}); trying again in {}",
                            self.api,
                            crate::duration::display(wait)
                        ));
                        wait
                    }
                    None => return Err(self.error(error, doing, tries)),
                },
                _ => return Err(self.error(error, doing, tries)),
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// An octocrab error as what it means for the user, naming the fix;
    /// `tries` is how many times the request was made.
    fn error(&self, error: octocrab::Error, doing: &str, tries: usize) -> anyhow::Error {
        let Repository { full_name, api, .. } = self;
        match &error {
            octocrab::Error::GitHub { source, .. } => {
                let message = &source.message;
                match source.status_code.as_u16() {
                    401 => input_error(format!(
                        "GitHub at {api} refused the token ({message}); set GITHUB_TOKEN (or \
                         GH_TOKEN) to a valid token that may read {full_name}"
                    )),
                    403 => input_error(format!(
                        "GitHub at {api} forbade {doing} of {full_name} ({message}); give the \
                         token read access to contents, checks and statuses (in a workflow: \
                         `permissions: {{contents: read, checks: read, statuses: read}}`)"
                    )),
                    404 | 422 => input_error(format!(
                        "GitHub at {api} found nothing {doing} of {full_name} ({message}); check \
                         `github.repo` and `github.branch` in berth.yaml, and that the token \
                         may see the repository"
                    )),
                    status @ (429 | 500..) => anyhow::anyhow!(
                        "GitHub at {api} kept failing while {doing} of {full_name} ({status}: \
                         {message}; {tries} tries); nothing was changed: run the command again \
                         once GitHub answers"
                    ),
                    _ => anyhow::Error::new(error).context(format!("{doing} of {full_name}")),
                }
            }
            octocrab::Error::Hyper { .. }
            | octocrab::Error::Reqwest { .. }
            | octocrab::Error::Service { .. } => input_error(format!(
                "cannot reach GitHub at {api} while {doing} ({}; {tries} tries); check \
                 GITHUB_API_URL and the network",
                root_cause(&error)
            )),
            _ => anyhow::Error::new(error).context(format!("{doing} of {full_name}")),
        }
    }
}

/// The HTTP client under octocrab: names resolved by berth's resolver, the
/// bundled and system TLS roots ([`crate::net`]), and timeouts.
fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(crate::net::resolver::Rust)
        .tls_certs_only(crate::net::tls::reqwest_roots())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .build()
        .context("setting up the GitHub client")
}

/// Every item of a list GitHub pages by number: `fetch(page)` gives a
/// page's items and the total; stop at a short page or at the total.
async fn all_pages<F, Fut>(mut fetch: F) -> anyhow::Result<Vec<Check>>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Vec<Check>, u64)>>,
{
    let mut checks = Vec::new();
    for page in 1u32.. {
        let (batch, total) = fetch(page).await?;
        let fetched = batch.len();
        checks.extend(batch);
        if fetched < usize::from(PER_PAGE) || checks.len() as u64 >= total {
            break;
        }
    }
    Ok(checks)
}

/// The first line of a commit message and its SHA.
fn commit(repo_commit: RepoCommit) -> Commit {
    let title = repo_commit
        .commit
        .message
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Commit {
        sha: repo_commit.sha,
        title,
    }
}
