//! The local terminal, for interactive sessions in a pod: whether there is
//! one, raw mode (restored on every exit path), and its size.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use anyhow::Context;
use rustix::termios::{self, OptionalActions, Termios};

/// Whether standard input and standard output are both terminals, so a
/// session gets a remote TTY rather than plain pipes.
pub fn is_interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The terminal's size as (columns, rows), if standard output is a terminal.
pub fn size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// The terminal in raw mode while this lives: keys (Ctrl-C included) go to
/// the remote program byte for byte, nothing is echoed locally. Dropping it,
/// on return, error or panic, restores the previous settings.
pub struct RawMode {
    /// The settings to restore.
    saved: Termios,
}

impl RawMode {
    /// Put standard input's terminal in raw mode.
    pub fn enable() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}
