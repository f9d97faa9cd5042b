//! One-off pods for `berth run` and pod tasks ([`OneOff`]): built from a
//! workload's pod template, kept alive by `sleep` while the command runs in
//! them through exec, then deleted.
//!
//! exec rather than the pod's own command: the output streams and the exit
//! code comes back the same way on every kubelet (kwok's fake pods never run
//! a container's command), and a TTY works like `psql`'s.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::exec::{self, Session};
use super::{MANAGED_BY, instance, pods};
use crate::config::{Environment, RunSettings};
use crate::error::BerthError;
use crate::interrupt::Interrupts;
use crate::output::Output;
use crate::rollout::Thresholds;
use crate::rollout::pod::doom;
use crate::terminal;

/// Label on one-off pods: the instance (`<app>-<env>`) they run for. Not
/// one of the app's own labels, so no Service or ReplicaSet selects them.
pub const RUN_LABEL: &str = "berth.dev/run";

/// A pod name of the form `<instance>-run-<5 random characters>`.
pub fn pod_name(instance: &str) -> String {
    let mut random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut suffix = String::new();
    for _ in 0..5 {
        suffix.push(char::from(
            b"bcdfghjklmnpqrstvwxz2456789"[(random % 27) as usize],
        ));
        random /= 27;
    }
    format!("{instance}-run-{suffix}")
}

/// The one-off pod: `template`'s spec (image, env, envFrom, volumes, service
/// account, sidecars) with `container` running `sleep` for `lifetime`, no
/// probes, no host ports, `restartPolicy: Never` and an active deadline of
/// `lifetime`, so a pod berth could not delete goes away by itself.
pub fn build(
    template: &PodTemplateSpec,
    name: &str,
    instance: &str,
    workload: &str,
    container: &str,
    lifetime: Duration,
) -> anyhow::Result<Pod> {
    let mut spec = template
        .spec
        .clone()
        .context("the workload's pod template has no spec")?;
    let seconds = lifetime.as_secs().max(1);
    spec.restart_policy = Some("Never".into());
    spec.active_deadline_seconds = Some(i64::try_from(seconds).unwrap_or(i64::MAX));
    for each in &mut spec.containers {
        strip(each);
        if each.name == container {
            each.command = Some(vec!["sleep".into(), seconds.to_string()]);
            each.args = None;
        }
    }
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (RUN_LABEL.to_owned(), instance.to_owned()),
    ]);
    let annotations = BTreeMap::from([("berth.dev/workload".to_owned(), workload.to_owned())]);
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Remove what a one-off copy must not have: probes (nothing serves) and
/// host ports (they would clash with the workload's own pods).
fn strip(container: &mut Container) {
    container.liveness_probe = None;
    container.readiness_probe = None;
    container.startup_probe = None;
    for port in container.ports.iter_mut().flatten() {
        port.host_port = None;
    }
}

/// Create `pod` and wait until `container` runs. A pod that can never start
/// (image pull, bad config, unschedulable) fails with the reason.
pub async fn start(
    pods: &Api<Pod>,
    pod: &Pod,
    container: &str,
    thresholds: Thresholds,
) -> anyhow::Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    pods.create(&PostParams::default(), pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(
        watcher(pods.clone(), config)
            .default_backoff()
            .applied_objects()
    );
    while let Some(pod) = stream.try_next().await? {
        // No events: its probes are stripped, so readiness cannot doom it.
        if let Some(failure) = doom(&pod, &[], Timestamp::now(), thresholds) {
            return Err(BerthError::DeployFailed(format!(
                "pod {name} cannot start: {}",
                failure.message
            ))
            .into());
        }
        let status = pod.status.as_ref();
        match status.and_then(|s| s.phase.as_deref()) {
            Some("Succeeded" | "Failed") => {
                return Err(BerthError::DeployFailed(format!(
                    "pod {name} ended before the command could run"
                ))
                .into());
            }
            Some("Running") if running(&pod, container) => return Ok(()),
            _ => {}
        }
    }
    anyhow::bail!("the watch on pod {name} ended")
}

/// Whether `container` of `pod` is running.
fn running(pod: &Pod, container: &str) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .any(|c| c.name == container && c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

/// Delete the pod now (its `sleep` ignores SIGTERM, so no grace period).
pub async fn delete(pods: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    super::delete_if_present(pods, name, &DeleteParams::default().grace_period(0))
        .await
        .with_context(|| format!("deleting pod {name}"))?;
    Ok(())
}

/// Where and how one-off pods of an environment run.
pub struct OneOff {
    /// The environment's pods.
    pub pods: Api<Pod>,
    /// `<app>-<env>`, the start of pod names and the run label's value.
    pub instance: String,
    /// The setting that chose the workload, for messages.
    pub key: String,
    /// When a pod that cannot be scheduled counts as failed.
    pub thresholds: Thresholds,
}

impl OneOff {
    /// One-off pods of the environment `env_name` of `app`, from the
    /// workload the setting `key` names.
    pub fn new(
        client: &Client,
        app: &str,
        env_name: &str,
        env: &Environment,
        key: String,
    ) -> OneOff {
        OneOff {
            pods: pods::api(client, &env.namespace),
            instance: instance(app, env_name),
            key,
            thresholds: Thresholds::from(&env.rollout),
        }
    }

    /// Start a pod from `template`, run `command` in it within `timeout`,
    /// delete the pod unless `keep`; the command's exit code. berth's own
    /// lines go to `out`.
    pub async fn run(
        &self,
        settings: &RunSettings,
        template: Option<PodTemplateSpec>,
        command: Vec<String>,
        timeout: Duration,
        keep: bool,
        out: &Output,
    ) -> anyhow::Result<i32> {
        let template = template.unwrap_or_default();
        let spec = template.spec.clone().unwrap_or_default();
        let container = pods::container(&spec, settings.container.as_deref(), &self.key)?;
        let name = pod_name(&self.instance);
        // The pod outlives the timeout a little, so the command's own end is seen first.
        let lifetime = timeout.saturating_add(Duration::from_secs(60));
        let pod = build(
            &template,
            &name,
            &self.instance,
            &settings.workload,
            &container,
            lifetime,
        )?;
        let image = spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        out.info(&format!(
            "starting pod {name} ({image}, from {})",
            settings.workload
        ));
        let mut interrupts = Interrupts::listen()?;
        let work = async {
            start(&self.pods, &pod, &container, self.thresholds).await?;
            let session = Session {
                pod: &name,
                container: Some(&container),
                command,
                settings: None,
                tty: terminal::is_interactive(),
            };
            exec::run(&self.pods, session).await
        };
        let result = tokio::select! {
            result = tokio::time::timeout(timeout, work) => result.unwrap_or_else(|_| {
                Err(BerthError::TimedOut(format!(
                    "pod {name}: the command did not finish within {} (--timeout)",
                    crate::duration::display(timeout)
                ))
                .into())
            }),
            () = interrupts.recv() => Err(BerthError::Interrupted.into()),
        };
        if keep {
            out.info(&format!(
                "kept pod {name}; `kubectl -n {ns} exec -it {name} -- sh` to look inside, \
                 `kubectl -n {ns} delete pod {name}` when done",
                ns = self.pods.namespace().unwrap_or_default()
            ));
        } else if let Err(error) = delete(&self.pods, &name).await {
            out.warn(&format!("{error:#}; delete pod {name} by hand"));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": { "labels": { "app": "frontend" } },
            "spec": {
                "serviceAccountName": "workbench",
                "volumes": [{ "name": "tmp", "emptyDir": {} }],
                "containers": [
                    {
                        "name": "frontend", "image": "reg/frontend:1a2b3c4",
                        "command": ["gunicorn"], "args": ["app"],
                        "envFrom": [{ "secretRef": { "name": "db" } }],
                        "env": [{ "name": "MODE", "value": "web" }],
                        "ports": [{ "containerPort": 8080, "hostPort": 80 }],
                        "readinessProbe": { "httpGet": { "path": "/", "port": 8080 } },
                        "livenessProbe": { "httpGet": { "path": "/", "port": 8080 } }
                    },
                    { "name": "proxy", "image": "cloud-sql-proxy", "startupProbe": { "tcpSocket": { "port": 5432 } } }
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_pod_copies_the_template_and_sleeps_in_the_chosen_container() {
        let pod = build(
            &template(),
            "wb-test-run-abcde",
            "wb-test",
            "frontend",
            "frontend",
            Duration::from_secs(600),
        )
        .unwrap();
        let json = serde_json::to_value(&pod).unwrap();
        assert_eq!(json["metadata"]["name"], "wb-test-run-abcde");
        assert_eq!(
            json["metadata"]["labels"],
            serde_json::json!({ "app.kubernetes.io/managed-by": "berth", "berth.dev/run": "wb-test" }),
            "not the app's selector labels"
        );
        let spec = &json["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["activeDeadlineSeconds"], 600);
        assert_eq!(spec["serviceAccountName"], "workbench");
        assert_eq!(spec["volumes"][0]["name"], "tmp");
        let main = &spec["containers"][0];
        assert_eq!(main["image"], "reg/frontend:1a2b3c4");
        assert_eq!(main["command"], serde_json::json!(["sleep", "600"]));
        assert!(main.get("args").is_none());
        assert_eq!(main["envFrom"][0]["secretRef"]["name"], "db");
        assert_eq!(main["env"][0]["value"], "web");
        assert!(main["ports"][0].get("hostPort").is_none());
        for container in spec["containers"].as_array().unwrap() {
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                assert!(container.get(probe).is_none(), "{probe} removed");
            }
        }
        assert!(
            spec["containers"][1].get("command").is_none(),
            "a sidecar keeps its command"
        );
    }

    #[test]
    fn names_are_random_and_valid() {
        let a = pod_name("wb-staging");
        let b = pod_name("wb-staging");
        assert!(
            a.starts_with("wb-staging-run-") && a.len() == "wb-staging-run-".len() + 5,
            "{a}"
        );
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
