//! One module per command; `run` dispatches the parsed command line.

mod assets;
mod clear_render_cache;
mod completions;
mod config;
pub(crate) mod db;
mod deploy;
mod diff;
mod history;
mod lock;
mod maintenance;
mod man_pages;
mod promote;
mod psql;
mod rollback;
mod run;
mod staging;
mod status;
mod task;
mod version;

use std::sync::Arc;

use crate::cli::{
    AssetsCommand, BackupCommand, Cli, Command, ConfigCommand, DbCommand, GlobalArgs,
};
use crate::config::Config;
use crate::error::BerthError;
use crate::output::{Closing, Mode, Output};

/// How a command that succeeded ends: exit 0, or exit 1 for `diff` when
/// something would change (as `kubectl diff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Exit 0.
    Done,
    /// `diff` found differences: exit 1.
    Differences,
}

impl Ended {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Ended::Done => 0,
            Ended::Differences => 1,
        }
    }
}

/// Run the command the user asked for. Every command but `completions`
/// (whose output is a shell script), `man-pages` and `version` (unless
/// `--output json`) ends with its one report; an error the report said
/// comes back marked [`crate::output::Reported`].
pub async fn run(cli: Cli) -> anyhow::Result<Ended> {
    let out = Arc::new(Output::new(cli.global.output, name(&cli.command)));
    let mut ended = Ended::Done;
    let result = dispatch(&cli, out.clone(), &mut ended).await;
    let closing = match cli.command {
        Command::Version if out.mode() != Mode::Json => None,
        ref command => closing(command),
    };
    let result = match closing {
        Some(closing) => out.finish(result, closing),
        None => result,
    };
    result.map(|()| ended)
}

/// Run the command, which stages its report on `out`; `ended` says how a
/// success exits.
async fn dispatch(cli: &Cli, out: Arc<Output>, ended: &mut Ended) -> anyhow::Result<()> {
    let global = &cli.global;
    let command = match &cli.command {
        Command::Completions(args) => return completions::run(args),
        Command::ManPages(args) => return man_pages::run(args),
        Command::Config(args) => return config::run(global, args, &out).await,
        Command::AdvancedDeploy(args) => return deploy::run(global, args, out).await,
        Command::Status(args) => return status::run(global, args, &out).await,
        Command::History(args) => return history::run(global, args, &out).await,
        Command::Lock(args) => return lock::run(global, args, &out).await,
        Command::Diff(args) => {
            let differs = diff::run(global, args, out).await.map_err(diff::failure)?;
            if differs {
                *ended = Ended::Differences;
            }
            return Ok(());
        }
        Command::Version => return version::run(&out).await,
        Command::Assets(args) => return assets::run(global, args, out).await,
        Command::UpdateStagingToLatestPassingMaster(args) => {
            return staging::run(global, args, out).await;
        }
        Command::UpdateProductionToStaging(options) => {
            return promote::run(global, "staging", "production", options, out).await;
        }
        Command::Promote(args) => {
            return promote::run(global, &args.from, &args.to, &args.options, out).await;
        }
        Command::Rollback(args) => return rollback::run(global, args, out).await,
        Command::Maintenance(args) => return maintenance::run(global, args, out).await,
        Command::Psql(args) => return psql::run(global, args, &out).await,
        Command::Run(args) => return run::run(global, args, &out).await,
        Command::Task(args) => match &args.name {
            Some(name) => return task::run(global, &args.env, name, &out).await,
            None => return task::list(global, &args.env, &out),
        },
        Command::RefreshSuggestedModules(args) => {
            return task::run(global, &args.env, "refresh-suggested-modules", &out).await;
        }
        Command::ClearRenderCache(args) => return clear_render_cache::run(global, args, out).await,
        Command::Db(args) => return db::run(global, &args.command, out).await,
        Command::Backup(args) => return db::run_backup_alias(global, args, out).await,
        Command::Backups(args) => {
            return db::run(global, &DbCommand::Backups(args.clone()), out).await;
        }
        Command::Restore(args) => {
            return db::run(global, &DbCommand::Restore(args.clone()), out).await;
        }
        Command::Preview(_) => "preview",
    };
    Err(BerthError::NotBuilt { command }.into())
}

/// berth.yaml ([`crate::config::locate`]: `--config`, else found from the
/// current directory up), checked for a command touching the environments
/// `envs`: another environment's problems are one warning on `out`.
pub(crate) fn load_config(
    global: &GlobalArgs,
    envs: &[&str],
    out: &Output,
) -> anyhow::Result<Config> {
    let path = crate::config::locate(global.config.as_deref())?;
    Config::load_for(&path, envs, out)
}

/// The command as its report's `command` names it: the name typed, aliases
/// resolved, with the subcommand where it has one (`assets push`).
fn name(command: &Command) -> &'static str {
    match command {
        Command::AdvancedDeploy(_) => "advanced-deploy",
        Command::UpdateStagingToLatestPassingMaster(_) => "update-staging-to-latest-passing-master",
        Command::UpdateProductionToStaging(_) => "update-production-to-staging",
        Command::Promote(_) => "promote",
        Command::Rollback(_) => "rollback",
        Command::Status(_) => "status",
        Command::History(_) => "history",
        Command::Diff(_) => "diff",
        Command::Lock(_) => "lock",
        Command::Psql(_) => "psql",
        Command::Run(_) => "run",
        Command::Task(_) => "task",
        Command::ClearRenderCache(_) => "clear-render-cache",
        Command::RefreshSuggestedModules(_) => "refresh-suggested-modules",
        Command::Maintenance(_) => "maintenance",
        Command::Db(args) => match args.command {
            DbCommand::Backup(_) => "db backup",
            DbCommand::Backups(_) => "db backups",
            DbCommand::Restore(_) => "db restore",
            DbCommand::Drill(_) => "db drill",
            DbCommand::Prune(_) => "db prune",
            DbCommand::Agent(_) => "db agent",
        },
        Command::Backup(args) => match args.command {
            Some(BackupCommand::Verify(_)) => "db drill",
            None => "db backup",
        },
        Command::Backups(_) => "db backups",
        Command::Restore(_) => "db restore",
        Command::Preview(_) => "preview",
        Command::Assets(args) => match args.command {
            AssetsCommand::Push(_) => "assets push",
            AssetsCommand::Prune(_) => "assets prune",
        },
        Command::Config(args) => match args.command {
            ConfigCommand::Validate => "config validate",
            ConfigCommand::Schema => "config schema",
        },
        Command::Version => "version",
        Command::Completions(_) => "completions",
        Command::ManPages(_) => "man-pages",
    }
}

/// How the command's report is printed: after a child process that owned
/// the terminal, only what berth itself has to say; none after a shell
/// completion script or the man pages.
fn closing(command: &Command) -> Option<Closing> {
    match command {
        Command::Completions(_) | Command::ManPages(_) => None,
        Command::Psql(_)
        | Command::Run(_)
        | Command::Task(_)
        | Command::RefreshSuggestedModules(_) => Some(Closing::AfterChild),
        _ => Some(Closing::Always),
    }
}
