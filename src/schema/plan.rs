//! A rollback's schema plan, computed before anything changes: the live
//! state, the target's, the steps between them from the newer release's
//! image, and whether any cannot be undone.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::adapter::{Adapter, MigrationId, Request, State, Step};
use super::jobs::{self, Ran, Spec};
use super::record::Irreversible;
use crate::cluster::release::{Manifest, Release};
use crate::migrate::JobTask;
use crate::output::Output;
use crate::rollout::Thresholds;

/// Where a rollback's schema Jobs come from: the newest release that
/// recorded its schema. Its image has the files of every migration applied
/// up to then; its Job the pod, sidecars and credentials that reach the
/// database.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSource {
    /// The release whose record it is.
    pub release: u64,
    /// Its migration image, by digest.
    pub image: String,
    /// Its migration Job, as it ran.
    pub job: Manifest,
}

impl JobSource {
    /// The recorded migration Job, to copy.
    pub fn template(&self) -> anyhow::Result<Job> {
        let object = self
            .job
            .objects()?
            .into_iter()
            .next()
            .with_context(|| format!("release {} recorded no migration Job", self.release))?;
        serde_json::from_value(serde_json::to_value(object)?)
            .with_context(|| format!("reading release {}'s recorded migration Job", self.release))
    }
}

/// The newest release in `history` (newest first) that recorded a schema.
pub fn job_source(history: &[Release]) -> Option<JobSource> {
    history.iter().find_map(|r| {
        r.schema.as_ref().map(|s| JobSource {
            release: r.number,
            image: s.image.clone(),
            job: s.job.clone(),
        })
    })
}

/// Why the schema part of a rollback to `target` is not done, if it is
/// not: the target recorded no schema.
pub fn not_rolled_back(target: &Release) -> Option<String> {
    if target.schema.is_none() {
        return Some(format!(
            "release {} recorded no schema: it was deployed before berth recorded one, or \
             without migrate.framework",
            target.number
        ));
    }
    None
}

/// The backup `--restore-backup` restores by default when rolling back to
/// `target`: the pre-migration backup of the first release whose migration
/// changed the schema after it was last in the target's state (a rollback
/// to the target can have brought it back since), taken just before the
/// schema left that state. `Err`: why there is none.
pub fn default_backup(history: &[Release], target: &Release) -> Result<String, String> {
    let state = target.schema.as_ref().map(|s| &s.applied);
    let last_there = history
        .iter()
        .filter(|r| r.number >= target.number)
        .filter(|r| r.schema.as_ref().map(|s| &s.applied) == state)
        .map(|r| r.number)
        .max()
        .unwrap_or(target.number);
    let first = history
        .iter()
        .filter(|r| r.number > last_there)
        .filter(|r| r.schema.as_ref().is_some_and(|s| !s.migrated.is_empty()))
        .min_by_key(|r| r.number);
    match first {
        None => Err(format!(
            "no release after release {last_there} recorded a migration that changed the \
             schema, so there is no pre-migration backup of release {}'s state",
            target.number
        )),
        Some(r) => r.backup.clone().ok_or_else(|| {
            let why = if r.no_backup {
                "it was deployed with --no-backup"
            } else {
                "the environment took none (backups.before_migrate, or no `backups:`)"
            };
            format!(
                "release {}, the first to migrate after release {last_there}, has no \
                 pre-migration backup: {why}",
                r.number
            )
        }),
    }
}

/// The schema part of a rollback, shown before anything changes.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaPlan {
    /// `migrate.framework`.
    pub framework: String,
    /// The release rolled back to.
    pub target: u64,
    /// The live state, read by the plan Job.
    pub from: State,
    /// The target's recorded state.
    pub to: State,
    /// The steps from `from` to `to`, in order.
    pub steps: Vec<Step>,
    /// The framework's own plan text.
    pub plan_text: String,
    /// Where the Jobs come from (the image and the Job).
    pub source: JobSource,
    /// The backup `--restore-backup` restores by default, or why there is none.
    pub backup: Result<String, String>,
}

impl SchemaPlan {
    /// Nothing to do: the live schema is the target's already.
    pub fn unchanged(&self) -> bool {
        self.steps.is_empty()
    }

    /// Some migration is unapplied (maintenance defaults on).
    pub fn unapplies(&self) -> bool {
        self.steps.iter().any(|s| s.backwards)
    }

    /// The migrations of the plan, in order: what the Migrate request expects.
    pub fn expected(&self) -> Vec<MigrationId> {
        Step::ids(&self.steps)
    }

    /// The steps that cannot be undone, with their irreversible operations.
    pub fn irreversible(&self) -> Vec<Irreversible> {
        Irreversible::of(&self.steps)
    }

    /// The refusal when a step cannot be undone and neither way out was
    /// chosen: every migration and operation named, and both flags.
    pub fn refusal(&self, env_name: &str) -> Option<String> {
        let irreversible = self.irreversible();
        if irreversible.is_empty() {
            return None;
        }
        let mut text = format!(
            "refusing to roll {env_name}'s schema back to release {}: {} cannot be unapplied:",
            self.target,
            if irreversible.len() == 1 {
                "this migration"
            } else {
                "these migrations"
            }
        );
        for i in &irreversible {
            let _ = write!(text, "\n  {}: {}", i.migration, i.operations.join("; "));
        }
        let backup = match &self.backup {
            Ok(id) => format!("backup {id}"),
            Err(why) => format!("a backup you name (there is no default: {why})"),
        };
        let _ = write!(
            text,
            "\nNothing was changed. Either add --restore-backup [ID]: restore {backup}, taken \
             before the schema left release {}'s state, instead of unapplying (writes since \
             that backup are lost); or add --accept-data-loss: unapply them anyway, their \
             irreversible operations doing nothing (the data they changed stays changed or lost)",
            self.target
        );
        Some(text)
    }

    /// The lines shown before acting.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "Schema ({}): from the live state to release {}'s, with the image {} (release {}'s)",
            self.framework, self.target, self.source.image, self.source.release
        )];
        if self.unchanged() {
            lines.push(format!(
                "  unchanged: the live schema is release {}'s already; nothing to migrate",
                self.target
            ));
            return lines;
        }
        for step in &self.steps {
            let way = if step.backwards { "unapply" } else { "apply" };
            let mark = if step.irreversible() {
                "  IRREVERSIBLE"
            } else {
                ""
            };
            lines.push(format!("  {way} {}{mark}", step.migration));
            for op in &step.operations {
                lines.push(format!("      {}", op.description));
            }
        }
        if !self.plan_text.trim().is_empty() {
            lines.push("  Django's plan:".into());
            lines.extend(self.plan_text.lines().map(|l| format!("    {l}")));
        }
        lines.push(match &self.backup {
            Ok(id) => format!("  --restore-backup would restore backup {id}"),
            Err(why) => format!("  --restore-backup has no default backup: {why}"),
        });
        lines
    }

    /// The `schema` object of the JSON plan event.
    pub fn json(&self) -> Value {
        json!({
            "framework": self.framework,
            "target": self.target,
            "from": self.from,
            "to": self.to,
            "steps": self.steps,
            "irreversible": self.irreversible(),
            "plan_text": self.plan_text,
            "image": self.source.image,
            "image_of_release": self.source.release,
            "backup": match &self.backup {
                Ok(id) => json!({"id": id}),
                Err(why) => json!({"id": null, "why": why}),
            },
        })
    }
}

/// The schema part of a rollback: planned, or not rolled back and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Brought back by the plan.
    Plan(Box<SchemaPlan>),
    /// Not rolled back; the code rollback goes on.
    NotRolledBack(String),
}

impl Decision {
    /// The `schema` object of the JSON plan event.
    pub fn json(&self) -> Value {
        match self {
            Decision::Plan(plan) => plan.json(),
            Decision::NotRolledBack(why) => json!({"rolled_back": false, "why": why}),
        }
    }
}

/// What runs the adapter's Jobs in an environment.
pub struct Runner<'a> {
    /// The cluster.
    pub client: &'a Client,
    /// The environment's namespace.
    pub namespace: &'a str,
    /// `<app>-<env>`, which names the Jobs.
    pub instance: String,
    /// The environment's adapter.
    pub adapter: &'a dyn Adapter,
    /// When a stuck pod fails a Job.
    pub thresholds: Thresholds,
    /// How long past its deadline a Job may take.
    pub timeout: Duration,
    /// Progress.
    pub out: &'a Arc<Output>,
}

impl Runner<'_> {
    /// Carry out `request` as `task` in a Job copied from `source`'s, on
    /// its image, named after release `number` (`sha`).
    pub async fn ask(
        &self,
        source: &JobSource,
        request: &Request,
        task: JobTask,
        (number, sha): (u64, &str),
        cancel: &CancellationToken,
    ) -> anyhow::Result<Ran> {
        let template = source.template()?;
        let spec = Spec {
            template: &template,
            task,
            instance: &self.instance,
            number,
            sha,
            image: Some(&source.image),
        };
        jobs::run(
            self.client,
            self.namespace,
            self.adapter,
            request,
            &spec,
            self.thresholds,
            self.timeout,
            cancel,
            self.out,
        )
        .await
    }
}

/// Plan the schema part of rolling back to `target`, changing nothing: the
/// Plan request in a Job from the newest release that recorded a schema,
/// named after the release the rollback will be (`number`). `history` is
/// newest first.
pub async fn compute(
    runner: &Runner<'_>,
    history: &[Release],
    target: &Release,
    number: u64,
) -> anyhow::Result<SchemaPlan> {
    let recorded = target
        .schema
        .as_ref()
        .context("the target recorded no schema")?;
    let source = job_source(history).context("no release recorded a schema")?;
    let request = Request::Plan {
        target: recorded.applied.clone(),
    };
    let cancel = CancellationToken::new();
    let ran = runner
        .ask(
            &source,
            &request,
            JobTask::SchemaPlan,
            (number, &target.sha),
            &cancel,
        )
        .await?;
    if let Some(error) = ran.response.error {
        return Err(crate::error::BerthError::Refused(format!(
            "the schema cannot be planned back to release {}'s with release {}'s image {}: \
             {error}; nothing was changed",
            target.number, source.release, source.image
        ))
        .into());
    }
    Ok(SchemaPlan {
        framework: recorded.framework.clone(),
        target: target.number,
        from: ran.response.applied,
        to: recorded.applied.clone(),
        steps: ran.response.plan,
        plan_text: ran.response.plan_text,
        backup: default_backup(history, target),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::release::{ReleaseStatus, example};
    use crate::schema::adapter::Operation;
    use crate::schema::record::SchemaRecord;

    fn id(app: &str, name: &str) -> MigrationId {
        MigrationId {
            app: app.into(),
            name: name.into(),
        }
    }

    fn schema(image: &str, migrated: &[(&str, &str)]) -> SchemaRecord {
        let last = migrated.last().map_or("0002_x", |(_, n)| n);
        SchemaRecord {
            framework: "django".into(),
            applied: State::from([("catalog".to_string(), last.to_string())]),
            image: image.into(),
            migrated: migrated.iter().map(|(a, n)| id(a, n)).collect(),
            irreversible: vec![],
            job: Manifest::default(),
        }
    }

    fn history() -> Vec<Release> {
        let mut r = vec![
            example(5, "eeeeeee", ReleaseStatus::Failed),
            example(4, "ddddddd", ReleaseStatus::Succeeded),
            example(3, "ccccccc", ReleaseStatus::Succeeded),
            example(2, "bbbbbbb", ReleaseStatus::Succeeded),
            example(1, "aaaaaaa", ReleaseStatus::Succeeded),
        ];
        r[1].schema = Some(schema("reg/app@sha256:4", &[("catalog", "0004_y")]));
        r[1].backup = Some("b-4".into());
        r[2].schema = Some(schema("reg/app@sha256:3", &[("catalog", "0003_x")]));
        r[2].backup = Some("b-3".into());
        r[3].schema = Some(schema("reg/app@sha256:2", &[]));
        r
    }

    #[test]
    fn the_jobs_come_from_the_newest_release_that_recorded_a_schema() {
        let h = history();
        let source = job_source(&h).unwrap();
        assert_eq!(
            (source.release, source.image.as_str()),
            (4, "reg/app@sha256:4")
        );
        assert_eq!(job_source(&h[4..]), None);
    }

    #[test]
    fn the_default_backup_is_that_of_the_first_release_after_the_target_that_migrated() {
        let h = history();
        assert_eq!(default_backup(&h, &h[3]), Ok("b-3".into()));
        assert_eq!(default_backup(&h, &h[2]), Ok("b-4".into()));
        let none = default_backup(&h, &h[1]).unwrap_err();
        assert!(none.contains("no release after release 4"), "{none}");
        // Rolled back to release 2's state (release 6), then migrated again
        // (release 7): the backup before release 7 holds release 2's state.
        let mut again = history();
        let mut rollback = example(6, "bbbbbbb", ReleaseStatus::Succeeded);
        rollback.schema = again[3].schema.clone();
        let mut redeploy = example(7, "ddddddd", ReleaseStatus::Succeeded);
        redeploy.schema = Some(schema("reg/app@sha256:7", &[("catalog", "0003_x")]));
        redeploy.backup = Some("b-7".into());
        again.insert(0, rollback);
        again.insert(0, redeploy);
        assert_eq!(default_backup(&again, &again[5]), Ok("b-7".into()));
        let mut skipped = history();
        skipped[2].backup = None;
        skipped[2].no_backup = true;
        let why = default_backup(&skipped, &skipped[3]).unwrap_err();
        assert!(
            why.contains("release 3") && why.contains("--no-backup"),
            "{why}"
        );
    }

    #[test]
    fn a_target_without_a_schema_record_is_not_rolled_back_and_says_why() {
        let h = history();
        let why = not_rolled_back(&h[4]).unwrap();
        assert!(why.contains("release 1 recorded no schema"), "{why}");
        assert_eq!(not_rolled_back(&h[3]), None);
    }

    fn plan(steps: Vec<Step>) -> SchemaPlan {
        let h = history();
        SchemaPlan {
            framework: "django".into(),
            target: 2,
            from: State::new(),
            to: State::new(),
            steps,
            plan_text: "Planned operations:\n  Undo x".into(),
            source: job_source(&h).unwrap(),
            backup: default_backup(&h, &h[3]),
        }
    }

    fn step(app: &str, name: &str, backwards: bool, ops: &[(&str, bool)]) -> Step {
        Step {
            migration: id(app, name),
            backwards,
            operations: ops
                .iter()
                .map(|(d, i)| Operation {
                    description: (*d).into(),
                    irreversible: *i,
                })
                .collect(),
        }
    }

    #[test]
    fn an_irreversible_step_is_refused_naming_each_migration_operation_and_both_flags() {
        let p = plan(vec![
            step("catalog", "0004_y", true, &[("Undo Add field y", false)]),
            step(
                "catalog",
                "0003_x",
                true,
                &[
                    ("Raw Python operation -> IRREVERSIBLE", true),
                    ("Undo z", false),
                ],
            ),
        ]);
        assert!(p.unapplies() && !p.unchanged());
        assert_eq!(
            p.expected(),
            [id("catalog", "0004_y"), id("catalog", "0003_x")]
        );
        let refusal = p.refusal("production").unwrap();
        assert!(
            refusal.contains("catalog.0003_x: Raw Python operation -> IRREVERSIBLE"),
            "{refusal}"
        );
        assert!(!refusal.contains("0004_y"), "{refusal}");
        assert!(
            refusal.contains("--restore-backup") && refusal.contains("backup b-3"),
            "{refusal}"
        );
        assert!(refusal.contains("--accept-data-loss"), "{refusal}");
        assert!(refusal.contains("Nothing was changed"), "{refusal}");
        let shown = p.json();
        assert_eq!(shown["irreversible"][0]["migration"]["name"], "0003_x");
        assert_eq!(shown["backup"]["id"], "b-3");
        assert!(
            p.lines()
                .iter()
                .any(|l| l.contains("unapply catalog.0003_x  IRREVERSIBLE"))
        );

        let reversible = plan(vec![step("catalog", "0004_y", true, &[("Undo y", false)])]);
        assert_eq!(reversible.refusal("production"), None);
        let unchanged = plan(vec![]);
        assert!(unchanged.unchanged() && !unchanged.unapplies());
        assert!(unchanged.lines()[1].contains("release 2's already"));
    }
}
