//! What a dead deploy left, settled by the next one before anything else.
//!
//! A deploy that holds the lock knows every other `in_progress` release is
//! a dead deploy's (SIGKILL, a lost machine: its hold expired or was free):
//! it records them `abandoned`, with when, by whom and at which step they
//! were found. Then the Jobs of abandoned releases: a finished one (Complete
//! or Failed) is deleted with its pods; one still running is reported and
//! left, and a deploy that would run its own migration waits for it within
//! `--lock-wait`, else refuses (exit 3, as for a held lock: the environment
//! is busy, and trying again later succeeds): never two migrations at once.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use tokio::time::Instant;

use crate::cluster::release::{self, AbandonedRecord, Release, ReleaseStatus};
use crate::error::BerthError;
use crate::migrate;
use crate::output::Output;

/// How often a deploy looks again at a running Job it waits for.
const POLL: Duration = Duration::from_secs(1);

/// A Job of an abandoned release, still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The Job's name.
    pub job: String,
    /// The abandoned release it belongs to.
    pub release: u64,
}

/// Record as abandoned, found by `identity` (this deploy's lock identity),
/// every release in `history` still in progress under another holder; then
/// delete the finished Jobs of abandoned releases of `instance`, and return
/// those still running (reported on `out`). A record that cannot be
/// written is only a warning: the deploy goes on.
pub async fn settle(
    client: &Client,
    ns: &str,
    instance: &str,
    history: &mut [Release],
    identity: &str,
    out: &Output,
) -> anyhow::Result<Vec<Running>> {
    let now = Timestamp::now();
    for r in history.iter_mut() {
        // Under our lock, any other in-progress release is a dead deploy's.
        if r.status != ReleaseStatus::InProgress || r.holder.as_deref() == Some(identity) {
            continue;
        }
        abandon(r, identity, now);
        let step = r.step.clone().unwrap_or_else(|| "unknown".into());
        let by = r
            .holder
            .clone()
            .unwrap_or_else(|| "an earlier berth".into());
        let what = format!(
            "release {} ({})",
            r.number,
            crate::config::short_sha(&r.sha)
        );
        match release::update(client, ns, r).await {
            Ok(stood) if stood.status == ReleaseStatus::Abandoned => out.info(&format!(
                "{what} was left in progress at step {step} by {by}, whose lock expired: recorded {}",
                stood.shown_status()
            )),
            // Its deploy wrote how it ended first: that record stands.
            Ok(stood) => {
                out.info(&format!(
                    "{what}, left in progress by {by}, ended {} before it was recorded abandoned",
                    stood.status.as_str()
                ));
                *r = stood;
            }
            Err(e) => out.warn(&format!(
                "{what} was left in progress at step {step} by {by}, but recording it abandoned failed: {e:#}"
            )),
        }
    }
    let abandoned: Vec<u64> = history
        .iter()
        .filter(|r| r.status == ReleaseStatus::Abandoned)
        .map(|r| r.number)
        .collect();
    if abandoned.is_empty() {
        return Ok(Vec::new());
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut running = Vec::new();
    for job in jobs_of(&jobs, instance, &abandoned).await? {
        let (name, number) = (job.name_any(), release_of(&job).unwrap_or_default());
        match finished(&job) {
            Some(how) => {
                delete(&jobs, &name).await?;
                out.info(&format!(
                    "deleted Job {name} of abandoned release {number} ({how}) with its pods"
                ));
            }
            None => {
                out.warn(&format!(
                    "Job {name} of abandoned release {number} is still running; it is left: \
                     `kubectl -n {ns} logs job/{name}` shows it, `kubectl -n {ns} delete job {name}` stops it"
                ));
                running.push(Running {
                    job: name,
                    release: number,
                });
            }
        }
    }
    Ok(running)
}

/// Mark `r` abandoned, found by `identity` at `now`.
fn abandon(r: &mut Release, identity: &str, now: Timestamp) {
    r.status = ReleaseStatus::Abandoned;
    r.finished_at = Some(now.to_string());
    r.abandoned = Some(AbandonedRecord {
        found_at: now.to_string(),
        found_by: identity.to_string(),
        step: r.step.clone(),
    });
}

/// Wait until none of `running` runs any more, then delete them; refuse
/// (exit 3) if one still runs at `deadline` (`None`: no `--lock-wait`, no
/// waiting).
pub async fn wait_for(
    client: &Client,
    ns: &str,
    running: Vec<Running>,
    deadline: Option<Instant>,
    out: &Output,
) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut left = running;
    if let Some(first) = left.first().filter(|_| deadline.is_some()) {
        out.info(&format!(
            "waiting for Job {} of abandoned release {} to finish before migrating",
            first.job, first.release
        ));
    }
    loop {
        let mut still = Vec::new();
        for r in left {
            match jobs.get_opt(&r.job).await? {
                None => {}
                Some(job) if finished(&job).is_some() => {
                    delete(&jobs, &r.job).await?;
                    out.info(&format!(
                        "Job {} of abandoned release {} finished; deleted",
                        r.job, r.release
                    ));
                }
                Some(_) => still.push(r),
            }
        }
        let Some(first) = still.first() else {
            return Ok(());
        };
        if deadline.is_none_or(|d| Instant::now() >= d) {
            let waited = if deadline.is_some() {
                "it still ran when --lock-wait ran out"
            } else {
                "wait for it (--lock-wait 10m), or delete it"
            };
            return Err(BerthError::Locked(format!(
                "Job {} of abandoned release {} is still running in namespace {ns}, and a second \
                 migration never runs beside it; {waited} (`kubectl -n {ns} delete job {}`)",
                first.job, first.release, first.job
            ))
            .into());
        }
        left = still;
        tokio::time::sleep(POLL).await;
    }
}

/// The Jobs of `instance` that belong to the `releases`.
async fn jobs_of(jobs: &Api<Job>, instance: &str, releases: &[u64]) -> anyhow::Result<Vec<Job>> {
    let selector = format!("{}={instance}", migrate::RELEASE_LABEL);
    let listed = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(anyhow::Error::from)
        .map_err(|e| e.context("listing the Jobs of abandoned releases"))?;
    Ok(listed
        .into_iter()
        .filter(|job| release_of(job).is_some_and(|n| releases.contains(&n)))
        .collect())
}

/// The release number a Job of berth's carries.
fn release_of(job: &Job) -> Option<u64> {
    job.labels().get("berth.dev/release")?.parse().ok()
}

/// `Some("complete")` or `Some("failed")` once the Job has finished.
fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some("complete"),
            "Failed" => Some("failed"),
            _ => None,
        })
}

/// Delete Job `name` and, through the garbage collector, its pods.
async fn delete(jobs: &Api<Job>, name: &str) -> anyhow::Result<()> {
    crate::cluster::delete_if_present(jobs, name, &DeleteParams::background())
        .await
        .map(drop)
        .map_err(|e| anyhow::Error::from(e).context(format!("deleting Job {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::release::example;

    #[test]
    fn an_abandoned_release_says_who_found_it_when_and_at_which_step() {
        let mut r = Release {
            step: Some("apply".into()),
            holder: Some("ada@box (pid 7)".into()),
            ..example(4, "ddddddd", ReleaseStatus::InProgress)
        };
        let now: Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        abandon(&mut r, "bob@ci (pid 9)", now);
        assert_eq!(r.status, ReleaseStatus::Abandoned);
        assert_eq!(r.finished_at.as_deref(), Some("2026-12-06T10:00:00Z"));
        assert_eq!(
            r.abandoned,
            Some(AbandonedRecord {
                found_at: "2026-12-06T10:00:00Z".into(),
                found_by: "bob@ci (pid 9)".into(),
                step: Some("apply".into()),
            })
        );
    }

    #[test]
    fn a_job_is_finished_once_complete_or_failed() {
        let job = |conditions: serde_json::Value| -> Job {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "m", "labels": {"berth.dev/release": "4"}},
                "status": {"conditions": conditions}
            }))
            .unwrap()
        };
        let running = job(serde_json::json!([]));
        assert_eq!((finished(&running), release_of(&running)), (None, Some(4)));
        let complete = job(serde_json::json!([{"type": "Complete", "status": "True"}]));
        assert_eq!(finished(&complete), Some("complete"));
        let failed = job(serde_json::json!([{"type": "Failed", "status": "True"}]));
        assert_eq!(finished(&failed), Some("failed"));
        let not_yet = job(serde_json::json!([{"type": "Failed", "status": "False"}]));
        assert_eq!(finished(&not_yet), None);
    }
}
