//! The `berth` binary: parse, run, map the error to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = berth::cli::Cli::parse();
    if let Err(error) = berth::logging::init(&cli.global) {
        eprintln!("error: {error:#}");
        return berth::error::exit_code_of(&error);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(berth::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A command berth ran already said why it exited non-zero, and
            // a closed stdout is a quiet success.
            if !matches!(
                berth::error::kind_of(&error),
                Some(berth::error::BerthError::Exited(_) | berth::error::BerthError::OutputClosed)
            ) {
                eprintln!("error: {error:#}");
            }
            berth::error::exit_code_of(&error)
        }
    }
}
