//! Pods: whether a pod can never become healthy, and why, in one sentence.
//!
//! Workload verdicts ask this of the pods of their newest revision only.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;

use super::{Failure, Thresholds, plural};

/// Waiting reasons the kubelet does not recover from without a new spec.
const DOOMED_WAITING_REASONS: [&str; 6] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
];

/// Words of an image pull error that retrying cannot fix: the tag or
/// repository does not exist, or the node may not pull it (as containerd
/// and registries say it, lowercased).
const PERMANENT_PULL_ERRORS: [&str; 5] = [
    "not found",
    "manifest unknown",
    "unauthorized",
    "denied",
    "forbidden",
];

/// Reasons for a Failed pod that its controller replaces by itself, so the
/// rollout is not doomed by it.
const REPLACED_FAILURE_REASONS: [&str; 2] = ["Evicted", "Preempting"];

/// Why `pod` can never become healthy, or `None` while it still may.
///
/// Doomed: a container or init container waiting with reason
/// ImagePullBackOff or ErrImagePull (unless the pull error is one retrying
/// may fix, see [`transient_pull_error`]), CrashLoopBackOff,
/// CreateContainerConfigError naming a missing ConfigMap, Secret or key (see
/// [`transient_config_error`]), CreateContainerError or InvalidImageName; an
/// init container that exited non-zero; a pod unschedulable for longer than
/// `thresholds.unschedulable_after`; phase Failed, unless a Job owns the pod
/// (the Job retries it within its backoffLimit) or the pod was evicted or
/// preempted (its controller replaces it); every container running but one
/// not ready for longer than `thresholds.unready_after`, while `events` hold
/// the kubelet's readiness probe failures for it since it started (the
/// last failure is the message).
///
/// Never doomed: a pod being deleted (its controller has replaced it, and
/// its containers exit as they stop), and a native sidecar (an init
/// container with `restartPolicy: Always`) that merely exited: the kubelet
/// restarts it, and only its crash loop counts.
pub fn doom(
    pod: &Pod,
    events: &[Event],
    now: Timestamp,
    thresholds: Thresholds,
) -> Option<Failure> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let init_containers = status.init_container_statuses.iter().flatten();
    let containers = status.container_statuses.iter().flatten();
    let (reason, message) = init_containers
        .filter_map(|c| {
            let exited = (!is_sidecar(pod, &c.name)).then(|| init_container_failed(c));
            exited.flatten().or_else(|| waiting(c, "init container"))
        })
        .chain(containers.filter_map(|c| waiting(c, "container")))
        .next()
        .or_else(|| unschedulable(pod, status, now, thresholds))
        .or_else(|| failed(pod, status))
        .or_else(|| unready(pod, status, events, now, thresholds))?;
    Some(Failure {
        pod: pod.metadata.name.clone(),
        reason,
        message,
    })
}

/// The first container (init containers first) whose current state is a
/// non-zero exit, as `container "x" exited with code N (Reason: message)`.
pub(super) fn nonzero_exit(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let init_containers = status.init_container_statuses.iter().flatten();
    let containers = status.container_statuses.iter().flatten();
    init_containers
        .filter_map(|c| exited_nonzero(c, "init container"))
        .chain(containers.filter_map(|c| exited_nonzero(c, "container")))
        .next()
}

/// The reason of a pod the scheduler has found no node for.
pub const UNSCHEDULABLE: &str = "Unschedulable";

/// A (reason, message) pair for [`Failure`].
type Cause = (String, String);

fn waiting(container: &ContainerStatus, what: &str) -> Option<Cause> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting
        .reason
        .as_deref()
        .filter(|r| DOOMED_WAITING_REASONS.contains(r))?;
    let message = waiting.message.as_deref();
    if matches!(reason, "ErrImagePull" | "ImagePullBackOff") && transient_pull_error(message)
        || reason == "CreateContainerConfigError" && transient_config_error(message)
    {
        return None;
    }
    let (problem, history) = match reason {
        "ImagePullBackOff" | "ErrImagePull" => (
            format!("cannot pull image {:?}", container.image),
            String::new(),
        ),
        "InvalidImageName" => (
            format!("has an invalid image name {:?}", container.image),
            String::new(),
        ),
        "CrashLoopBackOff" => ("keeps crashing".to_owned(), crash_history(container)),
        _ => ("cannot be created".to_owned(), String::new()),
    };
    let said = waiting
        .message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    let message = format!(
        "{what} {:?} {problem}: {reason}{history}{said}",
        container.name
    );
    Some((reason.to_owned(), message))
}

/// Whether an image pull failed for a reason the kubelet's retries may get
/// past (the registry refused the connection, timed out, answered 5xx). A
/// missing tag or repository, or a refused pull, is permanent; so is a
/// failure whose cause is not said (kubelets before 1.31 and kwok write
/// only "Back-off pulling image ..."), which berth cannot tell apart.
/// Whether a CreateContainerConfigError is one the kubelet gets past by
/// itself: anything but a missing ConfigMap, Secret or key. A real kubelet
/// reports "failed to sync configmap cache: timed out waiting for the
/// condition" while the Node authorizer has not yet let it read a ConfigMap
/// the pod was just bound with (seen on real-0), and starts the container on
/// its next try.
fn transient_config_error(message: Option<&str>) -> bool {
    message.is_some_and(|m| {
        let m = m.to_lowercase();
        !m.contains("not found") && !m.contains("couldn't find key")
    })
}

fn transient_pull_error(message: Option<&str>) -> bool {
    let Some(message) = message else {
        return false;
    };
    // ImagePullBackOff: `Back-off pulling image "IMAGE": ErrImagePull: CAUSE`.
    let cause = match message.strip_prefix("Back-off pulling image ") {
        Some(rest) => rest.split_once("\": ").map_or("", |(_, cause)| cause),
        None => message,
    };
    let cause = cause.to_lowercase();
    !cause.trim().is_empty() && !PERMANENT_PULL_ERRORS.iter().any(|p| cause.contains(p))
}

/// " after N restarts, last exit code C" for a crash-looping container.
fn crash_history(container: &ContainerStatus) -> String {
    let last_exit = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| format!(", last exit code {}", t.exit_code))
        .unwrap_or_default();
    let n = container.restart_count;
    format!(" after {n} {}{last_exit}", plural(n, "restart"))
}

/// Whether `name` is one of `pod`'s native sidecars: an init container with
/// `restartPolicy: Always`, which runs beside the app containers.
fn is_sidecar(pod: &Pod, name: &str) -> bool {
    let spec = pod.spec.as_ref();
    let init_containers = spec.and_then(|s| s.init_containers.as_ref());
    init_containers
        .into_iter()
        .flatten()
        .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
}

fn init_container_failed(container: &ContainerStatus) -> Option<Cause> {
    let message = exited_nonzero(container, "init container")?;
    Some(("InitContainerFailed".to_owned(), message))
}

fn exited_nonzero(container: &ContainerStatus, what: &str) -> Option<String> {
    let terminated = container.state.as_ref()?.terminated.as_ref()?;
    (terminated.exit_code != 0).then(|| {
        let detail = detail(terminated.reason.as_deref(), terminated.message.as_deref());
        format!(
            "{what} {:?} exited with code {}{detail}",
            container.name, terminated.exit_code
        )
    })
}

/// A pod the scheduler has found no node for, for `thresholds.unschedulable_after`:
/// how long, the node selector or required node affinity that matched no
/// node (when the scheduler says that is what ruled the nodes out), and the
/// scheduler's own message.
fn unschedulable(
    pod: &Pod,
    status: &PodStatus,
    now: Timestamp,
    thresholds: Thresholds,
) -> Option<Cause> {
    let condition = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    let since = condition.last_transition_time.as_ref()?.0;
    let elapsed = Duration::try_from(now.duration_since(since)).ok()?;
    (elapsed >= thresholds.unschedulable_after).then(|| {
        let scheduler = condition.message.as_deref();
        let mut message = format!(
            "pod has been unschedulable for {}",
            crate::duration::display(elapsed)
        );
        // The scheduler says "didn't match Pod's node affinity/selector".
        let by_placement = scheduler.is_none_or(|m| m.contains("affinity/selector"));
        match placement(pod) {
            Some(placement) if by_placement => {
                message.push_str(&format!(": no node matches its {placement}"))
            }
            Some(placement) => message.push_str(&format!(" (its {placement})")),
            None => {}
        }
        if let Some(scheduler) = scheduler {
            message.push_str(&format!("; the scheduler: {scheduler}"));
        }
        (UNSCHEDULABLE.to_owned(), message)
    })
}

/// What restricts the nodes `pod` may run on, from its spec: its
/// `nodeSelector` and its required node affinity, e.g. `nodeSelector
/// disktype=ssd and required node affinity zone In [a, b]`.
fn placement(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let mut parts = Vec::new();
    if let Some(selector) = spec.node_selector.as_ref().filter(|s| !s.is_empty()) {
        let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("nodeSelector {}", pairs.join(",")));
    }
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    let terms: Vec<String> = terms
        .iter()
        .map(|term| {
            let labels = term.match_expressions.iter().flatten();
            let fields = term.match_fields.iter().flatten();
            let requirements: Vec<String> = labels
                .chain(fields)
                .map(|r| match r.values.as_deref() {
                    Some(values) if !values.is_empty() => {
                        format!("{} {} [{}]", r.key, r.operator, values.join(", "))
                    }
                    _ => format!("{} {}", r.key, r.operator),
                })
                .collect();
            requirements.join(" and ")
        })
        .filter(|term| !term.is_empty())
        .collect();
    if !terms.is_empty() {
        parts.push(format!("required node affinity {}", terms.join(" or ")));
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// A container that runs, but has failed its readiness probe for longer
/// than `thresholds.unready_after`: since it started, or since the pod
/// last stopped being Ready, whichever is later. Only while every container
/// runs (a starting or crashing one is judged by its waiting reason), and
/// only on the kubelet's word: an `Unhealthy` event "Readiness probe ..."
/// for the container since it started, whose message is the reason. A pod
/// held back by something else (a readiness gate) is not doomed here.
fn unready(
    pod: &Pod,
    status: &PodStatus,
    events: &[Event],
    now: Timestamp,
    thresholds: Thresholds,
) -> Option<Cause> {
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    let started_at = |c: &ContainerStatus| {
        let running = c.state.as_ref()?.running.as_ref()?;
        Some(running.started_at.as_ref()?.0)
    };
    if containers.is_empty() || containers.iter().any(|c| started_at(c).is_none()) {
        return None;
    }
    let container = containers.iter().find(|c| !c.ready)?;
    let started = started_at(container)?;
    let not_ready_since = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref())
        .map_or(started, |t| t.0.max(started));
    let elapsed = Duration::try_from(now.duration_since(not_ready_since)).ok()?;
    if elapsed < thresholds.unready_after {
        return None;
    }
    let (probe, count) = last_readiness_failure(pod, &container.name, events, started)?;
    let times = if count > 1 {
        format!(", {count} failed probes")
    } else {
        String::new()
    };
    let message = format!(
        "container {:?} has run unready for {}{times}: {probe}",
        container.name,
        crate::duration::display(elapsed)
    );
    Some(("ReadinessProbeFailed".to_owned(), message))
}

/// The message and count of the latest `Unhealthy` event that reports a
/// readiness probe failure of `container` in `pod`, seen at or after `since`.
fn last_readiness_failure(
    pod: &Pod,
    container: &str,
    events: &[Event],
    since: Timestamp,
) -> Option<(String, i32)> {
    let field_path = format!("spec.containers{{{container}}}");
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Unhealthy"))
        .filter(|e| about(e, pod) && e.involved_object.field_path.as_ref() == Some(&field_path))
        .filter_map(|e| {
            let message = e.message.as_deref()?.trim();
            message
                .starts_with("Readiness probe")
                .then_some((last_seen(e)?, message, e))
        })
        .filter(|(seen, _, _)| *seen >= since)
        .max_by_key(|(seen, _, _)| *seen)
        .map(|(_, message, e)| {
            let count = e.series.as_ref().map_or(e.count, |s| s.count);
            (message.to_owned(), count.unwrap_or(1))
        })
}

/// Whether `event` is about `pod`: by uid where both have one, else by name.
fn about(event: &Event, pod: &Pod) -> bool {
    let object = &event.involved_object;
    object.kind.as_deref() == Some("Pod")
        && match (object.uid.as_deref(), pod.metadata.uid.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => object.name.is_some() && object.name == pod.metadata.name,
        }
}

/// When an event was last seen, whichever API wrote it: the series' last
/// observation (events.k8s.io), `lastTimestamp` (core/v1), `eventTime`, or
/// when the event was created.
pub fn last_seen(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn failed(pod: &Pod, status: &PodStatus) -> Option<Cause> {
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    let owned_by_job = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == "Job");
    let replaced = status
        .reason
        .as_deref()
        .is_some_and(|r| REPLACED_FAILURE_REASONS.contains(&r));
    if owned_by_job || replaced {
        return None;
    }
    let reason = status.reason.clone().unwrap_or_else(|| "PodFailed".into());
    let message = match (nonzero_exit(pod), status.message.as_deref()) {
        (Some(exit), _) => format!("pod failed: {exit}"),
        (None, Some(message)) => format!("pod failed: {message}"),
        (None, None) => "pod failed".to_owned(),
    };
    Some((reason, message))
}

/// " (reason: message)", " (reason)", " (message)" or "".
fn detail(reason: Option<&str>, message: Option<&str>) -> String {
    match (reason, message) {
        (Some(r), Some(m)) => format!(" ({r}: {m})"),
        (Some(one), None) | (None, Some(one)) => format!(" ({one})"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting};

    use super::super::testing::{Objects, at};
    use super::*;

    /// Just after every fixture was recorded; unschedulable tests pick their own instant.
    fn now() -> Timestamp {
        at("2026-11-21T22:56:30Z")
    }

    fn doom_of(json: &str, pod: &str) -> Option<Failure> {
        doom(
            Objects::load(json).pod(pod),
            &[],
            now(),
            Thresholds::default(),
        )
    }

    fn failure(pod: &str, reason: &str, message: &str) -> Option<Failure> {
        Some(Failure {
            pod: Some(pod.to_owned()),
            reason: reason.to_owned(),
            message: message.to_owned(),
        })
    }

    /// A pod unschedulable since 22:55:00, with `spec` and the scheduler's `message`.
    fn unschedulable_pod(spec: serde_json::Value, message: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1"},
            "spec": spec,
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "lastTransitionTime": "2026-11-21T22:55:00Z", "message": message
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn an_unschedulable_pod_names_the_selector_and_affinity_no_node_matched() {
        let spec = serde_json::json!({
            "containers": [{"name": "web"}],
            "nodeSelector": {"disktype": "ssd", "pool": "gpu"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
                    {"matchExpressions": [{"key": "spot", "operator": "DoesNotExist"}]}
                ]
            }}}
        });
        let scheduler =
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.";
        let pod = unschedulable_pod(spec, scheduler);
        assert_eq!(
            doom(&pod, &[], now(), Thresholds::default()),
            failure(
                "web-1",
                "Unschedulable",
                &format!(
                    "pod has been unschedulable for 1m30s: no node matches its nodeSelector \
                     disktype=ssd,pool=gpu and required node affinity zone In [a, b] or spot \
                     DoesNotExist; the scheduler: {scheduler}"
                )
            )
        );
    }

    #[test]
    fn an_unschedulable_pod_ruled_out_by_something_else_keeps_the_scheduler_word() {
        let spec = serde_json::json!({
            "containers": [{"name": "web"}],
            "nodeSelector": {"type": "kwok"}
        });
        let scheduler = "0/2 nodes are available: 2 Insufficient cpu.";
        let pod = unschedulable_pod(spec.clone(), scheduler);
        assert_eq!(
            doom(&pod, &[], now(), Thresholds::default())
                .unwrap()
                .message,
            format!(
                "pod has been unschedulable for 1m30s (its nodeSelector type=kwok); \
                 the scheduler: {scheduler}"
            )
        );
        let plain = unschedulable_pod(
            serde_json::json!({"containers": [{"name": "web"}]}),
            scheduler,
        );
        assert_eq!(
            doom(&plain, &[], now(), Thresholds::default())
                .unwrap()
                .message,
            format!("pod has been unschedulable for 1m30s; the scheduler: {scheduler}")
        );
    }

    #[test]
    fn running_ready_pods_are_not_doomed() {
        let healthy = Objects::load(include_str!("fixtures/deployment-healthy.json"));
        for pod in &healthy.pods {
            assert_eq!(doom(pod, &[], now(), Thresholds::default()), None);
        }
        let with_init = include_str!("fixtures/pod-init-ready.json");
        assert_eq!(doom_of(with_init, "web-init"), None);
    }

    #[test]
    fn err_image_pull_is_doomed() {
        assert_eq!(
            doom_of(include_str!("fixtures/pod-err-image-pull.json"), "pull"),
            failure(
                "pull",
                "ErrImagePull",
                r#"container "web" cannot pull image "registry.example/app:badbad2": ErrImagePull (failed to pull and unpack image "registry.example/app:badbad2": not found)"#
            )
        );
    }

    #[test]
    fn image_pull_back_off_is_doomed() {
        let json = include_str!("fixtures/deployment-new-rs-image-pull.json");
        assert_eq!(
            doom_of(json, "web-5b68d646c8-whksg"),
            failure(
                "web-5b68d646c8-whksg",
                "ImagePullBackOff",
                r#"container "web" cannot pull image "registry.example/app:badbad1": ImagePullBackOff (Back-off pulling image "registry.example/app:badbad1")"#
            )
        );
    }

    #[test]
    fn only_pull_errors_retrying_cannot_fix_are_doomed() {
        let objects = Objects::load(include_str!("fixtures/pod-err-image-pull.json"));
        let with = |reason: &str, message: &str| {
            let mut pod = objects.pod("pull").clone();
            let status = pod.status.as_mut().unwrap();
            let container = &mut status.container_statuses.as_mut().unwrap()[0];
            container.state.as_mut().unwrap().waiting = Some(ContainerStateWaiting {
                reason: Some(reason.to_owned()),
                message: Some(message.to_owned()),
            });
            doom(&pod, &[], now(), Thresholds::default()).map(|f| f.reason)
        };
        let image = "127.0.0.1:25000/workbench/frontend:0123abc";
        let refused = format!(
            "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": failed to do request: Head \"http://127.0.0.1:25000/v2/workbench/frontend/manifests/0123abc\": dial tcp 127.0.0.1:25000: connect: connection refused"
        );
        let missing = format!(
            "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"
        );
        let denied = format!(
            "failed to pull and unpack image \"{image}\": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://auth.example/token: 401 Unauthorized"
        );
        let unavailable = format!(
            "failed to pull and unpack image \"{image}\": failed to copy: httpReadSeeker: failed open: unexpected status code http://127.0.0.1:25000/v2/workbench/frontend/blobs/sha256:0d1e: 503 Service Unavailable"
        );
        let back_off =
            |cause: &str| format!("Back-off pulling image \"{image}\": ErrImagePull: {cause}");
        // The registry was down or overloaded: the kubelet retries, so does berth.
        assert_eq!(with("ErrImagePull", &refused), None);
        assert_eq!(with("ImagePullBackOff", &back_off(&refused)), None);
        assert_eq!(with("ErrImagePull", &unavailable), None);
        // The tag does not exist, or the node may not pull it: doomed.
        let doomed = |reason: &str| Some(reason.to_owned());
        assert_eq!(with("ErrImagePull", &missing), doomed("ErrImagePull"));
        assert_eq!(
            with("ImagePullBackOff", &back_off(&missing)),
            doomed("ImagePullBackOff")
        );
        assert_eq!(with("ErrImagePull", &denied), doomed("ErrImagePull"));
        // A back-off that does not say why (older kubelets, kwok): doomed, as before.
        let silent = format!("Back-off pulling image \"{image}\"");
        assert_eq!(
            with("ImagePullBackOff", &silent),
            doomed("ImagePullBackOff")
        );
    }

    #[test]
    fn crash_loop_names_restarts_and_last_exit_code() {
        let json = include_str!("fixtures/deployment-crashloop.json");
        assert_eq!(
            doom_of(json, "legacy-7fb6fbf86f-lf57z"),
            failure(
                "legacy-7fb6fbf86f-lf57z",
                "CrashLoopBackOff",
                r#"container "web" keeps crashing: CrashLoopBackOff after 10 restarts, last exit code 1 (back-off restarting failed container web)"#
            )
        );
    }

    #[test]
    fn create_container_config_error_is_doomed() {
        // Hand-edited from pod-init-ready.json: kwok does not fake a missing
        // Secret, so the status is written as the kubelet reports it.
        let json = include_str!("fixtures/pod-create-container-config-error.json");
        assert_eq!(
            doom_of(json, "web-init"),
            failure(
                "web-init",
                "CreateContainerConfigError",
                r#"container "web" cannot be created: CreateContainerConfigError (secret "app-secrets" not found)"#
            )
        );
    }

    /// The verdict on the config-error pod (hand-edited, see above) with its
    /// container waiting for `reason`, saying `message`.
    fn config_error_pod_waiting(reason: &str, message: Option<&str>) -> Option<Failure> {
        let objects = Objects::load(include_str!(
            "fixtures/pod-create-container-config-error.json"
        ));
        let mut pod = objects.pod("web-init").clone();
        let status = pod.status.as_mut().unwrap();
        let container = &mut status.container_statuses.as_mut().unwrap()[0];
        container.state.as_mut().unwrap().waiting = Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: message.map(str::to_owned),
        });
        doom(&pod, &[], now(), Thresholds::default())
    }

    #[test]
    fn only_hopeless_waiting_reasons_doom() {
        let with_reason = |reason: &str| config_error_pod_waiting(reason, None);
        for reason in DOOMED_WAITING_REASONS {
            assert_eq!(
                with_reason(reason).map(|f| f.reason),
                Some(reason.to_owned())
            );
        }
        assert_eq!(
            with_reason("InvalidImageName").map(|f| f.message),
            Some(r#"container "web" has an invalid image name "registry.example/app:1a2b3c4": InvalidImageName"#.to_owned())
        );
        for reason in ["ContainerCreating", "PodInitializing"] {
            assert_eq!(with_reason(reason), None, "{reason}");
        }
    }

    #[test]
    fn failed_init_container_is_doomed() {
        // Hand-edited from pod-init-ready.json: kwok never fails init containers.
        let json = include_str!("fixtures/pod-init-container-failed.json");
        assert_eq!(
            doom_of(json, "web-init"),
            failure(
                "web-init",
                "InitContainerFailed",
                r#"init container "wait-for-db" exited with code 1 (Error)"#
            )
        );
    }

    #[test]
    fn only_config_errors_naming_a_missing_object_or_key_are_doomed() {
        let with = |message: &str| {
            config_error_pod_waiting("CreateContainerConfigError", Some(message)).map(|f| f.reason)
        };
        let doomed = Some("CreateContainerConfigError".to_owned());
        assert_eq!(with(r#"secret "app-secrets" not found"#), doomed);
        assert_eq!(
            with("couldn't find key token in Secret fixtures/app-secrets"),
            doomed
        );
        assert_eq!(
            with("failed to sync configmap cache: timed out waiting for the condition"),
            None
        );
    }

    /// `pod` with its init container `wait-for-db` made a native sidecar.
    fn as_sidecar(pod: &Pod) -> Pod {
        let mut pod = pod.clone();
        let spec = pod.spec.as_mut().unwrap();
        let init = &mut spec.init_containers.as_mut().unwrap()[0];
        assert_eq!(init.name, "wait-for-db");
        init.restart_policy = Some("Always".to_owned());
        pod
    }

    #[test]
    fn an_exited_native_sidecar_or_a_pod_being_deleted_is_not_doomed() {
        // Seen on real-0: the db-proxy sidecar of a pod being replaced exits
        // 143 on SIGTERM. Hand-edited from pod-init-container-failed.json.
        let objects = Objects::load(include_str!("fixtures/pod-init-container-failed.json"));
        let doomed = |pod: &Pod| doom(pod, &[], now(), Thresholds::default());
        assert!(doomed(objects.pod("web-init")).is_some());

        assert_eq!(doomed(&as_sidecar(objects.pod("web-init"))), None);

        let mut leaving = objects.pod("web-init").clone();
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        assert_eq!(doomed(&leaving), None);
    }

    #[test]
    fn a_crash_looping_native_sidecar_is_doomed() {
        let objects = Objects::load(include_str!("fixtures/pod-init-crashloop.json"));
        assert_eq!(
            doom(
                &as_sidecar(objects.pod("web-init")),
                &[],
                now(),
                Thresholds::default()
            )
            .map(|f| f.reason),
            Some("CrashLoopBackOff".to_owned())
        );
    }

    #[test]
    fn crash_looping_init_container_is_doomed() {
        // Hand-edited from pod-init-container-failed.json: the kubelet restarted it and backs off.
        let json = include_str!("fixtures/pod-init-crashloop.json");
        assert_eq!(
            doom_of(json, "web-init"),
            failure(
                "web-init",
                "CrashLoopBackOff",
                r#"init container "wait-for-db" keeps crashing: CrashLoopBackOff after 3 restarts, last exit code 1 (back-off 40s restarting failed container=wait-for-db pod=web-init_fixtures-rollout(d30b640b-c6f2-4e89-bfde-c372df4a6847))"#
            )
        );
    }

    #[test]
    fn unschedulable_dooms_only_after_the_threshold() {
        // PodScheduled=False/Unschedulable since 22:54:44.
        let objects = Objects::load(include_str!("fixtures/deployment-unschedulable.json"));
        let pod = objects.pod("stuck-976c9ffd4-9lngl");
        let defaults = Thresholds::default();
        assert_eq!(doom(pod, &[], at("2026-11-21T22:54:44Z"), defaults), None);
        assert_eq!(doom(pod, &[], at("2026-11-21T22:55:43Z"), defaults), None);
        let scheduler = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. no new claims to deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
        assert_eq!(
            doom(pod, &[], at("2026-11-21T22:55:44Z"), defaults),
            failure(
                "stuck-976c9ffd4-9lngl",
                "Unschedulable",
                &format!(
                    "pod has been unschedulable for 1m: no node matches its nodeSelector \
                     nope=nope; the scheduler: {scheduler}"
                )
            )
        );
        let impatient = Thresholds {
            unschedulable_after: Duration::from_secs(10),
            ..Thresholds::default()
        };
        let failed = doom(pod, &[], at("2026-11-21T22:54:59Z"), impatient).unwrap();
        assert_eq!(
            failed.message,
            format!(
                "pod has been unschedulable for 15s: no node matches its nodeSelector nope=nope; \
                 the scheduler: {scheduler}"
            )
        );
    }

    #[test]
    fn failed_phase_dooms_pods_no_job_owns() {
        let objects = Objects::load(include_str!("fixtures/job-backoff-limit.json"));
        let job_pod = objects.pod("migrate-fail-k2ghs");
        assert_eq!(doom(job_pod, &[], now(), Thresholds::default()), None);

        let mut bare = job_pod.clone();
        bare.metadata.owner_references = None;
        assert_eq!(
            doom(&bare, &[], now(), Thresholds::default()),
            failure(
                "migrate-fail-k2ghs",
                "PodFailed",
                r#"pod failed: container "migrate" exited with code 1 (Error: kwok fault: image tag fa11ed fails)"#
            )
        );

        let mut evicted = bare.clone();
        evicted.status.as_mut().unwrap().reason = Some("Evicted".to_owned());
        assert_eq!(doom(&evicted, &[], now(), Thresholds::default()), None);
    }

    /// The failing-readiness fixture: its pod and the kubelet's events.
    fn unready_pod() -> Objects {
        Objects::load(include_str!("fixtures/pod-readiness-failing.json"))
    }

    #[test]
    fn a_failing_readiness_probe_dooms_after_the_threshold_with_its_last_failure() {
        // The container started at 22:54:50; probes failed from 22:54:51 to 22:56:26.
        let objects = unready_pod();
        let pod = &objects.pods[0];
        let doom_at = |t: &str| doom(pod, &objects.events, at(t), Thresholds::default());
        assert_eq!(doom_at("2026-11-21T22:55:49Z"), None);
        assert_eq!(
            doom_at("2026-11-21T22:56:30Z"),
            failure(
                "web-7c9d5f6b8-x2v4q",
                "ReadinessProbeFailed",
                r#"container "web" has run unready for 1m40s, 19 failed probes: Readiness probe failed: HTTP probe failed with statuscode: 503"#
            )
        );
        let patient = Thresholds {
            unready_after: Duration::from_secs(120),
            ..Thresholds::default()
        };
        assert_eq!(doom(pod, &objects.events, now(), patient), None);
    }

    #[test]
    fn unready_without_the_kubelets_word_is_not_doomed() {
        let objects = unready_pod();
        let pod = &objects.pods[0];
        // No probe failure reported (a readiness gate, or no probe yet).
        assert_eq!(doom(pod, &[], now(), Thresholds::default()), None);
        // Failures of another pod, another container, or another probe do not count.
        let mut other_pod = objects.events.clone();
        other_pod.iter_mut().for_each(|e| {
            e.involved_object.uid = Some("another-pod".into());
        });
        assert_eq!(doom(pod, &other_pod, now(), Thresholds::default()), None);
        let mut sidecar = objects.events.clone();
        sidecar.iter_mut().for_each(|e| {
            e.involved_object.field_path = Some("spec.containers{proxy}".into());
        });
        assert_eq!(doom(pod, &sidecar, now(), Thresholds::default()), None);
        let mut liveness = objects.events.clone();
        liveness.iter_mut().for_each(|e| {
            e.message =
                Some("Liveness probe failed: HTTP probe failed with statuscode: 500".into());
        });
        assert_eq!(doom(pod, &liveness, now(), Thresholds::default()), None);
    }

    #[test]
    fn unready_is_timed_from_the_containers_latest_start() {
        let objects = unready_pod();
        let mut restarted = objects.pods[0].clone();
        let status = restarted.status.as_mut().unwrap();
        let container = &mut status.container_statuses.as_mut().unwrap()[0];
        container.restart_count = 1;
        container
            .state
            .as_mut()
            .unwrap()
            .running
            .as_mut()
            .unwrap()
            .started_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
            "2026-11-21T22:56:27Z",
        )));
        // Every failure reported is older than the running container.
        let later = at("2026-11-21T22:58:00Z");
        assert_eq!(
            doom(&restarted, &objects.events, later, Thresholds::default()),
            None
        );
    }

    #[test]
    fn a_ready_or_starting_pod_is_not_unready() {
        let objects = unready_pod();
        let mut ready = objects.pods[0].clone();
        let status = ready.status.as_mut().unwrap();
        status.container_statuses.as_mut().unwrap()[0].ready = true;
        assert_eq!(
            doom(&ready, &objects.events, now(), Thresholds::default()),
            None
        );

        let mut starting = objects.pods[0].clone();
        let status = starting.status.as_mut().unwrap();
        status.container_statuses.as_mut().unwrap()[0].state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        });
        assert_eq!(
            doom(&starting, &objects.events, now(), Thresholds::default()),
            None
        );
    }
}
