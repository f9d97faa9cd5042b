//! What the deployer may do, asked of the API server before anything changes
//! (SelfSubjectAccessReview), so a deploy never stops half-way for want of a
//! permission.

use std::collections::BTreeSet;

use anyhow::Context;
use futures::future::try_join_all;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::apply::Resolved;
use super::watched::{self, Watched};
use crate::error::input_error;

/// One permission a deploy needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    /// API verb: get, list, watch, create, patch, update, delete.
    pub verb: &'static str,
    /// API group ("" for the core group).
    pub group: String,
    /// Plural resource name, with `/subresource` where one is meant.
    pub resource: String,
    /// The namespace, for namespaced resources.
    pub namespace: Option<String>,
    /// The one object meant, when only it is (a deployer may be granted
    /// `get` on its own namespace only, by `resourceNames`).
    pub name: Option<String>,
}

impl Need {
    fn new(verb: &'static str, group: &str, resource: &str, namespace: Option<&str>) -> Need {
        Need {
            verb,
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            name: None,
        }
    }

    /// This need for the object `name` only.
    fn named(mut self, name: &str) -> Need {
        self.name = Some(name.to_string());
        self
    }

    /// `list` and `watch` of `watched`, as the watchers of [`watched`] need them.
    fn list_and_watch(watched: Watched, namespace: &str) -> [Need; 2] {
        ["list", "watch"]
            .map(|verb| Need::new(verb, watched.group, watched.resource, Some(namespace)))
    }

    fn describe(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        let place = match (&self.name, &self.namespace) {
            (Some(name), _) => format!("named {name}"),
            (None, Some(n)) => format!("in namespace {n}"),
            (None, None) => "cluster-wide".to_string(),
        };
        format!("{} {} ({group}) {place}", self.verb, self.resource)
    }
}

/// Everything a deploy of `objects` into `namespace` does to the cluster;
/// `create_namespace`: the namespace does not exist yet and berth creates it.
pub fn deploy_needs(
    objects: &[Resolved],
    namespace: &str,
    migration: bool,
    prune: bool,
    create_namespace: bool,
) -> Vec<Need> {
    let ns = Some(namespace);
    let mut needs = BTreeSet::new();
    for object in objects {
        let place = object.namespaced.then_some(namespace);
        let (group, plural) = (&object.resource.group, &object.resource.plural);
        needs.insert(Need::new("patch", group, plural, place));
        needs.insert(Need::new("create", group, plural, place));
        if prune {
            needs.insert(Need::new("list", group, plural, place));
            needs.insert(Need::new("delete", group, plural, place));
        }
    }
    for verb in ["get", "create", "update", "delete"] {
        needs.insert(Need::new(verb, "coordination.k8s.io", "leases", ns));
    }
    for verb in ["list", "create", "update", "delete"] {
        needs.insert(Need::new(verb, "", "secrets", ns));
    }
    // the rollout wait watches the workload kinds rendered, and their pods
    for kind in watched::rollout(objects.iter().map(|o| o.resource.kind.as_str())) {
        needs.extend(Need::list_and_watch(kind, namespace));
    }
    // a chart's crds/ are read first: one that exists is left as it is
    if objects.iter().any(Resolved::from_chart_crds) {
        needs.insert(Need::new(
            "get",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ));
    }
    // applied CRDs are watched until Established (cluster-wide objects)
    if objects.iter().any(Resolved::is_crd) {
        for verb in ["list", "watch"] {
            needs.insert(Need::new(
                verb,
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                None,
            ));
        }
    }
    // failures are explained from the failing pod's events
    needs.insert(Need::new("list", "", "events", ns));
    needs.insert(Need::new("get", "", "pods/log", ns));
    needs.insert(Need::new("get", "", "namespaces", None).named(namespace));
    if create_namespace {
        needs.insert(Need::new("create", "", "namespaces", None));
    }
    if migration {
        for verb in ["create", "get", "delete"] {
            needs.insert(Need::new(verb, "batch", "jobs", ns));
        }
        for kind in watched::MIGRATION {
            needs.extend(Need::list_and_watch(kind, namespace));
        }
    }
    needs.into_iter().collect()
}

/// What running chart hooks (`hooks`) adds to a deploy's needs: reading
/// and deleting their objects (`before-hook-creation`, `hook-succeeded`),
/// and watching a Pod hook's pod.
pub fn hook_needs(hooks: &[Resolved], namespace: &str) -> Vec<Need> {
    let mut needs = BTreeSet::new();
    for hook in hooks {
        let place = hook.namespaced.then_some(namespace);
        let (group, plural) = (&hook.resource.group, &hook.resource.plural);
        for verb in ["get", "delete"] {
            needs.insert(Need::new(verb, group, plural, place));
        }
    }
    needs.into_iter().collect()
}

/// Everything `berth maintenance ENV on|off` does in `namespace`: switch
/// Services, apply, watch and delete the maintenance server, take the lock.
pub fn maintenance_needs(namespace: &str) -> Vec<Need> {
    let ns = Some(namespace);
    let mut needs = BTreeSet::new();
    for verb in ["list", "get", "patch"] {
        needs.insert(Need::new(verb, "", "services", ns));
    }
    for (group, plural) in [("", "configmaps"), ("apps", "deployments")] {
        for verb in ["create", "patch", "delete"] {
            needs.insert(Need::new(verb, group, plural, ns));
        }
    }
    for kind in watched::rollout(["Deployment"]) {
        needs.extend(Need::list_and_watch(kind, namespace));
    }
    needs.insert(Need::new("get", "apps", "deployments", ns));
    for verb in ["get", "create", "update", "delete"] {
        needs.insert(Need::new(verb, "coordination.k8s.io", "leases", ns));
    }
    needs.into_iter().collect()
}

/// Ask the API server about every need; an input error lists what is denied.
pub async fn check(client: &Client, needs: &[Need]) -> anyhow::Result<()> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answers = try_join_all(needs.iter().map(|need| {
        let api = api.clone();
        async move {
            let (resource, subresource) = match need.resource.split_once('/') {
                Some((r, s)) => (r.to_string(), Some(s.to_string())),
                None => (need.resource.clone(), None),
            };
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(need.verb.into()),
                        group: Some(need.group.clone()),
                        resource: Some(resource),
                        subresource,
                        namespace: need.namespace.clone(),
                        name: need.name.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .context("asking the API server what the deployer may do")?;
            anyhow::Ok((need, answer.status.is_some_and(|s| s.allowed)))
        }
    }))
    .await?;
    let denied: Vec<String> = answers
        .into_iter()
        .filter(|(_, allowed)| !allowed)
        .map(|(need, _)| format!("  - {}", need.describe()))
        .collect();
    if denied.is_empty() {
        return Ok(());
    }
    Err(input_error(format!(
        "the deployer may not do everything this deploy needs:\n{}\ngrant it these permissions (see cluster-setup/rbac/deployer.yaml) or use a context that has them",
        denied.join("\n")
    )))
}
