//! What berth knows of a render's kinds before asking the cluster: the
//! kinds its own CustomResourceDefinitions define (served once those are
//! applied and Established), and the one message that lists every kind
//! neither the cluster nor the render provides.

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

/// A kind that a CustomResourceDefinition of the same render defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defined {
    /// The CRD's name, `<plural>.<group>`.
    pub crd: String,
    /// The API resource the CRD will serve.
    pub resource: ApiResource,
    /// Whether its objects live in a namespace.
    pub namespaced: bool,
}

/// Whether `object` is a CustomResourceDefinition.
pub fn is_crd(object: &DynamicObject) -> bool {
    object.types.as_ref().is_some_and(|t| {
        t.kind == "CustomResourceDefinition" && t.api_version.starts_with("apiextensions.k8s.io/")
    })
}

/// Every served version of every kind the CRDs among `objects` define.
pub fn defined_by_crds(objects: &[DynamicObject]) -> HashMap<GroupVersionKind, Defined> {
    let mut defined = HashMap::new();
    for crd in objects.iter().filter(|o| is_crd(o)) {
        let spec = &crd.data["spec"];
        let (Some(group), Some(kind), Some(plural)) = (
            spec["group"].as_str(),
            spec["names"]["kind"].as_str(),
            spec["names"]["plural"].as_str(),
        ) else {
            continue; // the API server refuses it, naming what is missing
        };
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let versions = spec["versions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for version in versions {
            let served = version["served"].as_bool().unwrap_or(false);
            let Some(name) = version["name"].as_str().filter(|_| served) else {
                continue;
            };
            let gvk = GroupVersionKind::gvk(group, name, kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
            defined.insert(
                gvk,
                Defined {
                    crd: crd.name_any(),
                    resource,
                    namespaced,
                },
            );
        }
    }
    defined
}

/// Where a set of objects came from: says how to fix a kind nobody serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A kustomize overlay.
    Overlay,
    /// A helm chart.
    Chart,
    /// An earlier release's recorded objects (a rollback).
    Release(u64),
    /// Objects berth builds itself (backup CronJobs).
    Berth,
}

impl Origin {
    /// The end of the message: what the operator can do.
    fn remedy(self, several: bool) -> String {
        let (their, them) = if several {
            ("their CRDs", "them")
        } else {
            ("its CRD", "it")
        };
        match self {
            Origin::Overlay => format!("install {their} or remove {them} from the overlay"),
            Origin::Chart => format!("install {their} or remove {them} from the chart"),
            Origin::Release(number) => format!(
                "install {their} before re-applying release {number}, or deploy a SHA instead"
            ),
            Origin::Berth => "berth's own objects need a cluster that serves them".to_string(),
        }
    }
}

/// The objects whose kind the cluster does not serve and no CRD of the
/// render defines, counted by kind.
#[derive(Debug, Default)]
pub struct Missing {
    kinds: BTreeMap<(String, String), usize>,
}

impl Missing {
    /// Count `count` objects of `gvk`.
    pub fn add(&mut self, gvk: &GroupVersionKind, count: usize) {
        *self
            .kinds
            .entry((gvk.api_version(), gvk.kind.clone()))
            .or_default() += count;
    }

    /// Whether every kind is provided.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// One message naming every missing kind with its object count, and the fix.
    pub fn message(&self, origin: Origin) -> String {
        let listed: Vec<String> = self
            .kinds
            .iter()
            .enumerate()
            .map(|(i, ((api_version, kind), count))| {
                let unit = match (i, count) {
                    (0, 1) => " object",
                    (0, _) => " objects",
                    _ => "",
                };
                format!("{api_version} {kind} ({count}{unit})")
            })
            .collect();
        let several = listed.len() > 1;
        let these = if several { "these kinds" } else { "this kind" };
        format!(
            "the cluster does not serve {these}: {}; {}",
            listed.join(", "),
            origin.remedy(several)
        )
    }
}

/// The `apiVersion`/`kind` of `object`, if it has both.
pub fn gvk_of(object: &DynamicObject) -> Option<GroupVersionKind> {
    object
        .types
        .as_ref()
        .and_then(|types| GroupVersionKind::try_from(types).ok())
}

/// Whether `group` is one of Kubernetes' own API groups (the core group,
/// the legacy unsuffixed ones, and `*.k8s.io`), rather than a custom
/// resource's. Custom groups under `k8s.io` need Kubernetes' approval, so
/// the suffix tells them apart.
pub fn is_builtin_group(group: &str) -> bool {
    matches!(
        group,
        "" | "apps" | "batch" | "autoscaling" | "policy" | "extensions"
    ) || group.ends_with(".k8s.io")
        || group == "k8s.io"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    fn crd(scope: &str, versions: Value) -> DynamicObject {
        object(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": scope,
                     "names": {"kind": "Widget", "plural": "widgets"},
                     "versions": versions}
        }))
    }

    #[test]
    fn a_crd_defines_its_served_versions_only() {
        let defined = defined_by_crds(&[crd(
            "Namespaced",
            serde_json::json!([
                {"name": "v1", "served": true, "storage": true},
                {"name": "v1alpha1", "served": false, "storage": false}
            ]),
        )]);
        let v1 = &defined[&GroupVersionKind::gvk("example.com", "v1", "Widget")];
        assert_eq!(v1.crd, "widgets.example.com");
        assert_eq!(v1.resource.plural, "widgets");
        assert_eq!(v1.resource.api_version, "example.com/v1");
        assert!(v1.namespaced);
        assert!(!defined.contains_key(&GroupVersionKind::gvk("example.com", "v1alpha1", "Widget")));
    }

    #[test]
    fn a_cluster_scoped_crd_defines_cluster_scoped_objects() {
        let defined = defined_by_crds(&[crd(
            "Cluster",
            serde_json::json!([{"name": "v1", "served": true}]),
        )]);
        assert!(!defined[&GroupVersionKind::gvk("example.com", "v1", "Widget")].namespaced);
    }

    #[test]
    fn a_crd_without_names_defines_nothing() {
        let broken = object(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "x.example.com"}, "spec": {"group": "example.com"}
        }));
        assert!(defined_by_crds(&[broken]).is_empty());
    }

    #[test]
    fn every_missing_kind_is_named_once_with_its_count() {
        let mut missing = Missing::default();
        missing.add(
            &GroupVersionKind::gvk("networking.gke.io", "v1beta1", "ManagedCertificate"),
            2,
        );
        missing.add(
            &GroupVersionKind::gvk("cloud.google.com", "v1", "BackendConfig"),
            1,
        );
        missing.add(
            &GroupVersionKind::gvk("cloud.google.com", "v1", "BackendConfig"),
            1,
        );
        assert_eq!(
            missing.message(Origin::Overlay),
            "the cluster does not serve these kinds: cloud.google.com/v1 BackendConfig (2 objects), \
             networking.gke.io/v1beta1 ManagedCertificate (2); install their CRDs or remove them \
             from the overlay"
        );
        let mut one = Missing::default();
        one.add(&GroupVersionKind::gvk("example.com", "v1", "Widget"), 1);
        assert_eq!(
            one.message(Origin::Chart),
            "the cluster does not serve this kind: example.com/v1 Widget (1 object); install its \
             CRD or remove it from the chart"
        );
        assert!(
            one.message(Origin::Release(4))
                .contains("before re-applying release 4")
        );
    }

    #[test]
    fn kubernetes_groups_are_told_from_custom_ones() {
        for group in [
            "",
            "apps",
            "batch",
            "networking.k8s.io",
            "autoscaling",
            "policy",
        ] {
            assert!(is_builtin_group(group), "{group}");
        }
        for group in [
            "cloud.google.com",
            "networking.gke.io",
            "example.com",
            "k8s.example.com",
        ] {
            assert!(!is_builtin_group(group), "{group}");
        }
    }
}
