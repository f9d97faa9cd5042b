//! Ctrl-C and SIGTERM, handled rather than fatal: long operations stop
//! cleanly (locks released, uploads aborted, state recorded) and exit 130.

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::BerthError;

/// Ctrl-C and SIGTERM, listened for from the start of a deploy, so a signal
/// at any moment is handled (lock released, interruption recorded) instead
/// of killing the process.
pub struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    /// Start listening for both signals.
    pub fn listen() -> anyhow::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt()).context("listening for Ctrl-C")?,
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// Resolves when either signal arrives.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Run `step`, or fail with [`BerthError::Interrupted`] if a signal comes first.
pub async fn unless_interrupted<T>(
    interrupts: &mut Interrupts,
    step: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        result = step => result,
        _ = interrupts.recv() => Err(BerthError::Interrupted.into()),
    }
}
