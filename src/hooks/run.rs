//! Running one event's hooks, as helm's `execHook` does: one at a time in
//! [`for_event`] order; each one's earlier object deleted first
//! (`before-hook-creation`), then created; a Job followed to its end like
//! the migration Job (logs streamed, fail fast on a pod that can never
//! start, a time limit), a Pod judged by its phase, anything else done
//! once created. The first hook that fails stops the event (deleted first
//! if `hook-failed`); when all succeed, those with `hook-succeeded` are
//! deleted, last first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::{DeletePolicy, Event, Hook, for_event};
use crate::cluster::apply::Resolved;
use crate::cluster::release::{FailureRecord, HookRecord, Release};
use crate::error::{BerthError, Cancelled};
use crate::migrate::{self, JobTask, MigrationEnd};
use crate::output::Output;
use crate::progress::{TaskEvent, TaskReporter};
use crate::rollout::{Failure, Thresholds};

/// The task name hook output is prefixed with.
const TASK: &str = "hook";

/// Where hooks run, and how long they may take.
pub struct Place<'a> {
    /// The environment's cluster.
    pub client: &'a Client,
    /// The environment's namespace.
    pub namespace: &'a str,
    /// When a stuck pod fails a hook.
    pub thresholds: Thresholds,
    /// The rollout timeout: how long a hook may wait to start and report
    /// (a Job's `activeDeadlineSeconds` is added, as for the migration).
    pub timeout: Duration,
    /// Where progress goes.
    pub out: &'a Arc<Output>,
}

/// How one hook ended, krane-style: succeeded, or failed and why.
#[derive(Debug)]
pub struct Ran {
    /// `Kind/name`.
    pub name: String,
    /// `None` when it succeeded; else how it ended and why.
    pub failure: Option<(MigrationEnd, Failure)>,
    /// Seconds from its creation to its end.
    pub duration_s: f64,
}

impl Ran {
    /// Whether it succeeded.
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    /// Its outcome as the release records it, for `event`.
    pub fn record(&self, event: Event) -> HookRecord {
        let status = match &self.failure {
            None => "succeeded",
            Some((MigrationEnd::Failed, _)) => "failed",
            Some((MigrationEnd::TimedOut, _)) => "timed_out",
        };
        HookRecord {
            name: self.name.clone(),
            event: event.as_str().into(),
            status: status.into(),
            duration_s: self.duration_s,
        }
    }
}

/// Run `hooks`' hooks of `event` in order, recording each outcome in
/// `record.hooks` and the event's time in `record.timings`; a step line
/// ([`step`]) first, when there is any. A hook that fails stops the deploy: the
/// failure is recorded and the error is [`BerthError::DeployFailed`] (or
/// [`BerthError::TimedOut`]) naming the hook, its event and why, and what
/// did not change (`unchanged`, e.g. "no workload was changed"). `cancel`
/// deletes the running hook's Job or Pod and returns [`Cancelled`].
pub async fn event(
    place: &Place<'_>,
    hooks: &[Hook],
    event: Event,
    record: &mut Release,
    unchanged: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let running = for_event(hooks, event);
    if running.is_empty() {
        return Ok(());
    }
    let out = place.out;
    out.step(&step(event));
    let started = Instant::now();
    for hook in &running {
        if cancel.is_cancelled() {
            return Err(Cancelled.into());
        }
        let ran = one(place, hook, event, cancel).await?;
        record.hooks.push(ran.record(event));
        let Some((end, failure)) = ran.failure else {
            continue;
        };
        record
            .timings
            .insert(event.as_str().into(), started.elapsed().as_secs_f64());
        let kept = if hook.deletes(DeletePolicy::HookFailed) {
            delete(place, &hook.resolved, cancel).await?;
            format!("{} deleted (hook-failed)", hook.describe())
        } else {
            format!("{} is kept for inspection", hook.describe())
        };
        let ended = match end {
            MigrationEnd::Failed => "failed",
            MigrationEnd::TimedOut => "timed out",
        };
        record.failure = Some(FailureRecord {
            workload: hook.describe(),
            pod: failure.pod.clone(),
            reason: failure.reason.clone(),
            message: failure.message.clone(),
        });
        let explained =
            crate::wait::explain(place.client, place.namespace, &hook.describe(), &failure).await;
        out.failure(&format!(
            "{} hook {} {ended}; {unchanged}; {kept}\n{explained}",
            event.as_str(),
            hook.describe()
        ));
        let message = format!(
            "the {} hook {} {ended} ({}: {}); {unchanged}",
            event.as_str(),
            hook.describe(),
            failure.reason,
            failure.message
        );
        return Err(match end {
            MigrationEnd::Failed => BerthError::DeployFailed(message),
            MigrationEnd::TimedOut => BerthError::TimedOut(message),
        }
        .into());
    }
    for hook in running.iter().rev() {
        if hook.deletes(DeletePolicy::HookSucceeded) {
            delete(place, &hook.resolved, cancel).await?;
        }
    }
    record
        .timings
        .insert(event.as_str().into(), started.elapsed().as_secs_f64());
    Ok(())
}

/// The step line, and the step a release record keeps, of `event`'s hooks.
pub fn step(event: Event) -> String {
    format!("{} hooks", event.as_str())
}

/// Run one hook: delete its earlier object (`before-hook-creation`),
/// create it, and follow it to its end.
async fn one(
    place: &Place<'_>,
    hook: &Hook,
    event: Event,
    cancel: &CancellationToken,
) -> anyhow::Result<Ran> {
    let name = hook.describe();
    if hook.deletes(DeletePolicy::BeforeHookCreation) {
        delete(place, &hook.resolved, cancel).await?;
    } else if api(place, &hook.resolved)
        .get_opt(&hook.name())
        .await
        .with_context(|| format!("reading hook {name}"))?
        .is_some()
    {
        return Ok(Ran {
            name: name.clone(),
            failure: Some((
                MigrationEnd::Failed,
                Failure {
                    pod: None,
                    reason: "AlreadyExists".into(),
                    message: format!(
                        "{name} is still there from an earlier run, and its \
                         {} has no before-hook-creation: add it in the chart, or delete \
                         the object (kubectl -n {} delete {} {})",
                        super::DELETE_POLICY_ANNOTATION,
                        place.namespace,
                        hook.kind().to_lowercase(),
                        hook.name()
                    ),
                },
            )),
            duration_s: 0.0,
        });
    }
    let group = hook.resolved.resource.group.as_str();
    match (group, hook.kind()) {
        ("batch", "Job") => job(place, hook, cancel).await,
        ("", "Pod") => pod(place, hook, event, cancel).await,
        _ => {
            let started = Instant::now();
            crate::cluster::create::create(&api(place, &hook.resolved), &hook.resolved.object)
                .await
                .with_context(|| format!("creating {} hook {name}", event.as_str()))?;
            place.out.task(
                TASK,
                TaskEvent::Succeeded(&format!("{name} created ({})", event.as_str())),
            );
            Ok(Ran {
                name,
                failure: None,
                duration_s: started.elapsed().as_secs_f64(),
            })
        }
    }
}

/// A Job hook, run as the migration Job is (its spec as the chart wrote
/// it: helm keeps the chart's `backoffLimit`).
async fn job(place: &Place<'_>, hook: &Hook, cancel: &CancellationToken) -> anyhow::Result<Ran> {
    let value = serde_json::to_value(&hook.resolved.object)?;
    let job: Job = serde_json::from_value(value).map_err(|e| {
        crate::error::input_error(format!("{} is not a valid Job: {e}", hook.describe()))
    })?;
    let ended = migrate::create_and_follow(
        place.client,
        place.namespace,
        JobTask::Hook,
        job,
        place.thresholds,
        place.timeout,
        cancel,
        place.out,
    )
    .await?;
    let ran = Ran {
        name: hook.describe(),
        failure: ended.failure,
        duration_s: ended.duration_s,
    };
    report(place, &ran);
    Ok(ran)
}

/// A Pod hook: created, then judged every second by its phase
/// (Succeeded, Failed) or a fault it can never recover from, within the
/// rollout timeout plus its `activeDeadlineSeconds`.
async fn pod(
    place: &Place<'_>,
    hook: &Hook,
    event: Event,
    cancel: &CancellationToken,
) -> anyhow::Result<Ran> {
    let name = hook.name();
    let pods: Api<Pod> = Api::namespaced(place.client.clone(), place.namespace);
    let value = serde_json::to_value(&hook.resolved.object)?;
    let pod: Pod = serde_json::from_value(value).map_err(|e| {
        crate::error::input_error(format!("{} is not a valid Pod: {e}", hook.describe()))
    })?;
    let started = Instant::now();
    crate::cluster::create::create(&pods, &pod)
        .await
        .with_context(|| format!("creating {} hook {}", event.as_str(), hook.describe()))?;
    place
        .out
        .task(TASK, TaskEvent::Started(&format!("running Pod {name}")));
    let deadline = pod
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map_or(Duration::ZERO, |s| Duration::from_secs(s.max(0) as u64));
    let limit = place.timeout.saturating_add(deadline);
    let failure = loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                delete(place, &hook.resolved, &CancellationToken::new()).await?;
                place.out.task(TASK, TaskEvent::Cancelled(&format!("Pod {name} deleted")));
                return Err(Cancelled.into());
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let seen = pods
            .get_opt(&name)
            .await
            .with_context(|| format!("reading hook Pod {name}"))?;
        let Some(seen) = seen else {
            break Some((
                MigrationEnd::Failed,
                Failure {
                    pod: Some(name.clone()),
                    reason: "Deleted".into(),
                    message: format!("Pod {name} was deleted before it finished"),
                },
            ));
        };
        let phase = seen.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Succeeded") {
            break None;
        }
        if let Some(doomed) =
            crate::rollout::pod::doom(&seen, &[], Timestamp::now(), place.thresholds)
        {
            break Some((MigrationEnd::Failed, doomed));
        }
        if phase == Some("Failed") {
            break Some((
                MigrationEnd::Failed,
                Failure {
                    pod: Some(name.clone()),
                    reason: "Failed".into(),
                    message: format!("Pod {name} failed"),
                },
            ));
        }
        if started.elapsed() > limit {
            break Some((
                MigrationEnd::TimedOut,
                Failure {
                    pod: Some(name.clone()),
                    reason: "Timeout".into(),
                    message: format!(
                        "Pod {name} did not finish within {}",
                        crate::duration::display(limit)
                    ),
                },
            ));
        }
    };
    let ran = Ran {
        name: hook.describe(),
        failure,
        duration_s: started.elapsed().as_secs_f64(),
    };
    report(place, &ran);
    Ok(ran)
}

/// Say how a Job or Pod hook ended.
fn report(place: &Place<'_>, ran: &Ran) {
    match &ran.failure {
        None => place.out.task(
            TASK,
            TaskEvent::Succeeded(&format!(
                "{} succeeded in {}",
                ran.name,
                crate::duration::display_seconds(ran.duration_s)
            )),
        ),
        Some((_, failure)) => place.out.task(
            TASK,
            TaskEvent::Failed(&format!("{}: {}", ran.name, failure.message)),
        ),
    }
}

/// The API of `resolved`'s kind, in the environment's namespace when it
/// is namespaced.
fn api(place: &Place<'_>, resolved: &Resolved) -> Api<DynamicObject> {
    if resolved.namespaced {
        Api::namespaced_with(place.client.clone(), place.namespace, &resolved.resource)
    } else {
        Api::all_with(place.client.clone(), &resolved.resource)
    }
}

/// Delete `resolved`'s object if it is there, and wait until it is gone
/// (a Job's pods first), so a hook of the same name can be created.
/// CustomResourceDefinitions are never deleted (as helm: their custom
/// resources would go with them).
async fn delete(
    place: &Place<'_>,
    resolved: &Resolved,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if resolved.is_crd() {
        return Ok(());
    }
    let api = api(place, resolved);
    let name = kube::ResourceExt::name_any(&resolved.object);
    let shown = resolved.describe();
    // Foreground: a Job goes once its pods are gone, so the Job controller
    // has settled the old Job before one of the same name is created.
    match api.delete(&name, &DeleteParams::foreground()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting hook {shown}")),
    }
    let started = Instant::now();
    loop {
        let there = api
            .get_opt(&name)
            .await
            .with_context(|| format!("reading hook {shown}"))?;
        if there.is_none() {
            return Ok(());
        }
        if started.elapsed() > place.timeout {
            anyhow::bail!(
                "hook {shown} was deleted but is still there after {}; it may have a \
                 finalizer nothing removes",
                crate::duration::display(place.timeout)
            );
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(Cancelled.into()),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
