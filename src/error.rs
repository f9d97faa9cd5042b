//! Error kinds a caller must tell apart, and the exit code of each.

use std::process::ExitCode;

/// An error that decides berth's exit code. Anything else is exit 1.
#[derive(Debug, thiserror::Error)]
pub enum BerthError {
    /// The command exists in the interface but is not built yet.
    #[error(
        "`berth {command}` is not built yet; see the README's command table for what is available"
    )]
    NotBuilt {
        /// The command as the user typed it.
        command: &'static str,
    },
}

impl BerthError {
    /// The process exit code for this error (see DESIGN: "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            BerthError::NotBuilt { .. } => 2,
        }
    }
}

/// The exit code for any error: a [`BerthError`] anywhere in the chain decides,
/// otherwise 1.
pub fn exit_code_of(error: &anyhow::Error) -> ExitCode {
    let code = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<BerthError>())
        .map_or(1, BerthError::exit_code);
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_command_not_built_exits_2_even_under_context() {
        let err = Err::<(), _>(BerthError::NotBuilt { command: "psql" })
            .context("running psql")
            .unwrap_err();
        assert_eq!(exit_code_of(&err), ExitCode::from(2));
    }

    #[test]
    fn an_unclassified_error_exits_1() {
        assert_eq!(exit_code_of(&anyhow::anyhow!("boom")), ExitCode::from(1));
    }
}
