//! The changes: the namespace, then apply (and `--prune`), then wait for
//! every workload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client, ResourceExt};

use super::backups;
use super::hold::hold;
use super::plan::Plan;
use super::settings::DeploySettings;
use crate::cluster::apply::{self, Resolved};
use crate::cluster::kinds::Origin;
use crate::cluster::release::{FailureRecord, Release};
use crate::error::{BerthError, input_error};
use crate::output::Output;
use crate::wait::{self, Tracked, WaitFailure};

/// Create the environment's namespace if it does not exist yet.
pub async fn ensure_namespace(client: &Client, name: &str, instance: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Some(existing) = namespaces
        .get_opt(name)
        .await
        .context("reading the namespace")?
    {
        return match existing.metadata.deletion_timestamp {
            Some(since) => Err(input_error(format!(
                "namespace {name} is being deleted (since {}); wait until it is gone, then deploy again (berth creates it)",
                since.0
            ))),
            None => Ok(()),
        };
    }
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {
            crate::cluster::MANAGED_BY.0: crate::cluster::MANAGED_BY.1,
            crate::cluster::INSTANCE_LABEL: instance,
        }}
    }))?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// `failure`, or when the deploy failed because its namespace was deleted
/// under it, a failure that says so (the workloads, release records and
/// lock went with the namespace), naming the step it stopped in.
pub async fn unless_namespace_deleted(
    client: &Client,
    name: &str,
    failure: anyhow::Error,
    out: &Output,
) -> anyhow::Error {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let gone = match namespaces.get_opt(name).await {
        Ok(None) => "was deleted".to_string(),
        Ok(Some(ns)) => match ns.metadata.deletion_timestamp {
            Some(since) => format!("is being deleted (since {})", since.0),
            None => return failure,
        },
        Err(_) => return failure,
    };
    let step = out.current_step().unwrap_or_else(|| "deploy".into());
    BerthError::DeployFailed(format!(
        "namespace {name} {gone} during the {step} step: its workloads, release records and deploy lock go with it, \
         and berth stopped ({}). Deploy again once it is gone: berth creates it anew",
        crate::error::brief(&failure)
    ))
    .into()
}

/// Apply the plan (maintenance held, see [`hold`]), prune with `--prune`,
/// then wait for every workload. Fills in `record`'s timings and failure.
pub async fn apply_and_wait(
    client: &Client,
    plan: &Plan,
    settings: &DeploySettings,
    out: &Arc<Output>,
    record: &mut Release,
    previous: Option<&Release>,
) -> anyhow::Result<()> {
    let ns = &plan.env.namespace;
    let timeout = plan.timeout(settings);
    out.step("apply");
    super::record::reach(client, ns, record, "apply", out).await;
    let t = Instant::now();
    // berth's backup ServiceAccount and CronJobs, from berth.yaml as it is now
    let backup_objects = backups::objects(client, plan, record).await?;
    let objects: Vec<Resolved> = plan
        .objects
        .iter()
        .cloned()
        .chain(backup_objects.clone())
        .collect();
    let applied = apply(client, ns, &objects, settings.upgrade_crds, out).await?;
    for gone in
        backups::remove_unscheduled(client, ns, &backup_objects, plan.env.backups.is_some()).await?
    {
        out.info(&format!(
            "deleted {gone}: its schedule is no longer in berth.yaml"
        ));
    }
    if settings.prune {
        let mut kinds = objects.clone();
        kinds.extend(previous_kinds(client, previous).await);
        // a hook's object left by its run (before-hook-creation) is no
        // object the chart stopped rendering
        let keep: Vec<Resolved> = objects
            .iter()
            .cloned()
            .chain(plan.hooks.iter().map(|h| h.resolved.clone()))
            .collect();
        for gone in apply::prune(client, ns, &plan.instance(), &kinds, &keep).await? {
            out.info(&format!("pruned {gone}"));
        }
    }
    record
        .timings
        .insert("apply".into(), t.elapsed().as_secs_f64());
    out.info(&format!("applied {} objects", applied.len()));
    // Recorded with the wait step: a deploy stopped from here on leaves
    // its objects applied ([`Release::interrupted_after_apply`]).
    record.applied = true;

    out.step("wait");
    super::record::reach(client, ns, record, "wait", out).await;
    let t = Instant::now();
    let waited = wait(client, plan, &applied, timeout, out).await;
    record
        .timings
        .insert("wait".into(), t.elapsed().as_secs_f64());
    match waited {
        Ok(()) => Ok(()),
        Err(WaitFailure::Doomed { workload, failure }) => {
            let summary = wait::explain(client, ns, &workload, &failure).await;
            out.failure(&format!("rollout failed\n{summary}"));
            let message = format!("{workload}: {} ({})", failure.reason, failure.message);
            record.failure = Some(FailureRecord {
                workload,
                pod: failure.pod,
                reason: failure.reason,
                message: failure.message,
            });
            Err(BerthError::DeployFailed(message).into())
        }
        Err(WaitFailure::Unwatchable(refusal)) => {
            out.failure(&format!("rollout failed\n{refusal}"));
            record.failure = Some(FailureRecord {
                workload: format!("watch {}", refusal.watched.resource),
                pod: None,
                reason: "Forbidden".into(),
                message: refusal.to_string(),
            });
            Err(BerthError::DeployFailed(refusal.to_string()).into())
        }
        Err(WaitFailure::Unreachable(gave_up)) => {
            Err(anyhow::Error::new(gave_up).context("waiting for the rollout"))
        }
        Err(WaitFailure::TimedOut { pending }) => {
            let message = format!(
                "the rollout did not finish within {}; still waiting on:\n  {}",
                crate::duration::display(timeout),
                pending.join("\n  ")
            );
            out.failure(&message);
            record.failure = Some(FailureRecord {
                workload: pending
                    .first()
                    .map(|p| p.split(':').next().unwrap_or("").to_string())
                    .unwrap_or_default(),
                pod: None,
                reason: "Timeout".into(),
                message: message.clone(),
            });
            Err(BerthError::TimedOut(message).into())
        }
    }
}

/// Apply `objects` as a deploy does: a Service in maintenance stays in it;
/// a chart's `crds/` that exist are applied only with `upgrade_crds`.
pub async fn apply(
    client: &Client,
    namespace: &str,
    objects: &[Resolved],
    upgrade_crds: bool,
    out: &Output,
) -> anyhow::Result<Vec<(Resolved, DynamicObject)>> {
    let objects = hold(client, namespace, objects).await?;
    apply::apply_all(client, namespace, &objects, false, upgrade_crds, out).await
}

/// Wait for every workload among `applied` to become healthy, fail-fast.
pub async fn wait(
    client: &Client,
    plan: &Plan,
    applied: &[(Resolved, DynamicObject)],
    timeout: Duration,
    out: &Arc<Output>,
) -> Result<(), WaitFailure> {
    let waited = wait::wait_all(
        client,
        wait::Scope {
            namespace: &plan.env.namespace,
            workloads: &plan.selector(),
            pods: &crate::cluster::pods_selector(),
        },
        &tracked(applied),
        plan.thresholds(),
        timeout,
        out.as_ref(),
    )
    .await;
    out.finish_workloads();
    waited
}

/// Kinds the previous release had, so `--prune` also finds kinds no longer
/// rendered; those the cluster no longer serves have nothing to prune.
async fn previous_kinds(client: &Client, previous: Option<&Release>) -> Vec<Resolved> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let objects = previous.manifest.objects().unwrap_or_default();
    apply::resolve(client, objects, Origin::Release(previous.number))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.with_crd.is_none())
        .collect()
}

/// The workloads among applied objects, with the generation the apply produced.
fn tracked(applied: &[(Resolved, DynamicObject)]) -> Vec<Tracked> {
    applied
        .iter()
        .filter(|(r, _)| wait::is_workload(&r.resource.kind))
        .map(|(r, answer)| Tracked {
            kind: r.resource.kind.clone(),
            name: answer.name_any(),
            generation: answer.metadata.generation.unwrap_or(0),
        })
        .collect()
}
