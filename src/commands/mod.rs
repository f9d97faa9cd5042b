//! One module per command; `run` dispatches the parsed command line.

mod completions;

use crate::cli::{Cli, Command};
use crate::error::BerthError;

/// Run the command the user asked for.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        Command::Completions(args) => return completions::run(&args),
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
        Command::Backup(_) => "backup",
        Command::Backups(_) => "backups",
        Command::Restore(_) => "restore",
        Command::Preview(_) => "preview",
        Command::Assets(_) => "assets",
        Command::Config(_) => "config",
    };
    Err(BerthError::NotBuilt { command }.into())
}
