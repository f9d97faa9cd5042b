//! `berth advanced-deploy ENV SHA`: validate, lock, render and pin, migrate,
//! apply, wait until healthy, record the release, unlock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client, ResourceExt};

use tokio_util::sync::CancellationToken;

use crate::assets::store;
use crate::assets::sync::{self, Prepared};
use crate::cli::{DeployArgs, GlobalArgs};
use crate::cluster::apply::{self, Resolved};
use crate::cluster::lock::DeployLock;
use crate::cluster::release::{
    self, AssetsRecord, FailureRecord, ImageRecord, Manifest, PromotedFrom, Release, ReleaseStatus,
};
use crate::cluster::{access, client, instance};
use crate::config::{self, Config, Environment};
use crate::error::{BerthError, Cancelled, input_error, status_of};
use crate::identity::Deployer;
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::maintenance::Window;
use crate::migrate;
use crate::output::{Output, Report, ReportFailure};
use crate::render::{self, PinnedImage, Pins};
use crate::rollout::Thresholds;
use crate::stdout;
use crate::wait::{self, Tracked, WaitFailure};

/// What a deploy puts in the environment.
pub enum Source {
    /// The overlay, rendered, with the app's images pinned: to `:SHA`
    /// (`None`), or to the references given (a promotion, by digest).
    Overlay(Option<Pins>),
    /// An earlier release's objects, re-applied as recorded (a rollback).
    Release(Box<Release>),
}

/// A deploy as its caller asks for it.
pub struct Request {
    /// The objects and images deployed.
    pub source: Source,
    /// Recorded on the release when it is a promotion.
    pub promoted_from: Option<PromotedFrom>,
    /// A warning to print last, before the report, however the deploy ends.
    pub closing_note: Option<String>,
}

impl Request {
    /// `advanced-deploy`: the overlay, images at `:SHA`.
    pub fn overlay() -> Request {
        Request {
            source: Source::Overlay(None),
            promoted_from: None,
            closing_note: None,
        }
    }
}

/// Everything validated before the cluster is touched.
pub struct Plan {
    /// The loaded berth.yaml.
    pub config: Config,
    /// The environment's name.
    pub env_name: String,
    /// The environment.
    pub env: Environment,
    /// The SHA, lowercased.
    pub sha: String,
    /// Rendered, labelled, pinned objects with their API resources.
    pub objects: Vec<Resolved>,
    /// The images pinned to the SHA.
    pub pinned: Vec<PinnedImage>,
    /// The migration Job to run before applying: the overlay's template, or
    /// one built from berth.yaml's `migrate:`.
    pub migration: Option<Job>,
    /// The static assets, source resolved and bucket checked, when configured.
    pub assets: Option<Prepared>,
}

impl Plan {
    /// How long to wait for a rollout: `--timeout`, else the environment's.
    pub fn timeout(&self, args: &DeployArgs) -> std::time::Duration {
        args.wait.timeout.unwrap_or(self.env.rollout.timeout)
    }

    /// When a stuck pod fails the rollout.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            unschedulable_after: self.env.rollout.unschedulable_after,
        }
    }

    /// `<app>-<env>`.
    pub fn instance(&self) -> String {
        instance(&self.config.app, &self.env_name)
    }

    /// The label selector of everything this environment's deploys manage.
    pub fn selector(&self) -> String {
        crate::cluster::environment_selector(&self.config.app, &self.env_name)
    }
}

/// Steps 1 and 3 of the pipeline, changing nothing: load the config, check
/// the SHA, render and pin, reach the cluster, resolve every kind, and check
/// the deployer's permissions.
pub async fn plan(
    global: &GlobalArgs,
    env_name: &str,
    sha: &str,
    prune: bool,
    pins: Option<Pins>,
    out: &Output,
) -> anyhow::Result<(Client, Plan)> {
    out.step("validate");
    let config = Config::load(&global.config)?;
    let env = config.environment(env_name)?.clone();
    let sha = config::parse_sha(sha)?;
    // Render (a kubectl or helm process) while connecting to the cluster; a
    // render error is reported first, being the cheaper one to fix.
    let (rendered, connected) = tokio::join!(
        render::render(&config, env_name, &env),
        client::connect(env.context.as_deref())
    );
    let mut objects = rendered?;
    let client = connected?;
    render::label(&mut objects, &config.app, env_name)?;
    let pins = pins.unwrap_or_else(|| Pins::at_sha(&config.images, &sha));
    let pinned = render::pin_images(&mut objects, &pins);
    let migration = match (migrate::take_template(&mut objects)?, &env.migrate) {
        (Some(_), Some(_)) => {
            return Err(input_error(format!(
                "the migration of {env_name} is declared twice: a Job labelled {}: {} in the overlay and `environments.{env_name}.migrate` in berth.yaml; keep one",
                migrate::TEMPLATE_LABEL.0,
                migrate::TEMPLATE_LABEL.1
            )));
        }
        (Some(template), None) => Some(template),
        (None, Some(configured)) => Some(migrate::from_config(configured, &sha)?),
        (None, None) => None,
    };
    if pinned.is_empty() {
        out.warn("no container uses an image listed under `images:` in berth.yaml; nothing is pinned to the SHA");
    }
    // Resolving kinds and preparing the assets (an image pulled, a bucket
    // checked) are independent; either failing is bad input, found before
    // anything changes.
    let (objects, assets) = tokio::join!(
        apply::resolve(&client, objects),
        prepare_assets(&env, &sha, &client)
    );
    let (objects, assets) = (objects?, assets?);
    check_access(&client, &env, &objects, migration.is_some(), prune).await?;
    out.info(&format!(
        "{} objects for {env_name} (namespace {}), {} images pinned to {sha}",
        objects.len(),
        env.namespace,
        pinned.len()
    ));
    let plan = Plan {
        config,
        env_name: env_name.to_string(),
        env,
        sha,
        objects,
        pinned,
        migration,
        assets,
    };
    Ok((client, plan))
}

/// The namespace is usable and the deployer may do everything the deploy
/// needs (SelfSubjectAccessReview); otherwise bad input.
async fn check_access(
    client: &Client,
    env: &Environment,
    objects: &[Resolved],
    migration: bool,
    prune: bool,
) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let existing = match namespaces.get_opt(&env.namespace).await {
        Ok(ns) => ns,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(input_error(format!(
                "the deployer may not read namespace {}; grant `get namespaces` (see cluster-setup/rbac/deployer.yaml)",
                env.namespace
            )));
        }
        Err(e) => return Err(e).context("reading the namespace"),
    };
    if existing
        .as_ref()
        .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
    {
        return Err(input_error(format!(
            "namespace {} is being deleted; wait until it is gone, then deploy again",
            env.namespace
        )));
    }
    let needs = access::deploy_needs(
        objects,
        &env.namespace,
        migration,
        prune,
        existing.is_none(),
    );
    access::check(client, &needs).await
}

/// A rollback's plan: the objects and images `release` recorded, checked
/// against the cluster as a deploy's are. Changes nothing.
pub async fn plan_release(
    global: &GlobalArgs,
    env_name: &str,
    target: &Release,
    prune: bool,
    out: &Output,
) -> anyhow::Result<(Client, Plan)> {
    out.step("validate");
    let config = Config::load(&global.config)?;
    let env = config.environment(env_name)?.clone();
    if target.manifest_omitted || target.manifest.is_empty() {
        return Err(input_error(format!(
            "release {} kept no manifest (it was too large to record), so it cannot be \
             re-applied; deploy its SHA instead: berth advanced-deploy {env_name} {}",
            target.number, target.sha
        )));
    }
    let objects = target
        .manifest
        .objects()
        .with_context(|| format!("reading release {}'s recorded objects", target.number))?;
    let client = client::connect(env.context.as_deref()).await?;
    let objects = apply::resolve(&client, objects).await?;
    check_access(&client, &env, &objects, false, prune).await?;
    let pinned = target
        .images
        .iter()
        .map(|i| PinnedImage {
            object: i.object.clone(),
            container: i.container.clone(),
            from: i.image.clone(),
            to: i.image.clone(),
        })
        .collect();
    out.info(&format!(
        "{} objects of release {} ({}) for {env_name} (namespace {})",
        objects.len(),
        target.number,
        target.sha,
        env.namespace
    ));
    let plan = Plan {
        config,
        env_name: env_name.to_string(),
        env,
        sha: target.sha.clone(),
        objects,
        pinned,
        migration: None,
        assets: None,
    };
    Ok((client, plan))
}

/// The environment's assets, prepared for upload, if it has `assets:`.
async fn prepare_assets(
    env: &Environment,
    sha: &str,
    client: &Client,
) -> anyhow::Result<Option<Prepared>> {
    let Some(assets) = &env.assets else {
        return Ok(None);
    };
    let store = store::for_environment(env, assets, Some(client)).await?;
    let prepared = sync::prepare(assets, &assets.from.for_sha(sha), sha, store).await?;
    Ok(Some(prepared))
}

/// `advanced-deploy`: run the whole pipeline (or, with `--dry-run`, plan
/// it); always ends with the report.
pub async fn run(global: &GlobalArgs, args: &DeployArgs, out: Arc<Output>) -> anyhow::Result<()> {
    deploy(global, args, Request::overlay(), out).await
}

/// Run the pipeline for `request`; always ends with the report.
pub async fn deploy(
    global: &GlobalArgs,
    args: &DeployArgs,
    request: Request,
    out: Arc<Output>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut report = Report {
        status: "refused".into(),
        environment: args.target.env.clone(),
        sha: args.target.sha.clone(),
        release: None,
        duration_s: 0.0,
        failure: None,
        exit_code: 2,
    };
    let closing_note = request.closing_note.clone();
    let result = pipeline(global, args, request, &out, &mut report).await;
    report.duration_s = started.elapsed().as_secs_f64();
    match &result {
        Ok(()) => {
            report.exit_code = 0;
            report.status = if args.dry_run { "planned" } else { "succeeded" }.into();
        }
        Err(error) => {
            report.exit_code = crate::error::exit_code_number(error);
            report.status = status_of(error).into();
        }
    }
    if let Some(note) = closing_note {
        out.warn(&note);
    }
    out.report(&report);
    result
}

async fn pipeline(
    global: &GlobalArgs,
    args: &DeployArgs,
    request: Request,
    out: &Arc<Output>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen()?;
    let env_name = &args.target.env;
    let (rolled_back_to, planning) = match &request.source {
        Source::Overlay(pins) => (
            None,
            unless_interrupted(
                &mut interrupts,
                plan(
                    global,
                    env_name,
                    &args.target.sha,
                    args.prune,
                    pins.clone(),
                    out,
                ),
            )
            .await,
        ),
        Source::Release(target) => (
            Some(target.number),
            unless_interrupted(
                &mut interrupts,
                plan_release(global, env_name, target, args.prune, out),
            )
            .await,
        ),
    };
    let (client, plan) = planning?;
    report.sha = plan.sha.clone();
    let window = if args.maintenance {
        let preparing = Window::prepare(&client, &plan.config, &plan.env_name, &plan.objects, out);
        unless_interrupted(&mut interrupts, preparing).await?
    } else {
        None
    };
    if args.dry_run {
        print_plan(&plan, out)?;
        return Ok(());
    }
    let ns = plan.env.namespace.clone();
    ensure_namespace(&client, &ns, &plan.instance()).await?;

    let purpose = match rolled_back_to {
        Some(number) => format!("roll back to release {number} ({})", plan.sha),
        None => format!("deploy {}", plan.sha),
    };
    let lock = unless_interrupted(
        &mut interrupts,
        DeployLock::take(&client, &ns, &purpose, args.wait.lock_wait, out),
    )
    .await?;
    // Everything from here on runs under the lock, released however it ends.
    // A lost lock stops the deploy before its next change: the steps are
    // cancelled as on Ctrl-C, and no rollback or pruning follows; the release
    // record (berth's own Secret, not the workloads) still gets the truth.
    lock.hold(out, |mut lost| async move {
        lost.check()?;
        let deployer = Deployer::current();
        let history = release::list(&client, &ns).await?;
        let previous = history
            .iter()
            .find(|r| r.status == ReleaseStatus::Succeeded)
            .cloned();
        let mut record = Release {
            number: history.first().map_or(1, |r| r.number + 1),
            app: plan.config.app.clone(),
            environment: plan.env_name.clone(),
            sha: plan.sha.clone(),
            images: plan
                .pinned
                .iter()
                .map(|p| ImageRecord {
                    object: p.object.clone(),
                    container: p.container.clone(),
                    image: p.to.clone(),
                })
                .collect(),
            status: ReleaseStatus::InProgress,
            started_at: Timestamp::now().to_string(),
            finished_at: None,
            duration_s: None,
            timings: BTreeMap::new(),
            deployer,
            migration: None,
            assets: None,
            previous: previous.as_ref().map(|p| p.number),
            previous_sha: previous.as_ref().map(|p| p.sha.clone()),
            failure: None,
            manifest: Manifest::of(plan.objects.iter().map(|o| &o.object))?,
            manifest_omitted: false,
            rollback_of: None,
            rolled_back_to,
            promoted_from: request.promoted_from,
        };
        release::create(&client, &ns, &record).await?;
        report.release = Some(record.number);
        out.info(&format!(
            "release {} of {} ({})",
            record.number, plan.env_name, plan.sha
        ));

        let started = Instant::now();
        let cancel = CancellationToken::new();
        let outcome = {
            let steps = async {
                // --maintenance: the page goes up before the migration.
                if let Some(window) = &window {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Err(Cancelled.into()),
                        opened = window.open(out) => opened?,
                    }
                }
                deploy_steps(
                    &client,
                    &plan,
                    args,
                    out,
                    &mut record,
                    previous.as_ref(),
                    &cancel,
                )
                .await
            };
            tokio::pin!(steps);
            let stop = async {
                tokio::select! {
                    _ = interrupts.recv() => BerthError::Interrupted.into(),
                    lost = lost.lost() => lost,
                }
            };
            tokio::select! {
                result = &mut steps => result,
                stopped = stop => {
                    // Let the steps stop cleanly: uploads aborted, the migration Job deleted.
                    cancel.cancel();
                    let _ = tokio::time::timeout(STOP_GRACE, &mut steps).await;
                    Err(stopped)
                }
            }
        };
        let still_held = lost.check();
        // ... and comes down however the rollout ended, still under the lock.
        let closed = match window {
            Some(window) if still_held.is_ok() => window.close(out).await,
            Some(_) => {
                let env = &plan.env_name;
                out.warn(&format!(
                    "the lock was lost, so the maintenance page stays up; \
                 `berth maintenance {env} off` takes it down"
                ));
                Ok(())
            }
            None => Ok(()),
        };
        record.finished_at = Some(Timestamp::now().to_string());
        record.duration_s = Some(started.elapsed().as_secs_f64());
        record.status = match &outcome {
            Ok(()) => ReleaseStatus::Succeeded,
            Err(e) => match status_of(e) {
                "timed_out" => ReleaseStatus::TimedOut,
                "interrupted" => ReleaseStatus::Interrupted,
                _ => ReleaseStatus::Failed,
            },
        };
        let lost_to = match outcome.as_ref().err().and_then(crate::error::kind_of) {
            Some(BerthError::LockLost { holder, .. }) => Some(holder.clone()),
            _ => None,
        };
        if let Some(holder) = &lost_to {
            record.failure = Some(FailureRecord {
                workload: "lock".into(),
                pod: None,
                reason: "LockLost".into(),
                message: format!("lost the deploy lock to {holder}"),
            });
        }
        if let Some(f) = &record.failure {
            report.failure = Some(ReportFailure {
                workload: f.workload.clone(),
                pod: f.pod.clone(),
                reason: f.reason.clone(),
                message: f.message.clone(),
            });
        }
        out.step("record");
        release::update(&client, &ns, &record).await?;
        let mut rollback = None;
        if let Err(lost) = still_held {
            // The environment is the new holder's now: no rollback, no pruning.
            if lost_to.is_none() {
                out.warn(&format!("{lost:#}"));
            }
            return outcome.and(closed);
        }
        if outcome.is_err() && args.rollback_on_failure {
            match previous {
                Some(previous) => {
                    rollback = roll_back(&client, &plan, &record, previous, args, out).await?;
                }
                None => out.warn(
                    "--rollback-on-failure: there is no earlier successful release to go back to",
                ),
            }
        }
        // Every release recorded, newest first, without reading them again.
        let all: Vec<Release> = rollback
            .into_iter()
            .chain([record])
            .chain(history)
            .collect();
        release::prune(&client, &ns, &all, plan.config.releases_kept).await?;
        outcome.and(closed)
    })
    .await
}

/// How long an interrupted deploy waits for its steps to stop cleanly.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Steps 4 to 6: the pre-deploy tasks, apply, wait. Fills in the record as
/// it goes. `cancel` stops it with [`Cancelled`].
async fn deploy_steps(
    client: &Client,
    plan: &Plan,
    args: &DeployArgs,
    out: &Arc<Output>,
    record: &mut Release,
    previous: Option<&Release>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let thresholds = plan.thresholds();
    let timeout = plan.timeout(args);
    pre_deploy(client, plan, out, record, (thresholds, timeout), cancel).await?;
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Cancelled.into()),
        result = apply_and_wait(client, plan, args, out, record, previous) => result,
    }
}

/// Step 4: the migration and the asset upload, concurrently. Either failing
/// cancels the other, and the deploy stops before any workload changes.
async fn pre_deploy(
    client: &Client,
    plan: &Plan,
    out: &Arc<Output>,
    record: &mut Release,
    (thresholds, timeout): (Thresholds, std::time::Duration),
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if plan.migration.is_none() && plan.assets.is_none() {
        return Ok(());
    }
    out.step("pre-deploy");
    let ns = &plan.env.namespace;
    // A task's failure cancels its sibling; an interruption cancels both.
    let sibling = cancel.child_token();
    let migration = async {
        let Some(template) = &plan.migration else {
            return Ok(None);
        };
        let t = Instant::now();
        let job =
            migrate::for_release(template.clone(), &plan.instance(), record.number, &plan.sha);
        let result = migrate::run(client, ns, job, thresholds, timeout, &sibling, out).await;
        if !matches!(result, Ok(Ok(_))) {
            sibling.cancel();
        }
        result.map(|r| Some((r, t.elapsed().as_secs_f64())))
    };
    let assets = async {
        let Some(prepared) = &plan.assets else {
            return Ok(None);
        };
        let result = prepared.upload(&sibling, out).await;
        if result.is_err() {
            sibling.cancel();
        }
        result.map(Some)
    };
    let (migration, assets) = tokio::join!(migration, assets);
    if cancel.is_cancelled() {
        return Err(Cancelled.into());
    }
    let assets_failure = match assets {
        Ok(Some(report)) => {
            record.timings.insert("assets".into(), report.duration_s);
            record.assets = Some(AssetsRecord::from(&report));
            None
        }
        Ok(None) => None,
        Err(error) if error.downcast_ref::<Cancelled>().is_some() => {
            out.task_finished(
                "assets",
                "cancelled: the migration failed; nothing more is uploaded",
            );
            None
        }
        Err(error) => Some(error),
    };
    let migration_failure = match migration {
        Ok(Some((Ok(task), seconds))) => {
            record.timings.insert("migrate".into(), seconds);
            record.migration = Some(task);
            None
        }
        Ok(Some((Err(failed), seconds))) => {
            record.timings.insert("migrate".into(), seconds);
            Some(failed)
        }
        Ok(None) => None,
        Err(error) if error.downcast_ref::<Cancelled>().is_some() => None,
        Err(error) => return Err(error),
    };
    if let Some(failed) = migration_failure {
        record.migration = Some(failed.record.clone());
        record.failure = Some(FailureRecord {
            workload: format!("Job/{}", failed.job),
            pod: failed.failure.pod.clone(),
            reason: failed.failure.reason.clone(),
            message: failed.failure.message.clone(),
        });
        let summary =
            wait::explain(client, ns, &format!("Job/{}", failed.job), &failed.failure).await;
        out.failure(&format!(
            "migration failed; no workload was changed\n{summary}"
        ));
        let message = format!(
            "the migration failed ({}); Job {} is kept for inspection",
            failed.failure.reason, failed.job
        );
        return Err(match failed.end {
            migrate::MigrationEnd::Failed => BerthError::DeployFailed(message),
            migrate::MigrationEnd::TimedOut => BerthError::TimedOut(message),
        }
        .into());
    }
    if let Some(error) = assets_failure {
        let stopped = if plan.migration.is_some() {
            "; the migration was stopped"
        } else {
            ""
        };
        let message = format!("{error:#}");
        record.failure = Some(FailureRecord {
            workload: "assets".into(),
            pod: None,
            reason: "AssetUploadFailed".into(),
            message: message.clone(),
        });
        out.failure(&format!(
            "the asset upload failed{stopped}; no workload was changed\n  {message}"
        ));
        return Err(BerthError::DeployFailed(format!(
            "the asset upload failed{stopped}: {message}"
        ))
        .into());
    }
    Ok(())
}

/// Steps 5 and 6: apply, then wait for every workload.
async fn apply_and_wait(
    client: &Client,
    plan: &Plan,
    args: &DeployArgs,
    out: &Arc<Output>,
    record: &mut Release,
    previous: Option<&Release>,
) -> anyhow::Result<()> {
    let ns = &plan.env.namespace;
    let (timeout, thresholds) = (plan.timeout(args), plan.thresholds());
    out.step("apply");
    let t = Instant::now();
    let applied = apply::apply_all(client, ns, &plan.objects, false).await?;
    if args.prune {
        let mut kinds = plan.objects.clone();
        kinds.extend(previous_kinds(client, previous).await);
        for gone in apply::prune(client, ns, &plan.instance(), &kinds, &plan.objects).await? {
            out.info(&format!("pruned {gone}"));
        }
    }
    record
        .timings
        .insert("apply".into(), t.elapsed().as_secs_f64());
    out.info(&format!("applied {} objects", applied.len()));

    out.step("wait");
    let t = Instant::now();
    let tracked = tracked(&applied);
    let waited = wait::wait_all(
        client,
        wait::Scope {
            namespace: ns,
            workloads: &plan.selector(),
            pods: &crate::cluster::pods_selector(),
        },
        &tracked,
        thresholds,
        timeout,
        out.as_ref(),
    )
    .await;
    record
        .timings
        .insert("wait".into(), t.elapsed().as_secs_f64());
    out.finish_workloads();
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
        Err(WaitFailure::TimedOut { pending }) => {
            let message = format!(
                "the rollout did not finish within {}s; still waiting on:\n  {}",
                timeout.as_secs(),
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

/// Kinds the previous release had, so `--prune` also finds kinds no longer rendered.
async fn previous_kinds(client: &Client, previous: Option<&Release>) -> Vec<Resolved> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let objects = previous.manifest.objects().unwrap_or_default();
    apply::resolve(client, objects).await.unwrap_or_default()
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

/// `--rollback-on-failure`: re-apply the previous successful release's
/// objects, wait for them, and record that as a release of its own.
async fn roll_back(
    client: &Client,
    plan: &Plan,
    failed: &Release,
    previous: Release,
    args: &DeployArgs,
    out: &Arc<Output>,
) -> anyhow::Result<Option<Release>> {
    out.step("rollback");
    let ns = &plan.env.namespace;
    if previous.manifest_omitted || previous.manifest.is_empty() {
        out.warn(&format!(
            "release {} kept no manifest; cannot roll back automatically",
            previous.number
        ));
        return Ok(None);
    }
    out.info(&format!(
        "re-applying release {} ({})",
        previous.number, previous.sha
    ));
    let objects = previous
        .manifest
        .objects()
        .context("reading the previous release's manifest")?;
    let started = Instant::now();
    let timeout = plan.timeout(args);
    let resolved = apply::resolve(client, objects).await?;
    let applied = apply::apply_all(client, ns, &resolved, false).await?;
    let waited = wait::wait_all(
        client,
        wait::Scope {
            namespace: ns,
            workloads: &plan.selector(),
            pods: &crate::cluster::pods_selector(),
        },
        &tracked(&applied),
        plan.thresholds(),
        timeout,
        out.as_ref(),
    )
    .await;
    out.finish_workloads();
    let mut record = Release {
        number: failed.number + 1,
        status: if waited.is_ok() {
            ReleaseStatus::Succeeded
        } else {
            ReleaseStatus::Failed
        },
        started_at: Timestamp::now().to_string(),
        finished_at: Some(Timestamp::now().to_string()),
        duration_s: Some(started.elapsed().as_secs_f64()),
        previous: Some(failed.number),
        previous_sha: Some(failed.sha.clone()),
        failure: None,
        migration: None,
        assets: None,
        timings: BTreeMap::new(),
        deployer: failed.deployer.clone(),
        rollback_of: Some(failed.number),
        rolled_back_to: Some(previous.number),
        promoted_from: None,
        ..previous
    };
    record.manifest_omitted = false;
    release::create(client, ns, &record).await?;
    match waited {
        Ok(()) => out.info(&format!(
            "rolled back to {} as release {}; the database schema was not rolled back",
            record.sha, record.number
        )),
        Err(_) => out.warn(&format!(
            "the rollback to {} did not become healthy either",
            record.sha
        )),
    }
    Ok(Some(record))
}

/// Create the environment's namespace if it does not exist yet.
async fn ensure_namespace(client: &Client, name: &str, instance: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(name)
        .await
        .context("reading the namespace")?
        .is_some()
    {
        return Ok(());
    }
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {
            crate::cluster::MANAGED_BY.0: crate::cluster::MANAGED_BY.1,
            crate::cluster::INSTANCE_LABEL: instance,
        }}
    }))?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// `--dry-run`: what would be applied, and which images are pinned.
fn print_plan(plan: &Plan, out: &Output) -> anyhow::Result<()> {
    if out.mode() == crate::output::Mode::Json {
        let value = serde_json::json!({
            "event": "plan",
            "environment": plan.env_name,
            "namespace": plan.env.namespace,
            "sha": plan.sha,
            "objects": plan.objects.iter().map(|o| o.describe()).collect::<Vec<_>>(),
            "images": plan.pinned.iter().map(|p| serde_json::json!({"object": p.object, "container": p.container, "from": p.from, "to": p.to})).collect::<Vec<_>>(),
            "assets": plan.assets.as_ref().map(|a| serde_json::json!({"source": a.resolved.description, "files": a.resolved.files.len(), "bucket": a.store.bucket})),
        });
        return stdout::line(value);
    }
    let mut ordered: Vec<&Resolved> = plan.objects.iter().collect();
    ordered.sort_by_key(|o| apply::phase(&o.resource.kind));
    stdout::line(format!(
        "Plan: deploy {} to {} (namespace {}), nothing changed",
        plan.sha, plan.env_name, plan.env.namespace
    ))?;
    stdout::line("Objects, in apply order:")?;
    for o in ordered {
        stdout::line(format!("  {}", o.describe()))?;
    }
    stdout::line(format!("Images pinned to {}:", plan.sha))?;
    for p in &plan.pinned {
        stdout::line(format!(
            "  {} {}: {} -> {}",
            p.object, p.container, p.from, p.to
        ))?;
    }
    if let Some(prepared) = &plan.assets {
        stdout::line(format!(
            "Assets: {} files from {} to s3://{}/{} (only missing or changed files are uploaded)",
            prepared.resolved.files.len(),
            prepared.resolved.description,
            prepared.store.bucket,
            prepared.assets.prefix
        ))?;
    }
    Ok(())
}
