//! Error kinds a caller must tell apart, and the exit code of each.

use std::process::ExitCode;

/// An error that decides berth's exit code. Anything else is exit 1.
#[derive(Debug, thiserror::Error)]
pub enum BerthError {
    /// The command exists in the interface but is not built yet.
    #[error(
        "`{berth} {command}` is not built yet; see the README's command table for what is available",
        berth = crate::program::name()
    )]
    NotBuilt {
        /// The command as the user typed it.
        command: &'static str,
    },
    /// Bad input: configuration, overlay, SHA, environment name, flags,
    /// credentials, an unreachable cluster. Nothing was changed. The message
    /// names the problem and the fix.
    #[error("{0}")]
    Input(String),
    /// The deploy ran and failed: migration, rollout, doomed pods.
    #[error("{0}")]
    DeployFailed(String),
    /// Another deploy holds the environment's lock.
    #[error("{0}")]
    Locked(String),
    /// Another holder took the lock while berth held it (berth's renewals
    /// failed for longer than the hold, or somebody released it by hand);
    /// berth stopped before its next change.
    #[error(
        "lost the deploy lock of namespace {namespace} to {holder}{}; berth stopped before its next change. \
         See what they are doing (`{berth} lock ENV status`, `{berth} history ENV`), then deploy again once the lock is free",
        .since.as_ref().map_or_else(String::new, |since| format!(", holding it since {since}")),
        berth = crate::program::name()
    )]
    LockLost {
        /// The namespace whose lock it was.
        namespace: String,
        /// Who holds it now, e.g. `ada@box (pid 7) (deploy 3f2a9c1)`.
        holder: String,
        /// Since when, as people read it (`2026-12-07 08:40:12 (20s ago)`),
        /// when the lock says.
        since: Option<String>,
    },
    /// The API server refused berth's credentials mid-way: the token was
    /// revoked or expired (401), or the deployer lost a permission (403).
    /// Retrying cannot help; berth stopped before its next change.
    #[error(
        "the cluster refused berth's credentials while {doing} ({cause}); berth stopped before its next change. \
         The deploy lock expires by itself within {hold}s. Restore the deployer's token and RoleBinding \
         (cluster-setup/rbac/deployer.yaml), see what was left (`{berth} history ENV`, `{berth} status ENV`), then deploy again"
        , berth = crate::program::name()
    )]
    CredentialsRefused {
        /// What berth was doing, e.g. `renewing the deploy lock`.
        doing: String,
        /// The refusal: `403 Forbidden: ...` or `401 Unauthorized: ...`.
        cause: String,
        /// How long the unrenewed lock lasts, in seconds.
        hold: u64,
    },
    /// `diff` could not compare (a failure other commands exit 1 with):
    /// exit 6, since `diff`'s exit 1 means "differences".
    #[error("the diff could not be made")]
    DiffFailed,
    /// A wait ran out of time.
    #[error("{0}")]
    TimedOut(String),
    /// A precondition refused the deploy (image missing, checks not green, ...).
    #[error("{0}")]
    Refused(String),
    /// Interrupted by Ctrl-C, SIGTERM or SIGHUP; the lock was released.
    #[error("interrupted")]
    Interrupted,
    /// A command berth ran for the user (`psql`, `run`, a task) exited
    /// non-zero; berth exits with the same code and adds no message.
    #[error("the command exited with code {0}")]
    Exited(u8),
    /// stdout's reader went away (`berth history staging | head -1`): nothing
    /// more can be shown, which is no failure. Exit 0 and no message, as
    /// ripgrep does.
    #[error("stdout was closed")]
    OutputClosed,
}

/// A task stopped because another failed or the user interrupted; the
/// caller knows which and reports that instead.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

impl BerthError {
    /// The process exit code for this error (see DESIGN: "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            BerthError::DeployFailed(_) | BerthError::CredentialsRefused { .. } => 1,
            BerthError::NotBuilt { .. } | BerthError::Input(_) => 2,
            BerthError::Locked(_) | BerthError::LockLost { .. } => 3,
            BerthError::TimedOut(_) => 4,
            BerthError::Refused(_) => 5,
            BerthError::DiffFailed => 6,
            BerthError::Interrupted => 130,
            BerthError::Exited(code) => *code,
            BerthError::OutputClosed => 0,
        }
    }

    /// The outcome of a command berth ran for the user that exited with
    /// `code`: Ok for 0, else [`BerthError::Exited`] with the code (1 when it
    /// does not fit an exit code).
    pub fn from_exit(code: i32) -> Result<(), BerthError> {
        match u8::try_from(code) {
            Ok(0) => Ok(()),
            Ok(code) => Err(BerthError::Exited(code)),
            Err(_) => Err(BerthError::Exited(1)),
        }
    }

    /// How a command that failed with this error ended, for its report.
    pub fn outcome(&self) -> Outcome {
        match self {
            BerthError::DeployFailed(_)
            | BerthError::CredentialsRefused { .. }
            | BerthError::DiffFailed => Outcome::Failed,
            BerthError::Locked(_) => Outcome::Locked,
            BerthError::LockLost { .. } => Outcome::LockLost,
            BerthError::TimedOut(_) => Outcome::TimedOut,
            BerthError::Interrupted => Outcome::Interrupted,
            BerthError::NotBuilt { .. }
            | BerthError::Input(_)
            | BerthError::Refused(_)
            | BerthError::OutputClosed => Outcome::Refused,
            BerthError::Exited(_) => Outcome::Exited,
        }
    }
}

/// How a command ended: the `status` of its report (in JSON, snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did what was asked.
    Succeeded,
    /// `--dry-run`: the plan was shown; nothing was changed.
    Planned,
    /// It ran and failed (a migration, a rollout, doomed pods), or an
    /// error berth does not classify.
    Failed,
    /// A wait ran out of time.
    TimedOut,
    /// Another holder has the lock.
    Locked,
    /// Another holder took the lock mid-way; berth stopped.
    LockLost,
    /// Bad input or a failed precondition: nothing was changed.
    Refused,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
    /// A command berth ran for the user (`run`, `task`, `psql`) exited
    /// non-zero; berth exits with its code.
    Exited,
}

impl Outcome {
    /// The outcome of a command that failed with `error`: the [`BerthError`]
    /// anywhere in its chain decides; anything else failed.
    pub fn of(error: &anyhow::Error) -> Outcome {
        kind_of(error).map_or(Outcome::Failed, BerthError::outcome)
    }

    /// The outcome of a command's result.
    pub fn of_result<T>(result: &anyhow::Result<T>) -> Outcome {
        result
            .as_ref()
            .err()
            .map_or(Outcome::Succeeded, Outcome::of)
    }

    /// The report's word for it, e.g. `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Planned => "planned",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Locked => "locked",
            Outcome::LockLost => "lock_lost",
            Outcome::Refused => "refused",
            Outcome::Interrupted => "interrupted",
            Outcome::Exited => "exited",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shorthand for an input error (exit 2) as an `anyhow::Error`.
pub fn input_error(message: impl Into<String>) -> anyhow::Error {
    BerthError::Input(message.into()).into()
}

/// The API server's refusal of berth's credentials anywhere in `error`'s
/// chain, said for people (`403 Forbidden: leases ... is forbidden: ...`):
/// a 401 (the token is no longer valid: revoked, expired, its
/// ServiceAccount deleted) or a 403 (a permission taken away). Such an error
/// stays; retrying cannot help.
pub fn credentials_refused(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() else {
            return None;
        };
        let what = match status.code {
            401 => "401 Unauthorized: the token is no longer valid (revoked, expired, or its ServiceAccount deleted)",
            403 => "403 Forbidden",
            _ => return None,
        };
        Some(if status.message.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {}", status.message)
        })
    })
}

/// `error` in one line: `{error:#}`, except that an API server's refusal of
/// berth's credentials is said as its outermost context and the refusal
/// (`reading release record 1: 403 Forbidden: ...`), not the client's dump
/// of the whole response, and a cause that only repeats the one before it
/// (the Kubernetes client's `ServiceError: X` then `X`) is said once.
pub fn brief(error: &anyhow::Error) -> String {
    match credentials_refused(error) {
        Some(refusal) => format!("{error}: {refusal}"),
        None => chain(error),
    }
}

/// `{error:#}` with a cause that only repeats the one before it said once.
fn chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A command's final error: `{error:#}` with a cause that only repeats
/// the one before it said once, and, when the API server never answered,
/// what that left and what to do.
pub fn final_message(error: &anyhow::Error) -> String {
    let brief = chain(error);
    let unanswered = error.chain().any(|cause| {
        cause
            .downcast_ref::<crate::cluster::retry::GaveUp>()
            .is_some()
    });
    if !unanswered {
        return brief;
    }
    format!(
        "{brief}\n  The API server did not answer, so berth stopped there. Check \
         that it is up (`kubectl get --raw /readyz`), then run the command again. A deploy \
         stopped this way leaves its release `in_progress` until its lock expires (within \
         15 s); `berth history` then shows it `abandoned` at its step, and the next deploy \
         records it so and cleans up its Jobs."
    )
}

/// The [`BerthError`] anywhere in the chain, if there is one: the
/// outermost one given as context (`error.context(BerthError::DiffFailed)`,
/// which the chain shows only as its context layer), else the first one
/// among the causes.
pub fn kind_of(error: &anyhow::Error) -> Option<&BerthError> {
    error.downcast_ref::<BerthError>().or_else(|| {
        error
            .chain()
            .find_map(|cause| cause.downcast_ref::<BerthError>())
    })
}

/// The exit code number for any error: a [`BerthError`] anywhere in the chain
/// decides, otherwise 1.
pub fn exit_code_number(error: &anyhow::Error) -> u8 {
    kind_of(error).map_or(1, BerthError::exit_code)
}

/// [`exit_code_number`] as the process's exit code.
pub fn exit_code_of(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(exit_code_number(error))
}

/// The innermost cause of an error, such as "Connection refused (os error 111)".
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_cause_repeating_the_one_before_is_said_once() {
        let inner = anyhow::anyhow!("the API server did not answer");
        let err = inner
            .context("ServiceError: the API server did not answer")
            .context("reading release record 1");
        assert_eq!(
            brief(&err),
            "reading release record 1: ServiceError: the API server did not answer"
        );
    }

    #[test]
    fn a_command_not_built_exits_2_even_under_context() {
        let err = Err::<(), _>(BerthError::NotBuilt { command: "psql" })
            .context("running psql")
            .unwrap_err();
        assert_eq!(exit_code_of(&err), ExitCode::from(2));
    }

    #[test]
    fn a_kind_given_as_context_decides_the_exit_code() {
        let refused = anyhow::anyhow!("applying Service/refused: 422 Invalid")
            .context(BerthError::DiffFailed)
            .context(crate::output::Reported);
        assert_eq!(exit_code_number(&refused), 6);
        assert!(matches!(kind_of(&refused), Some(BerthError::DiffFailed)));
        let input = anyhow::Error::from(BerthError::Input("bad SHA".into())).context("planning");
        assert_eq!(exit_code_number(&input), 2);
    }

    #[test]
    fn each_kind_has_its_design_exit_code() {
        let cases = [
            (BerthError::DeployFailed("x".into()), 1),
            (BerthError::Input("x".into()), 2),
            (BerthError::Locked("x".into()), 3),
            (
                BerthError::LockLost {
                    namespace: "x".into(),
                    holder: "y".into(),
                    since: None,
                },
                3,
            ),
            (BerthError::TimedOut("x".into()), 4),
            (BerthError::Refused("x".into()), 5),
            (BerthError::DiffFailed, 6),
            (BerthError::Interrupted, 130),
            (BerthError::Exited(3), 3),
            (BerthError::OutputClosed, 0),
        ];
        for (error, code) in cases {
            assert_eq!(exit_code_of(&error.into()), ExitCode::from(code));
        }
    }

    #[test]
    fn a_command_exit_code_passes_through_and_one_out_of_range_is_1() {
        assert!(BerthError::from_exit(0).is_ok());
        for (code, expected) in [(3, 3), (255, 255), (256, 1), (-1, 1)] {
            let error = BerthError::from_exit(code).unwrap_err();
            assert_eq!(error.exit_code(), expected, "{code}");
        }
    }

    #[test]
    fn each_kind_has_its_report_outcome_even_under_context() {
        let cases = [
            (BerthError::DeployFailed("x".into()), Outcome::Failed),
            (BerthError::Input("x".into()), Outcome::Refused),
            (BerthError::NotBuilt { command: "psql" }, Outcome::Refused),
            (BerthError::Locked("x".into()), Outcome::Locked),
            (
                BerthError::LockLost {
                    namespace: "x".into(),
                    holder: "y".into(),
                    since: None,
                },
                Outcome::LockLost,
            ),
            (BerthError::TimedOut("x".into()), Outcome::TimedOut),
            (BerthError::Refused("x".into()), Outcome::Refused),
            (BerthError::Interrupted, Outcome::Interrupted),
            (BerthError::Exited(3), Outcome::Exited),
        ];
        for (error, outcome) in cases {
            let error = anyhow::Error::from(error).context("deploying");
            assert_eq!(Outcome::of(&error), outcome, "{error:#}");
        }
        assert_eq!(Outcome::of(&anyhow::anyhow!("boom")), Outcome::Failed);
        assert_eq!(Outcome::of_result(&anyhow::Ok(())), Outcome::Succeeded);
    }

    #[test]
    fn an_outcome_reads_the_same_in_json_and_text() {
        use Outcome::*;
        for outcome in [
            Succeeded,
            Planned,
            Failed,
            TimedOut,
            Locked,
            LockLost,
            Refused,
            Interrupted,
            Exited,
        ] {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::json!(outcome.to_string())
            );
        }
        assert_eq!(LockLost.as_str(), "lock_lost");
        assert_eq!(TimedOut.as_str(), "timed_out");
    }

    #[test]
    fn an_unclassified_error_exits_1() {
        assert_eq!(exit_code_of(&anyhow::anyhow!("boom")), ExitCode::from(1));
    }

    #[test]
    fn a_root_cause_is_the_innermost_error() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = anyhow::Error::new(inner).context("sending");
        let outer: &(dyn std::error::Error + 'static) = outer.as_ref();
        assert_eq!(root_cause(outer), "refused");
    }
}
