//! What the cluster is and serves, for rendering a chart as `helm upgrade`
//! would against it ([`crate::render::Target`]): its version, and every
//! API group/version and group/version/Kind it serves, as helm lists them
//! (subresources' kinds included). Read with aggregated discovery (two
//! requests); a server without it is asked group by group.

use std::collections::BTreeSet;

use anyhow::Context;
use kube::Client;
use kube::core::discovery::v2::APIGroupDiscoveryList;
use kube::discovery::Discovery;

use crate::error::input_error;
use crate::render::{Target, kube_version};

/// The target for charts rendered against the cluster `client` reaches
/// through kubeconfig context `context` (`None`: the inferred one).
pub async fn target(client: &Client, context: Option<&str>) -> anyhow::Result<Target> {
    let (version, api_versions) = tokio::try_join!(server_version(client), api_versions(client))?;
    Ok(Target {
        kube_version: version,
        api_versions,
        context: context.map(str::to_owned),
    })
}

/// The server's version, as `--kube-version` takes it.
async fn server_version(client: &Client) -> anyhow::Result<String> {
    let info = client
        .apiserver_version()
        .await
        .context("reading the cluster's version (/version)")?;
    kube_version(&info.git_version, &info.major, &info.minor).ok_or_else(|| {
        input_error(format!(
            "the cluster reports a version berth cannot read (gitVersion {:?}, major {:?}, \
             minor {:?}), so a chart cannot be rendered for it; render the chart with \
             `helm template --kube-version` to see what it needs",
            info.git_version, info.major, info.minor
        ))
    })
}

/// Every group/version and group/version/Kind served, sorted.
async fn api_versions(client: &Client) -> anyhow::Result<Vec<String>> {
    let (apis, core) = tokio::try_join!(
        client.list_api_groups_aggregated(),
        client.list_core_api_versions_aggregated()
    )
    .map_err(refused)?;
    // A server without aggregated discovery answers the plain lists, read
    // here as empty ones: the core group always serves v1.
    if !core.items.is_empty() {
        return Ok(from_aggregated(&[apis, core]));
    }
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(refused)?;
    let mut served = BTreeSet::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (resource, _) in group.versioned_resources(version) {
                served.insert(resource.api_version.clone());
                served.insert(format!("{}/{}", resource.api_version, resource.kind));
            }
        }
    }
    Ok(served.into_iter().collect())
}

/// A discovery error as it is: forbidden is bad input naming the role.
fn refused(error: kube::Error) -> anyhow::Error {
    match error {
        kube::Error::Api(status) if status.code == 403 => input_error(format!(
            "the deployer may not discover the cluster's API versions, which a chart is \
             rendered for: {}; grant it discovery (the system:discovery ClusterRole)",
            status.message
        )),
        error => anyhow::Error::new(error).context("discovering the cluster's API versions"),
    }
}

/// The group/versions and group/version/Kinds in aggregated discovery
/// answers (`/apis` and `/api`): helm's own list, each kind named under the
/// group/version that serves it.
fn from_aggregated(lists: &[APIGroupDiscoveryList]) -> Vec<String> {
    let mut served = BTreeSet::new();
    for group in lists.iter().flat_map(|list| &list.items) {
        let name = group
            .metadata
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .unwrap_or_default();
        for version in &group.versions {
            let Some(version_name) = version_name(&version.version) else {
                continue;
            };
            let group_version = if name.is_empty() {
                version_name.to_owned()
            } else {
                format!("{name}/{version_name}")
            };
            for resource in &version.resources {
                let kinds = resource
                    .response_kind
                    .iter()
                    .chain(resource.subresources.iter().flat_map(|s| &s.response_kind))
                    .filter_map(|kind| kind.kind.as_deref())
                    .filter(|kind| !kind.is_empty());
                for kind in kinds {
                    served.insert(format!("{group_version}/{kind}"));
                }
            }
            served.insert(group_version);
        }
    }
    served.into_iter().collect()
}

/// A version's name, when it has one.
fn version_name(version: &Option<String>) -> Option<&str> {
    version.as_deref().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_and_kind_is_listed_once_as_helm_lists_them() {
        let apis: APIGroupDiscoveryList = serde_json::from_value(serde_json::json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "items": [{
                "metadata": {"name": "apps"},
                "versions": [{"version": "v1", "resources": [{
                    "resource": "deployments",
                    "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                    "subresources": [
                        {"subresource": "scale",
                         "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}},
                        {"subresource": "status",
                         "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"}}
                    ]
                }]}]
            }, {
                "metadata": {"name": "batch"},
                "versions": [{"version": "v1", "resources": [{
                    "resource": "cronjobs",
                    "responseKind": {"group": "batch", "version": "v1", "kind": "CronJob"}
                }]}, {"version": "v1beta1", "resources": []}]
            }]
        }))
        .unwrap();
        let core: APIGroupDiscoveryList = serde_json::from_value(serde_json::json!({
            "items": [{"versions": [{"version": "v1", "resources": [
                {"resource": "secrets", "responseKind": {"version": "v1", "kind": "Secret"}},
                {"resource": "bindings", "responseKind": {"version": "v1", "kind": ""}}
            ]}]}]
        }))
        .unwrap();
        assert_eq!(
            from_aggregated(&[apis, core]),
            [
                "apps/v1",
                "apps/v1/Deployment",
                "apps/v1/Scale",
                "batch/v1",
                "batch/v1/CronJob",
                "batch/v1beta1",
                "v1",
                "v1/Secret",
            ]
        );
    }
}
