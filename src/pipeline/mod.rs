//! The deploy pipeline, one call per phase, as krane's deploy task reads:
//! plan → namespace → under the lock { settle what a dead deploy left →
//! record the start → pre-deploy → apply and wait (the record keeping its
//! step) → record the end → roll back on failure → prune records }.
//!
//! Everything under the lock runs in one scope ([`DeployLock::hold`]) that
//! releases it however the deploy ends. Ctrl-C, SIGTERM, SIGHUP or a lost lock stop
//! the steps before their next change; the release record still gets the
//! truth.

pub mod adopt;
pub mod backups;
pub mod hold;
pub mod plan;
pub mod pre_deploy;
pub mod pre_migrate;
pub mod protected;
pub mod record;
pub mod rollback;
pub mod rollout;
pub mod schema;
pub mod settings;
pub mod settle;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use tokio_util::sync::CancellationToken;

pub use plan::{Plan, plan, plan_release};
pub use settings::DeploySettings;

use crate::cluster::lock::{DeployLock, Lost, own_identity};
use crate::cluster::release::{self, FailureRecord, PromotedFrom, Release};
use crate::error::{BerthError, Cancelled, Outcome};
use crate::hooks;
use crate::identity::Deployer;
use crate::interrupt::{Interrupts, unless_interrupted, wind_down};
use crate::maintenance::Window;
use crate::output::Output;
use crate::schema::unapply;

/// What a deploy puts in the environment.
pub enum Source {
    /// The overlay, rendered, with the app's images pinned: to `:SHA`
    /// (`None`), or to the references given (a promotion, by digest).
    Overlay(Option<crate::render::Pins>),
    /// An earlier release's objects, re-applied as recorded (a rollback).
    Release(Box<Release>),
}

/// A deploy as its caller asks for it.
pub struct Request {
    /// The objects and images deployed.
    pub source: Source,
    /// Recorded on the release when it is a promotion.
    pub promoted_from: Option<PromotedFrom>,
    /// A rollback's schema step, run before the objects are re-applied.
    pub schema: Option<Box<crate::schema::unapply::SchemaStep>>,
    /// The plan already made for `source` (a rollback makes it to show it
    /// before anything changes), with its client; `None`: the pipeline
    /// makes it.
    pub planned: Option<Box<(Client, Plan)>>,
}

impl Request {
    /// `advanced-deploy`: the overlay, images at `:SHA`.
    pub fn overlay() -> Request {
        Request {
            source: Source::Overlay(None),
            promoted_from: None,
            schema: None,
            planned: None,
        }
    }

    /// The release whose objects this deploy re-applies, for a rollback.
    pub fn rolled_back_to(&self) -> Option<u64> {
        match &self.source {
            Source::Overlay(_) => None,
            Source::Release(target) => Some(target.number),
        }
    }
}

/// What the report says of a run, filled in as far as the run got.
#[derive(Debug, Default)]
pub struct Summary {
    /// The SHA deployed, once planned (lowercased).
    pub sha: Option<String>,
    /// The release recorded, once one was.
    pub release: Option<u64>,
    /// What failed, as recorded.
    pub failure: Option<FailureRecord>,
    /// Seconds per step, as recorded.
    pub timings: std::collections::BTreeMap<String, f64>,
    /// The chart's NOTES.txt, rendered after a first deploy (no earlier
    /// successful release in the environment).
    pub notes: Option<String>,
    /// The chart hooks run, as recorded.
    pub hooks: Vec<release::HookRecord>,
}

/// How far a run went when it succeeded.
pub enum Finished {
    /// `--dry-run`: planned, nothing changed.
    Planned(Box<Plan>),
    /// Deployed and recorded.
    Deployed,
}

/// Run the pipeline for `request` with `settings`, filling in `summary`.
/// `interrupts` listens from the start of the command, so a signal during
/// what the command did before the pipeline still stops it here.
pub async fn run(
    settings: &DeploySettings,
    mut request: Request,
    mut interrupts: Interrupts,
    out: &Arc<Output>,
    summary: &mut Summary,
) -> anyhow::Result<Finished> {
    let (client, plan) = match request.planned.take() {
        Some(planned) => *planned,
        None => {
            let planning = async {
                match &request.source {
                    Source::Overlay(pins) => plan(settings, pins.clone(), out).await,
                    Source::Release(target) => plan_release(settings, target, out).await,
                }
            };
            unless_interrupted(&mut interrupts, planning).await?
        }
    };
    summary.sha = Some(plan.sha.clone());
    // helm managing the same objects: refused unless --adopt, before anything changes
    let adopting = match &request.source {
        Source::Overlay(_) => {
            let checking = adopt::check(&client, &plan, settings.adopt);
            unless_interrupted(&mut interrupts, checking).await?
        }
        Source::Release(_) => Vec::new(),
    };
    let window = if settings.maintenance {
        let preparing = Window::prepare(&client, &plan.config, &plan.env_name, &plan.objects, out);
        unless_interrupted(&mut interrupts, preparing).await?
    } else {
        None
    };
    // A rollback continuing one that stopped midway ends the page it left up.
    let window = match &request.schema {
        Some(step) if step.resumes => window.map(Window::adopt),
        _ => window,
    };
    if settings.dry_run {
        let mut plan = plan;
        plan.inspected = dry_run_inspection(&client, &plan, &mut interrupts, out).await?;
        return Ok(Finished::Planned(Box::new(plan)));
    }
    if matches!(request.source, Source::Overlay(_)) {
        protected::confirm(&client, &plan, settings.yes).await?;
    }
    let ns = plan.env.namespace.clone();
    rollout::ensure_namespace(&client, &ns, &plan.instance()).await?;
    let short = crate::config::short_sha(&plan.sha);
    let purpose = match request.rolled_back_to() {
        Some(number) => format!("roll back to release {number} ({short})"),
        None => format!("deploy {short}"),
    };
    // --lock-wait bounds the wait for the lock and for a dead deploy's
    // migration still running ([`settle::wait_for`]) together.
    let waits_until = settings
        .lock_wait
        .map(|wait| tokio::time::Instant::now() + wait);
    let lock = DeployLock::take_unless_interrupted(
        &client,
        &ns,
        &purpose,
        settings.lock_wait,
        &mut interrupts,
        out,
    )
    .await?;
    let deploy = Deploy {
        client,
        plan,
        settings,
        request,
        window,
        out,
        waits_until,
        adopting,
    };
    lock.hold(out, |lost| deploy.under_lock(lost, interrupts, summary))
        .await?;
    Ok(Finished::Deployed)
}

/// `--dry-run`'s reading of what the migration would apply; Ctrl-C
/// deletes its Job.
async fn dry_run_inspection(
    client: &Client,
    plan: &Plan,
    interrupts: &mut Interrupts,
    out: &Arc<Output>,
) -> anyhow::Result<Option<Vec<crate::schema::adapter::Step>>> {
    let cancel = CancellationToken::new();
    let reading = schema::dry_run(client, plan, &cancel, out);
    tokio::pin!(reading);
    tokio::select! {
        read = &mut reading => read,
        _ = interrupts.recv() => {
            cancel.cancel();
            if wind_down(interrupts, &mut reading).await.is_none() {
                out.warn(&left_behind(plan, None));
            }
            Err(BerthError::Interrupted.into())
        }
    }
}

/// A planned deploy, about to run under the lock.
struct Deploy<'a> {
    client: Client,
    plan: Plan,
    settings: &'a DeploySettings,
    request: Request,
    window: Option<Window>,
    out: &'a Arc<Output>,
    waits_until: Option<tokio::time::Instant>,
    /// The helm releases `--adopt` takes over ([`adopt::check`]).
    adopting: Vec<adopt::HelmClaim>,
}

impl Deploy<'_> {
    /// Everything under the lock. A lost lock stops the deploy before its
    /// next change: the steps are cancelled as on Ctrl-C, and no rollback or
    /// pruning follows; the release record (berth's own Secret, not the
    /// workloads) still gets the truth.
    async fn under_lock(
        mut self,
        mut lost: Lost,
        mut interrupts: Interrupts,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        lost.check()?;
        let (client, plan, out) = (&self.client, &self.plan, self.out);
        let ns = &plan.env.namespace;
        let mut history = release::list(client, ns).await?;
        // First what a dead deploy left: its release, its Jobs.
        let identity = own_identity();
        let running =
            settle::settle(client, ns, &plan.instance(), &mut history, &identity, out).await?;
        // Failed migration Jobs beyond the newest few: a cleanup that fails
        // only warns, it never stops a deploy.
        let kept = plan.env.failed_jobs_kept;
        if let Err(error) =
            crate::migrate::failed::prune(client, ns, &plan.instance(), kept, out).await
        {
            out.warn(&format!("{error:#}; the next deploy tries again"));
        }
        if !running.is_empty() && (plan.migration.is_some() || self.request.schema.is_some()) {
            let waiting = settle::wait_for(client, ns, running, self.waits_until, out);
            lost.clone()
                .unless_lost(unless_interrupted(&mut interrupts, waiting))
                .await?;
        }
        let previous = record::previous(&history).cloned();
        let mut record = record::start(
            plan,
            &self.request,
            &history,
            Deployer::current(),
            Timestamp::now(),
        )?;
        record.holder = Some(identity);
        record.adopted_helm_releases = self.adopting.iter().map(|c| c.release.clone()).collect();
        release::create(client, ns, &record).await?;
        summary.release = Some(record.number);
        out.info(&format!(
            "release {} of {} ({})",
            record.number,
            plan.env_name,
            crate::config::short_sha(&plan.sha)
        ));
        adopt::say(&self.adopting, ns, out);

        let started = Instant::now();
        let result = self
            .steps(&mut record, previous.as_ref(), &mut interrupts, &mut lost)
            .await;
        let result = match result {
            Err(failure) => Err(rollout::unless_namespace_deleted(client, ns, failure, out).await),
            ok => ok,
        };
        let still_held = lost.check();
        // A schema rollback that stopped midway leaves the page up: the
        // schema is between the two releases'.
        let window = self.window.take().filter(|_| !unapply::stopped(&record));
        let closed = close_window(window, still_held.is_ok(), &plan.env_name, out).await;
        record::finish(&mut record, &result, started.elapsed(), Timestamp::now());
        summary.failure.clone_from(&record.failure);
        summary.timings.clone_from(&record.timings);
        summary.hooks.clone_from(&record.hooks);
        out.step("record");
        // A stopped release keeps the step it stopped at.
        if !record.status.stopped() {
            record.step = Some("record".into());
        }
        match release::update(client, ns, &record).await {
            Ok(stood) => {
                if let (None, Some(found)) = (&record.abandoned, &stood.abandoned) {
                    out.warn(&format!(
                        "release {} had been recorded abandoned by {} at {}, when its lock expired; \
                         its record keeps that beside how it ended ({})",
                        record.number,
                        found.found_by,
                        crate::local_time::with_age(&found.found_at, Timestamp::now()),
                        record.status.as_str()
                    ));
                }
                record = stood;
            }
            Err(unwritten) => {
                // The deploy's own failure says more than the record's.
                let Err(failure) = result else {
                    return Err(unwritten.context(format!(
                        "recording release {} as {}",
                        record.number,
                        record.status.as_str()
                    )));
                };
                out.warn(&format!(
                    "release {} could not be recorded as {} ({}); its record still says in_progress",
                    record.number,
                    record.status.as_str(),
                    crate::error::brief(&unwritten)
                ));
                return Err(failure);
            }
        }
        if result.is_ok() && previous.is_none() && self.request.rolled_back_to().is_none() {
            summary.notes = crate::render::notes::after_first_deploy(plan, out).await;
        }
        if record.interrupted_after_apply() {
            out.warn(&after_apply(&record, self.request.rolled_back_to()));
        }
        if let Err(lost) = still_held {
            // The environment is the new holder's now: no rollback, no pruning.
            if Outcome::of_result(&result) != Outcome::LockLost {
                out.warn(&format!("{lost:#}"));
            }
            return result.and(closed);
        }
        let rollback = match (&result, self.settings.rollback_on_failure) {
            // An interruption stops; it does not start a rollback.
            (Err(error), true) if Outcome::of(error) != Outcome::Interrupted => {
                rollback::after_failure(client, plan, self.settings, &record, previous, out).await?
            }
            _ => None,
        };
        let kept = plan.config.releases_kept;
        record::prune(client, ns, record, rollback, history, kept).await?;
        result.and(closed)
    }

    /// The maintenance window (`--maintenance`), pre-deploy, apply and
    /// wait, stopped cleanly by an interruption or a lost lock.
    async fn steps(
        &self,
        record: &mut Release,
        previous: Option<&Release>,
        interrupts: &mut Interrupts,
        lost: &mut Lost,
    ) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let number = record.number;
        let steps = async {
            // --maintenance: the page goes up before the migration.
            if let Some(window) = &self.window {
                record::reach(
                    &self.client,
                    &self.plan.env.namespace,
                    record,
                    "maintenance on",
                    self.out,
                )
                .await;
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(Cancelled.into()),
                    opened = window.open(self.out) => opened?,
                }
            }
            let (client, plan, out) = (&self.client, &self.plan, self.out);
            let timeout = plan.timeout(self.settings);
            // A chart's pre hooks first: before the schema step, the
            // migration and the assets (docs/charts.md says why).
            let around = match self.request.source {
                Source::Release(_) => hooks::Around::rollback(),
                Source::Overlay(_) => hooks::Around::deploy(previous.is_none()),
            };
            let place = hooks::run::Place {
                client,
                namespace: &plan.env.namespace,
                thresholds: plan.thresholds(),
                timeout,
                out,
            };
            let unchanged = "no workload was changed";
            self.hooks(&place, around.pre, record, unchanged, &cancel)
                .await?;
            if let Some(step) = &self.request.schema {
                record::reach(client, &plan.env.namespace, record, "schema", out).await;
                self.schema_step(step, record, &cancel).await?;
            }
            pre_deploy::run(client, plan, out, record, timeout, &cancel).await?;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(Cancelled.into()),
                result = rollout::apply_and_wait(client, plan, self.settings, out, record, previous) => result,
            }?;
            let applied = "the release's objects are applied and healthy";
            self.hooks(&place, around.post, record, applied, &cancel)
                .await
        };
        tokio::pin!(steps);
        let stop = async {
            tokio::select! {
                _ = interrupts.recv() => {
                    self.out.warn(crate::interrupt::STOPPING);
                    BerthError::Interrupted.into()
                }
                lost = lost.lost() => lost,
            }
        };
        tokio::select! {
            result = &mut steps => result,
            stopped = stop => {
                let stopped = at_step(stopped, self.out.current_step());
                // Let the steps stop cleanly: uploads aborted, the migration
                // Job deleted; a second signal stops waiting for them.
                cancel.cancel();
                match wind_down(interrupts, &mut steps).await {
                    None => self.out.warn(&left_behind(&self.plan, Some(number))),
                    Some(Err(unclean)) if unclean.downcast_ref::<Cancelled>().is_none() => {
                        self.out.warn(&format!(
                            "stopping left something behind: {}",
                            crate::error::brief(&unclean)
                        ));
                    }
                    Some(_) => {}
                }
                Err(stopped)
            }
        }
    }
}

impl Deploy<'_> {
    /// The chart's hooks of `event`, if it has any, the step recorded
    /// first ([`hooks::run::event`]).
    async fn hooks(
        &self,
        place: &hooks::run::Place<'_>,
        event: hooks::Event,
        record: &mut Release,
        unchanged: &str,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        if hooks::for_event(&self.plan.hooks, event).is_empty() {
            return Ok(());
        }
        let step = hooks::run::step(event);
        record::reach(place.client, place.namespace, record, &step, self.out).await;
        hooks::run::event(place, &self.plan.hooks, event, record, unchanged, cancel).await
    }

    /// A rollback's schema step: the target's schema, verified, before
    /// any workload changes.
    async fn schema_step(
        &self,
        step: &crate::schema::unapply::SchemaStep,
        record: &mut Release,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        use crate::schema::adapter;
        let plan = &self.plan;
        let adapter = adapter::for_settings(&plan.env_name, plan.env.schema.as_ref())
            .map_err(|unsupported| anyhow::anyhow!("{unsupported}"))?;
        let place = unapply::Place {
            runner: rollback::runner(
                &self.client,
                plan,
                self.settings,
                self.out,
                adapter.as_ref(),
            ),
            config: &plan.config,
            env_name: &plan.env_name,
            env: &plan.env,
        };
        unapply::run(&place, step, record, cancel).await
    }
}

/// A refusal of berth's credentials that stopped the deploy, said with the
/// step it stopped in; other stops stay as they are.
fn at_step(error: anyhow::Error, step: Option<String>) -> anyhow::Error {
    match (crate::error::kind_of(&error), step) {
        (Some(BerthError::CredentialsRefused { .. }), Some(step)) => {
            error.context(format!("stopped in the {step} step"))
        }
        _ => error,
    }
}

/// What an interruption once `record`'s objects were applied left, and
/// what to do next: deploy again to finish (the rollback again, for one
/// returning to release `rolled_back_to`), or roll back.
fn after_apply(record: &Release, rolled_back_to: Option<u64>) -> String {
    let berth = crate::program::name();
    let env = &record.environment;
    let again = match rolled_back_to {
        Some(number) => format!("{berth} rollback {env} --to {number}"),
        None => format!("{berth} deploy {env} {}", record.sha),
    };
    format!(
        "release {} was interrupted after apply: its objects ({}) are in the cluster, but their          rollout was not waited for to its end (`{berth} status {env}` shows how far it got);          run `{again}` again to finish, or `{berth} rollback {env}` to go back",
        record.number,
        crate::config::short_sha(&record.sha),
    )
}

/// What a second signal may leave when it cuts an interrupted deploy's
/// cleanup short (release `number`'s, or the dry run's), and how to finish it.
fn left_behind(plan: &Plan, number: Option<u64>) -> String {
    let release = number.map_or(String::new(), |n| format!(",berth.dev/release={n}"));
    let assets = if plan.assets.is_some() {
        "; an asset upload cut short leaves parts no object shows, which the next \
         deploy or `assets push` of the same files removes"
    } else {
        ""
    };
    let hooks = if plan.hooks.is_empty() {
        String::new()
    } else {
        format!(
            "; a chart hook's Job or Pod may still run too (`kubectl -n {} get jobs,pods -l \
             app.kubernetes.io/instance={}` lists them)",
            plan.env.namespace,
            plan.instance()
        )
    };
    format!(
        "stopped before the cleanup finished: a Job berth started may still run \
         (`kubectl -n {ns} get jobs -l berth.dev/migration-of={instance}{release}` lists them; \
         delete the one still running){hooks}{assets}",
        ns = plan.env.namespace,
        instance = plan.instance(),
    )
}

/// `error` said with what it means for the deploy (`meaning: error`);
/// an interruption or a cancellation stays what it is, a timeout stays one.
fn restated(error: anyhow::Error, meaning: &str) -> anyhow::Error {
    if error.downcast_ref::<Cancelled>().is_some() {
        return error;
    }
    let said = format!("{meaning}: {error:#}");
    match crate::error::kind_of(&error) {
        Some(BerthError::Interrupted) => error,
        Some(BerthError::TimedOut(_)) => BerthError::TimedOut(said).into(),
        _ => BerthError::DeployFailed(said).into(),
    }
}

/// Take the maintenance page down, however the rollout ended, while the lock
/// is still ours; a lost lock leaves it up, saying how to end it.
async fn close_window(
    window: Option<Window>,
    still_held: bool,
    env_name: &str,
    out: &Output,
) -> anyhow::Result<()> {
    match window {
        Some(window) if still_held => window.close(out).await,
        Some(_) => {
            out.warn(&format!(
                "the lock was lost, so the maintenance page stays up; \
                 `{berth} maintenance {env_name} off` takes it down",
                berth = crate::program::name()
            ));
            Ok(())
        }
        None => Ok(()),
    }
}
