//! StatefulSets: done when the controller has observed the new generation,
//! every replica is updated, ready and available, and the update revision has
//! become the current one; doomed when a pod of the update revision is. With
//! the OnDelete strategy the controller replaces nothing, so an observed
//! generation is all there is to wait for.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;

use super::{Thresholds, Verdict, first_doomed, label, owned_by, stale};

/// The label the controller sets on each pod to its revision.
const REVISION: &str = "controller-revision-hash";

/// The verdict on `statefulset`'s rollout. `pods` may hold every pod in the
/// namespace; only those of the update revision count.
pub fn assess(
    statefulset: &StatefulSet,
    pods: &[Pod],
    events: &[Event],
    now: Timestamp,
    thresholds: Thresholds,
) -> Verdict {
    let empty = StatefulSetStatus::default();
    let status = statefulset.status.as_ref().unwrap_or(&empty);
    if let Some(verdict) = stale(&statefulset.metadata, status.observed_generation) {
        return verdict;
    }
    let update_revision = status.update_revision.as_deref();
    let new_pods = pods.iter().filter(|p| {
        owned_by(&p.metadata, &statefulset.metadata)
            && update_revision.is_some()
            && label(&p.metadata, REVISION) == update_revision
    });
    if let Some(verdict) = first_doomed(new_pods, events, now, thresholds) {
        return verdict;
    }
    if on_delete(statefulset) {
        return Verdict::Succeeded;
    }
    let desired = desired(statefulset);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let counts_done = [updated, ready, available, status.replicas] == [desired; 4];
    let revision_done = status.current_revision.as_deref() == update_revision;
    match (counts_done, revision_done) {
        (true, true) => Verdict::Succeeded,
        (true, false) => Verdict::Progressing(format!(
            "{updated}/{desired} updated, {ready}/{desired} ready, waiting for revision {} to become current",
            update_revision.unwrap_or_default()
        )),
        (false, _) => Verdict::Progressing(format!(
            "{updated}/{desired} updated, {ready}/{desired} ready"
        )),
    }
}

/// (ready replicas of the update revision, at most; desired replicas). With
/// OnDelete, pods are replaced by hand, so every ready replica counts.
pub fn progress(statefulset: &StatefulSet) -> (i32, i32) {
    let status = statefulset.status.as_ref();
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let ready = if on_delete(statefulset) {
        ready
    } else {
        ready.min(updated)
    };
    (ready, desired(statefulset))
}

fn desired(statefulset: &StatefulSet) -> i32 {
    statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

fn on_delete(statefulset: &StatefulSet) -> bool {
    statefulset
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Objects, at};
    use super::*;

    fn now() -> Timestamp {
        at("2026-11-21T22:56:00Z")
    }

    fn verdict(objects: &Objects, now: Timestamp) -> Verdict {
        assess(
            &objects.statefulset(),
            &objects.pods,
            &[],
            now,
            Thresholds::default(),
        )
    }

    fn healthy() -> Objects {
        Objects::load(include_str!("fixtures/statefulset-healthy.json"))
    }

    #[test]
    fn healthy_rollout_succeeds() {
        assert_eq!(verdict(&healthy(), now()), Verdict::Succeeded);
        assert_eq!(progress(&healthy().statefulset()), (2, 2));
    }

    #[test]
    fn stale_status_is_progressing_even_when_counts_look_done() {
        let mut objects = healthy();
        objects.statefulsets[0].metadata.generation = Some(2);
        assert_eq!(
            verdict(&objects, now()),
            Verdict::Progressing("waiting for the controller to observe generation 2".into())
        );
    }

    #[test]
    fn counts_done_but_revision_not_current_is_progressing() {
        let mut objects = healthy();
        objects.statefulsets[0]
            .status
            .as_mut()
            .unwrap()
            .current_revision = Some("db-old".into());
        assert_eq!(
            verdict(&objects, now()),
            Verdict::Progressing(
                "2/2 updated, 2/2 ready, waiting for revision db-566945bf66 to become current"
                    .into()
            )
        );
    }

    #[test]
    fn doomed_pod_of_the_update_revision_fails_the_rollout() {
        let objects = Objects::load(include_str!("fixtures/statefulset-update-image-pull.json"));
        match verdict(&objects, now()) {
            Verdict::Failed(f) => {
                assert_eq!(f.pod.as_deref(), Some("db-1"));
                assert_eq!(f.reason, "ImagePullBackOff");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(progress(&objects.statefulset()), (1, 2));
    }

    #[test]
    fn doomed_pods_of_other_revisions_never_fail_the_rollout() {
        // The same pods, with the broken one relabelled to the current (old) revision.
        let mut objects =
            Objects::load(include_str!("fixtures/statefulset-update-image-pull.json"));
        let db_1 = objects
            .pods
            .iter_mut()
            .find(|p| p.metadata.name.as_deref() == Some("db-1"));
        let labels = db_1.unwrap().metadata.labels.as_mut().unwrap();
        labels.insert(REVISION.into(), "db-566945bf66".into());
        assert_eq!(
            verdict(&objects, now()),
            Verdict::Progressing("1/2 updated, 1/2 ready".into())
        );
    }

    #[test]
    fn unschedulable_pod_fails_only_after_the_threshold() {
        // queue-0 has been unschedulable since 22:55:44.
        let objects = Objects::load(include_str!("fixtures/statefulset-unschedulable.json"));
        assert_eq!(
            verdict(&objects, now()),
            Verdict::Progressing("1/1 updated, 0/1 ready".into())
        );
        match verdict(&objects, at("2026-11-21T22:57:00Z")) {
            Verdict::Failed(f) => assert_eq!(
                (f.pod.as_deref(), f.reason.as_str()),
                (Some("queue-0"), "Unschedulable")
            ),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn on_delete_succeeds_once_the_generation_is_observed() {
        // Template changed, nothing replaced: revisions differ, no pod updated.
        let mut objects = Objects::load(include_str!("fixtures/statefulset-ondelete.json"));
        assert_eq!(verdict(&objects, now()), Verdict::Succeeded);
        assert_eq!(progress(&objects.statefulset()), (2, 2));
        objects.statefulsets[0].metadata.generation = Some(4);
        assert!(matches!(verdict(&objects, now()), Verdict::Progressing(_)));
    }
}
