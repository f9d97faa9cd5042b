//! A migration pod's main container and its sidecars (`migrate.container`).
//!
//! The main container's exit decides the migration. Its other containers
//! (a database proxy, say) must not keep the pod running after it: on
//! Kubernetes ≥ 1.29 berth makes them native sidecars (init containers
//! with `restartPolicy: Always`, which the kubelet stops when the main
//! container ends); on older servers berth ends them itself, deleting the
//! Job once the main container has exited. Both are written on the Job as
//! annotations, so every Job built from it (the pending check, the schema
//! adapter's) and the code that follows it agree.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::{Client, ResourceExt};

/// The annotation naming the container whose exit decides the Job.
pub const MAIN_CONTAINER: &str = "berth.dev/main-container";
/// The annotation listing (comma-separated) the containers berth made
/// native sidecars.
const NATIVE: &str = "berth.dev/native-sidecars";
/// The annotation listing (comma-separated) the sidecars berth ends when
/// the main container has exited (servers without native sidecars).
const ENDED: &str = "berth.dev/ended-sidecars";
/// The first Kubernetes minor version (1.x) with native sidecars on by
/// default.
const NATIVE_SINCE_MINOR: u32 = 29;

/// What berth did with a migration pod's other containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrangement {
    /// The pod has only its main container.
    Alone,
    /// These containers were made native sidecars.
    Native(Vec<String>),
    /// These containers are ended by berth once the main container exits.
    Ended(Vec<String>),
}

impl Arrangement {
    /// One line for the plan and the progress output, or `None` when there
    /// are no sidecars.
    pub fn describe(&self, main: &str) -> Option<String> {
        match self {
            Arrangement::Alone => None,
            Arrangement::Native(names) => Some(format!(
                "sidecars {} made native sidecars; container {main} decides",
                names.join(", ")
            )),
            Arrangement::Ended(names) => Some(format!(
                "sidecars {} are ended by berth after container {main} exits (the cluster has no \
                 native sidecars); container {main} decides",
                names.join(", ")
            )),
        }
    }

    /// As written on `job` by [`arrange`], if it was.
    pub fn of(job: &Job) -> Arrangement {
        let annotations = template_annotations(job);
        let list = |key: &str| {
            annotations?
                .get(key)
                .map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
        };
        match (list(NATIVE), list(ENDED)) {
            (Some(names), _) => Arrangement::Native(names),
            (None, Some(names)) => Arrangement::Ended(names),
            (None, None) => Arrangement::Alone,
        }
    }
}

/// Whether the cluster serves native sidecars (Kubernetes ≥ 1.29), from
/// the API server's version. `BERTH_NATIVE_SIDECARS=0` answers no, for a
/// cluster that turned the feature off.
pub async fn native_supported(client: &Client) -> anyhow::Result<bool> {
    if std::env::var("BERTH_NATIVE_SIDECARS").is_ok_and(|v| v == "0") {
        return Ok(false);
    }
    let info = client
        .apiserver_version()
        .await
        .map_err(anyhow::Error::from)
        .map_err(|e| e.context("reading the API server's version"))?;
    Ok(native_in(&info.major, &info.minor))
}

/// Whether version `major`.`minor` (as the API server reports it, e.g.
/// `"29+"` on some clouds) has native sidecars.
fn native_in(major: &str, minor: &str) -> bool {
    let number = |s: &str| {
        s.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse::<u32>()
            .ok()
    };
    match (number(major), number(minor)) {
        (Some(1), Some(minor)) => minor >= NATIVE_SINCE_MINOR,
        (Some(major), _) => major > 1,
        _ => false,
    }
}

/// Mark `main` as `job`'s main container and deal with its other
/// containers: with `native`, move them (in their order) to the front of
/// the init containers with `restartPolicy: Always`, so a proxy is up
/// before an init container that needs it; else leave them for berth to
/// end ([`running_sidecars`]). The annotations go on the pod template, so
/// the pods carry them too.
pub fn arrange(job: &mut Job, main: &str, native: bool) -> Arrangement {
    let template = &mut job.spec.get_or_insert_default().template;
    let annotations = template
        .metadata
        .get_or_insert_default()
        .annotations
        .get_or_insert_default();
    annotations.insert(MAIN_CONTAINER.into(), main.into());
    let Some(pod) = template.spec.as_mut() else {
        return Arrangement::Alone;
    };
    let names: Vec<String> = pod
        .containers
        .iter()
        .filter(|c| c.name != main)
        .map(|c| c.name.clone())
        .collect();
    if names.is_empty() {
        return Arrangement::Alone;
    }
    let (key, arrangement) = if native {
        make_native(pod, main);
        (NATIVE, Arrangement::Native(names.clone()))
    } else {
        (ENDED, Arrangement::Ended(names.clone()))
    };
    annotations.insert(key.into(), names.join(","));
    arrangement
}

/// Move every container but `main` to the front of the init containers as
/// a native sidecar.
fn make_native(pod: &mut PodSpec, main: &str) {
    let (kept, sidecars): (Vec<Container>, Vec<Container>) = std::mem::take(&mut pod.containers)
        .into_iter()
        .partition(|c| c.name == main);
    pod.containers = kept;
    let mut init: Vec<Container> = sidecars
        .into_iter()
        .map(|mut c| {
            c.restart_policy = Some("Always".into());
            c
        })
        .collect();
    init.extend(pod.init_containers.take().unwrap_or_default());
    pod.init_containers = Some(init);
}

/// The container of `job` whose exit decides it: the one
/// [`MAIN_CONTAINER`] names, else the one named `migrate`, else the first.
pub fn main_container(job: &Job) -> Option<&Container> {
    let pod = job.spec.as_ref()?.template.spec.as_ref()?;
    let wanted = template_annotations(job)
        .and_then(|a| a.get(MAIN_CONTAINER))
        .map_or("migrate", String::as_str);
    pod.containers
        .iter()
        .find(|c| c.name == wanted)
        .or_else(|| pod.containers.first())
}

/// The annotations of `job`'s pod template, where berth writes these.
fn template_annotations(job: &Job) -> Option<&BTreeMap<String, String>> {
    job.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()
}

/// The main container berth marked on `pod` (a pod of a Job [`arrange`]
/// made), if it did.
pub fn marked_main(pod: &Pod) -> Option<&str> {
    pod.annotations().get(MAIN_CONTAINER).map(String::as_str)
}

/// The container of `pod` whose log is the Job's: the marked main
/// container, else (several containers) the one named `migrate`, else the
/// first; `None` when the pod has one container.
pub fn log_container(pod: &Pod) -> Option<String> {
    if let Some(main) = marked_main(pod) {
        return Some(main.to_owned());
    }
    let containers = &pod.spec.as_ref()?.containers;
    if containers.len() < 2 {
        return None;
    }
    containers
        .iter()
        .find(|c| c.name == "migrate")
        .or_else(|| containers.first())
        .map(|c| c.name.clone())
}

/// The sidecars of `pod` berth must end itself (they are still running
/// when its main container has exited).
pub fn running_sidecars(pod: &Pod) -> Vec<String> {
    let Some(listed) = pod.annotations().get(ENDED) else {
        return Vec::new();
    };
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    listed
        .split(',')
        .filter(|name| {
            statuses.is_none_or(|all| {
                all.iter().any(|c| {
                    c.name == *name && c.state.as_ref().is_none_or(|s| s.terminated.is_none())
                })
            })
        })
        .map(str::to_owned)
        .collect()
}

/// How the main container `main` of `pod` ended, if it has: its exit code,
/// and the kubelet's reason and message.
pub fn main_exit(pod: &Pod, main: &str) -> Option<(i32, String)> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?;
    let terminated = status
        .iter()
        .find(|c| c.name == main)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    let detail = [terminated.reason.as_deref(), terminated.message.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    Some((terminated.exit_code, detail))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};
    use serde_json::json;

    use super::*;

    fn job() -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "migrate"},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "wait-for-db", "image": "busybox"}],
                "containers": [
                    {"name": "cloud-sql-proxy", "image": "proxy:2"},
                    {"name": "migrate-main", "image": "reg/app:1a2b"},
                    {"name": "log-shipper", "image": "shipper:1"}]}}}
        }))
        .unwrap()
    }

    fn names(containers: &[Container]) -> Vec<&str> {
        containers.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn native_sidecars_go_first_among_the_init_containers_in_their_order() {
        let mut job = job();
        let arrangement = arrange(&mut job, "migrate-main", true);
        assert_eq!(
            arrangement,
            Arrangement::Native(vec!["cloud-sql-proxy".into(), "log-shipper".into()])
        );
        assert_eq!(Arrangement::of(&job), arrangement);
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(names(&pod.containers), ["migrate-main"]);
        let init = pod.init_containers.as_ref().unwrap();
        assert_eq!(
            names(init),
            ["cloud-sql-proxy", "log-shipper", "wait-for-db"]
        );
        assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            init[2].restart_policy, None,
            "a plain init container stays one"
        );
        assert_eq!(main_container(&job).unwrap().name, "migrate-main");
        assert_eq!(
            arrangement.describe("migrate-main").unwrap(),
            "sidecars cloud-sql-proxy, log-shipper made native sidecars; container migrate-main decides"
        );
    }

    #[test]
    fn without_native_sidecars_they_stay_and_berth_ends_them() {
        let mut job = job();
        let arrangement = arrange(&mut job, "migrate-main", false);
        assert_eq!(
            arrangement,
            Arrangement::Ended(vec!["cloud-sql-proxy".into(), "log-shipper".into()])
        );
        assert_eq!(Arrangement::of(&job), arrangement);
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.containers.len(), 3);
        assert_eq!(main_container(&job).unwrap().name, "migrate-main");
    }

    #[test]
    fn a_single_container_has_no_sidecars() {
        let mut job: Job = serde_json::from_value(json!({
            "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "i"}]}}}
        }))
        .unwrap();
        assert_eq!(arrange(&mut job, "m", true), Arrangement::Alone);
        assert_eq!(Arrangement::Alone.describe("m"), None);
        assert_eq!(Arrangement::of(&job), Arrangement::Alone);
    }

    #[test]
    fn a_pod_of_the_job_names_its_main_container_and_the_sidecars_still_running() {
        let mut job = job();
        arrange(&mut job, "migrate-main", false);
        let template = job.spec.unwrap().template;
        let running = |name: &str| ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                running: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            metadata: template.metadata.unwrap(),
            spec: template.spec,
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                container_statuses: Some(vec![running("cloud-sql-proxy")]),
                ..Default::default()
            }),
        };
        assert_eq!(marked_main(&pod), Some("migrate-main"));
        assert_eq!(log_container(&pod).as_deref(), Some("migrate-main"));
        assert_eq!(running_sidecars(&pod), ["cloud-sql-proxy"]);
        let unmarked = Pod {
            metadata: Default::default(),
            ..pod
        };
        assert_eq!(log_container(&unmarked).as_deref(), Some("cloud-sql-proxy"));
        assert!(running_sidecars(&unmarked).is_empty());
    }

    #[test]
    fn native_sidecars_since_1_29() {
        assert!(native_in("1", "29"));
        assert!(native_in("1", "36"));
        assert!(native_in("1", "30+"));
        assert!(!native_in("1", "28"));
        assert!(!native_in("1", "28+"));
        assert!(native_in("2", "0"));
        assert!(!native_in("", ""));
    }

    #[test]
    fn the_main_containers_exit_is_read_from_its_status() {
        let terminated = |name: &str, code| ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    reason: Some("Error".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                container_statuses: Some(vec![terminated("migrate-main", 3)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(main_exit(&pod, "migrate-main"), Some((3, "Error".into())));
        assert_eq!(main_exit(&pod, "cloud-sql-proxy"), None);
    }
}
