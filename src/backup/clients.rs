//! The database's clients in an environment's namespace, as a restore sets
//! them aside and puts them back: the Deployments and StatefulSets whose
//! pods use `database.secret` (scaled to zero and back), and the CronJobs
//! (suspended and resumed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::wait::await_condition;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::error::BerthError;

/// The kinds scaled, as record keys spell them (`Deployment/frontend`).
const DEPLOYMENT: &str = "Deployment";
const STATEFUL_SET: &str = "StatefulSet";

/// Whether pods of `template` read Secret `secret`: through `envFrom`, an
/// `env` entry's `secretKeyRef`, or a volume (plain or projected), in any
/// container, init containers included.
pub fn uses_secret(template: &PodTemplateSpec, secret: &str) -> bool {
    let Some(spec) = &template.spec else {
        return false;
    };
    containers_use(spec, secret) || volumes_use(spec, secret)
}

fn containers_use(spec: &PodSpec, secret: &str) -> bool {
    let init = spec.init_containers.iter().flatten();
    spec.containers.iter().chain(init).any(|container| {
        let from = container
            .env_from
            .iter()
            .flatten()
            .any(|source| source.secret_ref.as_ref().is_some_and(|r| r.name == secret));
        let vars = container.env.iter().flatten().any(|var| {
            var.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == secret)
        });
        from || vars
    })
}

fn volumes_use(spec: &PodSpec, secret: &str) -> bool {
    spec.volumes.iter().flatten().any(|volume| {
        let plain = volume
            .secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some(secret));
        let projected = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .any(|source| source.secret.as_ref().is_some_and(|s| s.name == secret));
        plain || projected
    })
}

/// One workload that uses the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// `Deployment/name` or `StatefulSet/name`.
    pub key: String,
    /// Its replicas now.
    pub replicas: i32,
    /// Its pods' selector.
    pub selector: Option<LabelSelector>,
}

/// The Deployments and StatefulSets in `namespace` whose pods use `secret`.
pub async fn database_workloads(
    client: &Client,
    namespace: &str,
    secret: &str,
) -> anyhow::Result<Vec<Workload>> {
    let params = ListParams::default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let (deployments, sets) = tokio::try_join!(
        async {
            deployments
                .list(&params)
                .await
                .with_context(|| format!("listing the Deployments in namespace {namespace}"))
        },
        async {
            sets.list(&params)
                .await
                .with_context(|| format!("listing the StatefulSets in namespace {namespace}"))
        }
    )?;
    let mut found = Vec::new();
    for d in deployments.items {
        let spec = d.spec.clone().unwrap_or_default();
        if uses_secret(&spec.template, secret) {
            found.push(Workload {
                key: format!("{DEPLOYMENT}/{}", d.name_any()),
                replicas: spec.replicas.unwrap_or(1),
                selector: Some(spec.selector),
            });
        }
    }
    for s in sets.items {
        let spec = s.spec.clone().unwrap_or_default();
        if uses_secret(&spec.template, secret) {
            found.push(Workload {
                key: format!("{STATEFUL_SET}/{}", s.name_any()),
                replicas: spec.replicas.unwrap_or(1),
                selector: Some(spec.selector),
            });
        }
    }
    Ok(found)
}

/// Set the replicas of workload `key` (`Kind/name`); one already gone is
/// said, not an error, since there is nothing to put back.
pub async fn scale(
    client: &Client,
    namespace: &str,
    key: &str,
    replicas: i32,
) -> anyhow::Result<bool> {
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let params = PatchParams::default();
    let (kind, name) = key
        .split_once('/')
        .with_context(|| format!("{key:?} names no workload"))?;
    let result = match kind {
        DEPLOYMENT => Api::<Deployment>::namespaced(client.clone(), namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        STATEFUL_SET => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        _ => anyhow::bail!("{key:?}: berth scales only Deployments and StatefulSets"),
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(error) => Err(error).with_context(|| format!("scaling {key} to {replicas}")),
    }
}

/// Wait, watching the namespace's pods, until none that is still running
/// (not Succeeded or Failed) matches `selectors`;
/// exits 4 (timed out) after `timeout`, naming the pods left.
pub async fn wait_pods_gone(
    client: &Client,
    namespace: &str,
    selectors: &[LabelSelector],
    timeout: Duration,
) -> anyhow::Result<()> {
    let selectors: Vec<Selector> = selectors
        .iter()
        .cloned()
        .map(Selector::try_from)
        .collect::<Result<_, _>>()
        .context("reading a workload's pod selector")?;
    // A pod that has finished (Succeeded, Failed, Evicted) runs nothing and
    // holds no session, though it stays listed until it is deleted.
    let running = |pod: &Pod| {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        !matches!(phase, Some("Succeeded" | "Failed"))
    };
    let matching = |pod: &Pod| running(pod) && selectors.iter().any(|s| s.matches(pod.labels()));
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut left = BTreeSet::new();
    let waiting = async {
        let mut listed = false;
        while let Some(event) = events
            .try_next()
            .await
            .with_context(|| format!("watching the pods in namespace {namespace}"))?
        {
            match event {
                Event::Init => left.clear(),
                Event::InitDone => listed = true,
                Event::InitApply(pod) | Event::Apply(pod) if matching(&pod) => {
                    left.insert(pod.name_any());
                }
                Event::InitApply(pod) | Event::Apply(pod) | Event::Delete(pod) => {
                    left.remove(&pod.name_any());
                }
            }
            if listed && left.is_empty() {
                return Ok(());
            }
        }
        anyhow::bail!("the watch of the pods in namespace {namespace} ended")
    };
    match tokio::time::timeout(timeout, waiting).await {
        Ok(result) => result,
        Err(_) => Err(BerthError::TimedOut(format!(
            "the database's clients were scaled to 0, but pods {} were still there after {}; \
             see `kubectl -n {namespace} get pods`",
            left.into_iter().collect::<Vec<_>>().join(", "),
            crate::duration::display(timeout)
        ))
        .into()),
    }
}

/// Wait, watching each workload of `replicas` (`Kind/name` → count), until
/// it has that many ready pods, or is gone.
pub async fn wait_ready(
    client: &Client,
    namespace: &str,
    replicas: &BTreeMap<String, i32>,
) -> anyhow::Result<()> {
    let waits = replicas.iter().map(|(key, count)| async move {
        let count = *count;
        let (kind, name) = key
            .split_once('/')
            .with_context(|| format!("{key:?} names no workload"))?;
        let waited = match kind {
            DEPLOYMENT => await_condition(
                Api::<Deployment>::namespaced(client.clone(), namespace),
                name,
                move |d: Option<&Deployment>| {
                    d.is_none_or(|d| ready(d.status.as_ref().and_then(|s| s.ready_replicas), count))
                },
            )
            .await
            .map(drop),
            STATEFUL_SET => await_condition(
                Api::<StatefulSet>::namespaced(client.clone(), namespace),
                name,
                move |s: Option<&StatefulSet>| {
                    s.is_none_or(|s| ready(s.status.as_ref().and_then(|s| s.ready_replicas), count))
                },
            )
            .await
            .map(drop),
            _ => anyhow::bail!("{key:?}: berth scales only Deployments and StatefulSets"),
        };
        waited.with_context(|| format!("watching {key}"))
    });
    futures::future::try_join_all(waits).await?;
    Ok(())
}

/// Whether `ready` pods are at least `count`.
fn ready(ready: Option<i32>, count: i32) -> bool {
    ready.unwrap_or(0) >= count
}

/// Every CronJob in `namespace`: its name and whether it is suspended.
pub async fn cron_jobs(client: &Client, namespace: &str) -> anyhow::Result<BTreeMap<String, bool>> {
    let api: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the CronJobs in namespace {namespace}"))?;
    Ok(list
        .items
        .into_iter()
        .map(|c| {
            let suspended = c.spec.suspend.unwrap_or(false);
            (c.name_any(), suspended)
        })
        .collect())
}

/// Suspend or resume CronJob `name`; one already gone is no error.
pub async fn set_suspended(
    client: &Client,
    namespace: &str,
    name: &str,
    suspend: bool,
) -> anyhow::Result<()> {
    let api: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    let patch = Patch::Merge(json!({"spec": {"suspend": suspend}}));
    match api.patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error).with_context(|| {
            let verb = if suspend { "suspending" } else { "resuming" };
            format!("{verb} CronJob {name}")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(spec: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(json!({ "spec": spec })).unwrap()
    }

    #[test]
    fn env_from_env_vars_and_volumes_each_count() {
        let env_from = template(json!({"containers": [{"name": "a",
            "envFrom": [{"secretRef": {"name": "db-credentials"}}]}]}));
        let var = template(json!({"containers": [{"name": "a", "env": [
            {"name": "X", "value": "1"},
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "PGPASSWORD"}}}]}]}));
        let volume = template(json!({"containers": [{"name": "a"}],
            "volumes": [{"name": "v", "secret": {"secretName": "db-credentials"}}]}));
        let projected = template(json!({"containers": [{"name": "a"}],
            "volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "db-credentials"}}]}}]}));
        let init = template(
            json!({"containers": [{"name": "a"}], "initContainers": [{"name": "i",
            "envFrom": [{"secretRef": {"name": "db-credentials"}}]}]}),
        );
        for (what, t) in [
            ("envFrom", env_from),
            ("env", var),
            ("volume", volume),
            ("projected", projected),
            ("init", init),
        ] {
            assert!(uses_secret(&t, "db-credentials"), "{what}");
            assert!(!uses_secret(&t, "other"), "{what} with another Secret");
        }
    }

    #[test]
    fn other_secrets_config_maps_and_empty_templates_do_not() {
        let unrelated = template(json!({"containers": [{"name": "nginx",
            "envFrom": [{"configMapRef": {"name": "db-credentials"}}, {"secretRef": {"name": "tls"}}],
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "db-credentials", "key": "A"}}}]}],
            "volumes": [{"name": "page", "configMap": {"name": "berth-maintenance"}}]}));
        assert!(!uses_secret(&unrelated, "db-credentials"));
        assert!(!uses_secret(&PodTemplateSpec::default(), "db-credentials"));
    }
}
