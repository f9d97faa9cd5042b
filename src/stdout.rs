//! The one way berth writes to stdout (JSON events, plans, tables, schema,
//! completions). A closed pipe (`berth history staging | head -1`) becomes
//! [`BerthError::OutputClosed`], which main turns into a quiet exit 0, as
//! ripgrep does; any other write error is an ordinary error.

use std::fmt::Display;
use std::io::{self, Write};

use crate::error::BerthError;

/// Write `text` and a newline to stdout.
pub fn line(text: impl Display) -> anyhow::Result<()> {
    write(format!("{text}\n").as_bytes())
}

/// Write `bytes` to stdout as they are, and flush them.
pub fn write(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(closed_or_error)
}

/// A closed pipe is [`BerthError::OutputClosed`]; anything else says it was stdout.
fn closed_or_error(error: io::Error) -> anyhow::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        BerthError::OutputClosed.into()
    } else {
        anyhow::Error::new(error).context("writing to stdout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{exit_code_number, kind_of};

    #[test]
    fn a_closed_pipe_exits_0_and_other_errors_exit_1() {
        let closed = closed_or_error(io::ErrorKind::BrokenPipe.into());
        assert!(matches!(kind_of(&closed), Some(BerthError::OutputClosed)));
        assert_eq!(exit_code_number(&closed), 0);
        let full = closed_or_error(io::Error::from_raw_os_error(28));
        assert!(kind_of(&full).is_none());
        assert_eq!(exit_code_number(&full), 1);
        assert!(format!("{full:#}").starts_with("writing to stdout: "));
    }
}
