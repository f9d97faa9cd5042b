//! The steps of `db restore` under the deploy lock, each recorded in the
//! ConfigMap `berth-restore` before it acts: set the database's clients
//! aside (maintenance on, CronJobs suspended, workloads scaled to zero),
//! take the safety backup, restore (restoring the safety backup if that
//! fails), put everything back, and write the restore's record to the
//! bucket. Setting aside is idempotent, so a resumed restore redoes it and
//! goes on from the database step it reached.

use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde::Serialize;

use super::restore::Report;
use crate::backup::clients;
use crate::backup::job::{self, AgentOutcome};
use crate::backup::layout;
use crate::backup::manifest::{BackupStatus, Trigger};
use crate::backup::pods::{self, AgentRun, AgentTask};
use crate::backup::restore_record::{CONFIG_MAP, Ending, RestoreRecord, Step, Stored};
use crate::backup::store::BackupStore;
use crate::config::{Backups, Environment};
use crate::error::{BerthError, input_error};
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::maintenance::Scope;
use crate::output::Output;

/// What the steps work on.
pub struct Context<'a> {
    /// The environment's name.
    pub env_name: &'a str,
    /// The environment.
    pub env: &'a Environment,
    /// Its `backups:` block.
    pub backups: &'a Backups,
    /// Its cluster.
    pub client: kube::Client,
    /// Its backups.
    pub store: BackupStore,
    /// `database.secret`: the workloads using it are the database's clients.
    pub secret: &'a str,
    /// Its maintenance.
    pub scope: Scope,
    /// Who runs the restore.
    pub who: String,
    /// Progress.
    pub out: Arc<Output>,
}

/// How long since `started`, for progress lines: `2.3s`, `1m5s`.
pub fn took(started: Timestamp) -> String {
    crate::duration::display_seconds(Timestamp::now().duration_since(started).as_secs_f64())
}

/// Run the agent's `task` on backup `id` in a Job, with `vars` besides.
pub async fn agent(
    ctx: &Context<'_>,
    task: AgentTask,
    id: &str,
    vars: Vec<(&str, String)>,
) -> anyhow::Result<AgentOutcome> {
    let mut all = vec![
        ("BERTH_BACKUP_ID".to_owned(), id.to_owned()),
        ("BERTH_WHO".to_owned(), ctx.who.clone()),
    ];
    all.extend(vars.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let run = AgentRun {
        env_name: ctx.env_name,
        env: ctx.env,
        backups: ctx.backups,
        task,
        vars: all,
    };
    job::run(&ctx.client, &run, &ctx.out, task.as_str()).await
}

/// The record and its ConfigMap, with the step bookkeeping.
struct Recorded<'c, 'a> {
    ctx: &'c Context<'a>,
    stored: Stored,
    record: RestoreRecord,
}

impl Recorded<'_, '_> {
    /// Start `step`: recorded first, then said.
    async fn begin(&mut self, step: Step) -> anyhow::Result<()> {
        self.record.start(step, Timestamp::now());
        self.stored.save(&self.record).await?;
        self.ctx.out.step(step.as_str());
        Ok(())
    }

    /// The step begun last is done.
    async fn end(&mut self) -> anyhow::Result<()> {
        self.record.finish(Timestamp::now());
        self.stored.save(&self.record).await?;
        if let Some(last) = self.record.steps.last() {
            self.ctx.out.info(&format!(
                "{}: done in {}",
                last.step.as_str(),
                crate::duration::display_seconds(last.seconds.unwrap_or_default())
            ));
        }
        Ok(())
    }

    async fn save(&mut self) -> anyhow::Result<()> {
        self.stored.save(&self.record).await
    }
}

/// Restore `backup` (or resume the restore the namespace records), under
/// the lock. On any stop (failure, Ctrl-C, a lost lock) the record stays,
/// and the error says how to resume or abort.
pub async fn restore(
    ctx: &Context<'_>,
    backup: &str,
    no_safety_backup: bool,
    interrupts: &mut Interrupts,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ns = &ctx.env.namespace;
    let mut recorded = match Stored::load(&ctx.client, ns).await? {
        Some((stored, record)) => {
            record.check_resume(Some(backup), ctx.env_name)?;
            Recorded {
                ctx,
                stored,
                record,
            }
        }
        None => {
            let record = RestoreRecord::new(
                ctx.env_name,
                backup,
                no_safety_backup,
                &ctx.who,
                Timestamp::now(),
            );
            if no_safety_backup {
                ctx.out.warn(&format!(
                    "--no-safety-backup: the data {} holds now is not backed up first; if backup \
                     {backup} is not the one you meant, there is no way back",
                    ctx.env_name
                ));
            }
            let stored = Stored::create(&ctx.client, ns, &record).await?;
            ctx.out.info(&format!(
                "recorded the restore in ConfigMap {CONFIG_MAP} (namespace {ns})"
            ));
            Recorded {
                ctx,
                stored,
                record,
            }
        }
    };
    let result = drive(&mut recorded, interrupts).await;
    report.absorb(&recorded.record);
    match result {
        Ok(()) => finish(recorded, report).await,
        Err(error) => {
            let record = &recorded.record;
            ctx.out.failure(&format!(
                "the restore stopped at step `{}`; ConfigMap {CONFIG_MAP} in namespace {ns} \
                 records what was set aside. The database: {}.\n`{berth} db restore {env} {} \
                 --confirm {env}` resumes it; `{berth} db restore {env} --abort` puts the app \
                 back without touching the database",
                record.step.as_str(),
                record.database_state(),
                record.backup,
                env = ctx.env_name,
                berth = crate::program::name()
            ));
            Err(error)
        }
    }
}

/// Set aside, restore, put back.
async fn drive(recorded: &mut Recorded<'_, '_>, interrupts: &mut Interrupts) -> anyhow::Result<()> {
    set_aside(recorded, interrupts).await?;
    database(recorded).await?;
    recorded.begin(Step::PutBack).await?;
    unless_interrupted(interrupts, put_back(recorded.ctx, &recorded.record)).await?;
    recorded.end().await
}

/// Maintenance on, CronJobs suspended, the database's clients scaled to
/// zero and their pods gone; each change recorded before it is made.
async fn set_aside(
    recorded: &mut Recorded<'_, '_>,
    interrupts: &mut Interrupts,
) -> anyhow::Result<()> {
    let ctx = recorded.ctx;
    let (client, ns, out) = (&ctx.client, &ctx.env.namespace, &ctx.out);
    recorded.begin(Step::MaintenanceOn).await?;
    if recorded.record.maintenance_turned_on.is_none() {
        let (status, targets) = unless_interrupted(interrupts, async {
            tokio::try_join!(ctx.scope.status(), ctx.scope.targets(&[], out))
        })
        .await?;
        let turn_on = status.state != "on" && !targets.is_empty();
        if targets.is_empty() {
            out.warn(
                "no Service to switch to the maintenance page; the restore goes on without it",
            );
        } else if !turn_on {
            out.info("maintenance was on already; it stays on after the restore");
        }
        recorded.record.maintenance_turned_on = Some(turn_on);
        recorded.save().await?;
    }
    if recorded.record.maintenance_turned_on == Some(true) {
        unless_interrupted(interrupts, ctx.scope.on(None, None, &[], out)).await?;
    }
    recorded.end().await?;

    recorded.begin(Step::SuspendCronJobs).await?;
    let cron_jobs = unless_interrupted(interrupts, clients::cron_jobs(client, ns)).await?;
    let suspend = recorded.record.cron_jobs_to_suspend(&cron_jobs);
    recorded.save().await?;
    for (name, suspended) in &cron_jobs {
        if *suspended && !recorded.record.suspended_cron_jobs.contains(name) {
            out.info(&format!(
                "CronJob/{name} was suspended already; it stays suspended"
            ));
        }
    }
    for name in suspend {
        unless_interrupted(interrupts, clients::set_suspended(client, ns, &name, true)).await?;
        out.info(&format!("suspended CronJob/{name}"));
    }
    recorded.end().await?;

    recorded.begin(Step::ScaleDown).await?;
    let workloads = unless_interrupted(
        interrupts,
        clients::database_workloads(client, ns, ctx.secret),
    )
    .await?;
    if recorded.record.record_replicas(&workloads) {
        recorded.save().await?;
    }
    for (key, replicas) in &recorded.record.replicas {
        if unless_interrupted(interrupts, clients::scale(client, ns, key, 0)).await? {
            out.info(&format!("scaled {key} to 0 (recorded {replicas})"));
        }
    }
    let selectors: Vec<_> = workloads
        .iter()
        .filter(|w| recorded.record.replicas.contains_key(&w.key))
        .filter_map(|w| w.selector.clone())
        .collect();
    let timeout = ctx.env.rollout.timeout;
    unless_interrupted(
        interrupts,
        clients::wait_pods_gone(client, ns, &selectors, timeout),
    )
    .await?;
    out.info("the database's clients have no pods left");
    recorded.end().await
}

/// The safety backup, the restore, and, if the restore fails, the safety
/// backup restored; from the step the record reached. Sets the record's
/// ending, or fails leaving it (the rerun retries the step).
async fn database(recorded: &mut Recorded<'_, '_>) -> anyhow::Result<()> {
    let work = recorded.record.database_work();
    if work == Some(Step::SafetyBackup) {
        safety_backup(recorded).await?;
    }
    if recorded.record.ending.is_none() && matches!(work, Some(Step::SafetyBackup | Step::Restore))
    {
        restore_backup(recorded).await?;
    }
    if recorded.record.ending.is_none() && recorded.record.step == Step::RollBack {
        roll_back(recorded).await?;
    }
    Ok(())
}

/// Take the safety backup, unless the one recorded already succeeded.
async fn safety_backup(recorded: &mut Recorded<'_, '_>) -> anyhow::Result<()> {
    let ctx = recorded.ctx;
    if let Some(id) = recorded.record.safety_backup.clone() {
        let taken = ctx.store.manifest(&id).await?;
        if taken.is_some_and(|m| m.status == BackupStatus::Succeeded) {
            ctx.out.info(&format!(
                "the safety backup {id} was taken before the interruption"
            ));
            return Ok(());
        }
    }
    let id = layout::new_id(Timestamp::now(), Trigger::PreRestore);
    recorded.record.safety_backup = Some(id.clone());
    recorded.begin(Step::SafetyBackup).await?;
    let label = format!("before restoring {}", recorded.record.backup);
    let vars = vec![
        (
            "BERTH_BACKUP_TRIGGER",
            Trigger::PreRestore.as_str().to_owned(),
        ),
        ("BERTH_BACKUP_LABEL", label),
    ];
    let outcome = agent(ctx, AgentTask::Backup, &id, vars).await?;
    if !outcome.succeeded {
        let why = outcome.result["backup"]["error"]
            .as_str()
            .unwrap_or("the backup Job failed");
        recorded.record.ending = Some(Ending::Failed(format!(
            "it was not touched: the safety backup failed ({why}), so nothing was restored"
        )));
    }
    recorded.end().await
}

/// Restore the backup; on failure, roll back to the safety backup if
/// there is one, else record which state the database is in.
async fn restore_backup(recorded: &mut Recorded<'_, '_>) -> anyhow::Result<()> {
    let ctx = recorded.ctx;
    recorded.begin(Step::Restore).await?;
    stop_restore_jobs(ctx).await?;
    let backup = recorded.record.backup.clone();
    let outcome = agent(ctx, AgentTask::Restore, &backup, Vec::new()).await?;
    let result = &outcome.result["restore"];
    if outcome.succeeded && result["ok"] == true {
        recorded.record.ending = Some(Ending::Restored);
        return recorded.end().await;
    }
    let why = result["error"]
        .as_str()
        .unwrap_or("the restore Job failed")
        .to_owned();
    recorded.end().await?;
    match recorded.record.safety_backup.clone() {
        Some(safety) if !recorded.record.no_safety_backup => {
            ctx.out.warn(&format!(
                "the restore of {backup} failed: {why}; restoring the safety backup {safety}"
            ));
            recorded.record.restore_error = Some(why);
            recorded.begin(Step::RollBack).await
        }
        _ => {
            recorded.record.ending = Some(Ending::Failed(if result["changed"] == true {
                format!(
                    "it holds backup {backup}'s data, but {why}; there is no safety backup to go back to"
                )
            } else {
                format!("it was not changed: {why} (the restore's transaction rolled back)")
            }));
            recorded.save().await
        }
    }
}

/// Restore the safety backup after a failed restore. If that fails too,
/// the app stays set aside and the error says what to do.
async fn roll_back(recorded: &mut Recorded<'_, '_>) -> anyhow::Result<()> {
    let ctx = recorded.ctx;
    let safety = recorded
        .record
        .safety_backup
        .clone()
        .context("the record names no safety backup to restore")?;
    recorded.begin(Step::RollBack).await?;
    stop_restore_jobs(ctx).await?;
    let outcome = agent(ctx, AgentTask::Restore, &safety, Vec::new()).await?;
    let result = &outcome.result["restore"];
    if outcome.succeeded && result["ok"] == true {
        let why = recorded.record.restore_error.clone().unwrap_or_default();
        recorded.record.ending = Some(Ending::RolledBack(why));
        return recorded.end().await;
    }
    recorded.end().await?;
    Err(BerthError::DeployFailed(format!(
        "restoring the safety backup {safety} failed too: {}; the app stays scaled down, its \
         CronJobs suspended and maintenance on",
        result["error"].as_str().unwrap_or("the restore Job failed")
    ))
    .into())
}

/// Scale the recorded workloads back and wait until they are ready, resume
/// the CronJobs berth suspended, and turn maintenance off if berth turned
/// it on. Idempotent.
async fn put_back(ctx: &Context<'_>, record: &RestoreRecord) -> anyhow::Result<()> {
    let (client, ns, out) = (&ctx.client, &ctx.env.namespace, &ctx.out);
    for (key, replicas) in &record.replicas {
        if clients::scale(client, ns, key, *replicas).await? {
            out.info(&format!("scaled {key} back to {replicas}"));
        } else {
            out.warn(&format!("{key} is gone; nothing to scale back"));
        }
    }
    let timeout = ctx.env.rollout.timeout;
    match tokio::time::timeout(timeout, clients::wait_ready(client, ns, &record.replicas)).await {
        Ok(ready) => ready?,
        Err(_) => out.warn(&format!(
            "the database's clients were not all ready after {}; going on (`kubectl -n {ns} get pods` shows them)",
            crate::duration::display(timeout)
        )),
    }
    for name in &record.suspended_cron_jobs {
        clients::set_suspended(client, ns, name, false).await?;
        out.info(&format!("resumed CronJob/{name}"));
    }
    match record.maintenance_turned_on {
        Some(true) => {
            ctx.scope.off(out).await?;
        }
        Some(false) => out.info("maintenance stays as it was before the restore"),
        None => {}
    }
    Ok(())
}

/// A finished restore's record in the bucket.
#[derive(Serialize)]
struct Finished<'r> {
    #[serde(flatten)]
    record: &'r RestoreRecord,
    finished_at: Timestamp,
    /// `restored`, `rolled-back`, `failed` or `aborted`.
    outcome: &'static str,
    /// Which state the database is in.
    database: String,
}

/// Write the restore's record to the bucket under `restores/`; returns its key.
async fn write_log(
    ctx: &Context<'_>,
    record: &RestoreRecord,
    outcome: &'static str,
) -> anyhow::Result<String> {
    let key = ctx.store.layout.restore(&record.id);
    let finished = Finished {
        record,
        finished_at: Timestamp::now(),
        outcome,
        database: record.database_state(),
    };
    ctx.store.put_json(&key, &finished).await?;
    Ok(key)
}

/// Everything is back: record the restore in the bucket, delete the
/// ConfigMap, and end as the database step did.
async fn finish(recorded: Recorded<'_, '_>, report: &mut Report) -> anyhow::Result<()> {
    let Recorded {
        ctx,
        stored,
        record,
    } = recorded;
    let outcome = match &record.ending {
        Some(Ending::Restored) => "restored",
        Some(Ending::RolledBack(_)) => "rolled-back",
        _ => "failed",
    };
    report.restore_record = Some(write_log(ctx, &record, outcome).await?);
    stored.delete().await?;
    let state = record.database_state();
    match record.ending {
        Some(Ending::Restored) => {
            ctx.out.info(&format!(
                "restored backup {} into {}: row counts match its manifest; everything set aside is back",
                record.backup, ctx.env_name
            ));
            Ok(())
        }
        _ => Err(BerthError::DeployFailed(format!(
            "the restore of backup {} failed; the database: {state}; everything set aside is back",
            record.backup
        ))
        .into()),
    }
}

/// `--abort`: stop restore Jobs still running, put back what the record
/// says, record the abort in the bucket, delete the ConfigMap. The database
/// is not touched; the report says which state it may be in.
pub async fn abort(
    ctx: &Context<'_>,
    interrupts: &mut Interrupts,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ns = &ctx.env.namespace;
    let Some((stored, mut record)) = Stored::load(&ctx.client, ns).await? else {
        return Err(input_error(format!(
            "the interrupted restore of {} finished or was aborted meanwhile; nothing to abort",
            ctx.env_name
        )));
    };
    ctx.out.info(&format!(
        "aborting the restore of backup {} interrupted at step `{}` (started {} by {})",
        record.backup,
        record.step.as_str(),
        record.started_at,
        record.who
    ));
    let mut recorded = Recorded {
        ctx,
        stored,
        record: record.clone(),
    };
    recorded.begin(Step::PutBack).await?;
    unless_interrupted(interrupts, stop_restore_jobs(ctx)).await?;
    unless_interrupted(interrupts, put_back(ctx, &recorded.record)).await?;
    recorded.end().await?;
    record = recorded.record;
    report.absorb(&record);
    report.restore_record = Some(write_log(ctx, &record, "aborted").await?);
    recorded.stored.delete().await?;
    ctx.out.info(&format!(
        "aborted: everything the restore set aside is back. The database: {}",
        record.database_state()
    ));
    Ok(())
}

/// Delete the restore Jobs in the namespace: a restore killed with its
/// berth leaves its Job running.
async fn stop_restore_jobs(ctx: &Context<'_>) -> anyhow::Result<()> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.env.namespace);
    let selector = format!("{}={}", pods::TASK_LABEL, AgentTask::Restore.as_str());
    let listed = api
        .list(&ListParams::default().labels(&selector))
        .await
        .context("listing the restore Jobs")?;
    for job in listed.items {
        let active = job.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0;
        let name = job.metadata.name.unwrap_or_default();
        if active {
            crate::cluster::delete_if_present(&api, &name, &DeleteParams::background())
                .await
                .with_context(|| format!("deleting Job {name}"))?;
            ctx.out
                .warn(&format!("stopped the restore Job {name} still running"));
        }
    }
    Ok(())
}
