//! The one way berth writes to stdout (JSON events, plans, tables, schema,
//! completions). A closed pipe (`berth history staging | head -1`) becomes
//! [`BerthError::OutputClosed`], which main turns into a quiet exit 0, as
//! ripgrep does; any other write error is an ordinary error. A command that
//! still has work to do, or an outcome to tell by its exit code, drops the
//! output instead ([`drop_if_closed`]).

use std::fmt::Display;
use std::io::{self, Write};

use crate::error::{BerthError, kind_of};

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

/// `shown`, with a closed stdout forgiven: for output that comes before
/// work still to do (a rollback's plan) or with an outcome the exit code
/// must still tell (a drill's evidence). Losing the reader drops the output,
/// never the work or its outcome.
pub fn drop_if_closed(shown: anyhow::Result<()>) -> anyhow::Result<()> {
    match shown {
        Err(error) if matches!(kind_of(&error), Some(BerthError::OutputClosed)) => Ok(()),
        other => other,
    }
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
    use crate::error::exit_code_number;

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

    #[test]
    fn work_that_goes_on_forgives_only_a_closed_pipe() {
        let closed = closed_or_error(io::ErrorKind::BrokenPipe.into());
        assert!(drop_if_closed(Err(closed)).is_ok());
        let full = closed_or_error(io::Error::from_raw_os_error(28));
        assert!(drop_if_closed(Err(full)).is_err());
    }
}
