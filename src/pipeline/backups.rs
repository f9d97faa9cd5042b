//! berth's own backup objects in a deploy: the ServiceAccount `berth-backup`
//! and the CronJobs `berth-backup` and `berth-drill`, rendered from the
//! current berth.yaml's `backups:` block at every deploy (rollbacks
//! included) and applied with the workloads, tagged with the release being
//! deployed. They are not part of the release's recorded manifest: the
//! schedule is the operator's setting, not the app's code, so rolling back
//! to an older release keeps today's schedule. A schedule removed from
//! berth.yaml removes its CronJob.

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client, ResourceExt};

use super::plan::Plan;
use crate::backup::manifest::ReleaseRef;
use crate::backup::pods::{self, Placement};
use crate::cluster::MANAGED_BY;
use crate::cluster::apply::{self, Resolved};
use crate::cluster::kinds::Origin;
use crate::cluster::release::Release;
use crate::render;

/// The backup objects of `plan`'s environment for release `record`,
/// resolved for apply; none without a `backups:` block.
pub async fn objects(
    client: &Client,
    plan: &Plan,
    record: &Release,
) -> anyhow::Result<Vec<Resolved>> {
    let Some(backups) = &plan.env.backups else {
        return Ok(Vec::new());
    };
    let release = ReleaseRef {
        name: record.number.to_string(),
        sha: record.sha.clone(),
    };
    let placement = match placement_in(plan) {
        Some(placement) => placement,
        None => Placement::read(client, &plan.env).await?,
    };
    let mut objects = vec![dynamic(&pods::service_account())?];
    for cron_job in pods::cron_jobs(
        &plan.env_name,
        &plan.env,
        backups,
        Some(&release),
        &placement,
    ) {
        objects.push(dynamic(&cron_job)?);
    }
    render::label(&mut objects, &plan.config.app, &plan.env_name)?;
    apply::resolve(client, objects, Origin::Berth).await
}

/// Delete berth's CronJobs that `kept` (the backup objects just applied)
/// no longer has, i.e. whose schedule left berth.yaml. A CronJob of that
/// name that berth did not make is left alone, and so, in an environment
/// without `backups:` (`configured` false), is a namespace whose CronJobs
/// the deployer may not read (no backups there to remove). Returns
/// `Kind/name` of each deleted.
pub async fn remove_unscheduled(
    client: &Client,
    namespace: &str,
    kept: &[Resolved],
    configured: bool,
) -> anyhow::Result<Vec<String>> {
    let api: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    let mut deleted = Vec::new();
    for name in [pods::BACKUP_CRON_JOB, pods::DRILL_CRON_JOB] {
        let still = kept
            .iter()
            .any(|r| r.resource.kind == "CronJob" && r.object.name_any() == name);
        if still {
            continue;
        }
        let live = match api.get_opt(name).await {
            Ok(Some(live)) => live,
            Ok(None) => continue,
            Err(kube::Error::Api(status)) if status.is_forbidden() && !configured => {
                return Ok(deleted);
            }
            Err(error) => return Err(error).with_context(|| format!("reading CronJob {name}")),
        };
        let labels = live.labels();
        let berths = labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
            && labels.contains_key(pods::TASK_LABEL);
        if berths
            && crate::cluster::delete_if_present(&api, name, &DeleteParams::background())
                .await
                .with_context(|| format!("deleting CronJob {name}"))?
        {
            deleted.push(format!("CronJob/{name}"));
        }
    }
    Ok(deleted)
}

/// The placement of `database.workload` as this deploy renders it, when
/// the overlay has that Deployment.
fn placement_in(plan: &Plan) -> Option<Placement> {
    let workload = &plan.env.database.as_ref()?.workload;
    let object = plan
        .objects
        .iter()
        .find(|r| r.resource.kind == "Deployment" && r.object.name_any() == *workload)?;
    let deployment: Deployment = serde_json::to_value(&object.object)
        .and_then(serde_json::from_value)
        .ok()?;
    Some(Placement::of_deployment(&deployment))
}

fn dynamic<T: serde::Serialize>(object: &T) -> anyhow::Result<DynamicObject> {
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .context("converting a backup object")
}
