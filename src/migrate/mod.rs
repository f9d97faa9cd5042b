//! The database migration: a Job per release, run before any workload
//! changes, with its logs streamed under a `[migrate]` prefix.
//!
//! The Job has a unique name per release, `backoffLimit: 0` and a deadline.
//! A failed Job is kept for inspection, the newest `migrate.keep_failed`
//! of them ([`failed`]); a successful one is deleted.

pub mod failed;
pub mod overlay;
pub mod sidecars;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cluster::follow;
use crate::cluster::release::TaskRecord;
use crate::config::Migrate;
use crate::error::input_error;
use crate::progress::{TaskEvent, TaskReporter};
use crate::rollout::{Failure, Thresholds, Verdict};

/// Which of a release's Jobs [`run`] runs; its name prefixes its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobTask {
    /// The migration: a failed Job is kept for inspection.
    Migrate,
    /// The pending check (`migrate.pending_check`): a non-zero exit is an
    /// answer (something is pending), not a fault, so the Job is deleted
    /// however it ends.
    PendingCheck,
    /// The schema adapter reading what the release will migrate, before
    /// its migration. Changes nothing: deleted however it ends.
    SchemaInspect,
    /// The schema adapter reading the state the migration left. Changes
    /// nothing: deleted however it ends.
    SchemaState,
    /// The schema adapter planning a rollback. Changes nothing: deleted
    /// however it ends.
    SchemaPlan,
    /// The schema adapter unapplying migrations for a rollback: kept for
    /// inspection when it fails, like the migration.
    SchemaRollback,
    /// A chart's hook Job (`helm.sh/hook`, see [`crate::hooks`]): named as
    /// the chart names it; its delete policies say when it is deleted.
    Hook,
}

impl JobTask {
    /// The name its output is prefixed with, and its Job is named after.
    pub fn name(self) -> &'static str {
        match self {
            JobTask::Migrate => "migrate",
            JobTask::PendingCheck => "pending-check",
            JobTask::SchemaInspect => "migration-inspect",
            JobTask::SchemaState => "migration-state",
            JobTask::SchemaPlan => "migration-plan",
            JobTask::SchemaRollback => "schema-rollback",
            JobTask::Hook => "hook",
        }
    }

    /// Whether its Job changes nothing, so it is deleted however it ends.
    pub fn read_only(self) -> bool {
        !matches!(
            self,
            JobTask::Migrate | JobTask::SchemaRollback | JobTask::Hook
        )
    }
}

/// The annotation on the overlay's migration template that gives the
/// pending check, as a JSON array: `["python3", "manage.py", "migrate", "--check"]`.
pub const PENDING_CHECK_ANNOTATION: &str = "berth.dev/pending-check";
/// Label naming the instance a release's Job belongs to (its release
/// number is in `berth.dev/release`).
pub const RELEASE_LABEL: &str = "berth.dev/migration-of";

/// A failed migration: the Job is kept, and this says why.
#[derive(Debug, Clone)]
pub struct MigrationFailed {
    /// The Job's name.
    pub job: String,
    /// What went wrong.
    pub failure: Failure,
    /// Whether it failed or ran out of time.
    pub end: MigrationEnd,
    /// The outcome to record.
    pub record: TaskRecord,
    /// Whether the Job was kept (berth deletes it to end sidecars still
    /// running after the main container failed).
    pub kept: bool,
}

/// What became of failed Job `name`: kept for inspection, or deleted to
/// end its sidecars.
pub fn kept_or_not(name: &str, kept: bool) -> String {
    if kept {
        format!("Job {name} is kept for inspection")
    } else {
        format!("Job {name} was deleted to end its sidecars")
    }
}

/// The label that marks a Job in the overlay as the migration template.
pub const TEMPLATE_LABEL: (&str, &str) = ("berth.dev/role", "migration");
/// The deadline of a migration whose template sets none.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

fn is_template(object: &DynamicObject) -> bool {
    object
        .types
        .as_ref()
        .is_some_and(|t| t.kind == "Job" && t.api_version == "batch/v1")
        && object.labels().get(TEMPLATE_LABEL.0).map(String::as_str) == Some(TEMPLATE_LABEL.1)
}

/// Take the overlay's migration Job template (a Job labelled
/// `berth.dev/role: migration`) out of the objects to apply. It is run once
/// per release instead of being applied.
pub fn take_template(objects: &mut Vec<DynamicObject>) -> anyhow::Result<Option<Job>> {
    let (templates, rest): (Vec<_>, Vec<_>) =
        std::mem::take(objects).into_iter().partition(is_template);
    *objects = rest;
    match templates.len() {
        0 => Ok(None),
        1 => {
            let value = serde_json::to_value(&templates[0])?;
            let job: Job = serde_json::from_value(value).map_err(|e| {
                input_error(format!(
                    "the migration Job template {} is not a valid Job: {e}",
                    templates[0].name_any()
                ))
            })?;
            Ok(Some(job))
        }
        n => Err(input_error(format!(
            "{n} Jobs labelled {}: {} are rendered (by the overlay or chart); keep one \
             migration template",
            TEMPLATE_LABEL.0, TEMPLATE_LABEL.1
        ))),
    }
}

/// The migration Job from berth.yaml's `migrate:`, for apps whose overlay has
/// no template.
pub fn from_config(migrate: &Migrate, sha: &str) -> anyhow::Result<Job> {
    let env_from: Vec<_> = migrate
        .env_from_secrets
        .iter()
        .map(|secret| json!({"secretRef": {"name": secret}}))
        .collect();
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "migrate" },
        "spec": {
            "activeDeadlineSeconds": migrate.deadline.as_secs().max(1),
            "template": {
                "spec": {
                    "serviceAccountName": migrate.service_account,
                    "containers": [{
                        "name": "migrate",
                        "image": format!("{}:{sha}", migrate.image),
                        "command": if migrate.command.is_empty() { None } else { Some(&migrate.command) },
                        "args": if migrate.args.is_empty() { None } else { Some(&migrate.args) },
                        "envFrom": env_from,
                    }]
                }
            }
        }
    });
    serde_json::from_value(job).context("building the migration Job")
}

/// Make `template` the migration Job of release `number`: a unique name,
/// berth's labels, one attempt (`backoffLimit: 0`, `restartPolicy: Never`)
/// and a deadline (the template's, else 10 minutes).
pub fn for_release(job: Job, instance: &str, number: u64, sha: &str) -> Job {
    named(job, JobTask::Migrate, instance, number, sha)
}

/// The pending check of release `number`: the migration Job `template`
/// made as [`for_release`] makes it, named `...-pending-check-...`, its
/// container `migrate` (else its first) running `command` instead.
pub fn pending_check(
    template: Job,
    instance: &str,
    number: u64,
    sha: &str,
    command: &[String],
) -> Job {
    let mut job = named(template, JobTask::PendingCheck, instance, number, sha);
    if let Some(container) = migration_container(&mut job) {
        container.command = Some(command.to_vec());
        container.args = None;
    }
    job
}

/// The container of `job` that migrates: the one `migrate.container`
/// named ([`sidecars::MAIN_CONTAINER`]), else the one named `migrate`,
/// else the first.
pub fn migration_container(job: &mut Job) -> Option<&mut Container> {
    let name = sidecars::main_container(job)?.name.clone();
    let pod = job.spec.as_mut()?.template.spec.as_mut()?;
    pod.containers.iter_mut().find(|c| c.name == name)
}

/// The pending check the overlay's migration `template` declares in its
/// [`PENDING_CHECK_ANNOTATION`], if any; bad input when it is not a JSON
/// array of strings.
pub fn template_pending_check(template: &Job) -> anyhow::Result<Option<Vec<String>>> {
    let Some(text) = template.annotations().get(PENDING_CHECK_ANNOTATION) else {
        return Ok(None);
    };
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(command) if command.first().is_some_and(|p| !p.trim().is_empty()) => Ok(Some(command)),
        _ => Err(input_error(format!(
            "the migration Job template's annotation {PENDING_CHECK_ANNOTATION} is {text:?}; \
             write the command as a JSON array, e.g. '[\"python3\", \"manage.py\", \"migrate\", \"--check\"]'"
        ))),
    }
}

/// `job` as `task`'s Job of release `number` (see [`for_release`]):
/// `<instance>-<task>-<number>-<sha>`, or without the instance when that
/// would pass 63 characters.
pub fn named(mut job: Job, task: JobTask, instance: &str, number: u64, sha: &str) -> Job {
    let short = crate::config::sha_prefix(sha, 12);
    let task = task.name();
    let mut name = format!("{instance}-{task}-{number}-{short}");
    if name.len() > 63 {
        name = format!("{task}-{number}-{short}");
    }
    let labels = [
        (
            crate::cluster::MANAGED_BY.0,
            crate::cluster::MANAGED_BY.1.to_string(),
        ),
        (RELEASE_LABEL, instance.to_string()),
        ("berth.dev/release", number.to_string()),
    ];
    job.metadata = ObjectMeta {
        name: Some(name),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        annotations: job.metadata.annotations.take(),
        ..Default::default()
    };
    let spec = job.spec.get_or_insert_with(Default::default);
    spec.backoff_limit = Some(0);
    spec.active_deadline_seconds = spec
        .active_deadline_seconds
        .or(Some(DEFAULT_DEADLINE.as_secs() as i64));
    let pod_labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    for (k, v) in &labels {
        pod_labels.insert(k.to_string(), v.clone());
    }
    pod_labels.remove(TEMPLATE_LABEL.0);
    if let Some(pod) = spec.template.spec.as_mut() {
        pod.restart_policy = Some("Never".into());
    }
    job
}

/// How a migration ended without success. The Job is kept for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationEnd {
    /// The Job failed, or its pod could never start or be watched.
    Failed,
    /// The Job did not finish within [`limit`].
    TimedOut,
}

/// How long [`run`] waits for a migration Job: its deadline
/// (`activeDeadlineSeconds`, the time it may run) plus `timeout` (the
/// environment's rollout timeout, for it to be scheduled, start, and report).
pub fn limit(job: &Job, timeout: Duration) -> Duration {
    let deadline = job
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map_or(DEFAULT_DEADLINE, |s| Duration::from_secs(s.max(0) as u64));
    deadline.saturating_add(timeout)
}

/// A Job [`create_and_follow`] ran to its end.
#[derive(Debug)]
pub struct Ended {
    /// The Job's name.
    pub name: String,
    /// What following it saw: its pods and their logs.
    pub followed: follow::Followed,
    /// `None` when it succeeded; else how it ended and why.
    pub failure: Option<(MigrationEnd, Failure)>,
    /// How long it took, from its creation.
    pub duration_s: f64,
}

impl Ended {
    /// Whether following it deleted the Job already, to end the sidecars
    /// still running after its main container exited.
    pub fn deleted(&self) -> bool {
        !self.followed.ended_sidecars.is_empty()
    }

    /// Its outcome as the release records it.
    pub fn record(&self, failed_status: &str) -> TaskRecord {
        let status = match &self.failure {
            None => "succeeded",
            Some((MigrationEnd::TimedOut, _)) => "timed_out",
            Some((MigrationEnd::Failed, _)) => failed_status,
        };
        TaskRecord {
            name: self.name.clone(),
            status: status.into(),
            duration_s: self.duration_s,
        }
    }
}

/// Create `job` as `task`'s Job and follow it to its end, or until
/// [`limit`]`(job, timeout)` has passed, streaming its logs to `reporter`.
/// The Job is left as it ended (see [`delete`]). `cancel` deletes the Job
/// and its pod and returns [`Cancelled`](crate::error::Cancelled).
#[allow(clippy::too_many_arguments)]
pub async fn create_and_follow<R: TaskReporter + ?Sized + 'static>(
    client: &Client,
    namespace: &str,
    task: JobTask,
    job: Job,
    thresholds: Thresholds,
    timeout: Duration,
    cancel: &CancellationToken,
    reporter: &Arc<R>,
) -> anyhow::Result<Ended> {
    let started = Instant::now();
    let limit = limit(&job, timeout);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let name = job.name_any();
    crate::cluster::create::create(&jobs, &job)
        .await
        .with_context(|| format!("creating {} Job {name}", task.name()))?;
    let sidecars = sidecars::main_container(&job)
        .and_then(|main| sidecars::Arrangement::of(&job).describe(&main.name))
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    reporter.task(
        task.name(),
        TaskEvent::Started(&format!("running Job {name}{sidecars}")),
    );
    let followed = follow::follow(
        client,
        namespace,
        &name,
        task.name(),
        thresholds,
        limit,
        cancel,
        reporter,
    )
    .await?;
    let failure = match &followed.end {
        follow::End::Finished(Verdict::Failed(failure)) => {
            Some((MigrationEnd::Failed, failure.clone()))
        }
        follow::End::Finished(_) => None,
        follow::End::TimedOut => Some((
            MigrationEnd::TimedOut,
            Failure {
                pod: None,
                reason: "Timeout".into(),
                message: format!(
                    "{} did not finish within {} (its deadline plus the rollout timeout)",
                    match task {
                        JobTask::Migrate => "the migration".to_string(),
                        other => format!("the {} Job", other.name()),
                    },
                    crate::duration::display(limit)
                ),
            },
        )),
    };
    Ok(Ended {
        name,
        followed,
        failure,
        duration_s: started.elapsed().as_secs_f64(),
    })
}

/// Delete `task`'s finished Job `name` (its pod goes with it), unless it
/// is gone already.
pub async fn delete(
    client: &Client,
    namespace: &str,
    task: JobTask,
    name: &str,
) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("deleting the finished {} Job {name}", task.name()))
        }
    }
}

/// Run the migration Job (or the pending check) to the end, or until
/// [`limit`]`(job, timeout)` has passed. Streams its logs to `reporter`;
/// deletes the Job on success and keeps it otherwise (a pending check's is
/// deleted however it ends). `cancel` deletes the Job and its pod and
/// returns [`Cancelled`](crate::error::Cancelled).
#[allow(clippy::too_many_arguments)]
pub async fn run<R: TaskReporter + ?Sized + 'static>(
    client: &Client,
    namespace: &str,
    task: JobTask,
    job: Job,
    thresholds: Thresholds,
    timeout: Duration,
    cancel: &CancellationToken,
    reporter: &Arc<R>,
) -> anyhow::Result<Result<TaskRecord, MigrationFailed>> {
    let ended = create_and_follow(
        client, namespace, task, job, thresholds, timeout, cancel, reporter,
    )
    .await?;
    let name = ended.name.clone();
    let name_of_task = task.name();
    let pending = task == JobTask::PendingCheck;
    let record = ended.record(if pending { "pending" } else { "failed" });
    let kept = !ended.deleted();
    match ended.failure {
        Some((end, failure)) => {
            if pending {
                reporter.task(
                    name_of_task,
                    TaskEvent::Succeeded(&format!("{}; Job {name} deleted", failure.message)),
                );
                delete(client, namespace, task, &name).await?;
            } else {
                reporter.task(
                    name_of_task,
                    TaskEvent::Failed(&format!(
                        "{}; {}",
                        failure.message,
                        kept_or_not(&name, kept)
                    )),
                );
            }
            Ok(Err(MigrationFailed {
                job: name,
                failure,
                end,
                record,
                kept,
            }))
        }
        None => {
            reporter.task(
                name_of_task,
                TaskEvent::Succeeded(&format!(
                    "succeeded in {}",
                    crate::duration::display_seconds(ended.duration_s)
                )),
            );
            delete(client, namespace, task, &name).await?;
            Ok(Ok(record))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrate() -> Migrate {
        Migrate {
            image: "registry.example.com/workbench/migrate".into(),
            command: vec!["flyway".into(), "migrate".into()],
            args: vec![],
            deadline: Duration::from_secs(600),
            env_from_secrets: vec!["db-credentials".into()],
            service_account: None,
            pending_check: None,
        }
    }

    #[test]
    fn a_configured_migration_runs_once_at_the_sha_with_a_deadline_and_a_name_per_release() {
        let job = for_release(
            from_config(&migrate(), "1a2b3c4").unwrap(),
            "workbench-staging",
            7,
            "1a2b3c4",
        );
        assert_eq!(job.name_any(), "workbench-staging-migrate-7-1a2b3c4");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example.com/workbench/migrate:1a2b3c4")
        );
        assert_eq!(container.command.as_ref().unwrap(), &["flyway", "migrate"]);
        let secret = container.env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap();
        assert_eq!(secret.name, "db-credentials");
    }

    fn object(json: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_overlays_template_is_taken_out_of_the_apply_set_and_run_as_the_release_job() {
        let mut objects = vec![
            object(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
            ),
            object(json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "migrate", "labels": {"berth.dev/role": "migration", "app.kubernetes.io/instance": "wb-s"}},
                "spec": {"backoffLimit": 6, "activeDeadlineSeconds": 120, "template": {
                    "metadata": {"labels": {"berth.dev/role": "migration"}},
                    "spec": {"restartPolicy": "OnFailure", "containers": [
                        {"name": "migrate", "image": "reg/migrate:1a2b3c4"},
                        {"name": "cloud-sql-proxy", "image": "gce-proxy:1.18"}]}}}
            })),
        ];
        let template = take_template(&mut objects).unwrap().unwrap();
        assert_eq!(objects.len(), 1, "the template is not applied");
        let job = for_release(template, "wb-s", 3, "1a2b3c4");
        assert_eq!(job.name_any(), "wb-s-migrate-3-1a2b3c4");
        assert_eq!(
            job.labels().get("app.kubernetes.io/instance"),
            None,
            "never pruned as an app object"
        );
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(
            spec.active_deadline_seconds,
            Some(120),
            "the template's deadline wins"
        );
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(
            pod_labels.get("berth.dev/release").map(String::as_str),
            Some("3")
        );
        assert!(!pod_labels.contains_key("berth.dev/role"));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.containers.len(), 2, "sidecars from the overlay stay");
    }

    #[test]
    fn the_pending_check_runs_its_command_in_a_copy_of_the_migration_job() {
        let template: Job = serde_json::from_value(json!({
            "metadata": {"name": "migrate", "annotations": {
                PENDING_CHECK_ANNOTATION: r#"["python3", "manage.py", "migrate", "--check"]"#}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "proxy", "image": "proxy:1"},
                {"name": "migrate", "image": "reg/migrate:1a2b3c4",
                 "command": ["python3", "manage.py", "migrate"], "args": ["--noinput"]}]}}}
        }))
        .unwrap();
        let command = template_pending_check(&template).unwrap().unwrap();
        assert_eq!(command, ["python3", "manage.py", "migrate", "--check"]);
        let job = pending_check(template.clone(), "wb-s", 3, "1a2b3c4", &command);
        assert_eq!(job.name_any(), "wb-s-pending-check-3-1a2b3c4");
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers[1].command.as_deref(), Some(&command[..]));
        assert_eq!(pod.containers[1].args, None);
        assert_eq!(pod.containers[0].command, None, "sidecars stay as they are");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));

        let mut bad = template;
        bad.metadata.annotations = Some(
            [(
                PENDING_CHECK_ANNOTATION.to_owned(),
                "manage.py migrate --check".to_owned(),
            )]
            .into(),
        );
        let err = template_pending_check(&bad).unwrap_err().to_string();
        assert!(err.contains("write the command as a JSON array"), "{err}");
    }

    #[test]
    fn two_templates_are_refused() {
        let job = || {
            object(
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "m", "labels": {"berth.dev/role": "migration"}}}),
            )
        };
        let mut objects = vec![job(), job()];
        let err = take_template(&mut objects).unwrap_err().to_string();
        assert!(err.contains("keep one migration template"), "{err}");
    }
}
