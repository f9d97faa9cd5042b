//! The pods of a Deployment, and choosing a Ready one to run a command in.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::ListParams;
use kube::{Api, Client};

use crate::error::input_error;

/// A Ready pod of the Deployment `workload` in `namespace`. `key` names the
/// berth.yaml setting (or flag) that chose the workload, for messages.
pub async fn ready_pod(
    client: &Client,
    namespace: &str,
    workload: &str,
    key: &str,
) -> anyhow::Result<Pod> {
    let deployment = deployment(client, namespace, workload, key).await?;
    let selector = selector(&deployment).ok_or_else(|| {
        input_error(format!(
            "Deployment {workload} in namespace {namespace} has no label selector; \
             give {key} a Deployment that selects its pods with `matchLabels`"
        ))
    })?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    let total = list.items.len();
    choose_ready(&list.items).cloned().ok_or_else(|| {
        input_error(format!(
            "no Ready pod of Deployment {workload} in namespace {namespace} ({total} pod(s), none Ready); \
             wait for the rollout (`{berth} status`), or check the pods with \
             `kubectl -n {namespace} get pods -l {selector}`",
            berth = crate::program::name()
        ))
    })
}

/// The pods API of `namespace`.
pub fn api(client: &Client, namespace: &str) -> Api<Pod> {
    Api::namespaced(client.clone(), namespace)
}

/// The Deployment `workload`, or an input error naming `key` and how to fix it.
pub async fn deployment(
    client: &Client,
    namespace: &str,
    workload: &str,
    key: &str,
) -> anyhow::Result<Deployment> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    deployments.get_opt(workload).await?.ok_or_else(|| {
        input_error(format!(
            "no Deployment {workload} in namespace {namespace}; fix {key} \
             (`kubectl -n {namespace} get deployments` lists them), or deploy the environment first"
        ))
    })
}

/// The Deployment's `matchLabels` as a label selector, such as `app=web,tier=db`.
fn selector(deployment: &Deployment) -> Option<String> {
    let labels = deployment.spec.as_ref()?.selector.match_labels.as_ref()?;
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    (!pairs.is_empty()).then(|| pairs.join(","))
}

/// The pod to run in: Running, Ready and not being deleted; of those, the
/// newest (most likely of the current revision), by name when equally new.
pub fn choose_ready(pods: &[Pod]) -> Option<&Pod> {
    pods.iter().filter(|pod| is_ready(pod)).max_by(|a, b| {
        let created = |pod: &Pod| pod.metadata.creation_timestamp.clone().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    })
}

/// Whether a pod is Running, Ready and not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The container to use in `spec`: `wanted` if the pod has it, else the
/// first. An input error naming `key` when `wanted` is missing.
pub fn container(spec: &PodSpec, wanted: Option<&str>, key: &str) -> anyhow::Result<String> {
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    match wanted {
        Some(name) if names.contains(&name) => Ok(name.to_owned()),
        Some(name) => Err(input_error(format!(
            "the pod has no container {name} (it has {}); fix {key}",
            names.join(", ")
        ))),
        None => names
            .first()
            .map(|name| (*name).to_owned())
            .ok_or_else(|| input_error("the pod has no container")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, phase: &str, ready: &str, deleting: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "creationTimestamp": created },
            "spec": { "containers": [{ "name": "app" }, { "name": "proxy" }] },
            "status": { "phase": phase, "conditions": [{ "type": "Ready", "status": ready }] }
        }))
        .unwrap();
        if deleting {
            pod.metadata.deletion_timestamp = pod.metadata.creation_timestamp.clone();
        }
        pod
    }

    fn name(pod: Option<&Pod>) -> Option<&str> {
        pod.and_then(|p| p.metadata.name.as_deref())
    }

    #[test]
    fn a_ready_pod_is_chosen_over_unready_ones_listed_first() {
        let pods = [
            pod(
                "a-unready",
                "2026-01-01T00:00:05Z",
                "Running",
                "False",
                false,
            ),
            pod(
                "b-pending",
                "2026-01-01T00:00:06Z",
                "Pending",
                "False",
                false,
            ),
            pod("c-ready", "2026-01-01T00:00:01Z", "Running", "True", false),
        ];
        assert_eq!(name(choose_ready(&pods)), Some("c-ready"));
    }

    #[test]
    fn the_newest_ready_pod_wins_and_terminating_ones_never() {
        let pods = [
            pod("old", "2026-01-01T00:00:01Z", "Running", "True", false),
            pod("new", "2026-01-01T00:00:09Z", "Running", "True", false),
            pod("leaving", "2026-01-01T00:00:10Z", "Running", "True", true),
        ];
        assert_eq!(name(choose_ready(&pods)), Some("new"));
        let twins = [
            pod("b", "2026-01-01T00:00:01Z", "Running", "True", false),
            pod("a", "2026-01-01T00:00:01Z", "Running", "True", false),
        ];
        assert_eq!(name(choose_ready(&twins)), Some("a"));
    }

    #[test]
    fn no_ready_pod_is_none() {
        let pods = [pod(
            "x",
            "2026-01-01T00:00:01Z",
            "Succeeded",
            "False",
            false,
        )];
        assert_eq!(name(choose_ready(&pods)), None);
        assert_eq!(name(choose_ready(&[])), None);
    }

    #[test]
    fn the_container_is_the_wanted_one_or_the_first() {
        let spec = pod("x", "2026-01-01T00:00:01Z", "Running", "True", false)
            .spec
            .unwrap();
        assert_eq!(container(&spec, None, "k").unwrap(), "app");
        assert_eq!(container(&spec, Some("proxy"), "k").unwrap(), "proxy");
        let error = format!(
            "{:#}",
            container(&spec, Some("web"), "database.container").unwrap_err()
        );
        assert!(
            error.contains("no container web (it has app, proxy); fix database.container"),
            "{error}"
        );
    }
}
