//! `berth completions SHELL`: print a completion script for the shell.

use crate::cli::{self, CompletionsArgs};
use crate::stdout;

/// Write the completion script for `args.shell` to standard output.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut command = cli::command();
    // Into memory first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "berth", &mut script);
    stdout::write(&script)
}
