//! Ctrl-C, SIGTERM and SIGHUP, handled rather than fatal: long operations
//! stop cleanly (locks released, uploads aborted, state recorded) and exit
//! 130. A second signal while they clean up cuts the cleanup short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::BerthError;

/// The longest a cleanup after an interruption may take before the command
/// gives up on it and says what is left.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// Ctrl-C (SIGINT), SIGTERM (a CI runner cancelling the job) and SIGHUP
/// (the terminal or SSH session went away), listened for from the start of
/// a long command, so a signal at any moment is handled (lock released,
/// interruption recorded) instead of killing the process. SIGHUP is left
/// alone when berth started with it ignored (`nohup berth ...`): the user
/// asked for the work to outlive the terminal.
pub struct Interrupts {
    int: Signal,
    term: Signal,
    hup: Option<Signal>,
}

impl Interrupts {
    /// Start listening for the three signals.
    pub fn listen() -> anyhow::Result<Interrupts> {
        let hup = if hangup_ignored() {
            None
        } else {
            Some(signal(SignalKind::hangup()).context("listening for SIGHUP")?)
        };
        Ok(Interrupts {
            int: signal(SignalKind::interrupt()).context("listening for Ctrl-C")?,
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            hup,
        })
    }

    /// Resolves when any of the signals arrives; from the first on, a
    /// second one bounds what is left of the command ([`LAST_WORDS`]).
    pub async fn recv(&mut self) {
        self.any().await;
        arm_last_resort();
    }

    async fn any(&mut self) {
        let hup = async {
            match &mut self.hup {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = hup => {}
        }
    }
}

/// What a command says when a signal stops it and it cleans up.
pub const STOPPING: &str = "interrupted: stopping cleanly (interrupt again to stop at once)";

/// How long a command has, after a second signal, to record what it can
/// and release its lock before it exits anyway: within the 2 s promised.
pub const LAST_WORDS: Duration = Duration::from_millis(1500);

/// After the first signal: listen for a second, which drops any cleanup
/// still waited for ([`wind_down`]) and leaves the command [`LAST_WORDS`]
/// to finish before the process exits 130, saying so.
fn arm_last_resort() {
    static ARMED: AtomicBool = AtomicBool::new(false);
    if ARMED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(mut again) = Interrupts::listen() else {
        return;
    };
    tokio::spawn(async move {
        again.any().await;
        tokio::time::sleep(LAST_WORDS).await;
        crate::output::stderr_line(&format!(
            "error: interrupted again, and the cleanup did not finish in time; `{berth} status ENV` \
             shows what is left: a release still in_progress and its lock are settled when the \
             lock expires, or at once by `{berth} lock ENV release`",
            berth = crate::program::name()
        ));
        std::process::exit(i32::from(BerthError::Interrupted.exit_code()));
    });
}

/// True when SIGHUP was ignored when berth started (`nohup`). Asked once,
/// before berth installs its own handler, and remembered.
fn hangup_ignored() -> bool {
    static IGNORED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IGNORED.get_or_init(|| {
        let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a null new action only reads the current one into
        // `current`, which is valid, zeroed memory of the right type.
        let read = unsafe { libc::sigaction(libc::SIGHUP, std::ptr::null(), current.as_mut_ptr()) };
        // SAFETY: sigaction succeeded, so it filled `current` in.
        read == 0 && unsafe { current.assume_init() }.sa_sigaction == libc::SIG_IGN
    })
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

/// Let `cleanup` (the steps of an interrupted command, cancelled, winding
/// down) finish within [`STOP_GRACE`], unless another signal comes first:
/// then it is dropped at once. `None` when it did not finish: the caller
/// says what may be left and how to finish it.
pub async fn wind_down<T>(
    interrupts: &mut Interrupts,
    cleanup: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        done = tokio::time::timeout(STOP_GRACE, cleanup) => done.ok(),
        _ = interrupts.recv() => None,
    }
}
