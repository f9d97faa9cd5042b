//! The release record: built when the deploy starts, finished with how it
//! ended, and the history pruned to what berth.yaml keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Client;

use super::Request;
use super::plan::Plan;
use crate::cluster::release::{self, FailureRecord, ImageRecord, Manifest, Release, ReleaseStatus};
use crate::error::{BerthError, Outcome, kind_of};
use crate::identity::Deployer;
use crate::output::Output;

/// The newest successful release in `history` (newest first): the one a
/// deploy replaces, and the one `--rollback-on-failure` goes back to.
pub fn previous(history: &[Release]) -> Option<&Release> {
    history
        .iter()
        .find(|r| r.status == ReleaseStatus::Succeeded)
}

/// The record of a deploy of `plan` starting at `now`, in progress:
/// numbered after the newest in `history` (newest first).
pub fn start(
    plan: &Plan,
    request: &Request,
    history: &[Release],
    deployer: Deployer,
    now: Timestamp,
) -> anyhow::Result<Release> {
    let previous = previous(history);
    Ok(Release {
        number: history.first().map_or(1, |r| r.number + 1),
        app: plan.config.app.clone(),
        environment: plan.env_name.clone(),
        sha: plan.sha.clone(),
        images: plan
            .pinned
            .iter()
            .map(|p| ImageRecord {
                object: p.object.clone(),
                container: p.container.clone(),
                image: p.to.clone(),
            })
            .collect(),
        status: ReleaseStatus::InProgress,
        started_at: now.to_string(),
        finished_at: None,
        duration_s: None,
        timings: BTreeMap::new(),
        deployer,
        migration: None,
        assets: None,
        previous: previous.map(|p| p.number),
        previous_sha: previous.map(|p| p.sha.clone()),
        failure: None,
        manifest: Manifest::of(plan.objects.iter().map(|o| &o.object))?,
        manifest_omitted: false,
        hook_manifest: Manifest::of(plan.hooks.iter().map(|h| &h.resolved.object))?,
        hooks: Vec::new(),
        rollback_of: None,
        rolled_back_to: request.rolled_back_to(),
        promoted_from: request.promoted_from.clone(),
        backup: None,
        no_backup: plan.backup == super::pre_migrate::BeforeMigration::Skipped,
        schema: None,
        step: Some("start".into()),
        applied: false,
        holder: None,
        abandoned: None,
        adopted_helm_releases: Vec::new(),
        chart: plan.chart.clone(),
    })
}

/// Record that the deploy reached `step` (`pre-deploy`, `apply`, `wait`...):
/// one write of the record per step, so a deploy that dies is found at the
/// step it had reached. A failed write is only a warning: the deploy goes
/// on, and the next write carries the step.
pub async fn reach(
    client: &Client,
    namespace: &str,
    record: &mut Release,
    step: &str,
    out: &Output,
) {
    if record.step.as_deref() == Some(step) {
        return;
    }
    record.step = Some(step.to_string());
    if let Err(e) = release::update(client, namespace, record).await {
        out.warn(&format!(
            "recording that release {} reached step {step} failed (the deploy goes on): {e:#}",
            record.number
        ));
    }
}

/// Finish `record` with how the deploy ended (`result`), `took` after it
/// started, at `now`. A lost lock is recorded as the failure, naming the
/// new holder.
pub fn finish(record: &mut Release, result: &anyhow::Result<()>, took: Duration, now: Timestamp) {
    record.finished_at = Some(now.to_string());
    record.duration_s = Some(took.as_secs_f64());
    record.status = status(Outcome::of_result(result));
    if let Some(BerthError::LockLost { holder, .. }) = result.as_ref().err().and_then(kind_of) {
        record.failure = Some(FailureRecord {
            workload: "lock".into(),
            pod: None,
            reason: "LockLost".into(),
            message: format!("lost the deploy lock to {holder}"),
        });
    }
}

/// How a release that ended with `outcome` is recorded.
pub fn status(outcome: Outcome) -> ReleaseStatus {
    match outcome {
        Outcome::Succeeded | Outcome::Planned => ReleaseStatus::Succeeded,
        Outcome::TimedOut => ReleaseStatus::TimedOut,
        Outcome::Interrupted => ReleaseStatus::Interrupted,
        Outcome::Failed
        | Outcome::Locked
        | Outcome::LockLost
        | Outcome::Refused
        | Outcome::Exited => ReleaseStatus::Failed,
    }
}

/// Keep the newest `kept` releases: `record`, the automatic `rollback` that
/// followed it if any, and `history` (newest first, as read before the
/// deploy, so nothing is read again).
pub async fn prune(
    client: &Client,
    namespace: &str,
    record: Release,
    rollback: Option<Release>,
    history: Vec<Release>,
    kept: usize,
) -> anyhow::Result<()> {
    let all: Vec<Release> = rollback
        .into_iter()
        .chain([record])
        .chain(history)
        .collect();
    release::prune(client, namespace, &all, kept)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    use serde_json::json;

    use super::*;
    use crate::cluster::apply::Resolved;
    use crate::cluster::release::{PromotedFrom, example};
    use crate::config::Config;
    use crate::error::exit_code_number;
    use crate::pipeline::Source;
    use crate::render::PinnedImage;

    use ReleaseStatus::{Failed, Succeeded};

    /// A plan of the example app's staging: one Deployment, one image pinned.
    fn plan() -> Plan {
        let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.yaml"))
            .expect("the example berth.yaml loads");
        let env = config.environment("staging").unwrap().clone();
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "frontend", "namespace": "workbench-staging"},
        }))
        .unwrap();
        Plan {
            config,
            env_name: "staging".into(),
            env,
            sha: "1a2b3c4".into(),
            objects: vec![Resolved {
                object,
                resource: ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
                namespaced: true,
                with_crd: None,
            }],
            pinned: vec![PinnedImage {
                object: "Deployment/frontend".into(),
                container: "frontend".into(),
                from: "registry.example.com/workbench/frontend:latest".into(),
                to: "registry.example.com/workbench/frontend:1a2b3c4".into(),
            }],
            migration: None,
            migration_origin: None,
            assets: None,
            assets_unavailable: None,
            backup: crate::pipeline::pre_migrate::BeforeMigration::NoMigration,
            schema: None,
            inspected: None,
            chart: None,
            hooks: Vec::new(),
        }
    }

    fn deployer() -> Deployer {
        Deployer {
            user: "ada".into(),
            host: "box".into(),
            ci_run_url: None,
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_release_is_numbered_after_the_newest_and_replaces_the_last_success() {
        let history = [
            example(3, "ddddddd", Failed),
            example(2, "ccccccc", Succeeded),
            example(1, "bbbbbbb", Succeeded),
        ];
        let now = at("2026-12-06T10:00:00Z");
        let record = start(&plan(), &Request::overlay(), &history, deployer(), now).unwrap();
        assert_eq!(record.number, 4);
        assert_eq!(
            (record.app.as_str(), record.environment.as_str()),
            ("workbench", "staging")
        );
        assert_eq!(record.sha, "1a2b3c4");
        assert_eq!(record.status, ReleaseStatus::InProgress);
        assert_eq!(record.step.as_deref(), Some("start"));
        assert_eq!(record.started_at, "2026-12-06T10:00:00Z");
        assert_eq!((record.finished_at, record.duration_s), (None, None));
        assert_eq!(record.previous, Some(2));
        assert_eq!(record.previous_sha.as_deref(), Some("ccccccc"));
        assert_eq!(record.deployer, deployer());
        let images: Vec<(&str, &str, &str)> = record
            .images
            .iter()
            .map(|i| (i.object.as_str(), i.container.as_str(), i.image.as_str()))
            .collect();
        assert_eq!(
            images,
            [(
                "Deployment/frontend",
                "frontend",
                "registry.example.com/workbench/frontend:1a2b3c4"
            )]
        );
        let recorded = record.manifest.objects().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].metadata.name.as_deref(), Some("frontend"));
        assert!(!record.manifest_omitted);
        assert_eq!(
            (
                record.rollback_of,
                record.rolled_back_to,
                record.promoted_from
            ),
            (None, None, None)
        );
    }

    #[test]
    fn the_first_release_is_1_and_replaces_nothing() {
        let record = start(
            &plan(),
            &Request::overlay(),
            &[],
            deployer(),
            Timestamp::now(),
        )
        .unwrap();
        assert_eq!(
            (record.number, record.previous, record.previous_sha),
            (1, None, None)
        );
    }

    #[test]
    fn a_rollback_and_a_promotion_say_where_they_come_from() {
        let history = [
            example(5, "eeeeeee", Succeeded),
            example(4, "ddddddd", Succeeded),
        ];
        let rollback = Request {
            source: Source::Release(Box::new(history[1].clone())),
            promoted_from: None,
            schema: None,
            planned: None,
        };
        let record = start(&plan(), &rollback, &history, deployer(), Timestamp::now()).unwrap();
        assert_eq!((record.number, record.rolled_back_to), (6, Some(4)));
        assert_eq!(record.previous, Some(5));

        let from = PromotedFrom {
            environment: "staging".into(),
            release: 7,
        };
        let promotion = Request {
            source: Source::Overlay(None),
            promoted_from: Some(from.clone()),
            schema: None,
            planned: None,
        };
        let record = start(&plan(), &promotion, &history, deployer(), Timestamp::now()).unwrap();
        assert_eq!(record.promoted_from, Some(from));
        assert_eq!(record.rolled_back_to, None);
    }

    #[test]
    fn each_error_kind_ends_as_its_outcome_exit_code_and_release_status() {
        let lock_lost = BerthError::LockLost {
            namespace: "workbench-staging".into(),
            holder: "bob@ci (pid 9)".into(),
            since: None,
        };
        let cases: Vec<(anyhow::Result<()>, Outcome, u8, ReleaseStatus)> = vec![
            (Ok(()), Outcome::Succeeded, 0, Succeeded),
            (
                Err(BerthError::DeployFailed("doomed".into()).into()),
                Outcome::Failed,
                1,
                Failed,
            ),
            (
                Err(BerthError::TimedOut("10m".into()).into()),
                Outcome::TimedOut,
                4,
                ReleaseStatus::TimedOut,
            ),
            (
                Err(BerthError::Interrupted.into()),
                Outcome::Interrupted,
                130,
                ReleaseStatus::Interrupted,
            ),
            (Err(lock_lost.into()), Outcome::LockLost, 3, Failed),
            (
                Err(BerthError::Locked("held".into()).into()),
                Outcome::Locked,
                3,
                Failed,
            ),
            (
                Err(BerthError::Refused("no".into()).into()),
                Outcome::Refused,
                5,
                Failed,
            ),
            (
                Err(BerthError::Input("bad".into()).into()),
                Outcome::Refused,
                2,
                Failed,
            ),
            (
                Err(anyhow::anyhow!("connection reset")),
                Outcome::Failed,
                1,
                Failed,
            ),
        ];
        for (result, outcome, code, status) in cases {
            let shown = format!("{result:?}");
            assert_eq!(Outcome::of_result(&result), outcome, "{shown}");
            assert_eq!(
                result.as_ref().map_or_else(exit_code_number, |()| 0),
                code,
                "{shown}"
            );
            let mut record = example(4, "ddddddd", ReleaseStatus::InProgress);
            let now = at("2026-12-06T10:01:30Z");
            finish(&mut record, &result, Duration::from_secs(90), now);
            assert_eq!(record.status, status, "{shown}");
            assert_eq!(record.finished_at.as_deref(), Some("2026-12-06T10:01:30Z"));
            assert_eq!(record.duration_s, Some(90.0));
        }
    }

    #[test]
    fn a_lost_lock_is_recorded_as_the_failure_naming_the_new_holder() {
        let mut record = example(4, "ddddddd", ReleaseStatus::InProgress);
        let lost: anyhow::Error = BerthError::LockLost {
            namespace: "workbench-staging".into(),
            holder: "bob@ci (pid 9)".into(),
            since: Some("2026-12-07 08:40:12 (20s ago)".into()),
        }
        .into();
        finish(
            &mut record,
            &Err(lost.context("applying")),
            Duration::ZERO,
            Timestamp::now(),
        );
        let failure = record.failure.expect("a failure is recorded");
        assert_eq!(
            (failure.workload.as_str(), failure.reason.as_str()),
            ("lock", "LockLost")
        );
        assert_eq!(failure.message, "lost the deploy lock to bob@ci (pid 9)");
        assert_eq!(record.status, Failed);
    }

    #[test]
    fn a_failure_the_steps_recorded_is_kept() {
        let mut record = example(4, "ddddddd", ReleaseStatus::InProgress);
        record.failure = Some(FailureRecord {
            workload: "Deployment/frontend".into(),
            pod: Some("frontend-1".into()),
            reason: "ImagePullBackOff".into(),
            message: "cannot pull".into(),
        });
        let doomed = Err(BerthError::DeployFailed("doomed".into()).into());
        finish(&mut record, &doomed, Duration::ZERO, Timestamp::now());
        assert_eq!(record.failure.unwrap().reason, "ImagePullBackOff");
    }
}
