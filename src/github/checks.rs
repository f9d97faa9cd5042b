//! Whether a commit's checks passed: check runs and legacy commit statuses
//! folded into one verdict, with the reason a commit was passed over.

use std::collections::BTreeMap;

use octocrab::models::checks::CheckRun;
use octocrab::models::{Status, StatusState};

use crate::config::{Conclusion, GitHub};

/// Where a check was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The Checks API (GitHub Actions and apps).
    CheckRun,
    /// A legacy commit status.
    Status,
}

/// How a check ended, or that it has not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    /// Concluded `success`.
    Success,
    /// Concluded `neutral`.
    Neutral,
    /// Concluded `skipped`.
    Skipped,
    /// Queued or running.
    Pending,
    /// Any other conclusion (`failure`, `cancelled`, `timed_out`, `error`...).
    Failed(String),
}

/// One check run or commit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The check's name (a status's context).
    pub name: String,
    /// Its state.
    pub state: CheckState,
    /// Where it was reported.
    pub source: Source,
}

impl Check {
    /// A check run: no conclusion yet means pending.
    pub fn from_run(run: &CheckRun) -> Check {
        let state = match run.conclusion.as_deref() {
            None => CheckState::Pending,
            Some("success") => CheckState::Success,
            Some("neutral") => CheckState::Neutral,
            Some("skipped") => CheckState::Skipped,
            Some(other) => CheckState::Failed(other.to_string()),
        };
        Check {
            name: run.name.clone(),
            state,
            source: Source::CheckRun,
        }
    }

    /// A commit status.
    pub fn from_status(status: &Status) -> Check {
        let state = match status.state {
            StatusState::Success => CheckState::Success,
            StatusState::Pending => CheckState::Pending,
            StatusState::Failure => CheckState::Failed("failure".into()),
            StatusState::Error => CheckState::Failed("error".into()),
            _ => CheckState::Failed("unknown".into()),
        };
        Check {
            name: status.context.clone().unwrap_or_default(),
            state,
            source: Source::Status,
        }
    }

    fn kind(&self) -> &'static str {
        match self.source {
            Source::CheckRun => "check",
            Source::Status => "status",
        }
    }
}

/// `Ok(())` when the commit may be deployed; otherwise why not, e.g.
/// "check 'ci' failed". Every required check must have concluded `success`
/// (or a conclusion `github.also_passing` accepts); without
/// `required_checks`, every check reported that `allow_failures` does not
/// name, and at least one. A check that failed blocks the commit even when
/// it is not required, unless `github.allow_failures` names it.
pub fn judge(checks: &[Check], github: &GitHub) -> Result<(), String> {
    // A name reported twice (a run and a status, or a re-run) counts at its worst.
    let mut worst: BTreeMap<&str, &Check> = BTreeMap::new();
    for check in checks {
        worst
            .entry(&check.name)
            .and_modify(|seen| {
                if badness(&check.state) > badness(&seen.state) {
                    *seen = check;
                }
            })
            .or_insert(check);
    }
    let allowed = |name: &str| github.allow_failures.iter().any(|a| a == name);
    let required: Vec<&str> = match &github.required_checks {
        Some(names) => names.iter().map(String::as_str).collect(),
        None => worst.keys().copied().filter(|n| !allowed(n)).collect(),
    };
    if required.is_empty() {
        return Err(if worst.is_empty() {
            "no checks reported yet".into()
        } else {
            "no check reported yet besides those github.allow_failures names".into()
        });
    }
    let mut problems = Vec::new();
    for name in &required {
        let Some(check) = worst.get(name) else {
            problems.push(format!("required check '{name}' has not reported"));
            continue;
        };
        let kind = check.kind();
        match &check.state {
            CheckState::Success => {}
            CheckState::Neutral if accepts(github, Conclusion::Neutral) => {}
            CheckState::Skipped if accepts(github, Conclusion::Skipped) => {}
            CheckState::Neutral | CheckState::Skipped => problems.push(format!(
                "{kind} '{name}' was {} (add it to github.also_passing to count it as passed)",
                if check.state == CheckState::Neutral {
                    "neutral"
                } else {
                    "skipped"
                }
            )),
            CheckState::Pending => problems.push(format!("{kind} '{name}' is pending")),
            CheckState::Failed(conclusion) => {
                problems.push(format!("{kind} '{name}' {}", ended(conclusion)))
            }
        }
    }
    // The checks no one required: only a failure counts, and only when
    // allow_failures does not name it.
    for (name, check) in &worst {
        if required.contains(name) || allowed(name) {
            continue;
        }
        if let CheckState::Failed(conclusion) = &check.state
            && blocks(conclusion)
        {
            problems.push(format!(
                "{} '{name}' {} (not a required check: add it to github.allow_failures \
                 to deploy despite it)",
                check.kind(),
                ended(conclusion)
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// "failed", or "ended CONCLUSION" for any other failed conclusion.
fn ended(conclusion: &str) -> String {
    if conclusion == "failure" {
        "failed".into()
    } else {
        format!("ended {conclusion}")
    }
}

/// Whether a check that is not required blocks the commit with this failed
/// conclusion: every one (`failure`, `timed_out`, `cancelled`,
/// `action_required`, `startup_failure`, a status's `error`, and any
/// GitHub adds later) but `stale`, which GitHub sets on a check run left
/// unfinished for 14 days: it never ran to a verdict.
fn blocks(conclusion: &str) -> bool {
    conclusion != "stale"
}

fn accepts(github: &GitHub, conclusion: Conclusion) -> bool {
    github.also_passing.contains(&conclusion)
}

/// Failed beats pending beats neutral or skipped beats success.
fn badness(state: &CheckState) -> u8 {
    match state {
        CheckState::Success => 0,
        CheckState::Neutral | CheckState::Skipped => 1,
        CheckState::Pending => 2,
        CheckState::Failed(_) => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(required: Option<&[&str]>, also: &[Conclusion]) -> GitHub {
        allowing(required, also, &[])
    }

    fn allowing(required: Option<&[&str]>, also: &[Conclusion], allowed: &[&str]) -> GitHub {
        GitHub {
            repo: "example/workbench".into(),
            branch: "master".into(),
            required_checks: required.map(|r| r.iter().map(|s| s.to_string()).collect()),
            allow_failures: allowed.iter().map(|s| s.to_string()).collect(),
            also_passing: also.to_vec(),
            depth: 50,
        }
    }

    fn run(name: &str, state: CheckState) -> Check {
        Check {
            name: name.into(),
            state,
            source: Source::CheckRun,
        }
    }

    fn status(name: &str, state: CheckState) -> Check {
        Check {
            name: name.into(),
            state,
            source: Source::Status,
        }
    }

    #[test]
    fn a_commit_qualifies_when_every_required_check_succeeded() {
        let checks = [
            run("ci", CheckState::Success),
            run("docs", CheckState::Pending),
            run("lint", CheckState::Neutral),
        ];
        assert_eq!(judge(&checks, &github(Some(&["ci"]), &[])), Ok(()));
    }

    #[test]
    fn a_failed_check_blocks_even_when_not_required_unless_allowed() {
        let checks = [
            run("ci", CheckState::Success),
            run("e2e", CheckState::Failed("failure".into())),
            status("security-scan", CheckState::Failed("error".into())),
        ];
        assert_eq!(
            judge(&checks, &github(Some(&["ci"]), &[])),
            Err(
                "check 'e2e' failed (not a required check: add it to github.allow_failures \
                 to deploy despite it); status 'security-scan' ended error (not a required \
                 check: add it to github.allow_failures to deploy despite it)"
                    .into()
            )
        );
        let allowed = allowing(Some(&["ci"]), &[], &["e2e", "security-scan"]);
        assert_eq!(judge(&checks, &allowed), Ok(()));
    }

    #[test]
    fn every_failed_conclusion_blocks_but_stale() {
        for conclusion in [
            "timed_out",
            "cancelled",
            "action_required",
            "startup_failure",
        ] {
            let checks = [
                run("ci", CheckState::Success),
                run("e2e", CheckState::Failed(conclusion.into())),
            ];
            assert_eq!(
                judge(&checks, &github(Some(&["ci"]), &[])).unwrap_err(),
                format!(
                    "check 'e2e' ended {conclusion} (not a required check: add it to \
                     github.allow_failures to deploy despite it)"
                )
            );
        }
        let stale = [
            run("ci", CheckState::Success),
            run("e2e", CheckState::Failed("stale".into())),
        ];
        assert_eq!(judge(&stale, &github(Some(&["ci"]), &[])), Ok(()));
    }

    #[test]
    fn allow_failures_never_excuses_a_required_check() {
        let checks = [
            run("ci", CheckState::Failed("failure".into())),
            run("lint", CheckState::Failed("failure".into())),
        ];
        let github = allowing(Some(&["ci"]), &[], &["ci", "lint"]);
        assert_eq!(judge(&checks, &github), Err("check 'ci' failed".into()));
    }

    #[test]
    fn without_required_checks_an_allowed_failure_neither_blocks_nor_qualifies_alone() {
        let lint = run("lint", CheckState::Failed("failure".into()));
        let github = allowing(None, &[], &["lint"]);
        assert_eq!(
            judge(&[run("ci", CheckState::Success), lint.clone()], &github),
            Ok(())
        );
        assert_eq!(
            judge(&[lint], &github),
            Err("no check reported yet besides those github.allow_failures names".into())
        );
    }

    #[test]
    fn a_pending_or_missing_required_check_does_not_qualify() {
        let checks = [run("ci", CheckState::Pending)];
        assert_eq!(
            judge(&checks, &github(Some(&["ci", "e2e"]), &[])),
            Err("check 'ci' is pending; required check 'e2e' has not reported".into())
        );
    }

    #[test]
    fn without_required_checks_every_reported_check_must_pass() {
        let checks = [
            run("ci", CheckState::Success),
            status("legacy", CheckState::Failed("failure".into())),
        ];
        assert_eq!(
            judge(&checks, &github(None, &[])),
            Err("status 'legacy' failed".into())
        );
        assert_eq!(
            judge(&[], &github(None, &[])),
            Err("no checks reported yet".into())
        );
    }

    #[test]
    fn neutral_and_skipped_pass_only_when_configured() {
        let checks = [
            run("ci", CheckState::Skipped),
            run("docs", CheckState::Neutral),
        ];
        assert!(judge(&checks, &github(None, &[])).is_err());
        assert!(judge(&checks, &github(None, &[Conclusion::Skipped])).is_err());
        assert_eq!(
            judge(
                &checks,
                &github(None, &[Conclusion::Skipped, Conclusion::Neutral])
            ),
            Ok(())
        );
    }

    #[test]
    fn a_name_reported_twice_counts_at_its_worst() {
        let checks = [
            run("ci", CheckState::Success),
            status("ci", CheckState::Failed("error".into())),
        ];
        assert_eq!(
            judge(&checks, &github(Some(&["ci"]), &[])),
            Err("status 'ci' ended error".into())
        );
    }
}
