//! The backup before a deploy's migration (`backups.before_migrate`):
//! whether the plan takes one, and why, in words the plan prints.

use serde::Serialize;

use crate::config::{BeforeMigrate, Environment};

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
}

impl BeforeMigration {
    /// The decision for a deploy to `env` with a migration (or not), the
    /// migration's `pending_check` (if any), and `--no-backup`.
    pub fn decide(
        env: &Environment,
        migration: bool,
        pending_check: Option<Vec<String>>,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    /// The example's staging with `backups:` under `policy` (or none).
    fn env(policy: Option<&str>) -> Environment {
        let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.yaml"))
            .expect("the example berth.yaml loads");
        let mut env = config.environment("staging").unwrap().clone();
        if let Some(policy) = policy {
            let text = format!(
                "app: a\nimages: []\nenvironments:\n  production:\n    context: c\n    \
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
            let decided = B::decide(&env, migration, pending_check, no_backup);
            assert_eq!(decided, expected);
            assert_eq!(
                decided.describe().starts_with("no") || decided.describe().starts_with("NO"),
                !decided.may_back_up(),
                "{}",
                decided.describe()
            );
        }
        assert!(
            B::PendingUnchecked
                .describe()
                .contains("every migration counts as pending")
        );
    }
}
