//! One module per command; `run` dispatches the parsed command line.

mod assets;
mod clear_render_cache;
mod completions;
mod config;
mod deploy;
mod diff;
mod history;
mod lock;
mod maintenance;
mod promote;
mod psql;
mod rollback;
mod run;
mod staging;
mod status;
mod task;

use std::sync::Arc;

use crate::cli::{Cli, Command};
use crate::error::BerthError;
use crate::output::Output;

/// Run the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Arc::new(Output::new(cli.global.output));
    let global = &cli.global;
    let command = match &cli.command {
        Command::Completions(args) => return completions::run(args),
        Command::Config(args) => return config::run(global, args).await,
        Command::AdvancedDeploy(args) => return deploy::run(global, args, out).await,
        Command::Status(args) => return status::run(global, args).await,
        Command::History(args) => return history::run(global, args, &out).await,
        Command::Lock(args) => return lock::run(global, args).await,
        Command::Diff(args) => return diff::run(global, args, out).await,
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
        Command::Psql(args) => return psql::run(global, args).await,
        Command::Run(args) => return run::run(global, args).await,
        Command::Task(args) => return task::run(global, &args.env, &args.name).await,
        Command::RefreshSuggestedModules(args) => {
            return task::run(global, &args.env, "refresh-suggested-modules").await;
        }
        Command::ClearRenderCache(args) => return clear_render_cache::run(global, args, out).await,
        Command::Backup(_) => "backup",
        Command::Backups(_) => "backups",
        Command::Restore(_) => "restore",
        Command::Preview(_) => "preview",
    };
    Err(BerthError::NotBuilt { command }.into())
}
