//! The migration from the repository's own manifests (`migrate.overlay`):
//! its Pod or Job rendered with the app's tools, made berth's migration Job.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::sidecars::{self, Arrangement};
use crate::config::{Config, MigrateOverlay, Source};
use crate::error::input_error;
use crate::render::{PinnedImage, Pins, Target};

/// Where the migration Job came from, for the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The Pod or Job taken, as `Kind/name`.
    pub object: String,
    /// The directory rendered, relative to berth.yaml's.
    pub source: String,
    /// The container whose exit decides.
    pub container: String,
    /// The other objects the directory rendered, as `Kind/name`: not run,
    /// not applied.
    pub ignored: Vec<String>,
    /// The migration's images pinned like the app's.
    pub pinned: Vec<PinnedImage>,
    /// What was done with its other containers.
    pub sidecars: Arrangement,
}

impl Origin {
    /// The plan's lines about it, indented under the migration Job's.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "  from {} in {} (container {} decides)",
            self.object, self.source, self.container
        )];
        if let Some(sidecars) = self.sidecars.describe(&self.container) {
            lines.push(format!("  {sidecars}"));
        }
        for p in &self.pinned {
            lines.push(format!("  image {}: {} -> {}", p.container, p.from, p.to));
        }
        if !self.ignored.is_empty() {
            lines.push(format!(
                "  ignored (neither run nor applied): {}",
                self.ignored.join(", ")
            ));
        }
        lines
    }

    /// The plan event's `migration`.
    pub fn to_json(&self) -> Value {
        let (native, ended) = match &self.sidecars {
            Arrangement::Alone => (vec![], vec![]),
            Arrangement::Native(names) => (names.clone(), vec![]),
            Arrangement::Ended(names) => (vec![], names.clone()),
        };
        json!({
            "from": self.object,
            "source": self.source,
            "container": self.container,
            "native_sidecars": native,
            "ended_sidecars": ended,
            "images": self.pinned.iter().map(|p| json!({"container": p.container, "from": p.from, "to": p.to})).collect::<Vec<_>>(),
            "ignored": self.ignored,
        })
    }
}

/// The migration Job and where it came from.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The Job to run (named and labelled per release later, by
    /// [`super::for_release`]).
    pub job: Job,
    /// Where it came from.
    pub origin: Origin,
}

/// Render `overlay` for environment `env_name` (namespace `namespace`) and
/// make its migration Pod or Job a Job: its pod spec whole, images pinned
/// with `pins`, one attempt within `migrate.deadline`, the main container
/// marked and the others made native sidecars (`native`) or left for berth
/// to end (see [`sidecars`]). A chart renders for `target`, as the
/// environment's own ([`crate::render::render`]). Bad input: nothing to
/// take, several without `name`, a `name` or `container` that matches
/// nothing.
pub async fn job(
    config: &Config,
    env_name: &str,
    namespace: &str,
    overlay: &MigrateOverlay,
    pins: &Pins,
    native: bool,
    target: Option<&Target>,
) -> anyhow::Result<Taken> {
    let key = format!("environments.{env_name}.migrate.overlay");
    let objects =
        crate::render::render_source(config, env_name, &overlay.source, &key, namespace, target)
            .await?;
    let source = match &overlay.source {
        Source::Kustomize { overlay, .. } => overlay
            .strip_prefix(&config.dir)
            .unwrap_or(overlay)
            .display()
            .to_string(),
        Source::Helm { chart, .. } => chart.describe(&config.dir),
    };
    take(objects, env_name, &source, overlay, pins, native)
}

/// [`job`] once rendered: `source` names the directory in messages.
fn take(
    objects: Vec<DynamicObject>,
    env_name: &str,
    source: &str,
    overlay: &MigrateOverlay,
    pins: &Pins,
    native: bool,
) -> anyhow::Result<Taken> {
    let key = format!("environments.{env_name}.migrate");
    let (candidates, others): (Vec<_>, Vec<_>) = objects.into_iter().partition(runnable);
    let describe = |objects: &[DynamicObject]| {
        objects
            .iter()
            .map(object_ref)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let index = match (&overlay.name, candidates.len()) {
        (_, 0) => {
            let rendered = if others.is_empty() {
                "nothing".to_owned()
            } else {
                describe(&others)
            };
            return Err(input_error(format!(
                "{key}.overlay: {source} renders no Pod or Job (it renders {rendered}); point \
                 it at the kustomization or chart that holds the migration Pod or Job"
            )));
        }
        (Some(name), _) => candidates
            .iter()
            .position(|o| o.name_any() == *name)
            .ok_or_else(|| {
                input_error(format!(
                    "{key}.name: {source} renders no Pod or Job named {name:?}; it renders {}; \
                     set {key}.name to one of them",
                    describe(&candidates)
                ))
            })?,
        (None, 1) => 0,
        (None, _) => {
            return Err(input_error(format!(
                "{key}: {source} renders several Pods and Jobs ({}); set {key}.name to the one \
                 that migrates",
                describe(&candidates)
            )));
        }
    };
    let mut candidates = candidates;
    let mut taken = candidates.remove(index);
    let ignored: Vec<String> = candidates.iter().chain(&others).map(object_ref).collect();
    let object = object_ref(&taken);
    let pinned = crate::render::pin_images(std::slice::from_mut(&mut taken), pins);
    let mut job = as_job(taken, &object)?;
    let containers: Vec<String> = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let container = match &overlay.container {
        Some(name) if containers.contains(name) => name.clone(),
        Some(name) => {
            return Err(input_error(format!(
                "{key}.container: {object} in {source} has no container named {name:?}; its \
                 containers are {}; set {key}.container to one of them",
                containers.join(", ")
            )));
        }
        None => containers
            .first()
            .cloned()
            .ok_or_else(|| input_error(format!("{object} in {source} has no containers")))?,
    };
    let spec = job.spec.get_or_insert_default();
    spec.backoff_limit = Some(0);
    spec.active_deadline_seconds = Some(overlay.deadline.as_secs().max(1) as i64);
    if let Some(pod) = spec.template.spec.as_mut() {
        pod.restart_policy = Some("Never".into());
    }
    let sidecars = sidecars::arrange(&mut job, &container, native);
    Ok(Taken {
        job,
        origin: Origin {
            object,
            source: source.to_owned(),
            container,
            ignored,
            pinned,
            sidecars,
        },
    })
}

/// Whether `object` is a Pod or a Job.
fn runnable(object: &DynamicObject) -> bool {
    object.types.as_ref().is_some_and(|t| {
        (t.kind == "Pod" && t.api_version == "v1")
            || (t.kind == "Job" && t.api_version == "batch/v1")
    })
}

/// `Kind/name`.
fn object_ref(object: &DynamicObject) -> String {
    let kind = object.types.as_ref().map_or("", |t| t.kind.as_str());
    format!("{kind}/{}", object.name_any())
}

/// A Pod as a Job running it once (its labels and annotations on the pod
/// template), or a Job as one attempt of one pod (what would run it more
/// than once, or never, dropped).
fn as_job(object: DynamicObject, shown: &str) -> anyhow::Result<Job> {
    let is_pod = object.types.as_ref().is_some_and(|t| t.kind == "Pod");
    let value = if is_pod {
        let metadata = &object.metadata;
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": metadata.name},
            "spec": {"template": {
                "metadata": {"labels": metadata.labels, "annotations": metadata.annotations},
                "spec": object.data.get("spec").cloned().unwrap_or(Value::Null),
            }}
        })
    } else {
        serde_json::to_value(&object)?
    };
    let mut job: Job = serde_json::from_value(value)
        .map_err(|e| input_error(format!("{shown} is not a valid Pod or Job: {e}")))?;
    if let Some(spec) = job.spec.as_mut() {
        spec.selector = None;
        spec.manual_selector = None;
        spec.suspend = None;
        spec.parallelism = None;
        spec.completions = None;
        spec.completion_mode = None;
        spec.backoff_limit_per_index = None;
        spec.max_failed_indexes = None;
        spec.success_policy = None;
        spec.managed_by = None;
    }
    if job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_none()
    {
        return Err(input_error(format!("{shown} has no pod spec")));
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn objects(values: Vec<Value>) -> Vec<DynamicObject> {
        values
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect()
    }

    fn settings(name: Option<&str>, container: Option<&str>) -> MigrateOverlay {
        MigrateOverlay {
            source: Source::Kustomize {
                overlay: "deploy/migrate".into(),
                kustomize: crate::config::Kustomize::Kubectl,
            },
            name: name.map(Into::into),
            container: container.map(Into::into),
            deadline: Duration::from_secs(300),
            pending_check: None,
        }
    }

    fn pod(name: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}, "annotations": {"note": "kept"}},
            "spec": {
                "restartPolicy": "OnFailure",
                "serviceAccountName": "migrator",
                "nodeSelector": {"pool": "db"},
                "tolerations": [{"key": "db", "operator": "Exists"}],
                "volumes": [{"name": "socket", "emptyDir": {}}],
                "containers": [
                    {"name": "cloud-sql-proxy", "image": "gcr.io/proxy:2",
                     "volumeMounts": [{"name": "socket", "mountPath": "/cloudsql"}]},
                    {"name": "migrate-main", "image": "reg.example.com/shop/app:latest",
                     "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                     "volumeMounts": [{"name": "socket", "mountPath": "/cloudsql"}]}]}
        })
    }

    fn pins() -> Pins {
        Pins::at_sha(&["reg.example.com/shop/app".to_owned()], "1a2b3c4")
    }

    fn error(result: anyhow::Result<Taken>) -> String {
        let error = result.unwrap_err();
        assert!(
            matches!(
                crate::error::kind_of(&error),
                Some(crate::error::BerthError::Input(_))
            ),
            "{error:#}"
        );
        format!("{error:#}")
    }

    #[test]
    fn a_pod_becomes_the_migration_job_with_its_pod_spec_whole() {
        let rendered = objects(vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}),
            pod("db-migrate"),
            pod("upload-assets"),
        ]);
        let settings = settings(Some("db-migrate"), Some("migrate-main"));
        let taken = take(
            rendered,
            "staging",
            "deploy/migrate",
            &settings,
            &pins(),
            true,
        )
        .unwrap();
        let origin = &taken.origin;
        assert_eq!(origin.object, "Pod/db-migrate");
        assert_eq!(origin.ignored, ["Pod/upload-assets", "ConfigMap/settings"]);
        assert_eq!(origin.pinned.len(), 1);
        assert_eq!(origin.pinned[0].to, "reg.example.com/shop/app:1a2b3c4");
        assert_eq!(
            origin.sidecars,
            Arrangement::Native(vec!["cloud-sql-proxy".into()])
        );
        let job = taken.job;
        assert_eq!(sidecars::main_container(&job).unwrap().name, "migrate-main");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(300));
        let template = spec.template;
        let meta = template.metadata.unwrap();
        assert_eq!(meta.labels.unwrap()["app"], "db-migrate");
        assert_eq!(meta.annotations.unwrap()["note"], "kept");
        let pod = template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some("migrator"));
        assert_eq!(pod.node_selector.unwrap()["pool"], "db");
        assert_eq!(pod.tolerations.unwrap().len(), 1);
        assert_eq!(pod.volumes.unwrap()[0].name, "socket");
        let main = &pod.containers[0];
        assert_eq!(main.name, "migrate-main");
        assert_eq!(
            main.image.as_deref(),
            Some("reg.example.com/shop/app:1a2b3c4")
        );
        let secret = main.env.as_ref().unwrap()[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(secret.name, "db");
        let proxy = &pod.init_containers.unwrap()[0];
        assert_eq!(proxy.name, "cloud-sql-proxy");
        assert_eq!(
            proxy.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/cloudsql"
        );
    }

    #[test]
    fn a_job_keeps_its_spec_but_runs_once() {
        let rendered = objects(vec![json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "annotations": {"a": "b"}},
            "spec": {"parallelism": 3, "completions": 3, "backoffLimit": 6,
                "template": {"spec": {"restartPolicy": "OnFailure",
                    "containers": [{"name": "m", "image": "reg.example.com/shop/app:x"}]}}}
        })]);
        let taken = take(
            rendered,
            "staging",
            "deploy/migrate",
            &settings(None, None),
            &pins(),
            false,
        )
        .unwrap();
        assert_eq!(taken.origin.container, "m");
        assert_eq!(taken.origin.sidecars, Arrangement::Alone);
        assert!(taken.origin.ignored.is_empty());
        let spec = taken.job.spec.unwrap();
        assert_eq!((spec.parallelism, spec.completions), (None, None));
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(
            spec.template.spec.unwrap().restart_policy.as_deref(),
            Some("Never")
        );
    }

    #[test]
    fn bad_input_names_what_there_is() {
        let none = objects(vec![
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}),
        ]);
        let message = error(take(
            none,
            "staging",
            "deploy/m",
            &settings(None, None),
            &pins(),
            true,
        ));
        assert!(message.contains("environments.staging.migrate.overlay: deploy/m renders no Pod or Job (it renders Service/web)"), "{message}");

        let two = || objects(vec![pod("db-migrate"), pod("upload-assets")]);
        let message = error(take(
            two(),
            "staging",
            "deploy/m",
            &settings(None, None),
            &pins(),
            true,
        ));
        assert!(message.contains("several Pods and Jobs (Pod/db-migrate, Pod/upload-assets); set environments.staging.migrate.name"), "{message}");

        let message = error(take(
            two(),
            "staging",
            "deploy/m",
            &settings(Some("migrate"), None),
            &pins(),
            true,
        ));
        assert!(
            message.contains(
                "no Pod or Job named \"migrate\"; it renders Pod/db-migrate, Pod/upload-assets"
            ),
            "{message}"
        );

        let message = error(take(
            two(),
            "staging",
            "deploy/m",
            &settings(Some("db-migrate"), Some("main")),
            &pins(),
            true,
        ));
        assert!(
            message.contains(
                "has no container named \"main\"; its containers are cloud-sql-proxy, migrate-main"
            ),
            "{message}"
        );
    }
}
