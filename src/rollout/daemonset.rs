//! DaemonSets: done when the controller has observed the new generation and
//! every node that should run the daemon runs an updated, ready and available
//! pod; doomed when a pod of the current template generation is.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;

use super::{Thresholds, Verdict, first_doomed, label, owned_by, stale};

/// The label the controller sets on each pod to the DaemonSet generation it was made from.
const TEMPLATE_GENERATION: &str = "pod-template-generation";

/// The verdict on `daemonset`'s rollout. `pods` may hold every pod in the
/// namespace; only those of the current template generation count.
pub fn assess(
    daemonset: &DaemonSet,
    pods: &[Pod],
    events: &[Event],
    now: Timestamp,
    thresholds: Thresholds,
) -> Verdict {
    let empty = DaemonSetStatus::default();
    let status = daemonset.status.as_ref().unwrap_or(&empty);
    if let Some(verdict) = stale(&daemonset.metadata, status.observed_generation) {
        return verdict;
    }
    let generation = daemonset.metadata.generation.map(|g| g.to_string());
    let new_pods = pods.iter().filter(|p| {
        owned_by(&p.metadata, &daemonset.metadata)
            && generation.is_some()
            && label(&p.metadata, TEMPLATE_GENERATION) == generation.as_deref()
    });
    if let Some(verdict) = first_doomed(new_pods, events, now, thresholds) {
        return verdict;
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let ready = status.number_ready;
    let available = status.number_available.unwrap_or(0);
    if [updated, ready, available] == [desired; 3] {
        Verdict::Succeeded
    } else {
        Verdict::Progressing(format!(
            "{updated}/{desired} updated, {ready}/{desired} ready"
        ))
    }
}

/// (ready pods of the current generation, at most; nodes that should run the daemon).
pub fn progress(daemonset: &DaemonSet) -> (i32, i32) {
    let empty = DaemonSetStatus::default();
    let status = daemonset.status.as_ref().unwrap_or(&empty);
    let updated = status.updated_number_scheduled.unwrap_or(0);
    (
        status.number_ready.min(updated),
        status.desired_number_scheduled,
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Objects, at};
    use super::*;

    fn now() -> Timestamp {
        at("2026-11-21T22:56:00Z")
    }

    fn verdict(objects: &Objects) -> Verdict {
        assess(
            &objects.daemonset(),
            &objects.pods,
            &[],
            now(),
            Thresholds::default(),
        )
    }

    fn healthy() -> Objects {
        Objects::load(include_str!("fixtures/daemonset-healthy.json"))
    }

    fn broken_update() -> Objects {
        Objects::load(include_str!("fixtures/daemonset-update-image-pull.json"))
    }

    #[test]
    fn healthy_rollout_succeeds() {
        assert_eq!(verdict(&healthy()), Verdict::Succeeded);
        assert_eq!(progress(&healthy().daemonset()), (2, 2));
    }

    #[test]
    fn stale_status_is_progressing_even_when_counts_look_done() {
        let mut objects = healthy();
        objects.daemonsets[0].metadata.generation = Some(2);
        assert_eq!(
            verdict(&objects),
            Verdict::Progressing("waiting for the controller to observe generation 2".into())
        );
    }

    #[test]
    fn doomed_pod_of_the_current_generation_fails_the_rollout() {
        let objects = broken_update();
        match verdict(&objects) {
            Verdict::Failed(f) => assert_eq!(
                (f.pod.as_deref(), f.reason.as_str()),
                (Some("agent-8m84q"), "ImagePullBackOff")
            ),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(progress(&objects.daemonset()), (1, 2));
    }

    #[test]
    fn doomed_pods_of_older_generations_never_fail_the_rollout() {
        // The same pods, with the broken one relabelled to generation 1.
        let mut objects = broken_update();
        let pod = objects
            .pods
            .iter_mut()
            .find(|p| p.metadata.name.as_deref() == Some("agent-8m84q"));
        let labels = pod.unwrap().metadata.labels.as_mut().unwrap();
        labels.insert(TEMPLATE_GENERATION.into(), "1".into());
        assert_eq!(
            verdict(&objects),
            Verdict::Progressing("1/2 updated, 1/2 ready".into())
        );
    }
}
