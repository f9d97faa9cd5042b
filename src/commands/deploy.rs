//! `berth advanced-deploy ENV SHA`: resolve the flags into settings, run the
//! deploy pipeline ([`crate::pipeline`]), and report how it ended.

use crate::schema::adapter::Step;
use crate::schema::record::Irreversible;
use std::sync::Arc;
use std::time::Instant;

use crate::cli::{DeployArgs, GlobalArgs};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

use crate::cluster::apply;
use crate::error::{Outcome, exit_code_number};
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::migrate::overlay::Origin;
use crate::output::{Output, Report, ReportFailure};
use crate::pipeline::{self, DeploySettings, Finished, Plan, Request, Summary};
use crate::stdout;

/// `advanced-deploy`: deploy the overlay at the SHA; always ends with the report.
pub async fn run(global: &GlobalArgs, args: &DeployArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let started = Instant::now();
    // Listening from the start: a signal at any point stops the deploy
    // cleanly (exit 130), never the signal's default end of the process.
    let mut interrupts = Interrupts::listen()?;
    // An abbreviated SHA becomes the full one before anything else happens.
    let given = &args.target.sha;
    let expanded = async {
        let config = super::load_config(global, &[&args.target.env], &out)?;
        crate::commit::expand(&config, given, &out).await
    };
    let expanded = unless_interrupted(&mut interrupts, expanded).await;
    let settings = DeploySettings {
        timeout: args.wait.timeout,
        lock_wait: args.wait.lock_wait,
        prune: args.prune,
        rollback_on_failure: args.rollback_on_failure,
        maintenance: args.maintenance,
        dry_run: args.dry_run,
        no_backup: args.no_backup,
        upgrade_crds: args.upgrade_crds,
        adopt: args.adopt,
        yes: args.confirm.yes,
        ..DeploySettings::new(
            crate::config::locate(global.config.as_deref())?,
            &args.target.env,
            expanded.as_deref().unwrap_or(given.as_str()),
        )
    };
    if let Err(error) = expanded {
        let ended = (Outcome::of(&error), exit_code_number(&error));
        report(&settings, Summary::default(), ended, started, None, &out);
        return Err(error);
    }
    deploy(
        &settings,
        Request::overlay(),
        Extras::default(),
        interrupts,
        out,
    )
    .await
}

/// What a rollback adds to a deploy's output.
#[derive(Debug, Default)]
pub struct Extras {
    /// Printed last, as a warning, once the run recorded a release (so
    /// began to change the environment): a run refused before that (the
    /// lock held, an interruption, a plan that cannot apply) changed
    /// nothing, and the note would only mislead.
    pub closing_note: Option<String>,
    /// The report's `schema` part: the rollback's schema plan.
    pub schema: Option<serde_json::Value>,
}

/// Run the pipeline for `request` (`interrupts` listening since the
/// command started), print the closing note (a warning)
/// last if it recorded a release, and end with the report (a dry run prints its plan first, and
/// ends `planned`).
pub async fn deploy(
    settings: &DeploySettings,
    request: Request,
    extras: Extras,
    interrupts: Interrupts,
    out: Arc<Output>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let result = pipeline::run(settings, request, interrupts, &out, &mut summary).await;
    if let Ok(Finished::Planned(plan)) = &result {
        print_plan(plan, &out)?;
    }
    if let Some(notes) = summary.notes.as_deref() {
        print_notes(notes, &out)?;
    }
    if let Some(note) = extras.closing_note.filter(|_| summary.release.is_some()) {
        out.warn(&note);
    }
    let status = match &result {
        Ok(Finished::Planned(_)) => Outcome::Planned,
        other => Outcome::of_result(other),
    };
    let exit_code = result.as_ref().map_or_else(exit_code_number, |_| 0);
    report(
        settings,
        summary,
        (status, exit_code),
        started,
        extras.schema,
        &out,
    );
    result.map(drop)
}

/// Stage the report of a deploy of `settings` that ended with `status`
/// and `exit_code`, `started` then, as far as `summary` says it got.
pub fn report(
    settings: &DeploySettings,
    summary: Summary,
    (status, exit_code): (Outcome, u8),
    started: Instant,
    schema: Option<serde_json::Value>,
    out: &Output,
) {
    out.report(&Report {
        status,
        environment: settings.env_name.clone(),
        sha: summary.sha.unwrap_or_else(|| settings.sha.clone()),
        release: summary.release,
        duration_s: started.elapsed().as_secs_f64(),
        failure: summary.failure.map(|f| ReportFailure {
            workload: f.workload,
            pod: f.pod,
            reason: f.reason,
            message: f.message,
        }),
        exit_code,
        schema,
        timings: summary.timings,
        notes: summary.notes,
        hooks: summary.hooks,
    });
}

/// A chart's NOTES.txt, as helm prints it after an install; with
/// `--output json` the report's `notes` carries it instead.
pub fn print_notes(notes: &str, out: &Output) -> anyhow::Result<()> {
    if out.mode() == crate::output::Mode::Json {
        return Ok(());
    }
    stdout::line(format!("NOTES:\n{notes}"))
}

/// The `plan` event of `--output json`: the objects (in apply order, those
/// created with their CRD under `with_crd`), the migration Job, images,
/// assets, backup and schema.
pub fn plan_event(plan: &Plan) -> serde_json::Value {
    let ordered = apply::in_order(&plan.objects);
    serde_json::json!({
        "event": "plan",
        "environment": plan.env_name,
        "namespace": plan.env.namespace,
        "sha": plan.sha,
        "objects": ordered.iter().map(|o| o.describe()).collect::<Vec<_>>(),
        "with_crd": ordered.iter().filter_map(|o| o.with_crd.as_ref().map(|crd| serde_json::json!({"object": o.describe(), "crd": crd}))).collect::<Vec<_>>(),
        "migration": plan.migration.as_ref().map(|job| migration_event(job, plan.migration_origin.as_ref())),
        "images": plan.pinned.iter().map(|p| serde_json::json!({"object": p.object, "container": p.container, "from": p.from, "to": p.to})).collect::<Vec<_>>(),
        "assets": match (&plan.assets, &plan.assets_unavailable) {
            (Some(a), _) => serde_json::json!({"source": a.resolved.description, "files": a.resolved.files.len(), "bucket": a.store.bucket}),
            (None, Some(why)) => serde_json::json!({"unavailable": why}),
            (None, None) => serde_json::Value::Null,
        },
        "backup": {"take": plan.backup.may_back_up(), "decision": plan.backup, "why": plan.backup.describe()},
        "schema": plan.schema.as_ref().map(|a| schema_event(a.framework(), plan.inspected.as_deref())),
    })
}

/// The plan event's `migration`: the Job and its containers, and with
/// `migrate.overlay` where it came from (see [`Origin::to_json`]).
fn migration_event(job: &Job, origin: Option<&Origin>) -> serde_json::Value {
    let mut event = serde_json::json!({
        "object": format!("Job/{}", job.name_any()),
        "containers": migration_containers(job).iter().map(|(name, image)| serde_json::json!({"name": name, "image": image})).collect::<Vec<_>>(),
    });
    if let (Some(event), Some(serde_json::Value::Object(origin))) =
        (event.as_object_mut(), origin.map(Origin::to_json))
    {
        event.extend(origin);
    }
    event
}

/// The containers (init containers first) of the migration Job, with their images.
fn migration_containers(job: &Job) -> Vec<(String, String)> {
    let Some(pod) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return Vec::new();
    };
    let init = pod.init_containers.iter().flatten();
    init.chain(&pod.containers)
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

/// The objects, in apply order, and the images pinned: the plan's lines.
pub fn print_objects(plan: &Plan) -> anyhow::Result<()> {
    stdout::line("Objects, in apply order:")?;
    for o in apply::in_order(&plan.objects) {
        match &o.with_crd {
            Some(crd) => stdout::line(format!("  {} (created with its CRD {crd})", o.describe()))?,
            None => stdout::line(format!("  {}", o.describe()))?,
        }
    }
    stdout::line(format!(
        "Images pinned to {}:",
        crate::config::short_sha(&plan.sha)
    ))?;
    for p in &plan.pinned {
        stdout::line(format!(
            "  {} {}: {} -> {}",
            p.object, p.container, p.from, p.to
        ))?;
    }
    Ok(())
}

/// `--dry-run`: what would be applied, and which images are pinned.
fn print_plan(plan: &Plan, out: &Output) -> anyhow::Result<()> {
    if out.mode() == crate::output::Mode::Json {
        return stdout::line(plan_event(plan));
    }
    stdout::line(format!(
        "Plan: deploy {} to {} (namespace {}), nothing changed",
        crate::config::short_sha(&plan.sha),
        plan.env_name,
        plan.env.namespace
    ))?;
    if let Some(job) = &plan.migration {
        stdout::line(format!(
            "Migration, run to completion before the apply: Job/{}",
            job.name_any()
        ))?;
        for line in plan.migration_origin.iter().flat_map(|o| o.describe()) {
            stdout::line(line)?;
        }
        for (name, image) in migration_containers(job) {
            stdout::line(format!("  {name}: {image}"))?;
        }
    }
    print_objects(plan)?;
    if let Some(why) = &plan.assets_unavailable {
        stdout::line(format!("Assets: unavailable, the deploy refuses it: {why}"))?;
    }
    if let Some(prepared) = &plan.assets {
        stdout::line(format!(
            "Assets: {} files from {} to s3://{}/{} (only missing or changed files are uploaded)",
            prepared.resolved.files.len(),
            prepared.resolved.description,
            prepared.store.bucket,
            prepared.assets.prefix
        ))?;
    }
    stdout::line(format!(
        "Backup before the migration: {}",
        plan.backup.describe()
    ))?;
    if let Some(adapter) = &plan.schema {
        match &plan.inspected {
            Some(pending) => print_migrations(pending)?,
            None => stdout::line(format!("Migrations: {}", schema_line(adapter.framework())))?,
        }
    }
    Ok(())
}

/// The migrations a dry run read: each, and what a rollback cannot undo.
fn print_migrations(pending: &[Step]) -> anyhow::Result<()> {
    if pending.is_empty() {
        return stdout::line("Migrations: none to apply (the schema is up to date)");
    }
    stdout::line("Migrations to apply, in order:")?;
    for step in pending {
        let mark = if step.irreversible() {
            "  (a rollback cannot undo it)"
        } else {
            ""
        };
        stdout::line(format!("  {}{mark}", step.migration))?;
    }
    Ok(())
}

/// The plan event's `schema`: the framework, and what a dry run read.
fn schema_event(
    framework: crate::config::Framework,
    inspected: Option<&[Step]>,
) -> serde_json::Value {
    match inspected {
        Some(pending) => serde_json::json!({
            "framework": framework.as_str(),
            "pending": pending.iter().map(|s| &s.migration).collect::<Vec<_>>(),
            "irreversible": Irreversible::of(pending),
        }),
        None => serde_json::json!({"framework": framework.as_str(), "why": schema_line(framework)}),
    }
}

/// The plan's line on the migrations a framework reads, when the dry run
/// could not read them (a first deploy's namespace does not exist yet).
fn schema_line(framework: crate::config::Framework) -> String {
    format!(
        "inspected when the deploy runs (migrate.framework: {}): what this release migrates, \
         and which of it a rollback cannot undo, are read in a copy of the migration Job before \
         it runs; the state it leaves is recorded for rollback",
        framework.as_str()
    )
}
