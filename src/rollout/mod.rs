//! Rollout verdicts: one small module per workload kind answering "done? doomed? why?".
//!
//! Everything here is pure. A verdict is read from plain k8s-openapi objects,
//! as a watch delivers them, and a fixed `now`; watching, waiting and
//! reporting live elsewhere. Each kind checks for stale status first, so an
//! object the controller has not caught up with never looks done or doomed.

pub mod daemonset;
pub mod deployment;
pub mod job;
pub mod pod;
pub mod statefulset;

#[cfg(test)]
pub(crate) mod testing;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::config::RolloutSettings;

/// What a workload's rollout looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still converging; the message says what it waits for, e.g. "2/3 updated, 1/3 available".
    Progressing(String),
    /// Healthy: the controller observed the new generation; updated, ready and available equal desired; no old replicas.
    Succeeded,
    /// Can never become healthy without a new deploy.
    Failed(Failure),
}

/// Why a rollout can never succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The pod that shows the problem, if one does (a progress deadline names none).
    pub pod: Option<String>,
    /// A short machine-readable cause, e.g. `ImagePullBackOff` or `BackoffLimitExceeded`.
    pub reason: String,
    /// One human sentence naming what failed and how.
    pub message: String,
}

/// Settings that shape verdicts.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// How long a pod may stay unschedulable before the rollout counts as failed.
    pub unschedulable_after: Duration,
    /// How long a pod may run but fail its readiness probe before the rollout
    /// counts as failed.
    pub unready_after: Duration,
}

impl From<&RolloutSettings> for Thresholds {
    /// The thresholds an environment's `rollout:` settings set.
    fn from(rollout: &RolloutSettings) -> Thresholds {
        Thresholds {
            unschedulable_after: rollout.unschedulable_after,
            unready_after: rollout.unready_after,
        }
    }
}

/// The verdict tests' thresholds: a pod unschedulable, or running but
/// unready, for a minute fails the rollout. berth itself always takes the
/// environment's `rollout.unschedulable_after` (5 minutes unless set) and
/// `rollout.unready_after` (2 minutes), through `From`.
#[cfg(test)]
impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            unschedulable_after: Duration::from_secs(60),
            unready_after: Duration::from_secs(60),
        }
    }
}

/// A workload berth tracks, and the objects its verdict needs.
#[derive(Debug, Clone)]
pub enum Workload {
    /// A Deployment; its pods are found through its newest ReplicaSet.
    Deployment(Deployment),
    /// A StatefulSet; its pods are those of its update revision.
    StatefulSet(StatefulSet),
    /// A DaemonSet; its pods are those of its current template generation.
    DaemonSet(DaemonSet),
    /// A Job, such as a migration; done when it completes.
    Job(Job),
}

impl Workload {
    /// The Kubernetes kind, e.g. `"Deployment"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Workload::Deployment(_) => "Deployment",
            Workload::StatefulSet(_) => "StatefulSet",
            Workload::DaemonSet(_) => "DaemonSet",
            Workload::Job(_) => "Job",
        }
    }

    /// The object's name (empty if the object has none).
    pub fn name(&self) -> String {
        self.metadata().name.clone().unwrap_or_default()
    }

    /// The verdict on this workload's rollout.
    ///
    /// `replicasets`: all ReplicaSets in the namespace; `pods`: all pods in the
    /// namespace (the function picks its own by owner/labels); `events`: the
    /// namespace's events the pods' verdicts read (readiness probe failures,
    /// see [`pod::doom`]).
    pub fn assess(
        &self,
        replicasets: &[ReplicaSet],
        pods: &[Pod],
        events: &[Event],
        now: Timestamp,
        thresholds: Thresholds,
    ) -> Verdict {
        match self {
            Workload::Deployment(d) => {
                deployment::assess(d, replicasets, pods, events, now, thresholds)
            }
            Workload::StatefulSet(s) => statefulset::assess(s, pods, events, now, thresholds),
            Workload::DaemonSet(d) => daemonset::assess(d, pods, events, now, thresholds),
            Workload::Job(j) => job::assess(j, pods, events, now, thresholds),
        }
    }

    /// "ready/desired" numbers for progress display: (ready, desired)
    ///
    /// Ready counts only pods of the new revision where the status can tell
    /// them apart, so an old, still-ready replica does not show as progress.
    pub fn progress(&self) -> (i32, i32) {
        match self {
            Workload::Deployment(d) => deployment::progress(d),
            Workload::StatefulSet(s) => statefulset::progress(s),
            Workload::DaemonSet(d) => daemonset::progress(d),
            Workload::Job(j) => job::progress(j),
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Workload::Deployment(d) => &d.metadata,
            Workload::StatefulSet(s) => &s.metadata,
            Workload::DaemonSet(d) => &d.metadata,
            Workload::Job(j) => &j.metadata,
        }
    }

    /// The pod template's spec, if the object has one.
    pub fn pod_spec(&self) -> Option<&PodSpec> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref()?.template.spec.as_ref(),
            Workload::StatefulSet(s) => s.spec.as_ref()?.template.spec.as_ref(),
            Workload::DaemonSet(d) => d.spec.as_ref()?.template.spec.as_ref(),
            Workload::Job(j) => j.spec.as_ref()?.template.spec.as_ref(),
        }
    }
}

/// `Progressing` while the controller has not yet observed the object's
/// current generation: until then its status describes an older spec.
fn stale(metadata: &ObjectMeta, observed_generation: Option<i64>) -> Option<Verdict> {
    let generation = metadata.generation.unwrap_or(0);
    (observed_generation.unwrap_or(0) < generation).then(|| {
        Verdict::Progressing(format!(
            "waiting for the controller to observe generation {generation}"
        ))
    })
}

/// Whether `owner` (by uid) is among the owner references of `object`.
fn owned_by(object: &ObjectMeta, owner: &ObjectMeta) -> bool {
    let Some(uid) = owner.uid.as_deref() else {
        return false;
    };
    object
        .owner_references
        .iter()
        .flatten()
        .any(|reference| reference.uid == uid)
}

/// The first of `pods` that can never become healthy, as the rollout's
/// failure; `events` as [`pod::doom`] reads them.
fn first_doomed<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    events: &[Event],
    now: Timestamp,
    thresholds: Thresholds,
) -> Option<Verdict> {
    pods.into_iter()
        .find_map(|p| pod::doom(p, events, now, thresholds))
        .map(Verdict::Failed)
}

/// The value of a label, if the object has it.
fn label<'a>(metadata: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// `word`, with an "s" unless `n` is 1.
fn plural(n: i32, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Objects, at};
    use super::*;

    fn healthy_deployment() -> Objects {
        Objects::load(include_str!("fixtures/deployment-healthy.json"))
    }

    #[test]
    fn an_environment_without_rollout_settings_fails_unschedulable_pods_after_5_minutes_and_unready_after_2()
     {
        let config = crate::config::Config::parse(
            "app: workbench\nimages: [registry.example.com/workbench/web]\n\
             environments:\n  staging: { namespace: staging, overlay: overlays/staging }\n",
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.yaml"),
        )
        .unwrap();
        let env = config.environment("staging").unwrap();
        let thresholds = Thresholds::from(&env.rollout);
        assert_eq!(thresholds.unschedulable_after, Duration::from_secs(300));
        assert_eq!(thresholds.unready_after, Duration::from_secs(120));
    }

    #[test]
    fn workload_dispatches_to_its_kind() {
        let objects = healthy_deployment();
        let workload = Workload::Deployment(objects.deployment());
        assert_eq!(workload.kind(), "Deployment");
        assert_eq!(workload.name(), "web");
        assert_eq!(workload.progress(), (2, 2));
        let verdict = workload.assess(
            &objects.replicasets,
            &objects.pods,
            &[],
            at("2026-11-21T22:55:00Z"),
            Thresholds::default(),
        );
        assert_eq!(verdict, Verdict::Succeeded);

        let sts = Objects::load(include_str!("fixtures/statefulset-healthy.json"));
        let workload = Workload::StatefulSet(sts.statefulset());
        assert_eq!(
            (workload.kind(), workload.name()),
            ("StatefulSet", "db".into())
        );
        assert_eq!(workload.progress(), (2, 2));

        let ds = Objects::load(include_str!("fixtures/daemonset-healthy.json"));
        let workload = Workload::DaemonSet(ds.daemonset());
        assert_eq!(
            (workload.kind(), workload.name()),
            ("DaemonSet", "agent".into())
        );
        assert_eq!(workload.progress(), (2, 2));

        let job = Objects::load(include_str!("fixtures/job-complete.json"));
        let workload = Workload::Job(job.job());
        assert_eq!(
            (workload.kind(), workload.name()),
            ("Job", "migrate".into())
        );
        assert_eq!(workload.progress(), (1, 1));
        let verdict = workload.assess(
            &[],
            &job.pods,
            &[],
            at("2026-11-21T22:57:00Z"),
            Thresholds::default(),
        );
        assert_eq!(verdict, Verdict::Succeeded);
    }

    #[test]
    fn stale_status_is_progressing() {
        let mut deployment = healthy_deployment().deployment();
        assert_eq!(stale(&deployment.metadata, Some(1)), None);
        deployment.metadata.generation = Some(2);
        assert_eq!(
            stale(&deployment.metadata, Some(1)),
            Some(Verdict::Progressing(
                "waiting for the controller to observe generation 2".into()
            ))
        );
        assert!(stale(&deployment.metadata, None).is_some());
    }

    #[test]
    fn ownership_is_by_uid() {
        let objects = healthy_deployment();
        let deployment = objects.deployment();
        let rs = &objects.replicasets[0];
        assert!(owned_by(&rs.metadata, &deployment.metadata));
        assert!(!owned_by(&deployment.metadata, &rs.metadata));
        assert!(!owned_by(&rs.metadata, &ObjectMeta::default()));
    }
}
