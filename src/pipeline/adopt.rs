//! A namespace where helm already manages what berth would apply: refused
//! (exit 2, nothing changed) unless `--adopt`, which takes the objects over
//! and records which helm release it adopted. helm's release records are
//! never deleted by berth: it says how.
//!
//! helm marks what it manages: its release records are Secrets of type
//! `helm.sh/release.v1` labelled `owner=helm,name=RELEASE`, and every
//! object it applies carries the annotation `meta.helm.sh/release-name` and
//! the label `app.kubernetes.io/managed-by: Helm`. berth's apply sets that
//! label to `berth`, so an object is helm's while its label is not berth's.

use std::collections::BTreeMap;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client, ResourceExt};

use super::plan::Plan;
use crate::cluster::MANAGED_BY;
use crate::cluster::apply::Resolved;
use crate::cluster::release::Release;
use crate::config::Source;
use crate::error::input_error;
use crate::output::Output;

/// helm's annotation naming the release that manages an object.
pub const HELM_RELEASE_ANNOTATION: &str = "meta.helm.sh/release-name";
/// The value of `app.kubernetes.io/managed-by` on what helm applies.
const HELM: &str = "Helm";
/// The Secret type of helm's release records.
const HELM_RECORD_TYPE: &str = "helm.sh/release.v1";
/// How many objects are read at once.
const CONCURRENCY: usize = 8;

/// A helm release that manages what a deploy would apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmClaim {
    /// The helm release's name.
    pub release: String,
    /// Its newest record in the namespace (`revision N, STATUS`), if any.
    pub record: Option<String>,
    /// The objects berth would apply that it manages, as `Kind/name`.
    pub objects: Vec<String>,
}

/// The helm releases this deploy would take over, read without changing
/// anything: none, the deploy goes on; some without `adopt`, it is refused
/// (exit 2) naming each release and its objects; with `adopt`, they are
/// what the release record says it adopted.
pub async fn check(client: &Client, plan: &Plan, adopt: bool) -> anyhow::Result<Vec<HelmClaim>> {
    let ns = &plan.env.namespace;
    let (records, history, claimed) = tokio::try_join!(
        helm_records(client, ns),
        crate::cluster::release::list(client, ns),
        claimed_objects(client, ns, &plan.objects),
    )?;
    let chart_release = match &plan.env.source {
        Source::Helm { release, .. } => Some(release.as_str()),
        Source::Kustomize { .. } => None,
    };
    let claims = claims(records, claimed, chart_release, &adopted(&history));
    if claims.is_empty() || adopt {
        return Ok(claims);
    }
    Err(refusal(plan, &claims))
}

/// Say what `--adopt` took over in namespace `ns`, and how to delete helm's
/// release records (berth never does).
pub fn say(claims: &[HelmClaim], ns: &str, out: &Output) {
    for claim in claims {
        let objects = if claim.objects.is_empty() {
            String::new()
        } else {
            format!(": berth now manages {}", claim.objects.join(", "))
        };
        out.info(&format!("adopted helm release {}{objects}", claim.release));
        out.warn(&format!(
            "helm's release records of {release} stay in namespace {ns} until you delete them \
             (berth never does): `kubectl -n {ns} delete secret -l owner=helm,name={release}`; \
             until then `helm upgrade {release}` would take the objects back",
            release = claim.release
        ));
    }
}

/// The helm releases earlier deploys adopted.
fn adopted(history: &[Release]) -> Vec<String> {
    history
        .iter()
        .flat_map(|r| r.adopted_helm_releases.iter().cloned())
        .collect()
}

/// The claims: each release managing some of the objects, and the chart's
/// own release name when helm's records of it are in the namespace and no
/// earlier deploy adopted it.
fn claims(
    records: BTreeMap<String, String>,
    claimed: Vec<(String, String)>,
    chart_release: Option<&str>,
    adopted: &[String],
) -> Vec<HelmClaim> {
    let mut by_release: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (release, object) in claimed {
        by_release.entry(release).or_default().push(object);
    }
    if let Some(name) = chart_release
        && records.contains_key(name)
        && !adopted.iter().any(|a| a == name)
    {
        by_release.entry(name.to_owned()).or_default();
    }
    by_release
        .into_iter()
        .map(|(release, objects)| HelmClaim {
            record: records.get(&release).cloned(),
            release,
            objects,
        })
        .collect()
}

/// The refusal: which helm release manages which objects, and the ways on.
fn refusal(plan: &Plan, claims: &[HelmClaim]) -> anyhow::Error {
    let ns = &plan.env.namespace;
    let said: Vec<String> = claims
        .iter()
        .map(|claim| {
            let record = match &claim.record {
                Some(record) => format!(
                    " ({record}; its records are Secrets labelled owner=helm,name={})",
                    claim.release
                ),
                None => String::new(),
            };
            let objects = if claim.objects.is_empty() {
                "the chart's release of the same name".to_owned()
            } else {
                claim.objects.join(", ")
            };
            format!("helm release `{}`{record} manages {objects}", claim.release)
        })
        .collect();
    input_error(format!(
        "helm already manages environment {env}'s objects in namespace {ns}: {}; berth changed \
         nothing. To take them over from helm, deploy with --adopt (`{berth} advanced-deploy \
         {env} {sha} --adopt`): berth applies them as its own and its release record says which \
         helm release it adopted; or leave this namespace to helm",
        said.join("; "),
        env = plan.env_name,
        berth = crate::program::name(),
        sha = crate::config::short_sha(&plan.sha),
    ))
}

/// helm's release records in `ns`: per release, its newest revision and
/// status (`revision 3, deployed`).
async fn helm_records(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secrets = api
        .list(&ListParams::default().labels("owner=helm"))
        .await
        .context("listing helm's release records")?;
    let mut newest: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for secret in secrets {
        if secret.type_.as_deref() != Some(HELM_RECORD_TYPE) {
            continue;
        }
        let labels = secret.labels();
        let Some(name) = labels.get("name") else {
            continue;
        };
        let version = labels
            .get("version")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let status = labels.get("status").cloned().unwrap_or_default();
        let entry = newest.entry(name.clone()).or_insert((0, String::new()));
        if version >= entry.0 {
            *entry = (version, status);
        }
    }
    Ok(newest
        .into_iter()
        .map(|(name, (version, status))| (name, format!("revision {version}, {status}")))
        .collect())
}

/// The objects among `objects` that exist and that helm manages, each with
/// its release: `(release, Kind/name)`. One berth may not read is skipped.
async fn claimed_objects(
    client: &Client,
    ns: &str,
    objects: &[Resolved],
) -> anyhow::Result<Vec<(String, String)>> {
    let found: Vec<Option<(String, String)>> = stream::iter(objects)
        // one defined by a CRD not installed yet cannot exist
        .filter(|o| std::future::ready(o.with_crd.is_none()))
        .map(|object| async move {
            let api: Api<DynamicObject> = if object.namespaced {
                Api::namespaced_with(client.clone(), ns, &object.resource)
            } else {
                Api::all_with(client.clone(), &object.resource)
            };
            let live = match api.get_opt(&object.object.name_any()).await {
                Ok(live) => live,
                Err(kube::Error::Api(s)) if s.is_forbidden() => None,
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", object.describe()));
                }
            };
            anyhow::Ok(
                live.as_ref()
                    .and_then(helm_release_of)
                    .map(|release| (release, object.describe())),
            )
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// The helm release managing `live`, if helm manages it: it carries helm's
/// release annotation or managed-by label, and its managed-by label is not
/// berth's (berth's apply sets it). A release the annotation does not name
/// is taken from the instance label, as `helm create` charts set it.
fn helm_release_of(live: &DynamicObject) -> Option<String> {
    let labels = live.labels();
    let managed_by = labels.get(MANAGED_BY.0).map(String::as_str);
    if managed_by == Some(MANAGED_BY.1) {
        return None;
    }
    match live.annotations().get(HELM_RELEASE_ANNOTATION) {
        Some(release) => Some(release.clone()),
        None if managed_by == Some(HELM) => Some(
            labels
                .get(crate::cluster::INSTANCE_LABEL)
                .cloned()
                .unwrap_or_else(|| "(unnamed)".to_owned()),
        ),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(labels: serde_json::Value, annotations: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": labels, "annotations": annotations}
        }))
        .unwrap()
    }

    #[test]
    fn an_object_is_helms_until_berth_labels_it() {
        let helm = serde_json::json!({"meta.helm.sh/release-name": "shop"});
        let by = |who: &str| serde_json::json!({"app.kubernetes.io/managed-by": who});
        assert_eq!(
            helm_release_of(&live(by("Helm"), helm.clone())),
            Some("shop".into())
        );
        assert_eq!(helm_release_of(&live(by("berth"), helm.clone())), None);
        assert_eq!(
            helm_release_of(&live(serde_json::json!({}), helm)),
            Some("shop".into())
        );
        let instance = serde_json::json!({
            "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "old"
        });
        assert_eq!(
            helm_release_of(&live(instance, serde_json::json!({}))),
            Some("old".into())
        );
        assert_eq!(
            helm_release_of(&live(by("kubectl"), serde_json::json!({}))),
            None
        );
    }

    #[test]
    fn the_charts_release_claims_by_its_records_until_adopted() {
        let records = BTreeMap::from([
            ("shop".to_owned(), "revision 2, deployed".to_owned()),
            ("redis".to_owned(), "revision 1, deployed".to_owned()),
        ]);
        let claimed = vec![("shop".to_owned(), "Service/shop".to_owned())];
        assert_eq!(
            claims(records.clone(), claimed.clone(), Some("shop"), &[]),
            [HelmClaim {
                release: "shop".into(),
                record: Some("revision 2, deployed".into()),
                objects: vec!["Service/shop".into()],
            }]
        );
        // records alone, of the chart's own release: a claim; of another: none
        assert_eq!(
            claims(records.clone(), Vec::new(), Some("shop"), &[])[0].objects,
            Vec::<String>::new()
        );
        assert!(claims(records.clone(), Vec::new(), Some("web"), &[]).is_empty());
        // adopted earlier: its records left behind no longer claim
        assert!(claims(records.clone(), Vec::new(), Some("shop"), &["shop".into()]).is_empty());
        // but objects helm took back do
        assert_eq!(
            claims(records, claimed, Some("shop"), &["shop".into()]).len(),
            1
        );
    }
}
