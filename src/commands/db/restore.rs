//! `berth db restore ENV BACKUP`: the guarded, recorded, resumable restore.
//!
//! Preflight changes nothing: the backup exists in this environment and
//! succeeded, the operator confirmed, and a verify Job read the dump back
//! (checksum and table of contents). Then, under the deploy lock, the
//! sequence in [`super::restore_sequence`] runs, recorded step by step in
//! the ConfigMap `berth-restore`: run again, it resumes; with `--abort`, it
//! puts back what the record says was set aside.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::restore_sequence::{self as sequence, Context};
use super::setup;
use crate::backup::job::AgentOutcome;
use crate::backup::layout::{self, Layout};
use crate::backup::manifest::{BackupStatus, Manifest};
use crate::backup::pods::AgentTask;
use crate::backup::restore_record::{RestoreRecord, StepTiming, Stored};
use crate::backup::store::BackupStore;
use crate::cli::{GlobalArgs, RestoreArgs};
use crate::cluster::access::{self, Need};
use crate::cluster::client;
use crate::cluster::lock::DeployLock;
use crate::config::Config;
use crate::error::{BerthError, input_error};
use crate::identity::Deployer;
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::maintenance::Scope;
use crate::output::Output;
use crate::terminal;

/// The report of `db restore` (`--output json`).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The environment.
    pub environment: String,
    /// `restore`, `resume` or `abort`.
    pub action: &'static str,
    /// The backup restored.
    pub backup: Option<String>,
    /// The safety backup taken before, if any.
    pub safety_backup: Option<String>,
    /// Which state the database is in, as far as berth knows.
    pub database: Option<String>,
    /// Each step with its timing (a resumed restore lists those before the
    /// interruption too).
    pub steps: Vec<StepTiming>,
    /// Replicas recorded and put back, by `Kind/name`.
    pub replicas: std::collections::BTreeMap<String, i32>,
    /// The CronJobs berth suspended (and resumes).
    pub suspended_cron_jobs: Vec<String>,
    /// Whether berth turned maintenance on (and so turns it off).
    pub maintenance_turned_on: Option<bool>,
    /// The restore's record in the bucket, once written.
    pub restore_record: Option<String>,
}

impl Report {
    /// Take what the restore record says.
    pub fn absorb(&mut self, record: &RestoreRecord) {
        self.backup = Some(record.backup.clone());
        self.safety_backup = record.safety_backup.clone();
        self.database = Some(record.database_state());
        self.steps = record.steps.clone();
        self.replicas = record.replicas.clone();
        self.suspended_cron_jobs = record.suspended_cron_jobs.clone();
        self.maintenance_turned_on = record.maintenance_turned_on;
    }
}

/// Run `db restore`; always ends with the report.
pub async fn run(global: &GlobalArgs, args: &RestoreArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let mut report = Report {
        environment: args.env.clone(),
        action: if args.abort { "abort" } else { "restore" },
        backup: args.backup.clone(),
        ..Report::default()
    };
    let result = execute(global, args, &out, &mut report).await;
    out.json_report(&report);
    result
}

async fn execute(
    global: &GlobalArgs,
    args: &RestoreArgs,
    out: &Arc<Output>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let env_name = args.env.as_str();
    let mut interrupts = Interrupts::listen()?;
    let config = crate::commands::load_config(global, &[env_name], out)?;
    let configured = unless_interrupted(&mut interrupts, setup::connect(&config, env_name)).await?;
    let secret = configured
        .env
        .database
        .as_ref()
        .and_then(|d| d.secret.as_deref())
        .ok_or_else(|| {
            input_error(format!(
                "environment {env_name} has no `database.secret`; backups and restores need it: \
                 name the Secret holding PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE"
            ))
        })?;
    let ctx = Context {
        env_name,
        env: configured.env,
        backups: configured.backups,
        scope: Scope::new(
            configured.client.clone(),
            &config.app,
            env_name,
            configured.env,
        ),
        client: configured.client,
        store: configured.store,
        secret,
        who: Deployer::current().describe(),
        out: out.clone(),
    };
    let ns = &ctx.env.namespace;
    let existing = Stored::load(&ctx.client, ns).await?;
    if args.abort {
        if existing.is_none() {
            return Err(input_error(format!(
                "there is no interrupted restore in {env_name} to abort (no ConfigMap {} in \
                 namespace {ns}); nothing was changed",
                crate::backup::restore_record::CONFIG_MAP
            )));
        }
        let lock = take_lock(&ctx, args, "db restore --abort", &mut interrupts).await?;
        return lock
            .hold(out, |lost| {
                lost.unless_lost(sequence::abort(&ctx, &mut interrupts, report))
            })
            .await;
    }
    let backup = match &existing {
        Some((_, record)) => {
            record.check_resume(args.backup.as_deref(), env_name)?;
            report.action = "resume";
            confirm(args, &record.backup).await?;
            out.info(&format!(
                "resuming the restore of backup {} into {env_name}, interrupted at step `{}` \
                 (started {} by {})",
                record.backup,
                record.step.as_str(),
                record.started_at,
                record.who
            ));
            record.backup.clone()
        }
        None => {
            let backup = preflight(&ctx, &config, args, &mut interrupts).await?;
            confirm(args, &backup.id).await?;
            verify(&ctx, &backup).await?;
            backup.id
        }
    };
    report.backup = Some(backup.clone());
    let purpose = format!("db restore {backup}");
    let lock = take_lock(&ctx, args, &purpose, &mut interrupts).await?;
    lock.hold(out, |lost| {
        lost.unless_lost(sequence::restore(
            &ctx,
            &backup,
            args.no_safety_backup,
            &mut interrupts,
            report,
        ))
    })
    .await
}

/// The deploy lock, as deploys take it: waiting up to `--lock-wait`, exit 3
/// when it stays held.
async fn take_lock(
    ctx: &Context<'_>,
    args: &RestoreArgs,
    purpose: &str,
    interrupts: &mut Interrupts,
) -> anyhow::Result<DeployLock> {
    DeployLock::take_unless_interrupted(
        &ctx.client,
        &ctx.env.namespace,
        purpose,
        args.lock_wait,
        interrupts,
        &ctx.out,
    )
    .await
}

/// The manifest of the backup to restore, checked: a valid id, in this
/// environment's prefix, succeeded. Changes nothing; every refusal exits 2.
async fn preflight(
    ctx: &Context<'_>,
    config: &Config,
    args: &RestoreArgs,
    interrupts: &mut Interrupts,
) -> anyhow::Result<Manifest> {
    let env_name = ctx.env_name;
    ctx.out.step("preflight");
    let id = args.backup.as_deref().ok_or_else(|| {
        input_error(format!(
            "name the backup to restore: `{berth} db restore {env_name} BACKUP`; \
             `{berth} db backups {env_name}` lists them",
            berth = crate::program::name()
        ))
    })?;
    layout::check_id(id).map_err(|problem| {
        input_error(format!(
            "{problem}; `{} db backups {env_name}` lists the backups",
            crate::program::name()
        ))
    })?;
    let found = unless_interrupted(interrupts, ctx.store.manifest(id)).await?;
    let Some(manifest) = found else {
        let owner = unless_interrupted(interrupts, async {
            Ok(owner_elsewhere(ctx, config, id).await)
        })
        .await?;
        return Err(input_error(match owner {
            Some(other) => format!(
                "backup {id} belongs to environment {other}, not {env_name}; restore one of \
                 {env_name}'s backups (`{} db backups {env_name}` lists them)",
                crate::program::name()
            ),
            None => format!(
                "there is no backup {id} in bucket {} under {:?}; `{} db backups {env_name}` \
                 lists them",
                ctx.store.store.bucket,
                ctx.store.layout.prefix,
                crate::program::name()
            ),
        }));
    };
    if manifest.environment != env_name {
        return Err(input_error(format!(
            "backup {id} belongs to environment {}, not {env_name} (both keep backups under \
             {:?}); restore one of {env_name}'s backups",
            manifest.environment, ctx.store.layout.prefix
        )));
    }
    if manifest.status != BackupStatus::Succeeded {
        return Err(input_error(format!(
            "backup {id} failed ({}), so it has no dump to restore; choose one that succeeded \
             (`{} db backups {env_name}`)",
            manifest.error.as_deref().unwrap_or("no reason recorded"),
            crate::program::name()
        )));
    }
    // Everything the restore does must be allowed, and maintenance
    // possible, before anything is set aside.
    unless_interrupted(interrupts, async {
        access::check(&ctx.client, &needs(&ctx.env.namespace)).await?;
        ctx.scope.targets(&[], &ctx.out).await.map(drop)
    })
    .await?;
    ctx.out.info(&format!(
        "backup {id}: taken {} ({}), {} tables, {}",
        manifest.started_at,
        manifest.trigger.as_str(),
        manifest.tables.len(),
        indicatif::BinaryBytes(manifest.size)
    ));
    Ok(manifest)
}

/// What a restore does in `namespace`, besides maintenance (whose needs
/// include the lock's): as [`access::check`] asks the API server.
fn needs(namespace: &str) -> Vec<Need> {
    let mut needs = access::maintenance_needs(namespace);
    let ours = [
        ("get", "", "configmaps"),
        ("list", "apps", "statefulsets"),
        ("patch", "apps", "statefulsets"),
        ("list", "apps", "deployments"),
        ("watch", "apps", "deployments"),
        ("list", "batch", "cronjobs"),
        ("patch", "batch", "cronjobs"),
        ("create", "batch", "jobs"),
        ("list", "batch", "jobs"),
        ("watch", "batch", "jobs"),
        ("delete", "batch", "jobs"),
        ("list", "", "pods"),
        ("watch", "", "pods"),
        ("get", "", "pods/log"),
        ("create", "", "serviceaccounts"),
    ];
    needs.extend(ours.map(|(verb, group, resource)| Need {
        verb,
        group: group.to_owned(),
        resource: resource.to_owned(),
        namespace: Some(namespace.to_owned()),
        name: None,
    }));
    needs.sort();
    needs.dedup();
    needs
}

/// The other environment of berth.yaml whose backup location holds a
/// backup `id`, if one does. Locations berth cannot read are skipped.
async fn owner_elsewhere(ctx: &Context<'_>, config: &Config, id: &str) -> Option<String> {
    for (name, env) in &config.environments {
        let Some(backups) = env.backups.as_ref().filter(|_| name != ctx.env_name) else {
            continue;
        };
        let layout = Layout {
            prefix: backups.prefix.clone(),
        };
        let same_bucket =
            backups.bucket == ctx.backups.bucket && backups.endpoint == ctx.backups.endpoint;
        let store = if same_bucket {
            BackupStore {
                store: ctx.store.store.clone(),
                layout,
            }
        } else {
            let Ok(client) = client::connect(env.context.as_deref()).await else {
                continue;
            };
            match BackupStore::connect(&client, env, backups).await {
                Ok(store) => store,
                Err(_) => continue,
            }
        };
        if let Ok(Some(_)) = store.manifest(id).await {
            return Some(name.clone());
        }
    }
    None
}

/// `--confirm ENV`, else the environment's name typed at a prompt on a
/// terminal, else an input error.
async fn confirm(args: &RestoreArgs, backup: &str) -> anyhow::Result<()> {
    let env = &args.env;
    match &args.confirm {
        Some(given) if given == env => Ok(()),
        Some(given) => Err(input_error(format!(
            "--confirm {given} does not name the environment being restored; pass \
             --confirm {env} to replace {env}'s database with backup {backup}"
        ))),
        None if terminal::is_interactive() => {
            crate::output::stderr_line(&format!(
                "This replaces the data of {env}'s database with backup {backup}: the app is \
                 scaled down meanwhile. Type the environment's name ({env}) to go on:"
            ));
            let typed = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await??;
            if typed.trim() == env {
                Ok(())
            } else {
                Err(input_error(format!(
                    "the name typed was not {env}; nothing was changed"
                )))
            }
        }
        None => Err(input_error(format!(
            "restoring replaces {env}'s database; pass --confirm {env} to go on (berth asks \
             for it on a terminal)"
        ))),
    }
}

/// Check the dump in a verify Job (checksum, table of contents) before
/// anything changes; a bad dump exits 1 with nothing changed.
async fn verify(ctx: &Context<'_>, backup: &Manifest) -> anyhow::Result<()> {
    ctx.out.step("verify");
    let started = Timestamp::now();
    // The Job runner stops its Job on Ctrl-C itself (exit 130).
    let outcome: AgentOutcome =
        sequence::agent(ctx, AgentTask::Verify, &backup.id, Vec::new()).await?;
    let verified = &outcome.result["verify"];
    if !(outcome.succeeded && verified["ok"] == true) {
        let why = verified["error"]
            .as_str()
            .unwrap_or("the verify Job failed")
            .to_owned();
        return Err(BerthError::DeployFailed(format!(
            "backup {} failed its check: {why}; nothing was changed (no workload was scaled \
             down); restore another backup",
            backup.id
        ))
        .into());
    }
    ctx.out.info(&format!(
        "verify: the dump reads back ({} entries, checksum matches) in {}",
        verified["entries"],
        sequence::took(started)
    ));
    Ok(())
}
