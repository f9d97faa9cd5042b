//! Waiting on every workload of a deploy at once, from watches, until all are
//! healthy or one can never be: the driver of the per-kind verdicts in
//! [`crate::rollout`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use futures::stream::{BoxStream, select_all};
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, LogParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::output::Output;
use crate::rollout::{Failure, Thresholds, Verdict, Workload};

/// A workload the deploy applied and now waits on.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// Deployment, StatefulSet, DaemonSet or Job.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// The generation the apply produced; older observations are stale.
    pub generation: i64,
}

impl Tracked {
    /// `Kind/name`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// Why waiting ended without success.
#[derive(Debug, Clone)]
pub enum WaitFailure {
    /// A workload can never become healthy.
    Doomed {
        /// `Kind/name`.
        workload: String,
        /// What the verdict said.
        failure: Failure,
    },
    /// The timeout ran out; these were still progressing.
    TimedOut {
        /// `Kind/name: what it waits for`, per unfinished workload.
        pending: Vec<String>,
    },
}

/// Kinds whose verdict `wait_all` can give.
pub fn is_workload(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet" | "Job")
}

type Events = BoxStream<'static, Result<(), watcher::Error>>;

/// A reflector of one kind in `namespace`, restricted to `selector`.
fn reflect<K>(client: &Client, namespace: &str, selector: &str) -> (Store<K>, Events)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store::<K>();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let events = watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .map_ok(|_| ())
        .boxed();
    (reader, events)
}

fn snapshot<K: Clone + Resource>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|k| (**k).clone()).collect()
}

/// The object named `name` in `namespace`, by key rather than by scanning.
fn find<K: Clone + Resource>(store: &Store<K>, namespace: &str, name: &str) -> Option<K>
where
    K::DynamicType: Default + Eq + Hash + Clone,
{
    store
        .get(&ObjectRef::new(name).within(namespace))
        .map(|k| (*k).clone())
}

/// Where [`wait_all`] looks: a namespace, the label selector of the
/// workloads, and that of their ReplicaSets and pods (for berth's own
/// workloads [`crate::cluster::pods_selector`], since a workload's template
/// may not carry the environment's instance label).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// The label selector of the workloads.
    pub workloads: &'a str,
    /// The label selector of their ReplicaSets and pods.
    pub pods: &'a str,
}

/// Watch every tracked workload in `scope`, and the ReplicaSets and pods
/// their verdicts need, until all succeed, one is doomed, or `timeout` runs
/// out.
pub async fn wait_all(
    client: &Client,
    scope: Scope<'_>,
    tracked: &[Tracked],
    thresholds: Thresholds,
    timeout: Duration,
    out: &Output,
) -> Result<(), WaitFailure> {
    let Scope {
        namespace,
        workloads: selector,
        pods: pods_selector,
    } = scope;
    let (deployments, e1) = reflect::<Deployment>(client, namespace, selector);
    let (statefulsets, e2) = reflect::<StatefulSet>(client, namespace, selector);
    let (daemonsets, e3) = reflect::<DaemonSet>(client, namespace, selector);
    let (jobs, e4) = reflect::<Job>(client, namespace, selector);
    let (replicasets, e5) = reflect::<ReplicaSet>(client, namespace, pods_selector);
    let (pods, e6) = reflect::<Pod>(client, namespace, pods_selector);
    let mut events = select_all([e1, e2, e3, e4, e5, e6]);
    // Time-based verdicts (unschedulable for too long) need a clock, not an event.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut shown: HashMap<String, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = &mut deadline => {
                let pending = tracked
                    .iter()
                    .filter_map(|t| shown.get(&t.describe()).filter(|s| *s != "healthy").map(|s| format!("{}: {s}", t.describe())))
                    .collect();
                return Err(WaitFailure::TimedOut { pending });
            }
            event = events.next() => {
                if let Some(Err(e)) = event {
                    tracing::debug!("watch error (retrying): {e}");
                }
                // Take every event already queued, then assess once: a burst
                // of 50 rollouts' updates costs one evaluation, not hundreds.
                while let Some(Some(event)) = events.next().now_or_never() {
                    if let Err(e) = event {
                        tracing::debug!("watch error (retrying): {e}");
                    }
                }
            }
            _ = tick.tick() => {}
        }
        let all_replicasets = snapshot(&replicasets);
        let all_pods = snapshot(&pods);
        let now = Timestamp::now();
        let mut done = 0;
        for t in tracked {
            let workload = match t.kind.as_str() {
                "Deployment" => find(&deployments, namespace, &t.name).map(Workload::Deployment),
                "StatefulSet" => find(&statefulsets, namespace, &t.name).map(Workload::StatefulSet),
                "DaemonSet" => find(&daemonsets, namespace, &t.name).map(Workload::DaemonSet),
                "Job" => find(&jobs, namespace, &t.name).map(Workload::Job),
                _ => None,
            };
            let (verdict, ready, desired) = match workload {
                None => (Verdict::Progressing("waiting to see it".into()), 0, 0),
                Some(w) => {
                    let generation = w.metadata().generation;
                    let (ready, desired) = w.progress();
                    if generation.unwrap_or(0) < t.generation {
                        (
                            Verdict::Progressing("waiting for the applied generation".into()),
                            ready,
                            desired,
                        )
                    } else {
                        (
                            w.assess(&all_replicasets, &all_pods, now, thresholds),
                            ready,
                            desired,
                        )
                    }
                }
            };
            let state = match &verdict {
                Verdict::Succeeded => "healthy".to_string(),
                Verdict::Progressing(why) => why.clone(),
                Verdict::Failed(f) => format!("FAILED: {}", f.reason),
            };
            if shown.get(&t.describe()) != Some(&state) {
                out.workload(&t.describe(), ready, desired, &state);
                shown.insert(t.describe(), state);
            }
            match verdict {
                Verdict::Succeeded => done += 1,
                Verdict::Progressing(_) => {}
                Verdict::Failed(failure) => {
                    return Err(WaitFailure::Doomed {
                        workload: t.describe(),
                        failure,
                    });
                }
            }
        }
        if done == tracked.len() {
            return Ok(());
        }
    }
}

/// A failure at length: the reason, the pod's recent events and last log lines.
pub async fn explain(
    client: &Client,
    namespace: &str,
    workload: &str,
    failure: &Failure,
) -> String {
    let mut text = format!(
        "{workload}{}: {}\n  {}",
        failure
            .pod
            .as_ref()
            .map_or(String::new(), |p| format!(" (pod {p})")),
        failure.reason,
        failure.message
    );
    let Some(pod) = &failure.pod else {
        return text;
    };
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    if let Ok(list) = events.list(&params).await {
        let mut items = list.items;
        items.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
        let recent: Vec<String> = items
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(|e| {
                format!(
                    "    {} {}: {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("").trim()
                )
            })
            .collect();
        if !recent.is_empty() {
            text.push_str("\n  recent events:\n");
            text.push_str(&recent.join("\n"));
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let tail = LogParams {
        tail_lines: Some(10),
        ..Default::default()
    };
    let logs = match pods.logs(pod, &tail).await {
        Ok(logs) => Ok(logs),
        Err(_) => {
            pods.logs(
                pod,
                &LogParams {
                    previous: true,
                    ..tail
                },
            )
            .await
        }
    };
    match logs {
        Ok(logs) if !logs.trim().is_empty() => {
            text.push_str("\n  last log lines:\n");
            for line in logs.lines() {
                text.push_str(&format!("    {line}\n"));
            }
            text.truncate(text.trim_end().len());
        }
        _ => text.push_str("\n  (no logs: the container has not run)"),
    }
    text
}
