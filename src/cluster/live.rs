//! What an environment runs now: berth's workloads, with the ReplicaSets
//! and pods their verdicts are read from, and where they differ from the
//! release that deployed them.

use anyhow::Context;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::cluster::release::Release;
use crate::rollout::{Thresholds, Verdict, Workload};

/// The workloads of one environment, read at one moment.
pub struct Live {
    /// Deployments, StatefulSets and DaemonSets berth deployed.
    pub workloads: Vec<Workload>,
    replicasets: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    /// The pods' probe failures ([`super::watched::PROBE_FAILURES`]).
    events: Vec<Event>,
}

impl Live {
    /// Read the workloads labelled `selector` in `namespace`, with the
    /// ReplicaSets and pods of berth's workloads ([`super::pods_selector`])
    /// and the namespace's probe failures.
    pub async fn read(client: &Client, namespace: &str, selector: &str) -> anyhow::Result<Live> {
        let params = ListParams::default().labels(selector);
        let pods_params = ListParams::default().labels(&super::pods_selector());
        let events_params = ListParams::default().fields(super::watched::PROBE_FAILURES);
        let (deployments_api, statefulsets_api, daemonsets_api, replicasets_api, pods_api) = (
            Api::<Deployment>::namespaced(client.clone(), namespace),
            Api::<StatefulSet>::namespaced(client.clone(), namespace),
            Api::<DaemonSet>::namespaced(client.clone(), namespace),
            Api::<ReplicaSet>::namespaced(client.clone(), namespace),
            Api::<Pod>::namespaced(client.clone(), namespace),
        );
        let events_api = Api::<Event>::namespaced(client.clone(), namespace);
        let (deployments, statefulsets, daemonsets, replicasets, pods, events) = tokio::try_join!(
            deployments_api.list(&params),
            statefulsets_api.list(&params),
            daemonsets_api.list(&params),
            replicasets_api.list(&pods_params),
            pods_api.list(&pods_params),
            events_api.list(&events_params),
        )
        .context("reading the environment's workloads")?;
        let workloads = (deployments.items.into_iter().map(Workload::Deployment))
            .chain(statefulsets.items.into_iter().map(Workload::StatefulSet))
            .chain(daemonsets.items.into_iter().map(Workload::DaemonSet))
            .collect();
        Ok(Live {
            workloads,
            replicasets: replicasets.items,
            pods: pods.items,
            events: events.items,
        })
    }

    /// The workload named `Kind/name`, if it exists.
    pub fn find(&self, object: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| object_ref(w) == object)
    }

    /// Whether `workload` is healthy now.
    pub fn verdict(&self, workload: &Workload, thresholds: Thresholds) -> Verdict {
        workload.assess(
            &self.replicasets,
            &self.pods,
            &self.events,
            Timestamp::now(),
            thresholds,
        )
    }
}

/// `Kind/name` of a workload, as release records name it.
pub fn object_ref(workload: &Workload) -> String {
    format!("{}/{}", workload.kind(), workload.name())
}

/// (container, image) of every container of a workload's pod template.
pub fn images_of(workload: &Workload) -> Vec<(String, String)> {
    workload
        .pod_spec()
        .map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(&s.containers)
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Where a live workload's images differ from what the release recorded.
pub fn drifted(release: &Release, object: &str, live: &[(String, String)]) -> Vec<String> {
    release
        .images
        .iter()
        .filter(|r| r.object == object)
        .filter_map(|r| {
            let now = live
                .iter()
                .find(|(c, _)| *c == r.container)
                .map(|(_, i)| i.as_str());
            (now != Some(r.image.as_str())).then(|| {
                format!(
                    "{object} container {} runs {}, release {} deployed {}",
                    r.container,
                    now.unwrap_or("nothing"),
                    release.number,
                    r.image
                )
            })
        })
        .collect()
}
