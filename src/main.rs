//! The `berth` binary: parse, run, map the error to an exit code.

use std::process::ExitCode;

use berth::error::{BerthError, kind_of};
use berth::output::{stderr_line, was_reported};

fn main() -> ExitCode {
    let cli = berth::program::parse();
    if let Err(error) = berth::logging::init(&cli.global) {
        stderr_line(&format!("error: {error:#}"));
        return berth::error::exit_code_of(&error);
    }
    let _roots = berth::net::tls::provide_system_roots();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            stderr_line(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(berth::run(cli)) {
        Ok(ended) => ExitCode::from(ended.exit_code()),
        Err(error) => {
            // The command's report already said it; a command berth ran
            // already said why it exited non-zero; a closed stdout is a
            // quiet success. Anything else is said here, once.
            let said = was_reported(&error)
                || matches!(
                    kind_of(&error),
                    Some(BerthError::Exited(_) | BerthError::OutputClosed)
                );
            if !said {
                stderr_line(&format!("error: {}", berth::error::final_message(&error)));
            }
            berth::error::exit_code_of(&error)
        }
    }
}
