//! The backup before a deploy's migration (`backups.before_migrate`):
//! whether the plan takes one and why, in words the plan prints; the
//! pending check; and the Backup Job itself.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::plan::Plan;
use crate::backup::job;
use crate::backup::manifest::{BackupStatus, Manifest, Trigger};
use crate::backup::pods::{AgentRun, AgentTask, Placement};
use crate::config::{BeforeMigrate, Environment};
use crate::error::BerthError;
use crate::identity::Deployer;
use crate::migrate::{self, JobTask};
use crate::output::Output;
use crate::schema::adapter::Step;

/// Whether a deploy backs the database up before its migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "when", content = "pending_check")]
pub enum BeforeMigration {
    /// The deploy runs no migration.
    NoMigration,
    /// The environment has no `backups:`.
    NotConfigured,
    /// `before_migrate: never`.
    Never,
    /// `--no-backup`: the deployer skipped it (recorded in the release).
    Skipped,
    /// `before_migrate: always`.
    Always,
    /// `before_migrate: pending` with no pending check: every migration
    /// counts as pending.
    PendingUnchecked,
    /// `before_migrate: pending`: only when this command, run in a copy of
    /// the migration Job, exits non-zero.
    IfPending(Vec<String>),
    /// `before_migrate: pending` with `migrate.framework`: only when the
    /// framework, read in a copy of the migration Job, has migrations
    /// pending (the same read tells what the release migrates).
    IfFrameworkPending,
}

impl BeforeMigration {
    /// The decision for a deploy to `env` with a migration (or not), the
    /// migration's `pending_check` (if any), whether the framework reads
    /// what is pending (`inspected`: it replaces the pending check), and
    /// `--no-backup`.
    pub fn decide(
        env: &Environment,
        migration: bool,
        pending_check: Option<Vec<String>>,
        inspected: bool,
        no_backup: bool,
    ) -> BeforeMigration {
        let Some(backups) = &env.backups else {
            return BeforeMigration::NotConfigured;
        };
        match (migration, backups.before_migrate, no_backup, pending_check) {
            (false, _, _, _) => BeforeMigration::NoMigration,
            (true, BeforeMigrate::Never, _, _) => BeforeMigration::Never,
            (true, _, true, _) => BeforeMigration::Skipped,
            (true, BeforeMigrate::Always, false, _) => BeforeMigration::Always,
            (true, BeforeMigrate::Pending, false, _) if inspected => {
                BeforeMigration::IfFrameworkPending
            }
            (true, BeforeMigrate::Pending, false, None) => BeforeMigration::PendingUnchecked,
            (true, BeforeMigrate::Pending, false, Some(command)) => {
                BeforeMigration::IfPending(command)
            }
        }
    }

    /// Whether a backup may be taken (before any pending check).
    pub fn may_back_up(&self) -> bool {
        matches!(
            self,
            BeforeMigration::Always
                | BeforeMigration::PendingUnchecked
                | BeforeMigration::IfPending(_)
                | BeforeMigration::IfFrameworkPending
        )
    }

    /// The plan's line: whether a backup will be taken, and why.
    pub fn describe(&self) -> String {
        match self {
            BeforeMigration::NoMigration => "no (the deploy runs no migration)".into(),
            BeforeMigration::NotConfigured => "no (the environment has no `backups:`)".into(),
            BeforeMigration::Never => "no (backups.before_migrate: never)".into(),
            BeforeMigration::Skipped => {
                "NO: --no-backup skips it (recorded in the release)".into()
            }
            BeforeMigration::Always => {
                "yes, before the migration, beside the asset upload (backups.before_migrate: always)"
                    .into()
            }
            BeforeMigration::PendingUnchecked => {
                "yes, before the migration, beside the asset upload (backups.before_migrate: \
                 pending, and no pending check is configured, so every migration counts as \
                 pending; set migrate.pending_check or the template's berth.dev/pending-check)"
                    .into()
            }
            BeforeMigration::IfPending(command) => format!(
                "if migrations are pending: `{}` runs first in a copy of the migration Job \
                 (exit 0: nothing pending, no backup; otherwise a backup before the migration)",
                command.join(" ")
            ),
            BeforeMigration::IfFrameworkPending => "if migrations are pending: migrate.framework \
                 reads them first in a copy of the migration Job (none pending: no backup; \
                 otherwise a backup before the migration)"
                .into(),
        }
    }
}

/// Back the database up before release `number`'s migration, if the plan
/// says so: the pending check first when there is one, or what the
/// framework found `pending` (read before, when it reads it). The backup's id,
/// or `None` when none was due. A backup that failed is an error saying
/// so; the caller does not migrate. `cancel` stops the pending check (a
/// backup that started runs to its end: it is a good backup either way).
pub async fn back_up(
    client: &Client,
    plan: &Plan,
    number: u64,
    pending: Option<&[Step]>,
    timeout: Duration,
    cancel: &CancellationToken,
    out: &Arc<Output>,
) -> anyhow::Result<Option<String>> {
    if plan.backup == BeforeMigration::Skipped {
        out.warn("--no-backup: no backup is taken before this migration");
    }
    if !plan.backup.may_back_up() {
        return Ok(None);
    }
    let (Some(template), Some(backups)) = (&plan.migration, &plan.env.backups) else {
        return Ok(None);
    };
    if plan.backup == BeforeMigration::IfFrameworkPending {
        match pending {
            Some([]) => {
                out.info("nothing is pending: no backup before the migration");
                return Ok(None);
            }
            Some(steps) => out.info(&format!(
                "{} migrations are pending, so the database is backed up before they run",
                steps.len()
            )),
            None => {}
        }
    }
    if let BeforeMigration::IfPending(command) = &plan.backup {
        let job = migrate::pending_check(
            template.clone(),
            &plan.instance(),
            number,
            &plan.sha,
            command,
        );
        let ns = &plan.env.namespace;
        let checked = migrate::run(
            client,
            ns,
            JobTask::PendingCheck,
            job,
            plan.thresholds(),
            timeout,
            cancel,
            out,
        )
        .await?;
        match checked {
            Ok(_) => {
                out.info(
                    "the pending check says nothing is pending: no backup before the migration",
                );
                return Ok(None);
            }
            Err(pending) => out.info(&format!(
                "the pending check exited non-zero ({}): migrations are pending, so the \
                 database is backed up before they run",
                pending.failure.message
            )),
        }
    }
    let run = AgentRun {
        env_name: &plan.env_name,
        env: &plan.env,
        backups,
        task: AgentTask::Backup,
        vars: vec![
            (
                "BERTH_BACKUP_TRIGGER".into(),
                Trigger::PreMigrate.as_str().into(),
            ),
            (
                "BERTH_BACKUP_LABEL".into(),
                format!(
                    "before release {number} ({}) of {}",
                    plan.sha, plan.env_name
                ),
            ),
            ("BERTH_RELEASE".into(), number.to_string()),
            ("BERTH_SHA".into(), plan.sha.clone()),
            ("BERTH_WHO".into(), Deployer::current().describe()),
        ],
    };
    // Placed like the database's workload, else (a first deploy, before it
    // exists) like the migration, which reaches the database too.
    let mut placement = Placement::read(client, &plan.env).await?;
    if placement == Placement::default()
        && let Some(pod) = template
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
    {
        placement = Placement::of(pod);
    }
    let outcome = job::run_placed(client, &run, &placement, out, "backup").await?;
    let manifest: Option<Manifest> = outcome
        .result
        .get("backup")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .context("reading the backup agent's result")?;
    match manifest {
        Some(m) if outcome.succeeded && m.status == BackupStatus::Succeeded => {
            out.info(&format!("backup {} taken before the migration", m.id));
            Ok(Some(m.id))
        }
        Some(m) => Err(BerthError::DeployFailed(format!(
            "backup {} failed: {}",
            m.id,
            m.error.as_deref().unwrap_or("no reason recorded")
        ))
        .into()),
        None => Err(BerthError::DeployFailed(format!(
            "the backup agent gave no manifest (its result: {})",
            outcome.result
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    /// The example's staging with `backups:` under `policy`, or without `backups:`.
    fn env(policy: Option<&str>) -> Environment {
        let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.yaml"))
            .expect("the example berth.yaml loads");
        let mut env = config.environment("staging").unwrap().clone();
        env.backups = None;
        if let Some(policy) = policy {
            let text = format!(
                "app: a\nimages: [r.example.com/a/web]\nenvironments:\n  production:\n    context: c\n    \
                 namespace: n\n    overlay: {overlay}\n    database: {{ workload: w, secret: s }}\n    \
                 backups: {{ bucket: bkt, credentials_secret: s3, before_migrate: {policy} }}\n",
                overlay = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("overlays/staging")
                    .display()
            );
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("berth.yaml");
            std::fs::write(&path, text).unwrap();
            let loaded = Config::load(&path).unwrap();
            env.backups = loaded.environment("production").unwrap().backups.clone();
        }
        env
    }

    #[test]
    fn the_policy_decides_and_every_refusal_says_why() {
        let check = || {
            Some(vec![
                "manage.py".to_owned(),
                "migrate".into(),
                "--check".into(),
            ])
        };
        use BeforeMigration as B;
        let cases = [
            (env(None), true, check(), false, B::NotConfigured),
            (env(Some("always")), false, check(), false, B::NoMigration),
            (env(Some("never")), true, check(), false, B::Never),
            (env(Some("always")), true, check(), true, B::Skipped),
            (env(Some("always")), true, check(), false, B::Always),
            (env(Some("pending")), true, None, false, B::PendingUnchecked),
            (
                env(Some("pending")),
                true,
                check(),
                false,
                B::IfPending(check().unwrap()),
            ),
        ];
        for (env, migration, pending_check, no_backup, expected) in cases {
            let decided = B::decide(&env, migration, pending_check, false, no_backup);
            assert_eq!(decided, expected);
            assert_eq!(
                decided.describe().starts_with("no") || decided.describe().starts_with("NO"),
                !decided.may_back_up(),
                "{}",
                decided.describe()
            );
        }
        assert_eq!(
            B::decide(&env(Some("pending")), true, check(), true, false),
            B::IfFrameworkPending,
            "the framework's read replaces the pending check"
        );
        assert_eq!(
            B::decide(&env(Some("always")), true, None, true, false),
            B::Always
        );
        assert!(B::IfFrameworkPending.may_back_up());
        assert!(
            B::PendingUnchecked
                .describe()
                .contains("every migration counts as pending")
        );
    }
}
