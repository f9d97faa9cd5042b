//! The kinds berth lists and watches while it waits on a rollout or a
//! migration: one list, read by the watchers ([`crate::wait`],
//! [`crate::migrate`], which cannot start a watch of a kind not listed here)
//! and by the permission check ([`super::access`]), so the check asks for
//! exactly what the watches do.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::runtime::watcher;

/// A kind that is listed and watched in the environment's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Watched {
    /// The kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// API group ("" for the core group).
    pub group: &'static str,
    /// Plural resource name, e.g. `deployments`.
    pub resource: &'static str,
}

impl Watched {
    /// The entry of Kubernetes type `K`.
    pub const fn of<K: k8s_openapi::Resource>() -> Watched {
        Watched {
            kind: K::KIND,
            group: K::GROUP,
            resource: K::URL_PATH_SEGMENT,
        }
    }

    /// Whether type `K` is in `list`; a `const` function, so a watcher can
    /// assert it at compile time.
    pub const fn listed<K: k8s_openapi::Resource>(list: &[Watched]) -> bool {
        let mut i = 0;
        while i < list.len() {
            if same(list[i].kind, K::KIND)
                && same(list[i].group, K::GROUP)
                && same(list[i].resource, K::URL_PATH_SEGMENT)
            {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// String equality usable in `const` context.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The workload kinds the rollout wait gives verdicts on, each watched when
/// a deploy has one.
pub const WORKLOADS: [Watched; 4] = [
    Watched::of::<Deployment>(),
    Watched::of::<StatefulSet>(),
    Watched::of::<DaemonSet>(),
    Watched::of::<Job>(),
];

/// What the rollout wait watches besides the workloads: their ReplicaSets,
/// pods, and the pods' probe failures (events, [`PROBE_FAILURES`]).
pub const WORKLOAD_PARTS: [Watched; 3] = [
    Watched::of::<ReplicaSet>(),
    Watched::of::<Pod>(),
    Watched::of::<Event>(),
];

/// The field selector of the events a rollout's verdicts read: the
/// kubelet's `Unhealthy` events, one per failing probe and container.
pub const PROBE_FAILURES: &str = "reason=Unhealthy";

/// What a migration watches: its Job and the Job's pods.
pub const MIGRATION: [Watched; 2] = [Watched::of::<Job>(), Watched::of::<Pod>()];

/// What waiting on workloads of `kinds` watches: those kinds (others are
/// ignored) and, if there is any, their ReplicaSets, pods and probe failures.
pub fn rollout<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Vec<Watched> {
    let kinds: Vec<&str> = kinds.into_iter().collect();
    let mut watched: Vec<Watched> = WORKLOADS
        .into_iter()
        .filter(|w| kinds.contains(&w.kind))
        .collect();
    if !watched.is_empty() {
        watched.extend(WORKLOAD_PARTS);
    }
    watched
}

/// A watch the API server refuses for good: berth may not list or watch the
/// kind (403), or the cluster does not serve it (404). Retrying cannot help.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the API server refused to let berth {verb} {resource} in namespace {namespace} ({message}), \
     so the rollout cannot be followed; grant `{verb}` on `{resource}` (group {group}) to the \
     deployer (see cluster-setup/rbac/deployer.yaml), or, if its credentials were revoked \
     during the deploy, restore them",
    resource = .watched.resource,
    group = if .watched.group.is_empty() { "core" } else { .watched.group }
)]
pub struct WatchRefused {
    /// The kind whose watch was refused.
    pub watched: Watched,
    /// `list` (the watch's initial list) or `watch`.
    pub verb: &'static str,
    /// The namespace watched.
    pub namespace: String,
    /// The API server's message.
    pub message: String,
}

/// `error` from the watch of `watched` in `namespace`, if it is a refusal
/// that retrying cannot fix; anything else is transient (the watcher retries).
pub fn refused(watched: Watched, namespace: &str, error: &watcher::Error) -> Option<WatchRefused> {
    let (verb, status) = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => ("list", s.as_ref()),
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => ("watch", s.as_ref()),
        _ => return None,
    };
    (status.is_forbidden() || status.is_not_found()).then(|| WatchRefused {
        watched,
        verb,
        namespace: namespace.to_string(),
        message: status.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_workload_kinds_present_are_watched_with_their_pods() {
        let resources = |w: Vec<Watched>| w.iter().map(|w| w.resource).collect::<Vec<_>>();
        assert_eq!(
            resources(rollout(["Deployment", "Service", "Job"])),
            ["deployments", "jobs", "replicasets", "pods", "events"]
        );
        assert!(rollout(["ConfigMap"]).is_empty());
        assert_eq!(
            Watched::of::<StatefulSet>(),
            Watched {
                kind: "StatefulSet",
                group: "apps",
                resource: "statefulsets"
            }
        );
        assert!(Watched::listed::<Pod>(&MIGRATION));
        assert!(!Watched::listed::<Deployment>(&MIGRATION));
    }

    #[test]
    fn a_forbidden_watch_is_a_refusal_naming_the_verb_and_a_transient_error_is_not() {
        let status = |code: u16, reason: &str| {
            Box::new(kube::core::Status::failure("pods is forbidden", reason).with_code(code))
        };
        let pods = Watched::of::<Pod>();
        let refusal = refused(
            pods,
            "shop",
            &watcher::Error::WatchStartFailed(kube::Error::Api(status(403, "Forbidden"))),
        )
        .unwrap();
        assert_eq!(refusal.verb, "watch");
        let text = refusal.to_string();
        assert!(
            text.contains("berth watch pods in namespace shop"),
            "{text}"
        );
        assert!(
            text.contains("grant `watch` on `pods` (group core)"),
            "{text}"
        );
        let listing = refused(
            pods,
            "shop",
            &watcher::Error::InitialListFailed(kube::Error::Api(status(403, "Forbidden"))),
        );
        assert_eq!(listing.unwrap().verb, "list");
        assert!(
            refused(
                pods,
                "shop",
                &watcher::Error::WatchFailed(kube::Error::Api(status(500, "InternalError")))
            )
            .is_none()
        );
        assert!(refused(pods, "shop", &watcher::Error::NoResourceVersion).is_none());
    }
}
