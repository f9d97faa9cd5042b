//! What a deploy learns and records of its migrations when the environment
//! names its framework (`migrate.framework: django`): before the migration,
//! what it will migrate and what of that a rollback cannot undo; after it,
//! the schema state, recorded for a later `berth rollback`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use tokio_util::sync::CancellationToken;

use super::plan::Plan;
use crate::cluster::release::Manifest;
use crate::error::BerthError;
use crate::migrate::JobTask;
use crate::output::Output;
use crate::schema::adapter::{Adapter, MigrationId, Request, Response, Step};
use crate::schema::jobs::{self, Spec};
use crate::schema::record::{Irreversible, SchemaRecord};

/// What the inspection before the migration found.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The migrations this release will apply, in order, with their operations.
    pub pending: Vec<Step>,
    /// How long the Job took.
    pub duration_s: f64,
}

/// Read what release `number`'s migration will apply, in a copy of its
/// migration Job (`template`); print it, and warn loudly of what a
/// rollback cannot undo. A failure says that nothing was migrated.
#[allow(clippy::too_many_arguments)]
pub async fn inspect(
    client: &Client,
    plan: &Plan,
    adapter: &dyn Adapter,
    template: &Job,
    number: u64,
    timeout: Duration,
    cancel: &CancellationToken,
    out: &Arc<Output>,
) -> anyhow::Result<Inspected> {
    let started = Instant::now();
    let response = read(
        client,
        plan,
        adapter,
        template,
        JobTask::SchemaInspect,
        number,
        timeout,
        cancel,
        out,
    )
    .await
    .map_err(|e| {
        super::restated(
            e,
            "reading what this release will migrate failed, so nothing was migrated",
        )
    })?
    .0;
    if !response.unknown.is_empty() {
        out.warn(&format!(
            "the database has migrations applied that this release's code does not have: {}; \
             Django leaves them applied (to go back to an earlier release's schema, \
             `{berth} rollback {env} --to RELEASE` unapplies them with the newer image first)",
            joined(&response.unknown),
            berth = crate::program::name(),
            env = plan.env_name
        ));
    }
    let pending = response.pending;
    if pending.is_empty() {
        out.info("this release migrates nothing: the schema is up to date");
    } else {
        out.info(&format!(
            "this release migrates: {}",
            joined(&Step::ids(&pending))
        ));
    }
    if let Some(warning) = irreversible_warning(&Irreversible::of(&pending)) {
        out.warn(&warning);
    }
    Ok(Inspected {
        pending,
        duration_s: started.elapsed().as_secs_f64(),
    })
}

/// `--dry-run`: what the planned migration would apply, read as a deploy
/// reads it (a copy of the migration Job, deleted however it ends), when
/// the environment names a framework and its namespace exists (a first
/// deploy's is created by the deploy). Changes nothing else.
pub async fn dry_run(
    client: &Client,
    plan: &Plan,
    cancel: &CancellationToken,
    out: &Arc<Output>,
) -> anyhow::Result<Option<Vec<Step>>> {
    let (Some(adapter), Some(template)) = (&plan.schema, &plan.migration) else {
        return Ok(None);
    };
    let ns = &plan.env.namespace;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    if namespaces.get_opt(ns).await?.is_none() {
        out.info(&format!(
            "namespace {ns} does not exist yet: the migrations are read when the deploy runs"
        ));
        return Ok(None);
    }
    let number = crate::cluster::release::list(client, ns)
        .await?
        .first()
        .map_or(1, |r| r.number + 1);
    let timeout = plan.env.rollout.timeout;
    let inspected = inspect(
        client,
        plan,
        adapter.as_ref(),
        template,
        number,
        timeout,
        cancel,
        out,
    )
    .await?;
    Ok(Some(inspected.pending))
}

/// After release `number`'s migration (`job`, as it ran) succeeded: read
/// the state it left and make the release's schema record, with what the
/// inspection before found pending. A failure says the migration ran.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    client: &Client,
    plan: &Plan,
    adapter: &dyn Adapter,
    job: &Job,
    inspected: &Inspected,
    number: u64,
    timeout: Duration,
    cancel: &CancellationToken,
    out: &Arc<Output>,
) -> anyhow::Result<SchemaRecord> {
    const RAN: &str = "the migration ran, but reading the schema state it left failed";
    let (response, image_id) = read(
        client,
        plan,
        adapter,
        job,
        JobTask::SchemaState,
        number,
        timeout,
        cancel,
        out,
    )
    .await
    .map_err(|e| super::restated(e, RAN))?;
    let image = match image_id {
        Some(image) => image,
        None => image_by_registry(job)
            .await
            .map_err(|e| super::restated(e.context("finding the migration image's digest"), RAN))?,
    };
    Ok(SchemaRecord {
        framework: adapter.framework().as_str().to_string(),
        applied: response.applied,
        image,
        migrated: Step::ids(&inspected.pending),
        irreversible: Irreversible::of(&inspected.pending),
        job: Manifest::of_job(job)?,
    })
}

/// Run `request` Inspect as `task`'s Job; its response and image by digest.
/// A Job that failed, or a response with an error, is an error.
#[allow(clippy::too_many_arguments)]
async fn read(
    client: &Client,
    plan: &Plan,
    adapter: &dyn Adapter,
    template: &Job,
    task: JobTask,
    number: u64,
    timeout: Duration,
    cancel: &CancellationToken,
    out: &Arc<Output>,
) -> anyhow::Result<(Response, Option<String>)> {
    let instance = plan.instance();
    let spec = Spec {
        template,
        task,
        instance: &instance,
        number,
        sha: &plan.sha,
        image: None,
    };
    let ran = jobs::run(
        client,
        &plan.env.namespace,
        adapter,
        &Request::Inspect,
        &spec,
        plan.thresholds(),
        timeout,
        cancel,
        out,
    )
    .await?;
    if let Some(error) = &ran.response.error {
        anyhow::bail!("Job {}: {error}", ran.job);
    }
    if let Some(failure) = &ran.failure {
        let said = format!("Job {}: {}", ran.job, failure.message);
        return Err(match failure.reason.as_str() {
            "Timeout" => BerthError::TimedOut(said),
            _ => BerthError::DeployFailed(said),
        }
        .into());
    }
    Ok((ran.response, ran.image_id))
}

/// The migration container's image of `job` by digest, asked of its
/// registry: for a container runtime that reports no repository digest.
async fn image_by_registry(job: &Job) -> anyhow::Result<String> {
    let mut job = job.clone();
    let image = crate::migrate::migration_container(&mut job)
        .and_then(|c| c.image.clone())
        .ok_or_else(|| anyhow::anyhow!("the migration Job has no container image"))?;
    if let Some(pinned) = jobs::by_digest(&image) {
        return Ok(pinned);
    }
    let digest = crate::registry::digest(&image, "images")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the registry does not have {image}"))?;
    Ok(format!("{}@{digest}", crate::image_ref::repository(&image)))
}

/// `app.name, app.name, ...`.
fn joined(ids: &[MigrationId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The warning a deploy prints before migrations a rollback cannot undo.
pub fn irreversible_warning(irreversible: &[Irreversible]) -> Option<String> {
    if irreversible.is_empty() {
        return None;
    }
    let named: Vec<String> = irreversible
        .iter()
        .map(|i| format!("{} ({})", i.migration, i.operations.join("; ")))
        .collect();
    Some(format!(
        "this release's migrations cannot be undone by a rollback: {}; a rollback will need \
         --restore-backup (the pre-migration backup) or --accept-data-loss",
        named.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::adapter::Operation;

    fn step(name: &str, operations: &[(&str, bool)]) -> Step {
        Step {
            migration: MigrationId {
                app: "workbench".into(),
                name: name.into(),
            },
            backwards: false,
            operations: operations
                .iter()
                .map(|(d, i)| Operation {
                    description: d.to_string(),
                    irreversible: *i,
                })
                .collect(),
        }
    }

    #[test]
    fn irreversible_migrations_are_named_with_their_irreversible_operations() {
        let steps = [
            step("0005_tag", &[("Add field tag to module", false)]),
            step(
                "0006_x",
                &[
                    ("Alter field name on module", false),
                    ("Raw Python operation without reverse", true),
                ],
            ),
        ];
        let found = Irreversible::of(&steps);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].migration.to_string(), "workbench.0006_x");
        assert_eq!(
            found[0].operations,
            ["Raw Python operation without reverse"]
        );
        assert_eq!(
            irreversible_warning(&found).unwrap(),
            "this release's migrations cannot be undone by a rollback: workbench.0006_x \
             (Raw Python operation without reverse); a rollback will need --restore-backup \
             (the pre-migration backup) or --accept-data-loss"
        );
        assert_eq!(irreversible_warning(&Irreversible::of(&steps[..1])), None);
        assert_eq!(
            joined(&Step::ids(&steps)),
            "workbench.0005_tag, workbench.0006_x"
        );
    }
}
