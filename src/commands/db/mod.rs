//! `berth db ...`: database backups, restore and restore drills, and their
//! top-level aliases (`backup`, `backups`, `restore`, `backup verify`).

mod agent;
mod backup;
mod backups;
mod drill;
mod prune;
pub(crate) mod restore;
pub(crate) mod restore_sequence;
pub(crate) mod setup;

use std::sync::Arc;

use crate::cli::{BackupArgs, BackupCommand, DbCommand, GlobalArgs};
use crate::error::input_error;
use crate::output::Output;

/// Run a `db` sub-command.
pub async fn run(global: &GlobalArgs, command: &DbCommand, out: Arc<Output>) -> anyhow::Result<()> {
    match command {
        DbCommand::Backup(args) => backup::run(global, &args.env, args.label.as_deref(), out).await,
        DbCommand::Backups(args) => backups::run(global, args, out).await,
        DbCommand::Restore(args) => restore::run(global, args, out).await,
        DbCommand::Drill(args) => drill::run(global, args, out).await,
        DbCommand::Prune(args) => prune::run(global, args, out).await,
        DbCommand::Agent(args) => agent::run(global, args, out).await,
    }
}

/// Run `backup ENV` or `backup verify ENV BACKUP`.
pub async fn run_backup_alias(
    global: &GlobalArgs,
    args: &BackupArgs,
    out: Arc<Output>,
) -> anyhow::Result<()> {
    match (&args.command, &args.env) {
        (Some(BackupCommand::Verify(drill)), _) => drill::run(global, drill, out).await,
        (None, Some(env)) => backup::run(global, env, args.label.as_deref(), out).await,
        (None, None) => Err(input_error(
            "name the environment to back up, e.g. `berth backup staging`",
        )),
    }
}
