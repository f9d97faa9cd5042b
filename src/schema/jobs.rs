//! The adapter's Jobs: a copy of the migration Job as a release ran it,
//! its image pinned by digest, its container running the adapter's
//! request; the response read from its log.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::Client;
use tokio_util::sync::CancellationToken;

use super::adapter::{Adapter, Invocation, Request, Response};
use crate::migrate::{self, JobTask};
use crate::progress::{TaskEvent, TaskReporter};
use crate::rollout::{Failure, Thresholds};

/// Which adapter Job to build: the migration Job it copies, its task, the
/// release it belongs to, and the image it runs.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// The migration Job template: the plan's at deploy time, or the one a
    /// release recorded (`SchemaRecord::job`).
    pub template: &'a Job,
    /// What the Job does (names it and decides whether a failed one is kept).
    pub task: JobTask,
    /// `<app>-<env>`.
    pub instance: &'a str,
    /// The release the Job belongs to.
    pub number: u64,
    /// That release's SHA.
    pub sha: &'a str,
    /// The migration container's image instead of the template's, e.g. a
    /// recorded `repo@sha256:…`.
    pub image: Option<&'a str>,
}

/// What an adapter Job did.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The adapter's response, read from the pod's log.
    pub response: Response,
    /// The migration container's image by digest (`repo@sha256:…`), from
    /// the pod's status, when the runtime reported one.
    pub image_id: Option<String>,
    /// The Job's name.
    pub job: String,
    /// Why the Job failed, when it did (a Migrate that stopped midway: the
    /// response still says where it stopped); `reason` is `Timeout` when it
    /// did not finish in time.
    pub failure: Option<Failure>,
}

/// An adapter Job that ended without a result line to read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the {task} Job {job} gave no result: {why}; {}", if *.kept { "the Job is kept for inspection" } else { "the Job was deleted" })]
pub struct NoResponse {
    /// The task's name, e.g. `migration-state`.
    pub task: &'static str,
    /// The Job's name.
    pub job: String,
    /// Why: the Job's failure, else why its log had no result.
    pub why: String,
    /// Whether the Job was kept.
    pub kept: bool,
    /// The Job's failure, when it failed.
    pub failure: Option<Failure>,
}

/// The Job `spec` describes, running `invocation`: the template made as
/// [`migrate::named`] makes it, its migration container (`migrate`, else
/// the first) running the invocation's command with no args and its
/// environment added, on `spec.image` when given. Sidecars stay as they are.
pub fn build(spec: &Spec<'_>, invocation: &Invocation) -> Job {
    let mut job = migrate::named(
        spec.template.clone(),
        spec.task,
        spec.instance,
        spec.number,
        spec.sha,
    );
    if let Some(container) = migrate::migration_container(&mut job) {
        container.command = Some(invocation.command.clone());
        container.args = None;
        let env = container.env.get_or_insert_with(Vec::new);
        for (name, value) in &invocation.env {
            env.retain(|e| &e.name != name);
            env.push(EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                value_from: None,
            });
        }
        if let Some(image) = spec.image {
            container.image = Some(image.to_string());
        }
    }
    job
}

/// Carry out `request` with `adapter` in the Job `spec` describes, to its
/// end or until its deadline plus `timeout` passes; its output streamed to
/// `reporter` (all but the result line). Read-only tasks' Jobs are deleted
/// however they end; a [`JobTask::SchemaRollback`] Job is deleted when it
/// succeeds and kept when it fails. `cancel` deletes the Job and returns
/// [`Cancelled`](crate::error::Cancelled). A Job whose log has no result
/// is a [`NoResponse`] error.
#[allow(clippy::too_many_arguments)]
pub async fn run<R: TaskReporter + ?Sized + 'static>(
    client: &Client,
    namespace: &str,
    adapter: &dyn Adapter,
    request: &Request,
    spec: &Spec<'_>,
    thresholds: Thresholds,
    timeout: Duration,
    cancel: &CancellationToken,
    reporter: &Arc<R>,
) -> anyhow::Result<Ran> {
    let task = spec.task;
    let mut job = build(spec, &adapter.invocation(request)?);
    let container =
        migrate::migration_container(&mut job).map(|c| (c.name.clone(), c.image.clone()));
    let quiet: Arc<WithoutResult<R>> = Arc::new(WithoutResult {
        reporter: reporter.clone(),
        prefix: adapter.result_prefix(),
    });
    let ended = migrate::create_and_follow(
        client, namespace, task, job, thresholds, timeout, cancel, &quiet,
    )
    .await?;
    let name = ended.name.clone();
    let deleted = ended.deleted();
    let failure = ended.failure.map(|(_, failure)| failure);
    let kept = failure.is_some() && !task.read_only() && !deleted;
    let parsed = ended
        .followed
        .logs
        .iter()
        .rev()
        .map(|(_, log)| adapter.parse(log))
        .reduce(|found, next| found.or(next));
    let image_id = container.and_then(|(container, image)| {
        image_of(&ended.followed.pods, &container, image.as_deref())
    });
    let done = if kept {
        format!("Job {name} is kept for inspection")
    } else {
        migrate::delete(client, namespace, task, &name).await?;
        format!("Job {name} deleted")
    };
    match (&failure, &parsed) {
        (None, Some(Ok(_))) => reporter.task(
            task.name(),
            TaskEvent::Succeeded(&format!(
                "done in {}; {done}",
                crate::duration::display_seconds(ended.duration_s)
            )),
        ),
        (Some(f), _) => reporter.task(
            task.name(),
            TaskEvent::Failed(&format!("{}; {done}", f.message)),
        ),
        (None, _) => reporter.task(
            task.name(),
            TaskEvent::Failed(&format!("it printed no result; {done}")),
        ),
    }
    let response = match parsed {
        Some(Ok(response)) => response,
        found => {
            let read = match found {
                Some(Err(e)) => format!("{e:#}"),
                _ => "its pod left no log".into(),
            };
            let why = match &failure {
                Some(f) => format!("{}; {read}", f.message),
                None => read,
            };
            return Err(NoResponse {
                task: task.name(),
                job: name,
                why,
                kept,
                failure,
            }
            .into());
        }
    };
    Ok(Ran {
        response,
        image_id,
        job: name,
        failure,
    })
}

/// The image container `container` of `pods` ran, by digest: its status's
/// `imageID` when that names a repository digest, else `spec_image` when
/// that is already pinned by digest.
fn image_of(pods: &[Pod], container: &str, spec_image: Option<&str>) -> Option<String> {
    pods.iter()
        .rev()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|s| s.name == container)
        .find_map(|s| by_digest(&s.image_id))
        .or_else(|| spec_image.and_then(by_digest))
}

/// `repo@sha256:<64 hex>` from a container runtime's image id (containerd
/// gives it as is; Docker prefixes `docker-pullable://`), or `None` when
/// it names no repository digest (e.g. a bare `sha256:` image id).
pub fn by_digest(image_id: &str) -> Option<String> {
    let id = ["docker-pullable://", "docker://"]
        .iter()
        .find_map(|p| image_id.strip_prefix(p))
        .unwrap_or(image_id);
    let (repository, digest) = id.split_once("@sha256:")?;
    let valid = !repository.is_empty()
        && digest.len() == 64
        && digest.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| format!("{repository}@sha256:{digest}"))
}

/// A reporter passing everything on but the adapter's result line (read
/// by [`Adapter::parse`], never echoed).
struct WithoutResult<R: ?Sized> {
    /// Where everything else goes.
    reporter: Arc<R>,
    /// How the result line starts ([`Adapter::result_prefix`]).
    prefix: &'static str,
}

impl<R: TaskReporter + ?Sized> TaskReporter for WithoutResult<R> {
    fn task(&self, task: &str, event: TaskEvent<'_>) {
        if let TaskEvent::Output(line) = event
            && line.starts_with(self.prefix)
        {
            return;
        }
        self.reporter.task(task, event);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kube::ResourceExt;
    use serde_json::json;

    use super::*;

    fn template() -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "migrate", "labels": {"berth.dev/role": "migration"}},
            "spec": {"activeDeadlineSeconds": 300, "template": {"spec": {"containers": [
                {"name": "proxy", "image": "proxy:1"},
                {"name": "migrate", "image": "reg/migrate:1a2b3c4",
                 "command": ["python3", "manage.py", "migrate"], "args": ["--noinput"],
                 "env": [{"name": "BERTH_SCHEMA_REQUEST", "value": "stale"}, {"name": "KEEP", "value": "1"}],
                 "envFrom": [{"secretRef": {"name": "db-credentials"}}]}]}}}
        }))
        .unwrap()
    }

    fn invocation() -> Invocation {
        Invocation {
            command: vec!["python3".into(), "manage.py".into(), "shell".into()],
            env: vec![(
                "BERTH_SCHEMA_REQUEST".into(),
                r#"{"action":"inspect"}"#.into(),
            )],
        }
    }

    #[test]
    fn the_request_runs_in_the_migration_container_of_a_copy_of_the_migration_job() {
        let template = template();
        let spec = Spec {
            template: &template,
            task: JobTask::SchemaState,
            instance: "wb-staging",
            number: 4,
            sha: "1a2b3c4",
            image: None,
        };
        let job = build(&spec, &invocation());
        assert_eq!(job.name_any(), "wb-staging-migration-state-4-1a2b3c4");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(300));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.containers[0].command, None, "sidecars stay as they are");
        let migrate = &pod.containers[1];
        assert_eq!(migrate.command.as_deref(), Some(&invocation().command[..]));
        assert_eq!(migrate.args, None);
        assert_eq!(migrate.image.as_deref(), Some("reg/migrate:1a2b3c4"));
        let env: Vec<(&str, Option<&str>)> = migrate
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(
            env,
            [
                ("KEEP", Some("1")),
                ("BERTH_SCHEMA_REQUEST", Some(r#"{"action":"inspect"}"#))
            ]
        );
        assert!(migrate.env_from.is_some(), "the credentials stay");
    }

    #[test]
    fn a_rollback_job_runs_the_recorded_image_and_long_names_drop_the_instance() {
        let template = template();
        let digest = format!("reg/migrate@sha256:{}", "ab".repeat(32));
        let instance = "a-very-long-application-name-staging";
        let spec = Spec {
            template: &template,
            task: JobTask::SchemaRollback,
            instance,
            number: 12,
            sha: "1a2b3c4d5e6f7a8b",
            image: Some(&digest),
        };
        let job = build(&spec, &invocation());
        assert_eq!(job.name_any(), "schema-rollback-12-1a2b3c4d5e6f");
        for task in [
            JobTask::SchemaInspect,
            JobTask::SchemaState,
            JobTask::SchemaPlan,
            JobTask::SchemaRollback,
        ] {
            let job = build(&Spec { task, ..spec }, &invocation());
            assert!(job.name_any().len() <= 63, "{}", job.name_any());
        }
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers[1].image.as_deref(), Some(digest.as_str()));
        assert_eq!(pod.containers[0].image.as_deref(), Some("proxy:1"));
    }

    #[test]
    fn only_repository_digests_count_as_the_image_by_digest() {
        let hex = "0123456789abcdef".repeat(4);
        let pinned = format!("127.0.0.1:25000/workbench/migrate@sha256:{hex}");
        assert_eq!(by_digest(&pinned), Some(pinned.clone()));
        assert_eq!(
            by_digest(&format!("docker-pullable://{pinned}")),
            Some(pinned.clone())
        );
        assert_eq!(by_digest(&format!("sha256:{hex}")), None);
        assert_eq!(by_digest("reg/migrate:1a2b3c4"), None);
        assert_eq!(by_digest("reg/migrate@sha256:abc"), None);

        let pod: Pod = serde_json::from_value(json!({"status": {"containerStatuses": [
            {"name": "proxy", "image": "proxy:1", "imageID": format!("proxy@sha256:{hex}"), "ready": false, "restartCount": 0},
            {"name": "migrate", "image": "reg/migrate:1", "imageID": pinned, "ready": false, "restartCount": 0}]}}))
        .unwrap();
        assert_eq!(image_of(&[pod], "migrate", None), Some(pinned.clone()));
        assert_eq!(image_of(&[], "migrate", Some(&pinned)), Some(pinned));
        assert_eq!(image_of(&[], "migrate", Some("reg/migrate:1")), None);
    }

    /// Every event, as `task: event`.
    #[derive(Default)]
    struct Events(Mutex<Vec<String>>);

    impl TaskReporter for Events {
        fn task(&self, task: &str, event: TaskEvent<'_>) {
            self.0.lock().unwrap().push(format!("{task}: {event:?}"));
        }
    }

    #[test]
    fn the_result_line_is_not_echoed() {
        let events = Arc::new(Events::default());
        let quiet = WithoutResult {
            reporter: events.clone(),
            prefix: crate::schema::django::RESULT_PREFIX,
        };
        quiet.task(
            "migration-state",
            TaskEvent::Output("Operations to perform:"),
        );
        quiet.task(
            "migration-state",
            TaskEvent::Output(&format!(
                "{}{{\"applied\": {{}}}}",
                crate::schema::django::RESULT_PREFIX
            )),
        );
        quiet.task("migration-state", TaskEvent::Succeeded("done"));
        assert_eq!(
            *events.0.lock().unwrap(),
            [
                r#"migration-state: Output("Operations to perform:")"#,
                r#"migration-state: Succeeded("done")"#
            ]
        );
    }
}
