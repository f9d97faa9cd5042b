//! Ordered server-side apply of rendered objects, and pruning.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};
use kube::{Api, Client, ResourceExt};

use crate::error::input_error;

/// How many objects of one phase are applied at once.
const CONCURRENCY: usize = 8;

/// A rendered object with the API resource it is served by.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The object as rendered and pinned.
    pub object: DynamicObject,
    /// Its group, version and plural.
    pub resource: ApiResource,
    /// Whether it lives in a namespace.
    pub namespaced: bool,
}

impl Resolved {
    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.resource.kind, self.object.name_any())
    }

    fn api(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        if self.namespaced {
            Api::namespaced_with(client.clone(), namespace, &self.resource)
        } else {
            Api::all_with(client.clone(), &self.resource)
        }
    }
}

/// The apply phase of a kind: namespaces and CRDs, then configuration, then
/// Services and Ingresses, then anything else, then workloads.
pub fn phase(kind: &str) -> u8 {
    match kind {
        "Namespace" | "CustomResourceDefinition" => 0,
        "ConfigMap"
        | "Secret"
        | "ServiceAccount"
        | "Role"
        | "RoleBinding"
        | "ClusterRole"
        | "ClusterRoleBinding"
        | "PersistentVolumeClaim"
        | "LimitRange"
        | "ResourceQuota"
        | "NetworkPolicy"
        | "PodDisruptionBudget"
        | "PriorityClass" => 1,
        "Service" | "Ingress" | "IngressClass" => 2,
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" | "ReplicaSet" | "Pod" => 4,
        _ => 3,
    }
}

/// Find the API resource of every object; an unknown kind is an input error.
pub async fn resolve(
    client: &Client,
    objects: Vec<DynamicObject>,
) -> anyhow::Result<Vec<Resolved>> {
    let mut kinds = Vec::with_capacity(objects.len());
    for object in &objects {
        let types = object.types.clone().ok_or_else(|| {
            input_error(format!(
                "object {} has no apiVersion/kind",
                object.name_any()
            ))
        })?;
        let gvk = GroupVersionKind::try_from(&types)
            .map_err(|e| input_error(format!("object {}: {e}", object.name_any())))?;
        kinds.push(gvk);
    }
    // One discovery request per distinct kind, all at once.
    let distinct: BTreeSet<(String, String, String)> = kinds
        .iter()
        .map(|k| (k.group.clone(), k.version.clone(), k.kind.clone()))
        .collect();
    let found: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)> =
        try_join_all(distinct.into_iter().map(|(group, version, kind)| async move {
            let gvk = GroupVersionKind::gvk(&group, &version, &kind);
            let pinned = pinned_kind(client, &gvk).await.map_err(|e| {
                let api_version = if group.is_empty() { version.clone() } else { format!("{group}/{version}") };
                input_error(format!(
                    "the cluster does not serve {api_version}/{kind} ({e}); install its CRD first or fix the overlay"
                ))
            })?;
            anyhow::Ok((gvk, pinned))
        }))
        .await?
        .into_iter()
        .collect();
    Ok(objects
        .into_iter()
        .zip(kinds)
        .map(|(object, gvk)| {
            let (resource, capabilities) = &found[&gvk];
            Resolved {
                object,
                resource: resource.clone(),
                namespaced: capabilities.scope == Scope::Namespaced,
            }
        })
        .collect())
}

/// Server-side apply every object, phase by phase, with field manager
/// `berth`; `dry_run` asks the server to compute the result without saving.
/// Applies the objects exactly as given. Returns the objects as the server
/// answered.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    objects: &[Resolved],
    dry_run: bool,
) -> anyhow::Result<Vec<(Resolved, DynamicObject)>> {
    let mut params = PatchParams::apply(super::FIELD_MANAGER).force();
    params.dry_run = dry_run;
    let phases: BTreeSet<u8> = objects.iter().map(|o| phase(&o.resource.kind)).collect();
    let mut applied = Vec::with_capacity(objects.len());
    for current in phases {
        let batch: Vec<&Resolved> = objects
            .iter()
            .filter(|o| phase(&o.resource.kind) == current)
            .collect();
        let results: Vec<(Resolved, DynamicObject)> = stream::iter(batch)
            .map(|item| {
                let params = params.clone();
                async move {
                    let api = item.api(client, namespace);
                    let answer = api
                        .patch(
                            &item.object.name_any(),
                            &params,
                            &Patch::Apply(&item.object),
                        )
                        .await
                        .with_context(|| format!("applying {}", item.describe()))?;
                    // names only: the suite's canary check reads these lines
                    tracing::debug!(dry_run, "applied {}", item.describe());
                    anyhow::Ok((item.clone(), answer))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        applied.extend(results);
    }
    Ok(applied)
}

/// Delete objects labelled with `instance` in `namespace` whose kind is among
/// `kinds` but which are not in `keep`. Returns what it deleted (`Kind/name`).
pub async fn prune(
    client: &Client,
    namespace: &str,
    instance: &str,
    kinds: &[Resolved],
    keep: &[Resolved],
) -> anyhow::Result<Vec<String>> {
    // Release records are Secrets with berth's labels too: never prune them.
    let selector = format!(
        "{}={},{}={},!{}",
        super::MANAGED_BY.0,
        super::MANAGED_BY.1,
        super::INSTANCE_LABEL,
        instance,
        super::release::RECORD_LABEL
    );
    let kept: BTreeSet<(String, String)> = keep
        .iter()
        .map(|r| (r.resource.kind.clone(), r.object.name_any()))
        .collect();
    let mut seen_kinds = BTreeSet::new();
    let mut deleted = Vec::new();
    for kind in kinds {
        if !seen_kinds.insert(kind.resource.kind.clone()) {
            continue;
        }
        let api = kind.api(client, namespace);
        let live = api
            .list(&ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("listing {} to prune", kind.resource.plural))?;
        for object in live {
            let name = object.name_any();
            if kept.contains(&(kind.resource.kind.clone(), name.clone())) {
                continue;
            }
            let existed = super::delete_if_present(&api, &name, &DeleteParams::background())
                .await
                .with_context(|| format!("pruning {}/{name}", kind.resource.kind))?;
            if existed {
                deleted.push(format!("{}/{name}", kind.resource.kind));
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::phase;

    #[test]
    fn namespaces_come_first_then_config_then_services_then_workloads() {
        let order = [
            "Namespace",
            "ConfigMap",
            "Service",
            "HorizontalPodAutoscaler",
            "Deployment",
        ];
        let phases: Vec<u8> = order.iter().map(|k| phase(k)).collect();
        assert!(phases.windows(2).all(|w| w[0] < w[1]), "{phases:?}");
        assert_eq!(phase("CustomResourceDefinition"), phase("Namespace"));
        assert_eq!(phase("Secret"), phase("ConfigMap"));
        assert_eq!(phase("Ingress"), phase("Service"));
        assert_eq!(phase("StatefulSet"), phase("Deployment"));
    }
}
