//! Ordered server-side apply of rendered objects, and pruning.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};
use kube::error::DiscoveryError;
use kube::{Api, Client, ResourceExt};

use super::crds;
use super::kinds::{self, Missing, Origin};
use crate::error::input_error;
use crate::output::Output;

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
    /// The CRD of the same objects that defines its kind, when the cluster
    /// does not serve the kind yet: it is served once that CRD is applied
    /// and Established.
    pub with_crd: Option<String>,
}

impl Resolved {
    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.resource.kind, self.object.name_any())
    }

    /// Its apply phase ([`phase`]).
    pub fn phase(&self) -> u8 {
        phase(&self.resource.group, &self.resource.kind)
    }

    /// Whether it is a CustomResourceDefinition.
    pub fn is_crd(&self) -> bool {
        self.resource.kind == "CustomResourceDefinition"
            && self.resource.group == "apiextensions.k8s.io"
    }

    /// Whether a chart ships it in its `crds/` ([`crds::FROM_CHART_CRDS`]).
    pub fn from_chart_crds(&self) -> bool {
        self.object
            .annotations()
            .contains_key(crds::FROM_CHART_CRDS)
    }

    fn api(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        if self.namespaced {
            Api::namespaced_with(client.clone(), namespace, &self.resource)
        } else {
            Api::all_with(client.clone(), &self.resource)
        }
    }
}

/// The apply phase of a kind of API group `group`:
/// 0. namespaces and CRDs (the CRDs then Established before anything else);
/// 1. configuration (ConfigMaps, Secrets, ServiceAccounts, RBAC, ...);
/// 2. custom resources (any kind outside Kubernetes' own API groups), which
///    Services and Ingresses may name in annotations (BackendConfig,
///    FrontendConfig, ManagedCertificate), so a controller never sees a
///    Service or Ingress naming one that does not exist yet;
/// 3. Services and Ingresses;
/// 4. Kubernetes' other kinds (HorizontalPodAutoscalers, ...);
/// 5. workloads.
pub fn phase(group: &str, kind: &str) -> u8 {
    if !kinds::is_builtin_group(group) {
        return 2;
    }
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
        "Service" | "Ingress" | "IngressClass" => 3,
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" | "ReplicaSet" | "Pod" => 5,
        _ => 4,
    }
}

/// `objects` in apply order: by [`phase`], as given within a phase.
pub fn in_order(objects: &[Resolved]) -> Vec<&Resolved> {
    let mut ordered: Vec<&Resolved> = objects.iter().collect();
    ordered.sort_by_key(|o| o.phase());
    ordered
}

/// Find the API resource of every object: served by the cluster, or
/// defined by a CRD among `objects` (`with_crd`). Kinds neither serves are
/// bad input, all named in one message ([`Missing`]) whose fix suits
/// `origin`; a discovery that fails otherwise (forbidden, unreachable) is
/// reported as what it is.
pub async fn resolve(
    client: &Client,
    objects: Vec<DynamicObject>,
    origin: Origin,
) -> anyhow::Result<Vec<Resolved>> {
    let mut gvks = Vec::with_capacity(objects.len());
    for object in &objects {
        let types = object.types.clone().ok_or_else(|| {
            input_error(format!(
                "object {} has no apiVersion/kind",
                object.name_any()
            ))
        })?;
        let gvk = GroupVersionKind::try_from(&types)
            .map_err(|e| input_error(format!("object {}: {e}", object.name_any())))?;
        gvks.push(gvk);
    }
    let mut counts: HashMap<GroupVersionKind, usize> = HashMap::new();
    for gvk in &gvks {
        *counts.entry(gvk.clone()).or_default() += 1;
    }
    // One discovery request per distinct kind, all at once.
    let answers = try_join_all(
        counts
            .keys()
            .map(|gvk| async move { anyhow::Ok((gvk.clone(), discover(client, gvk).await?)) }),
    )
    .await?;
    let defined = kinds::defined_by_crds(&objects);
    let mut found: HashMap<GroupVersionKind, (ApiResource, bool, Option<String>)> = HashMap::new();
    let mut missing = Missing::default();
    for (gvk, answer) in answers {
        let provided = match answer {
            Some((resource, capabilities)) => {
                Some((resource, capabilities.scope == Scope::Namespaced, None))
            }
            None => defined
                .get(&gvk)
                .map(|d| (d.resource.clone(), d.namespaced, Some(d.crd.clone()))),
        };
        match provided {
            Some(provided) => {
                found.insert(gvk, provided);
            }
            None => missing.add(&gvk, counts[&gvk]),
        }
    }
    if !missing.is_empty() {
        return Err(input_error(missing.message(origin)));
    }
    Ok(objects
        .into_iter()
        .zip(gvks)
        .map(|(object, gvk)| {
            let (resource, namespaced, with_crd) = found[&gvk].clone();
            Resolved {
                object,
                resource,
                namespaced,
                with_crd,
            }
        })
        .collect())
}

/// The API resource serving `gvk`, or `None` when the cluster does not
/// serve it (discovery answers 404, or the group version lacks the kind).
async fn discover(
    client: &Client,
    gvk: &GroupVersionKind,
) -> anyhow::Result<Option<(ApiResource, ApiCapabilities)>> {
    let shown = format!("{} {}", gvk.api_version(), gvk.kind);
    match pinned_kind(client, gvk).await {
        Ok(found) => Ok(Some(found)),
        // a path the server does not serve answers a plain-text 404
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(kube::Error::Discovery(DiscoveryError::MissingKind(_))) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(input_error(format!(
            "the deployer may not discover {shown}: {}; grant it discovery \
             (the system:discovery ClusterRole)",
            status.message
        ))),
        Err(e) => Err(e).with_context(|| format!("discovering {shown}")),
    }
}

/// Server-side apply every object, phase by phase, with field manager
/// `berth`; after the phase holding CustomResourceDefinitions, wait until
/// each is Established ([`crds::established`]) so their custom resources
/// can be applied. An object of a chart's `crds/` that exists is left as
/// it is (and said so), unless `upgrade_crds`. `dry_run` asks the server
/// to compute the result without saving; an object whose CRD is not
/// installed yet cannot be computed and is answered as given. Returns the
/// objects as the server answered, in apply order.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    objects: &[Resolved],
    dry_run: bool,
    upgrade_crds: bool,
    out: &Output,
) -> anyhow::Result<Vec<(Resolved, DynamicObject)>> {
    let mut params = PatchParams::apply(super::FIELD_MANAGER).force();
    params.dry_run = dry_run;
    let ordered = in_order(objects);
    let mut applied = Vec::with_capacity(objects.len());
    for batch in ordered.chunk_by(|a, b| a.phase() == b.phase()) {
        let results: Vec<(Resolved, DynamicObject)> = stream::iter(batch.iter().copied())
            .map(|item| {
                let params = params.clone();
                async move {
                    if dry_run && item.with_crd.is_some() {
                        return anyhow::Ok((item.clone(), item.object.clone()));
                    }
                    let api = item.api(client, namespace);
                    if item.from_chart_crds() && !upgrade_crds {
                        let name = item.object.name_any();
                        let live = api
                            .get_opt(&name)
                            .await
                            .with_context(|| format!("reading {}", item.describe()))?;
                        if let Some(live) = live {
                            if !dry_run {
                                out.info(&crds::left_unchanged(&item.describe()));
                            }
                            return anyhow::Ok((item.clone(), live));
                        }
                    }
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
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let crds: Vec<String> = batch
            .iter()
            .filter(|o| o.is_crd())
            .map(|o| o.object.name_any())
            .collect();
        if !dry_run && !crds.is_empty() {
            crds::established(client, &crds, crds::ESTABLISHED_WITHIN, out).await?;
        }
        applied.extend(results);
    }
    Ok(applied)
}

/// Delete objects labelled with `instance` in `namespace` whose kind is among
/// `kinds` but which are not in `keep`, never one of a chart's `crds/`
/// ([`crds::FROM_CHART_CRDS`]). Returns what it deleted (`Kind/name`).
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
            // helm never deletes the CRDs of a chart's crds/: nor does berth
            if object.annotations().contains_key(crds::FROM_CHART_CRDS) {
                continue;
            }
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
    fn namespaces_then_config_then_custom_resources_then_services_then_workloads() {
        let order = [
            ("", "Namespace"),
            ("", "ConfigMap"),
            ("cloud.google.com", "BackendConfig"),
            ("", "Service"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("apps", "Deployment"),
        ];
        let phases: Vec<u8> = order.iter().map(|(g, k)| phase(g, k)).collect();
        assert!(phases.windows(2).all(|w| w[0] < w[1]), "{phases:?}");
        assert_eq!(
            phase("apiextensions.k8s.io", "CustomResourceDefinition"),
            phase("", "Namespace")
        );
        assert_eq!(phase("", "Secret"), phase("", "ConfigMap"));
        assert_eq!(phase("networking.k8s.io", "Ingress"), phase("", "Service"));
        assert_eq!(phase("apps", "StatefulSet"), phase("apps", "Deployment"));
        // every custom resource, whatever its kind is called
        assert_eq!(
            phase("networking.gke.io", "ManagedCertificate"),
            phase("example.com", "Service")
        );
        assert!(
            phase("networking.gke.io", "FrontendConfig") < phase("networking.k8s.io", "Ingress")
        );
    }
}
