//! `berth db drill ENV [BACKUP]`: restore a backup into a scratch database
//! in the cluster, compare it with its manifest, run the smoke queries, drop
//! it, and record the evidence; `--check` for CI reads the records only.

mod check;
mod evidence;

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::backup::layout;
use crate::backup::manifest::{BackupStatus, DrillRecord, DrillResult, Manifest};
use crate::backup::store::BackupStore;
use crate::cli::{DrillArgs, GlobalArgs};
use crate::cluster::client;
use crate::config::{Backups, Config, Environment};
use crate::error::input_error;
use crate::output::{Mode, Output};
use crate::program;

/// Run `db drill` (or `db drill --check`).
pub async fn run(global: &GlobalArgs, args: &DrillArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let config = crate::commands::load_config(global, &[&args.env], &out)?;
    let env = config.environment(&args.env)?;
    let backups = backups_of(&args.env, env)?;
    let client = client::connect(env.context.as_deref()).await?;
    let store = BackupStore::connect(&client, env, backups).await?;
    if args.check {
        let max_age = args
            .max_age
            .ok_or_else(|| input_error("--check needs --max-age, e.g. --max-age 7d"))?;
        return run_check(&args.env, &store, max_age, &out).await;
    }
    let manifest = chosen(&config, &args.env, &store, args.backup.as_deref()).await?;
    let record = evidence::drill(&client, &args.env, env, backups, &manifest, &out).await?;
    let key = format!(
        "s3://{}/{}",
        store.store.bucket,
        store.layout.drill(&record.backup, &record.id)
    );
    report(&record, &manifest, &key, &out)
}

/// The environment's `backups:` block, or bad input saying how to add one.
fn backups_of<'a>(name: &str, env: &'a Environment) -> anyhow::Result<&'a Backups> {
    env.backups.as_ref().ok_or_else(|| {
        input_error(format!(
            "environment `{name}` has no `backups:` block in berth.yaml, so it has no backups \
             to drill; add `backups: {{ bucket: ..., credentials_secret: ... }}` under \
             `environments.{name}` (see docs/database.md)"
        ))
    })
}

/// `--check`: exit 0 when the newest good backup passed a drill within
/// `max_age`, else 1; the report holds the evidence either way.
async fn run_check(
    env: &str,
    store: &BackupStore,
    max_age: std::time::Duration,
    out: &Output,
) -> anyhow::Result<()> {
    let (manifests, drills) = tokio::try_join!(store.manifests(), store.all_drills())?;
    let checked = check::check(
        env,
        &manifests,
        &drills,
        Timestamp::now(),
        max_age,
        program::name(),
    );
    out.json_report(&checked);
    if checked.ok {
        out.info(&checked.message);
        Ok(())
    } else {
        Err(anyhow::anyhow!(checked.message))
    }
}

/// The backup to drill: `id`, else the newest that succeeded. Bad input
/// (exit 2, nothing created) for an id that is malformed, unknown, another
/// environment's, or of a failed backup.
async fn chosen(
    config: &Config,
    env: &str,
    store: &BackupStore,
    id: Option<&str>,
) -> anyhow::Result<Manifest> {
    let berth = program::name();
    let list = format!("list them with `{berth} db backups {env}`");
    let Some(id) = id else {
        let manifests = store.manifests().await?;
        return manifests
            .into_iter()
            .filter(|m| m.status == BackupStatus::Succeeded)
            .max_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)))
            .ok_or_else(|| {
                input_error(format!(
                    "{env} has no succeeded backup to drill; take one with \
                     `{berth} db backup {env}`"
                ))
            });
    };
    layout::check_id(id).map_err(|problem| input_error(format!("{problem}; {list}")))?;
    let Some(manifest) = store.manifest(id).await? else {
        if let Some(owner) = other_owner(config, env, store, id).await {
            return Err(input_error(format!(
                "backup {id} belongs to environment `{owner}`, not `{env}`; drill it there \
                 with `{berth} db drill {owner} {id}`, or {list}"
            )));
        }
        return Err(input_error(format!(
            "{env} has no backup {id} in bucket {}; {list}",
            store.store.bucket
        )));
    };
    if manifest.environment != env {
        return Err(input_error(format!(
            "backup {id} was taken of environment `{}`, not `{env}`; drill it there with \
             `{berth} db drill {} {id}`, or {list}",
            manifest.environment, manifest.environment
        )));
    }
    if manifest.status != BackupStatus::Succeeded {
        return Err(input_error(format!(
            "backup {id} failed ({}), so it has no dump to drill; choose a succeeded one \
             ({list}) or omit BACKUP to drill the newest",
            manifest.error.as_deref().unwrap_or("no reason recorded")
        )));
    }
    Ok(manifest)
}

/// Which other environment in berth.yaml has backup `id` in the same
/// bucket, if one does (checked with `store`'s connection).
async fn other_owner(config: &Config, env: &str, store: &BackupStore, id: &str) -> Option<String> {
    for (name, other) in &config.environments {
        let Some(backups) = &other.backups else {
            continue;
        };
        if name == env || backups.bucket != store.store.bucket {
            continue;
        }
        let theirs = BackupStore {
            store: store.store.clone(),
            layout: layout::Layout {
                prefix: backups.prefix.clone(),
            },
        };
        if let Ok(Some(_)) = theirs.manifest(id).await {
            return Some(name.clone());
        }
    }
    None
}

/// Print the drill's evidence and stage its report; a failed drill is exit 1.
fn report(
    record: &DrillRecord,
    manifest: &Manifest,
    key: &str,
    out: &Output,
) -> anyhow::Result<()> {
    out.json_report(&serde_json::json!({
        "environment": record.environment,
        "backup": record.backup,
        "drill": record,
        "result": record.result,
        "evidence": key,
    }));
    if out.mode() != Mode::Json {
        // The drill's result, not a reader that went away, decides the exit code.
        let shown = evidence::lines(record, manifest, key)
            .into_iter()
            .try_for_each(crate::stdout::line);
        crate::stdout::drop_if_closed(shown)?;
    }
    match record.result {
        DrillResult::Passed => Ok(()),
        DrillResult::Failed => Err(anyhow::anyhow!(
            "the drill of backup {} failed: {}",
            record.backup,
            record.error.as_deref().unwrap_or("no reason recorded")
        )),
    }
}
