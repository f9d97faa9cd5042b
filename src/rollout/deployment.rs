//! Deployments: done when the controller has observed the new generation and
//! every replica is updated, ready and available with no old ones left;
//! doomed when a pod of the newest ReplicaSet is, or the progress deadline
//! passed. Pods of older ReplicaSets never fail a deploy.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{Failure, Thresholds, Verdict, first_doomed, owned_by, plural, stale};

/// The annotation the deployment controller keeps equal on a Deployment and its newest ReplicaSet.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// The verdict on `deployment`'s rollout. `replicasets` and `pods` may hold
/// every object in the namespace; only the newest ReplicaSet's pods count.
pub fn assess(
    deployment: &Deployment,
    replicasets: &[ReplicaSet],
    pods: &[Pod],
    events: &[Event],
    now: Timestamp,
    thresholds: Thresholds,
) -> Verdict {
    let empty = DeploymentStatus::default();
    let status = deployment.status.as_ref().unwrap_or(&empty);
    if let Some(verdict) = stale(&deployment.metadata, status.observed_generation) {
        return verdict;
    }
    let new_rs = newest_replicaset(deployment, replicasets);
    if let Some(rs) = new_rs {
        let new_pods = pods.iter().filter(|p| owned_by(&p.metadata, &rs.metadata));
        if let Some(verdict) = first_doomed(new_pods, events, now, thresholds) {
            return verdict;
        }
    }
    if let Some(failure) = deadline_exceeded(deployment, status) {
        return Verdict::Failed(failure);
    }
    if let Some(failure) = cannot_create_pods(status, now) {
        return Verdict::Failed(failure);
    }
    let desired = desired(deployment);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    if [updated, ready, available, replicas] == [desired; 4] {
        return Verdict::Succeeded;
    }
    let mut message = format!("{updated}/{desired} updated, {available}/{desired} available");
    let old = replicas - updated;
    if new_rs.is_none() {
        message.push_str(", waiting for the new ReplicaSet");
    } else if old > 0 {
        message.push_str(&format!(", {old} old {} left", plural(old, "replica")));
    }
    Verdict::Progressing(message)
}

/// (ready replicas of the new revision, at most; desired replicas).
pub fn progress(deployment: &Deployment) -> (i32, i32) {
    let status = deployment.status.as_ref();
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    (updated.min(ready), desired(deployment))
}

fn desired(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

/// The ReplicaSet owned by `deployment` whose revision is the deployment's.
fn newest_replicaset<'a>(
    deployment: &Deployment,
    replicasets: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let current = revision(&deployment.metadata)?;
    replicasets.iter().find(|rs| {
        owned_by(&rs.metadata, &deployment.metadata) && revision(&rs.metadata) == Some(current)
    })
}

fn revision(metadata: &ObjectMeta) -> Option<&str> {
    metadata
        .annotations
        .as_ref()?
        .get(REVISION)
        .map(String::as_str)
}

/// How long the controller may fail to create pods (a missing ServiceAccount,
/// an exhausted quota) before the rollout counts as doomed; quota can free up
/// by itself while old pods terminate.
const REPLICA_FAILURE_GRACE: SignedDuration = SignedDuration::from_secs(15);

/// The controller has been unable to create pods (condition ReplicaFailure).
fn cannot_create_pods(status: &DeploymentStatus, now: Timestamp) -> Option<Failure> {
    let condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")?;
    let since = condition.last_transition_time.as_ref()?.0;
    if now.duration_since(since) < REPLICA_FAILURE_GRACE {
        return None;
    }
    Some(Failure {
        pod: None,
        reason: condition
            .reason
            .clone()
            .unwrap_or_else(|| "ReplicaFailure".into()),
        message: format!(
            "the controller cannot create pods: {}",
            condition.message.as_deref().unwrap_or("no reason given")
        ),
    })
}

/// The controller's verdict that the rollout stopped progressing.
fn deadline_exceeded(deployment: &Deployment, status: &DeploymentStatus) -> Option<Failure> {
    let condition = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    })?;
    let deadline = deployment
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    let said = condition
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Some(Failure {
        pod: None,
        reason: "ProgressDeadlineExceeded".to_owned(),
        message: format!(
            "the rollout made no progress for {} (progressDeadlineSeconds){said}",
            crate::duration::display(std::time::Duration::from_secs(deadline.max(0) as u64))
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Objects, at};
    use super::*;

    /// Shortly after the recordings, when no pod has been unschedulable for a minute yet.
    fn early() -> Timestamp {
        at("2026-11-21T22:55:00Z")
    }

    fn verdict(objects: &Objects, now: Timestamp) -> Verdict {
        let deployment = objects.deployment();
        assess(
            &deployment,
            &objects.replicasets,
            &objects.pods,
            &[],
            now,
            Thresholds::default(),
        )
    }

    fn healthy() -> Objects {
        Objects::load(include_str!("fixtures/deployment-healthy.json"))
    }

    fn failed_reason(verdict: Verdict) -> (Option<String>, String) {
        match verdict {
            Verdict::Failed(f) => (f.pod, f.reason),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn healthy_rollout_succeeds() {
        assert_eq!(verdict(&healthy(), early()), Verdict::Succeeded);
        assert_eq!(progress(&healthy().deployment()), (2, 2));
    }

    #[test]
    fn finished_rollout_with_old_replicasets_scaled_to_zero_succeeds() {
        let objects = Objects::load(include_str!("fixtures/deployment-rolled-out.json"));
        assert_eq!(objects.replicasets.len(), 3);
        assert_eq!(verdict(&objects, early()), Verdict::Succeeded);
    }

    #[test]
    fn other_workloads_in_the_namespace_do_not_count() {
        // legacy's ReplicaSet also has revision "1" and its pods crash-loop;
        // it comes first, so only ownership keeps it out of web's verdict.
        let web = healthy().deployment();
        let namespace =
            Objects::load(include_str!("fixtures/deployment-crashloop.json")).and(healthy());
        let verdict = assess(
            &web,
            &namespace.replicasets,
            &namespace.pods,
            &[],
            early(),
            Thresholds::default(),
        );
        assert_eq!(verdict, Verdict::Succeeded);
    }

    #[test]
    fn stale_status_is_progressing_even_when_counts_look_done() {
        let mut objects = healthy();
        objects.deployments[0].metadata.generation = Some(2);
        assert_eq!(
            verdict(&objects, early()),
            Verdict::Progressing("waiting for the controller to observe generation 2".into())
        );
    }

    #[test]
    fn stale_status_hides_an_old_progress_deadline() {
        let mut objects = Objects::load(include_str!("fixtures/deployment-deadline-exceeded.json"));
        objects.deployments[0].metadata.generation = Some(2);
        assert!(matches!(
            verdict(&objects, early()),
            Verdict::Progressing(_)
        ));
    }

    #[test]
    fn doomed_pod_of_the_new_replicaset_fails_the_rollout() {
        // Mid-rollout: the old ReplicaSet still serves 2 ready pods.
        let objects = Objects::load(include_str!("fixtures/deployment-new-rs-image-pull.json"));
        assert_eq!(
            failed_reason(verdict(&objects, early())),
            (
                Some("web-5b68d646c8-whksg".into()),
                "ImagePullBackOff".into()
            )
        );
        assert_eq!(progress(&objects.deployment()), (1, 2));
    }

    #[test]
    fn crash_looping_new_pods_fail_the_rollout() {
        let objects = Objects::load(include_str!("fixtures/deployment-crashloop.json"));
        assert_eq!(
            failed_reason(verdict(&objects, early())),
            (
                Some("legacy-7fb6fbf86f-lf57z".into()),
                "CrashLoopBackOff".into()
            )
        );
    }

    #[test]
    fn doomed_pods_of_old_replicasets_never_fail_the_rollout() {
        // The old ReplicaSet's 2 pods crash-loop; the new one's pod is ready
        // but not yet available (minReadySeconds), so the old pods stay.
        let objects = Objects::load(include_str!("fixtures/deployment-old-rs-crashloop.json"));
        assert_eq!(
            verdict(&objects, early()),
            Verdict::Progressing("1/2 updated, 0/2 available, 2 old replicas left".into())
        );
    }

    #[test]
    fn old_replicas_keep_it_progressing() {
        let mut objects = healthy();
        objects.deployments[0].status.as_mut().unwrap().replicas = Some(3);
        assert_eq!(
            verdict(&objects, early()),
            Verdict::Progressing("2/2 updated, 2/2 available, 1 old replica left".into())
        );
    }

    #[test]
    fn without_the_new_replicaset_it_waits_for_it() {
        let objects = Objects::load(include_str!("fixtures/deployment-new-rs-image-pull.json"));
        let verdict = assess(
            &objects.deployment(),
            &objects.replicasets[1..],
            &objects.pods,
            &[],
            early(),
            Thresholds::default(),
        );
        assert_eq!(
            verdict,
            Verdict::Progressing(
                "1/2 updated, 2/2 available, waiting for the new ReplicaSet".into()
            )
        );
    }

    #[test]
    fn unschedulable_pod_fails_only_after_the_threshold() {
        let objects = Objects::load(include_str!("fixtures/deployment-unschedulable.json"));
        assert_eq!(
            verdict(&objects, early()),
            Verdict::Progressing("1/1 updated, 0/1 available".into())
        );
        assert_eq!(
            failed_reason(verdict(&objects, at("2026-11-21T22:56:00Z"))),
            (Some("stuck-976c9ffd4-9lngl".into()), "Unschedulable".into())
        );
    }

    #[test]
    fn progress_deadline_exceeded_fails_the_rollout() {
        let objects = Objects::load(include_str!("fixtures/deployment-deadline-exceeded.json"));
        assert_eq!(
            verdict(&objects, early()),
            Verdict::Failed(Failure {
                pod: None,
                reason: "ProgressDeadlineExceeded".into(),
                message: r#"the rollout made no progress for 10s (progressDeadlineSeconds): ReplicaSet "stuck-976c9ffd4" has timed out progressing."#.into(),
            })
        );
        // Once the pod itself is doomed, the pod's reason is the more useful one.
        assert_eq!(
            failed_reason(verdict(&objects, at("2026-11-21T22:56:00Z"))),
            (Some("stuck-976c9ffd4-9lngl".into()), "Unschedulable".into())
        );
    }

    #[test]
    fn pods_the_controller_cannot_create_fail_the_rollout_after_a_grace() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 2, "replicas": 0, "conditions": [{
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "lastTransitionTime": "2026-11-21T10:00:00Z",
                "message": "pods \"web-1\" is forbidden: error looking up service account ns/app: serviceaccount \"app\" not found"
            }]}
        }))
        .unwrap();
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let thresholds = Thresholds::default();
        assert!(matches!(
            assess(&d, &[], &[], &[], at("2026-11-21T10:00:05Z"), thresholds),
            Verdict::Progressing(_)
        ));
        match assess(&d, &[], &[], &[], at("2026-11-21T10:00:20Z"), thresholds) {
            Verdict::Failed(f) => {
                assert_eq!(f.reason, "FailedCreate");
                assert!(
                    f.message.contains("serviceaccount \"app\" not found"),
                    "{}",
                    f.message
                );
            }
            other => panic!("{other:?}"),
        }
        d.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        assert!(matches!(
            assess(&d, &[], &[], &[], at("2026-11-21T10:00:20Z"), thresholds),
            Verdict::Progressing(_)
        ));
    }
}
