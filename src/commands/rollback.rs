//! `berth rollback ENV [--to RELEASE|SHA]`: bring the database schema back
//! to the earlier release's (docs/rollback.md), then re-apply that
//! release's objects as its record kept them (not today's overlay), wait
//! with the same fail-fast tracking as a deploy, and record a new release.
//!
//! The plan comes first and changes nothing: the objects, and the schema
//! plan from a Job on the newer release's migration image. A step that
//! cannot be undone is refused (exit 5) unless `--restore-backup` or
//! `--accept-data-loss` says how.

use std::sync::Arc;
use std::time::Instant;

use crate::backup::manifest::BackupStatus;
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::cluster::client;
use crate::cluster::release::{self, Release, ReleaseStatus};
use crate::commands::deploy::{self, Extras};
use crate::config::{self, Config, short_sha as short};
use crate::confirm::{Question, age_since, confirm};
use crate::error::{BerthError, Outcome, exit_code_number, input_error};
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::output::{Mode, Output};
use crate::pipeline::{DeploySettings, Plan, Request, Source, Summary};
use crate::schema::adapter;
use crate::schema::plan::{self as schema_plan, Decision, SchemaPlan};
use crate::schema::unapply::{self, How, Reverse, SchemaStep};
use crate::stdout;

/// Roll the environment back.
pub async fn run(global: &GlobalArgs, args: &RollbackArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let started = Instant::now();
    // Listening from the start: a signal while the rollback is planned
    // stops it cleanly too (exit 130).
    let mut interrupts = Interrupts::listen()?;
    if let Some(id) = args.restore_backup.as_deref().filter(|id| !id.is_empty()) {
        crate::backup::layout::check_id(id).map_err(|problem| {
            input_error(format!(
                "--restore-backup {problem}; give an id as `{} db backups {}` lists them \
                 (e.g. 20261206T112233Z-pre-migrate-3fa9), or no id for the default",
                crate::program::name(),
                args.env
            ))
        })?;
    }
    let config = crate::commands::load_config(global, &[&args.env], &out)?;
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
    let mut settings = DeploySettings {
        timeout: args.wait.timeout,
        lock_wait: args.wait.lock_wait,
        ..DeploySettings::new(&config.path, &args.env, &target.sha)
    };
    let prepared = async {
        let planned = crate::pipeline::plan_release(&settings, &target, &out).await?;
        let decision = decide(&planned, &settings, args, &releases, &target, &out).await?;
        let shown = show(&planned.1, &target, &decision, args.dry_run, &out);
        // A reader that went away stops a dry run, not a rollback.
        if args.dry_run {
            shown
        } else {
            crate::stdout::drop_if_closed(shown)
        }?;
        let step = choose_step(&config, args, &releases, &decision, &out).await?;
        if !args.dry_run
            && let Some(question) = depth_question(&args.env, &releases, &target)
        {
            confirm(&question, args.confirm.yes).await?;
        }
        Ok((planned, decision, step))
    };
    let prepared = unless_interrupted(&mut interrupts, prepared).await;
    let (planned, decision, step) = match prepared {
        Ok(ready) => ready,
        Err(error) => {
            let ended = (Outcome::of(&error), exit_code_number(&error));
            deploy::report(&settings, Summary::default(), ended, started, None, &out);
            return Err(error);
        }
    };
    let schema = Some(decision.json());
    if args.dry_run {
        deploy::report(
            &settings,
            Summary::default(),
            (Outcome::Planned, 0),
            started,
            schema,
            &out,
        );
        return Ok(());
    }
    settings.maintenance = match &step {
        _ if args.maintenance => true,
        _ if args.no_maintenance => false,
        Some(step) => {
            step.plan.unapplies() || matches!(step.how, How::Restore { .. }) || step.resumes
        }
        None => false,
    };
    let closing_note = match &decision {
        Decision::NotRolledBack(why) => Some(schema_note(why, &target, &releases)),
        Decision::Plan(_) => None,
    };
    let request = Request {
        source: Source::Release(Box::new(target)),
        promoted_from: None,
        schema: step.map(Box::new),
        planned: Some(Box::new(planned)),
    };
    let extras = Extras {
        closing_note,
        schema,
    };
    deploy::deploy(&settings, request, extras, interrupts, out).await
}

/// The schema part: planned with the environment's adapter, or not rolled
/// back and why. Changes nothing (the plan Job is deleted).
async fn decide(
    (client, plan): &(kube::Client, Plan),
    settings: &DeploySettings,
    args: &RollbackArgs,
    releases: &[Release],
    target: &Release,
    out: &Arc<Output>,
) -> anyhow::Result<Decision> {
    let adapter = match adapter::for_settings(&args.env, plan.env.schema.as_ref()) {
        Ok(adapter) => adapter,
        Err(unsupported) => return Ok(Decision::NotRolledBack(unsupported.to_string())),
    };
    if let Some(why) = schema_plan::not_rolled_back(target) {
        return Ok(Decision::NotRolledBack(why));
    }
    out.step("schema plan");
    let runner = crate::pipeline::rollback::runner(client, plan, settings, out, adapter.as_ref());
    let number = releases.first().map_or(1, |r| r.number + 1);
    let plan = schema_plan::compute(&runner, releases, target, number).await?;
    Ok(Decision::Plan(Box::new(plan)))
}

/// Show the plan before anything changes: the objects (as a deploy's dry
/// run lists them) and the schema part; with `--output json` one `plan`
/// event with a `schema` object.
fn show(
    plan: &Plan,
    target: &Release,
    decision: &Decision,
    dry_run: bool,
    out: &Output,
) -> anyhow::Result<()> {
    if out.mode() == Mode::Json {
        let mut event = deploy::plan_event(plan);
        event["rollback_to"] = target.number.into();
        event["schema"] = decision.json();
        return stdout::line(event);
    }
    let changed = if dry_run { ", nothing changed" } else { "" };
    stdout::line(format!(
        "Plan: roll {} back to release {} ({}) (namespace {}){changed}",
        plan.env_name,
        target.number,
        short(&plan.sha),
        plan.env.namespace
    ))?;
    deploy::print_objects(plan)?;
    match decision {
        Decision::Plan(schema) => {
            for line in schema.lines() {
                stdout::line(line)?;
            }
        }
        Decision::NotRolledBack(why) => stdout::line(format!("Schema: not rolled back: {why}"))?,
    }
    Ok(())
}

/// How the schema is brought back, from the flags: refused (exit 5) when
/// a step cannot be undone and neither flag says how (with `--dry-run`, a
/// warning saying so); `--restore-backup` checked to name a backup that
/// succeeded. Changes nothing.
async fn choose_step(
    config: &Config,
    args: &RollbackArgs,
    releases: &[Release],
    decision: &Decision,
    out: &Output,
) -> anyhow::Result<Option<SchemaStep>> {
    let plan = match decision {
        Decision::Plan(plan) => plan,
        Decision::NotRolledBack(why) if args.restore_backup.is_some() => {
            return Err(input_error(format!(
                "--restore-backup: {why}; roll back without it, or restore a backup with \
                 `{} db restore {} BACKUP`",
                crate::program::name(),
                args.env
            )));
        }
        Decision::NotRolledBack(_) => return Ok(None),
    };
    let how = match args.restore_backup.as_deref() {
        Some(named) => {
            let backup = restore_choice(plan, named, &args.env)?;
            check_backup(config, &args.env, &backup).await?;
            How::Restore { backup }
        }
        None => {
            if !args.accept_data_loss
                && let Some(refusal) = plan.refusal(&args.env)
            {
                if args.dry_run {
                    out.warn(&format!("without --dry-run this would exit 5: {refusal}"));
                    return Ok(None);
                }
                return Err(BerthError::Refused(refusal).into());
            }
            How::Unapply {
                accept_data_loss: args.accept_data_loss,
            }
        }
    };
    let current = crate::pipeline::record::previous(releases).map_or(plan.target, |r| r.number);
    Ok(Some(SchemaStep {
        plan: (**plan).clone(),
        how,
        reverse: Reverse::RollbackTo(current),
        resumes: releases.first().is_some_and(unapply::stopped),
    }))
}

/// The backup `--restore-backup [ID]` restores: the one named, else the
/// plan's default; refused (exit 5) when there is none, naming why and the
/// other way out.
fn restore_choice(plan: &SchemaPlan, named: &str, env_name: &str) -> anyhow::Result<String> {
    if !plan.unapplies() {
        return Err(input_error(format!(
            "--restore-backup: the schema goes forward (or not at all) to release {}'s, so \
             there is nothing to restore; roll back without it",
            plan.target
        )));
    }
    if !named.is_empty() {
        return Ok(named.to_string());
    }
    plan.backup.clone().map_err(|why| {
        BerthError::Refused(format!(
            "--restore-backup: {why}. Name one (`{berth} db backups {env_name}` lists them): \
             --restore-backup ID; or unapply instead: without --restore-backup (with \
             --accept-data-loss if a step cannot be undone). Nothing was changed",
            berth = crate::program::name()
        ))
        .into()
    })
}

/// The backup exists in this environment's bucket and succeeded.
async fn check_backup(config: &Config, env_name: &str, id: &str) -> anyhow::Result<()> {
    let configured = crate::commands::db::setup::connect(config, env_name).await?;
    match configured.store.manifest(id).await? {
        Some(m) if m.environment == env_name && m.status == BackupStatus::Succeeded => Ok(()),
        Some(m) if m.environment != env_name => Err(input_error(format!(
            "--restore-backup {id}: that backup belongs to environment {}, not {env_name}",
            m.environment
        ))),
        Some(_) => Err(input_error(format!(
            "--restore-backup {id}: that backup failed, so it has no dump to restore"
        ))),
        None => Err(input_error(format!(
            "--restore-backup {id}: there is no such backup; `{} db backups {env_name}` lists them",
            crate::program::name()
        ))),
    }
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
            Some(Target::Sha(sha)) => by_sha(releases, sha, env)?,
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

/// The newest successful release whose SHA starts with `prefix`; an input
/// error naming them when successful releases of several SHAs do.
fn by_sha<'a>(
    releases: &'a [Release],
    prefix: &str,
    env: &str,
) -> anyhow::Result<Option<&'a Release>> {
    let matching: Vec<&Release> = releases
        .iter()
        .filter(|r| r.status == ReleaseStatus::Succeeded)
        .filter(|r| r.sha.to_ascii_lowercase().starts_with(prefix))
        .collect();
    let mut shas: Vec<&str> = matching.iter().map(|r| r.sha.as_str()).collect();
    shas.sort_unstable();
    shas.dedup();
    if shas.len() > 1 {
        let named: Vec<String> = shas
            .iter()
            .map(|sha| {
                let newest = matching
                    .iter()
                    .find(|r| r.sha == *sha)
                    .map_or(0, |r| r.number);
                format!("{sha} (release {newest})")
            })
            .collect();
        return Err(input_error(format!(
            "--to {prefix} is ambiguous: successful releases of {env} deployed {} SHAs starting              with it: {}; give more of the SHA, or the release number",
            shas.len(),
            named.join(", ")
        )));
    }
    Ok(matching.first().copied())
}

/// The question a rollback to `target` asks when it goes further back
/// than the default (the successful release before the current one).
fn depth_question(env: &str, releases: &[Release], target: &Release) -> Option<Question> {
    let previous = choose(releases, None, env).ok()?;
    let current = releases.first()?;
    let back = releases
        .iter()
        .filter(|r| r.status == ReleaseStatus::Succeeded && r.number > target.number)
        .count();
    // One successful release back is what `rollback ENV` does; only going
    // further asks (a stopped rollback's printed command stays one step).
    if target.number >= previous.number || back <= 1 {
        return None;
    }
    let deployed = age_since(target.finished_at.as_deref().unwrap_or(&target.started_at))
        .map(|age| format!(", deployed {age} ago"))
        .unwrap_or_default();
    Some(Question {
        action: format!(
            "roll {env} back to release {} ({})",
            target.number,
            short(&target.sha)
        ),
        why: format!(
            "release {} is {back} successful releases back, further than the previous one \
             (release {})",
            target.number, previous.number
        ),
        facts: vec![
            format!("environment: {env}"),
            format!(
                "roll back:   {} (release {}, {}) → {} (release {}{deployed})",
                short(&current.sha),
                current.number,
                current.status.as_str(),
                short(&target.sha),
                target.number
            ),
            format!(
                "previous:    release {} ({}), where `{} rollback {env}` goes",
                previous.number,
                short(&previous.sha),
                crate::program::name()
            ),
        ],
    })
}

/// The database schema is not rolled back (`why`): name the migrations
/// that ran after `target`, the release being left's among them.
fn schema_note(why: &str, target: &Release, releases: &[Release]) -> String {
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
            "the database schema was NOT rolled back ({why}); no migration ran after release \
             {}, so none needs undoing",
            target.number
        )
    } else {
        format!(
            "the database schema was NOT rolled back ({why}): the migrations since release {} \
             ran as {}; if one changed the schema in a way release {}'s code cannot use, revert \
             it by hand",
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
    fn a_sha_prefix_of_several_releases_sha_is_refused_naming_them() {
        let a = "ccccccc1234aaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let b = "ccccccc1234bbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let history = [
            release(4, a, Succeeded),
            release(3, b, Succeeded),
            release(2, a, Succeeded),
            release(1, "ccccccc9999bbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Failed),
        ];
        let refused = choose(&history, Some(&Target::parse("ccccccc").unwrap()), "p").unwrap_err();
        assert_eq!(crate::error::exit_code_number(&refused), 2);
        let message = refused.to_string();
        assert!(message.contains(&format!("{a} (release 4)")), "{message}");
        assert!(message.contains(&format!("{b} (release 3)")), "{message}");
        assert!(!message.contains("ccccccc9999"), "{message}");
        // The same SHA deployed twice is not ambiguous: the newest release.
        let one = Target::parse("ccccccc1234a").unwrap();
        assert_eq!(choose(&history, Some(&one), "p").unwrap().number, 4);
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
    fn only_a_rollback_past_the_previous_release_asks() {
        let history = [
            release(4, "ddddddd", Succeeded),
            release(3, "ccccccc", Failed),
            release(2, "bbbbbbb", Succeeded),
            release(1, "aaaaaaa", Succeeded),
        ];
        assert_eq!(depth_question("p", &history, &history[2]), None);
        assert_eq!(depth_question("p", &history, &history[0]), None);
        let question = depth_question("p", &history, &history[3]).unwrap();
        assert_eq!(question.action, "roll p back to release 1 (aaaaaaa)");
        assert!(
            question
                .why
                .starts_with("release 1 is 2 successful releases back"),
            "{question:?}"
        );
        assert!(
            question.facts[1].contains("ddddddd (release 4, succeeded) → aaaaaaa (release 1"),
            "{question:?}"
        );
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
        let note = schema_note("no framework", &history[2].clone(), &history);
        assert!(
            note.starts_with("the database schema was NOT rolled back (no framework)"),
            "{note}"
        );
        assert!(
            note.contains("Job workbench-production-migrate-3 of release 3"),
            "{note}"
        );
        let none = schema_note("no framework", &history[1].clone(), &history);
        assert!(none.contains("no migration ran after release 3"), "{none}");
    }
}
