//! `berth completions SHELL`: print a completion script for the shell.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

/// Write the completion script for `args.shell` to standard output.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "berth", &mut std::io::stdout());
    Ok(())
}
