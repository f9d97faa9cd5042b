//! `berth rollback ENV [--to RELEASE|SHA]`: re-apply an earlier release's
//! objects as its record kept them (not today's overlay), wait with the
//! same fail-fast tracking as a deploy, and record a new release.

use std::sync::Arc;

use crate::cli::{GlobalArgs, RollbackArgs};
use crate::cluster::client;
use crate::cluster::release::{self, Release, ReleaseStatus};
use crate::commands::deploy;
use crate::config::{self, Config, short_sha as short};
use crate::error::{BerthError, input_error};
use crate::output::Output;
use crate::pipeline::{DeploySettings, Request, Source};

/// Roll the environment back.
pub async fn run(global: &GlobalArgs, args: &RollbackArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let config = Config::load(&global.config)?;
    let env = config.environment(&args.env)?;
    let to = args.to.as_deref().map(Target::parse).transpose()?;
    let client = client::connect(env.context.as_deref()).await?;
    let releases = release::list(&client, &env.namespace).await?;
    let target = choose(&releases, to.as_ref(), &args.env)?.clone();
    if let Some(current) = releases.first() {
        out.info(&format!(
            "rolling {} back from release {} ({}, {}) to release {} ({})",
            args.env,
            current.number,
            short(&current.sha),
            current.status.as_str(),
            target.number,
            short(&target.sha)
        ));
    }
    let settings = DeploySettings {
        timeout: args.wait.timeout,
        lock_wait: args.wait.lock_wait,
        ..DeploySettings::new(&global.config, &args.env, &target.sha)
    };
    let note = schema_note(&target, &releases);
    let request = Request {
        source: Source::Release(Box::new(target)),
        promoted_from: None,
    };
    deploy::deploy(&settings, request, Some(note), out).await
}

/// What `--to` names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A release number: up to 6 digits.
    Number(u64),
    /// A SHA or its prefix: 7 to 40 hex characters.
    Sha(String),
}

impl Target {
    fn parse(text: &str) -> anyhow::Result<Target> {
        let text = text.trim();
        if !text.is_empty() && text.len() <= 6 && text.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Target::Number(text.parse()?));
        }
        config::parse_sha(text).map(Target::Sha).map_err(|_| {
            input_error(format!(
                "--to {text:?} is neither a release number (as `{} history` lists them, \
                 e.g. --to 12) nor a git SHA (7 to 40 hex characters)",
                crate::program::name()
            ))
        })
    }
}

/// The release to go back to: the one `to` names, else the successful
/// release before the current one (or, when the current one failed, the
/// last successful one, which the failed deploy was replacing).
fn choose<'a>(
    releases: &'a [Release],
    to: Option<&Target>,
    env: &str,
) -> anyhow::Result<&'a Release> {
    let Some(current) = releases.first() else {
        return Err(input_error(format!(
            "{env} has no releases to roll back to; deploy it first with \
             `{} advanced-deploy {env} SHA`",
            crate::program::name()
        )));
    };
    let succeeded = |r: &&Release| r.status == ReleaseStatus::Succeeded;
    let found =
        match to {
            Some(Target::Number(number)) => {
                let release = releases.iter().find(|r| r.number == *number).ok_or_else(|| {
                input_error(format!(
                    "{env} has no release {number}; `{} history {env}` lists the releases kept",
                    crate::program::name()
                ))
            })?;
                if release.status != ReleaseStatus::Succeeded {
                    return Err(input_error(format!(
                        "release {number} of {env} {}; roll back to a release that succeeded \
                     (see `{} history {env}`)",
                        release.status.as_str(),
                        crate::program::name()
                    )));
                }
                Some(release)
            }
            Some(Target::Sha(sha)) => releases
                .iter()
                .filter(succeeded)
                .find(|r| r.sha.starts_with(sha.as_str())),
            None if current.status == ReleaseStatus::Succeeded => releases
                .iter()
                .skip(1)
                .filter(succeeded)
                .find(|r| r.sha != current.sha),
            None => releases.iter().find(succeeded),
        };
    found.ok_or_else(|| match to {
        Some(Target::Sha(sha)) => input_error(format!(
            "no successful release of {env} deployed {sha}; `{berth} history {env}` lists the \
             releases kept, or deploy it with `{berth} advanced-deploy {env} {sha}`",
            berth = crate::program::name()
        )),
        _ => BerthError::Refused(format!(
            "{env} has no earlier successful release to roll back to (current: release {} of {})",
            current.number,
            short(&current.sha)
        ))
        .into(),
    })
}

/// The database schema is not rolled back: name the migrations that ran
/// after `target`, the release being left's among them.
fn schema_note(target: &Release, releases: &[Release]) -> String {
    let since: Vec<String> = releases
        .iter()
        .filter(|r| r.number > target.number)
        .filter_map(|r| {
            r.migration
                .as_ref()
                .map(|m| format!("Job {} of release {} ({})", m.name, r.number, m.status))
        })
        .collect();
    if since.is_empty() {
        format!(
            "the database schema was not rolled back; no migration ran after release {}",
            target.number
        )
    } else {
        format!(
            "the database schema was NOT rolled back: the migrations since release {} ran as {}; \
             if one changed the schema in a way release {}'s code cannot use, revert it by hand",
            target.number,
            since.join(", "),
            target.number
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::release::{TaskRecord, example as release};

    use ReleaseStatus::{Failed, Succeeded};

    #[test]
    fn by_default_the_successful_release_before_the_current_one_with_another_sha() {
        let history = [
            release(5, "eeeeeee", Succeeded),
            release(4, "eeeeeee", Succeeded),
            release(3, "ddddddd", Failed),
            release(2, "ccccccc", Succeeded),
        ];
        assert_eq!(choose(&history, None, "production").unwrap().number, 2);
    }

    #[test]
    fn after_a_failed_deploy_the_last_successful_release() {
        let history = [
            release(3, "ddddddd", Failed),
            release(2, "ccccccc", Succeeded),
            release(1, "bbbbbbb", Succeeded),
        ];
        assert_eq!(choose(&history, None, "production").unwrap().number, 2);
    }

    #[test]
    fn to_names_a_release_number_or_a_sha_prefix() {
        let history = [
            release(3, "ddddddd", Succeeded),
            release(2, "ccccccc1234", Succeeded),
            release(1, "bbbbbbb", Succeeded),
        ];
        let by_number = Target::parse("1").unwrap();
        assert_eq!(
            choose(&history, Some(&by_number), "p").unwrap().sha,
            "bbbbbbb"
        );
        let by_sha = Target::parse("CCCCCCC").unwrap();
        assert_eq!(choose(&history, Some(&by_sha), "p").unwrap().number, 2);
    }

    #[test]
    fn bad_targets_are_input_errors_and_nothing_to_go_back_to_is_refused() {
        let history = [
            release(2, "ccccccc", Succeeded),
            release(1, "bbbbbbb", Failed),
        ];
        let code = |e: anyhow::Error| crate::error::exit_code_number(&e);
        assert_eq!(code(Target::parse("v1.2").unwrap_err()), 2);
        assert_eq!(
            code(choose(&history, Some(&Target::Number(1)), "p").unwrap_err()),
            2
        );
        assert_eq!(
            code(choose(&history, Some(&Target::Number(9)), "p").unwrap_err()),
            2
        );
        assert_eq!(
            code(choose(&history, Some(&Target::Sha("abcdef0".into())), "p").unwrap_err()),
            2
        );
        assert_eq!(code(choose(&history, None, "p").unwrap_err()), 5);
        assert_eq!(code(choose(&[], None, "p").unwrap_err()), 2);
    }

    #[test]
    fn the_schema_note_names_every_migration_since_the_target() {
        let mut history = vec![
            release(4, "eeeeeee", Succeeded),
            release(3, "ddddddd", Succeeded),
            release(2, "ccccccc", Succeeded),
        ];
        history[1].migration = Some(TaskRecord {
            name: "workbench-production-migrate-3".into(),
            status: "succeeded".into(),
            duration_s: 1.0,
        });
        let note = schema_note(&history[2].clone(), &history);
        assert!(note.contains("NOT rolled back"), "{note}");
        assert!(
            note.contains("Job workbench-production-migrate-3 of release 3"),
            "{note}"
        );
        let none = schema_note(&history[1].clone(), &history);
        assert!(none.contains("no migration ran after release 3"), "{none}");
    }
}
