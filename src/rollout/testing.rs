//! Test support: load recorded fixtures (`kubectl get ... -o json` lists, see
//! `fixtures/README.md`) into typed objects.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;

/// The objects of one recorded `kubectl get KINDS -o json` list, by kind.
#[derive(Default)]
pub(crate) struct Objects {
    pub deployments: Vec<Deployment>,
    pub statefulsets: Vec<StatefulSet>,
    pub daemonsets: Vec<DaemonSet>,
    pub jobs: Vec<Job>,
    pub replicasets: Vec<ReplicaSet>,
    pub pods: Vec<Pod>,
    pub events: Vec<Event>,
}

impl Objects {
    /// Parses a recorded list; panics on anything unexpected.
    pub fn load(json: &str) -> Objects {
        let list: serde_json::Value = serde_json::from_str(json).expect("fixture is JSON");
        let mut objects = Objects::default();
        for item in list["items"].as_array().expect("fixture is a List") {
            match item["kind"].as_str().expect("item has a kind") {
                "Deployment" => objects.deployments.push(typed(item)),
                "StatefulSet" => objects.statefulsets.push(typed(item)),
                "DaemonSet" => objects.daemonsets.push(typed(item)),
                "Job" => objects.jobs.push(typed(item)),
                "ReplicaSet" => objects.replicasets.push(typed(item)),
                "Pod" => objects.pods.push(typed(item)),
                "Event" => objects.events.push(typed(item)),
                other => panic!("unexpected kind {other} in fixture"),
            }
        }
        objects
    }

    /// Adds the objects of another fixture, e.g. unrelated pods in the same namespace.
    pub fn and(mut self, other: Objects) -> Objects {
        self.deployments.extend(other.deployments);
        self.statefulsets.extend(other.statefulsets);
        self.daemonsets.extend(other.daemonsets);
        self.jobs.extend(other.jobs);
        self.replicasets.extend(other.replicasets);
        self.pods.extend(other.pods);
        self.events.extend(other.events);
        self
    }

    pub fn deployment(&self) -> Deployment {
        self.deployments[0].clone()
    }

    pub fn statefulset(&self) -> StatefulSet {
        self.statefulsets[0].clone()
    }

    pub fn daemonset(&self) -> DaemonSet {
        self.daemonsets[0].clone()
    }

    pub fn job(&self) -> Job {
        self.jobs[0].clone()
    }

    /// The pod with this name.
    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no pod {name} in fixture"))
    }
}

fn typed<T: DeserializeOwned>(item: &serde_json::Value) -> T {
    serde_json::from_value(item.clone()).expect("fixture item matches its k8s-openapi type")
}

/// A fixed instant for a test, e.g. `at("2026-11-21T22:55:00Z")`. The
/// fixtures were recorded on 2026-11-21 between 22:54:44Z and 22:56:15Z.
pub(crate) fn at(instant: &str) -> Timestamp {
    instant.parse().expect("an RFC 3339 instant")
}
