//! The database migration: a Job per release, run before any workload
//! changes, with its logs streamed under a `[migrate]` prefix.
//!
//! The Job has a unique name per release, `backoffLimit: 0` and a deadline.
//! A failed Job is kept for inspection; a successful one is deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::cluster::release::TaskRecord;
use crate::config::Migrate;
use crate::output::Output;
use crate::rollout::{Failure, Thresholds, Verdict, Workload};

/// Label naming the release a migration Job belongs to.
const RELEASE_LABEL: &str = "berth.dev/migration-of";

/// A failed migration: the Job is kept, and this says why.
#[derive(Debug, Clone)]
pub struct MigrationFailed {
    /// The Job's name, kept for inspection.
    pub job: String,
    /// What went wrong.
    pub failure: Failure,
    /// The outcome to record.
    pub record: TaskRecord,
}

/// The Job for release `number` of `sha`.
pub fn job_for(migrate: &Migrate, instance: &str, number: u64, sha: &str) -> anyhow::Result<Job> {
    let short = &sha[..sha.len().min(12)];
    let name = format!("{instance}-migrate-{number}-{short}");
    let labels = json!({
        crate::cluster::MANAGED_BY.0: crate::cluster::MANAGED_BY.1,
        RELEASE_LABEL: instance,
        "berth.dev/release": number.to_string(),
    });
    let env_from: Vec<_> = migrate
        .env_from_secrets
        .iter()
        .map(|secret| json!({"secretRef": {"name": secret}}))
        .collect();
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": migrate.deadline.as_secs().max(1),
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "restartPolicy": "Never",
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

/// Run the migration Job to the end. Streams its logs; deletes it on success.
pub async fn run(
    client: &Client,
    namespace: &str,
    job: Job,
    thresholds: Thresholds,
    out: &Arc<Output>,
) -> anyhow::Result<Result<TaskRecord, MigrationFailed>> {
    let started = Instant::now();
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let name = job.name_any();
    jobs.create(&PostParams::default(), &job)
        .await
        .with_context(|| format!("creating migration Job {name}"))?;
    out.task_started("migrate", &format!("running Job {name}"));

    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod_events = watcher(
        pods.clone(),
        watcher::Config::default().labels(&format!("job-name={name}")),
    )
    .default_backoff()
    .applied_objects()
    .map_ok(|p| Watched::Pod(Box::new(p)));
    let job_events = watcher(
        jobs.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .applied_objects()
    .map_ok(|j| Watched::Job(Box::new(j)));
    let mut events = futures::stream::select(pod_events.boxed(), job_events.boxed());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut latest_job: Option<Job> = None;
    let mut seen_pods: Vec<Pod> = Vec::new();
    let mut log_tasks = Vec::new();
    let verdict = loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Watched::Job(j))) => latest_job = Some(*j),
                Some(Ok(Watched::Pod(p))) => {
                    let p = *p;
                    let started_container = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|c| c.iter().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some())));
                    let new = !seen_pods.iter().any(|s| s.name_any() == p.name_any());
                    if started_container && !log_tasks.iter().any(|(n, _)| *n == p.name_any()) {
                        log_tasks.push((p.name_any(), tokio::spawn(stream_logs(pods.clone(), p.name_any(), out.clone()))));
                    }
                    if new { seen_pods.push(p) } else if let Some(slot) = seen_pods.iter_mut().find(|s| s.name_any() == p.name_any()) { *slot = p }
                }
                Some(Err(e)) => tracing::debug!("migration watch error (retrying): {e}"),
                None => {}
            },
            _ = tick.tick() => {}
        }
        if let Some(j) = &latest_job {
            match Workload::Job(j.clone()).assess(&[], &seen_pods, Timestamp::now(), thresholds) {
                Verdict::Progressing(_) => continue,
                done => break done,
            }
        }
    };
    // Let the log streams drain what the container wrote; a kubelet closes a
    // finished container's stream itself, this only bounds the wait.
    for (_, task) in log_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    let duration_s = started.elapsed().as_secs_f64();
    match verdict {
        Verdict::Failed(failure) => {
            out.task_line(
                "migrate",
                &format!(
                    "FAILED: {}; Job {name} is kept for inspection",
                    failure.message
                ),
            );
            Ok(Err(MigrationFailed {
                job: name.clone(),
                failure,
                record: TaskRecord {
                    name,
                    status: "failed".into(),
                    duration_s,
                },
            }))
        }
        _ => {
            out.task_finished("migrate", &format!("succeeded in {duration_s:.1}s"));
            jobs.delete(&name, &DeleteParams::background())
                .await
                .with_context(|| format!("deleting the finished migration Job {name}"))?;
            Ok(Ok(TaskRecord {
                name,
                status: "succeeded".into(),
                duration_s,
            }))
        }
    }
}

enum Watched {
    Job(Box<Job>),
    Pod(Box<Pod>),
}

/// Follow a pod's log, printing each line.
async fn stream_logs(pods: Api<Pod>, pod: String, out: Arc<Output>) {
    let params = LogParams {
        follow: true,
        ..Default::default()
    };
    match pods.log_stream(&pod, &params).await {
        Ok(stream) => {
            let mut lines = stream.lines();
            while let Ok(Some(line)) = lines.try_next().await {
                out.task_line("migrate", &line);
            }
        }
        Err(e) => tracing::debug!("no logs from {pod}: {e}"),
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
        }
    }

    #[test]
    fn the_job_runs_once_at_the_sha_with_a_deadline_and_a_name_per_release() {
        let job = job_for(&migrate(), "workbench-staging", 7, "1a2b3c4").unwrap();
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
}
