//! Under the rollback's lock: bring the schema to the target's state (the
//! unapply Job, or the restore of a pre-migration backup), and verify it.

use anyhow::Context as _;
use std::fmt::Write as _;
use tokio_util::sync::CancellationToken;

use super::adapter::{Request, State};
use super::jobs::NoResponse;
use super::plan::{Runner, SchemaPlan};
use super::record::SchemaRecord;
use crate::cluster::release::{FailureRecord, Release};
use crate::config::{Config, Environment};
use crate::error::{BerthError, Cancelled, input_error};
use crate::migrate::JobTask;

/// The reason a release records when its schema step stopped: the
/// maintenance page stays up, as the schema is between the two states.
pub const FAILURE_REASON: &str = "SchemaRollbackFailed";

/// How the schema reaches the target's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// The Migrate request in the newer image (`--accept-data-loss`:
    /// irreversible operations pass as no-ops).
    Unapply {
        /// `--accept-data-loss`.
        accept_data_loss: bool,
    },
    /// `--restore-backup`: restore this backup through `db restore`'s sequence.
    Restore {
        /// The backup's id.
        backup: String,
    },
}

/// A rollback's schema step, planned and chosen before the lock.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaStep {
    /// The plan shown.
    pub plan: SchemaPlan,
    /// How it is carried out.
    pub how: How,
    /// The release being left (its schema is where `--to` it goes forward again).
    pub current: u64,
    /// It continues (or reverses) a schema rollback that stopped midway,
    /// whose maintenance page is still up: this one takes it down.
    pub resumes: bool,
}

/// Whether `release` is a schema rollback that stopped midway (its
/// maintenance page left up).
pub fn stopped(release: &Release) -> bool {
    release
        .failure
        .as_ref()
        .is_some_and(|f| f.reason == FAILURE_REASON)
}

/// The schema the rollback release records once the target's state is
/// reached: the target's, with the newer image and Job (which know every
/// migration, so a later rollback can go forward again).
pub fn reached(plan: &SchemaPlan) -> SchemaRecord {
    SchemaRecord {
        framework: plan.framework.clone(),
        applied: plan.to.clone(),
        image: plan.source.image.clone(),
        migrated: plan
            .steps
            .iter()
            .filter(|s| !s.backwards)
            .map(|s| s.migration.clone())
            .collect(),
        irreversible: Vec::new(),
        job: plan.source.job.clone(),
    }
}

/// The schema recorded when the step stopped midway: the state read after.
pub fn stopped_at(plan: &SchemaPlan, applied: State) -> SchemaRecord {
    SchemaRecord {
        applied,
        migrated: Vec::new(),
        ..reached(plan)
    }
}

/// `Ok` when the state read after equals the target's; else which apps
/// differ, as `app: is X, release N recorded Y`.
pub fn verify(after: &State, target: &State, number: u64) -> Result<(), String> {
    let apps: std::collections::BTreeSet<&String> = after.keys().chain(target.keys()).collect();
    let named = |state: &State, app: &str| {
        state
            .get(app)
            .map_or_else(|| "none applied".to_string(), Clone::clone)
    };
    let differ: Vec<String> = apps
        .into_iter()
        .filter(|app| after.get(*app) != target.get(*app))
        .map(|app| {
            format!(
                "{app}: is {}, release {number} recorded {}",
                named(after, app),
                named(target, app)
            )
        })
        .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the schema is not release {number}'s after the rollback step: {}",
            differ.join("; ")
        ))
    }
}

/// What to run after the step stopped midway: continue, reverse, or end
/// maintenance.
pub fn next_commands(env_name: &str, step: &SchemaStep) -> String {
    let berth = crate::program::name();
    let flag = match step.how {
        How::Unapply {
            accept_data_loss: true,
        } => " --accept-data-loss",
        _ => "",
    };
    let mut text = String::new();
    let _ = write!(
        text,
        "`{berth} rollback {env_name} --to {}{flag}` continues (it plans again from the live \
         state); `{berth} rollback {env_name} --to {}` reverses (it migrates forward with the \
         same image); `{berth} maintenance {env_name} off` takes the maintenance page down",
        step.plan.target, step.current
    );
    text
}

/// Where the schema step works.
pub struct Place<'a> {
    /// What runs the adapter's Jobs.
    pub runner: Runner<'a>,
    /// berth.yaml.
    pub config: &'a Config,
    /// The environment's name.
    pub env_name: &'a str,
    /// The environment.
    pub env: &'a Environment,
}

/// Bring the schema to the target's state and verify it, filling in
/// `record` (its `schema`, and its `failure` when the step stops). When
/// the step fails no workload must change: the caller stops.
pub async fn run(
    place: &Place<'_>,
    step: &SchemaStep,
    record: &mut Release,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let plan = &step.plan;
    if plan.unchanged() {
        record.schema = Some(reached(plan));
        return Ok(());
    }
    let out = place.runner.out;
    out.step("schema");
    let sha = record.sha.clone();
    let release = (record.number, sha.as_str());
    let ran = match &step.how {
        How::Unapply { accept_data_loss } => {
            let request = Request::Migrate {
                target: plan.to.clone(),
                expected: plan.expected(),
                accept_data_loss: *accept_data_loss,
            };
            place
                .runner
                .ask(
                    &plan.source,
                    &request,
                    JobTask::SchemaRollback,
                    release,
                    cancel,
                )
                .await
        }
        How::Restore { backup } => match restore(place, backup).await {
            Ok(()) => {
                let inspect = Request::Inspect;
                place
                    .runner
                    .ask(
                        &plan.source,
                        &inspect,
                        JobTask::SchemaState,
                        release,
                        cancel,
                    )
                    .await
            }
            Err(error) => Err(error),
        },
    };
    let (job, after, error) = match ran {
        Ok(ran) => {
            let error = ran
                .response
                .error
                .clone()
                .or_else(|| ran.failure.as_ref().map(|f| f.message.clone()))
                .or_else(|| verify(&ran.response.applied, &plan.to, plan.target).err());
            (Some(ran.job), Some(ran.response.applied), error)
        }
        Err(error) if error.downcast_ref::<Cancelled>().is_some() => {
            // Stopped from outside (Ctrl-C, a lost lock): the Job is gone and
            // the state unknown, so the page stays up and the record says so.
            record.failure = Some(FailureRecord {
                workload: "schema".into(),
                pod: None,
                reason: FAILURE_REASON.into(),
                message: format!(
                    "stopped before the schema step ended; the schema may be between the two \
                     releases': {}",
                    next_commands(place.env_name, step)
                ),
            });
            return Err(error);
        }
        Err(error) => {
            let job = error.downcast_ref::<NoResponse>().map(|e| e.job.clone());
            // Where did it stop? Read the state, if a Job can still tell.
            let read = place
                .runner
                .ask(
                    &plan.source,
                    &Request::Inspect,
                    JobTask::SchemaState,
                    release,
                    cancel,
                )
                .await
                .ok()
                .map(|r| r.response.applied);
            (job, read, Some(format!("{error:#}")))
        }
    };
    let Some(error) = error else {
        out.info(&format!(
            "the schema is release {}'s: {}",
            plan.target,
            describe(&plan.to)
        ));
        record.schema = Some(reached(plan));
        return Ok(());
    };
    let job = job.map_or_else(|| "the schema step".to_string(), |j| format!("Job/{j}"));
    record.schema = after.clone().map(|applied| stopped_at(plan, applied));
    record.failure = Some(FailureRecord {
        workload: job.clone(),
        pod: None,
        reason: FAILURE_REASON.into(),
        message: error.clone(),
    });
    let now = after
        .as_ref()
        .map_or_else(|| "unknown (no Job could read it)".to_string(), describe);
    out.failure(&format!(
        "the schema rollback stopped ({job}): {error}\nno workload was changed; the schema is \
         now: {now} (recorded in release {}); the maintenance page stays up.\n{}",
        record.number,
        next_commands(place.env_name, step)
    ));
    Err(BerthError::DeployFailed(format!("the schema rollback stopped ({job}): {error}")).into())
}

/// A state as `app name, app name`.
pub fn describe(state: &State) -> String {
    if state.is_empty() {
        return "no migration applied".into();
    }
    state
        .iter()
        .map(|(app, name)| format!("{app} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Restore `backup` through `db restore`'s sequence, under the lock the
/// rollback holds (it is not taken again).
async fn restore(place: &Place<'_>, backup: &str) -> anyhow::Result<()> {
    use crate::commands::db::restore::Report;
    use crate::commands::db::restore_sequence::{self as sequence, Context};
    let (env, env_name) = (place.env, place.env_name);
    let backups = env.backups.as_ref().ok_or_else(|| {
        input_error(format!(
            "--restore-backup: environment {env_name} has no `backups:` in berth.yaml"
        ))
    })?;
    let secret = env
        .database
        .as_ref()
        .and_then(|d| d.secret.as_deref())
        .ok_or_else(|| {
            input_error(format!(
                "--restore-backup: environment {env_name} has no `database.secret`"
            ))
        })?;
    let client = place.runner.client;
    let store = crate::backup::store::BackupStore::connect(client, env, backups).await?;
    let ctx = Context {
        env_name,
        env,
        backups,
        client: client.clone(),
        store,
        secret,
        scope: crate::maintenance::Scope::new(client.clone(), &place.config.app, env_name, env),
        who: crate::identity::Deployer::current().describe(),
        out: place.runner.out.clone(),
    };
    let mut interrupts = crate::interrupt::Interrupts::listen()?;
    let mut report = Report::default();
    sequence::restore(&ctx, backup, false, &mut interrupts, &mut report)
        .await
        .with_context(|| format!("restoring backup {backup}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::release::Manifest;
    use crate::schema::adapter::{MigrationId, Step};
    use crate::schema::plan::JobSource;

    fn state(pairs: &[(&str, &str)]) -> State {
        pairs
            .iter()
            .map(|(a, n)| ((*a).to_string(), (*n).to_string()))
            .collect()
    }

    fn plan() -> SchemaPlan {
        let step = |name: &str, backwards| Step {
            migration: MigrationId {
                app: "catalog".into(),
                name: name.into(),
            },
            backwards,
            operations: vec![],
        };
        SchemaPlan {
            framework: "django".into(),
            target: 3,
            from: state(&[("catalog", "0005_b")]),
            to: state(&[("catalog", "0003_a")]),
            steps: vec![step("0005_b", true), step("0004_a", true)],
            plan_text: String::new(),
            source: JobSource {
                release: 5,
                image: "reg/app@sha256:5".into(),
                job: Manifest::default(),
            },
            backup: Err("none".into()),
        }
    }

    #[test]
    fn verification_names_each_app_that_differs() {
        let target = state(&[("catalog", "0003_a"), ("auth", "0012_x")]);
        assert_eq!(verify(&target.clone(), &target, 3), Ok(()));
        let after = state(&[("catalog", "0004_a"), ("extra", "0001_initial")]);
        let diff = verify(&after, &target, 3).unwrap_err();
        assert!(
            diff.contains("catalog: is 0004_a, release 3 recorded 0003_a"),
            "{diff}"
        );
        assert!(
            diff.contains("auth: is none applied, release 3 recorded 0012_x"),
            "{diff}"
        );
        assert!(
            diff.contains("extra: is 0001_initial, release 3 recorded none applied"),
            "{diff}"
        );
    }

    #[test]
    fn the_rollback_records_the_targets_state_with_the_newer_image() {
        let p = plan();
        let record = reached(&p);
        assert_eq!(record.applied, p.to);
        assert_eq!(record.image, "reg/app@sha256:5");
        assert!(
            record.migrated.is_empty(),
            "unapplied migrations are not migrated"
        );
        let stopped = stopped_at(&p, state(&[("catalog", "0004_a")]));
        assert_eq!(stopped.applied, state(&[("catalog", "0004_a")]));
        assert_eq!(stopped.image, "reg/app@sha256:5");
    }

    #[test]
    fn a_stopped_rollback_says_how_to_continue_reverse_and_end_maintenance() {
        let step = SchemaStep {
            plan: plan(),
            how: How::Unapply {
                accept_data_loss: true,
            },
            current: 5,
            resumes: false,
        };
        let text = next_commands("production", &step);
        assert!(
            text.contains("rollback production --to 3 --accept-data-loss` continues"),
            "{text}"
        );
        assert!(
            text.contains("rollback production --to 5` reverses"),
            "{text}"
        );
        assert!(text.contains("maintenance production off"), "{text}");
    }
}
