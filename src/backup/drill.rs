//! `berth db agent drill`: evidence that a backup restores. Its dump is
//! streamed into a fresh scratch database (never the live one), hashed on
//! the way, counted against the manifest, probed with the smoke queries;
//! the scratch database is dropped whatever happened, and the record is
//! written beside the backup.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;
use tokio_postgres::Client;

use super::counts::{self, quote};
use super::layout;
use super::manifest::{DrillRecord, DrillResult, Manifest, SCHEMA};
use super::pod_env::AgentEnv;
use super::store::BackupStore;
use super::tools;
use super::verify;
use crate::output::stderr_line;

/// The scratch database of drill `drill_id` of backup `backup`:
/// `berth_drill_<the backup's suffix>_<drill id>`, lowercase.
pub fn scratch_name(backup: &str, drill_id: &str) -> String {
    let suffix = backup.rsplit('-').next().unwrap_or(backup);
    format!("berth_drill_{suffix}_{drill_id}")
        .to_ascii_lowercase()
        .replace('-', "_")
        .chars()
        .take(63)
        .collect()
}

/// Drill `manifest`'s backup and write the record. `Err` only when the
/// record could not be written.
pub async fn drill(
    env: &AgentEnv,
    store: &BackupStore,
    manifest: &Manifest,
) -> anyhow::Result<DrillRecord> {
    let started_at = Timestamp::now();
    let id = env
        .drill_id
        .clone()
        .unwrap_or_else(|| layout::compact_time(started_at));
    let scratch = scratch_name(&manifest.id, &id);
    let mut record = DrillRecord {
        schema: SCHEMA,
        id: id.clone(),
        backup: manifest.id.clone(),
        environment: env.environment.clone(),
        who: env.who.clone(),
        started_at,
        finished_at: started_at,
        restore_seconds: 0.0,
        data_age_seconds: started_at
            .duration_since(manifest.started_at)
            .as_secs_f64()
            .max(0.0),
        scratch_database: scratch.clone(),
        tables: BTreeMap::new(),
        mismatches: BTreeMap::new(),
        smoke: Vec::new(),
        result: DrillResult::Failed,
        error: None,
    };
    stderr_line(&format!(
        "drilling backup {} into scratch database {scratch} on {:?}",
        manifest.id, env.drill_server
    ));
    let server = &env.drill_server;
    let outcome = match counts::connect(server, &server.dbname).await {
        Ok(admin) => {
            let outcome = run(env, store, manifest, &admin, &scratch, &mut record).await;
            if let Err(error) = drop_scratch(&admin, &scratch).await {
                stderr_line(&format!("could not drop {scratch}: {error:#}"));
            }
            outcome
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => {
            let false_smoke: Vec<&str> = record
                .smoke
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(sql, _)| sql.as_str())
                .collect();
            record.error = if !record.mismatches.is_empty() {
                Some(format!(
                    "{} tables' row counts differ from the manifest",
                    record.mismatches.len()
                ))
            } else if !false_smoke.is_empty() {
                Some(format!(
                    "smoke queries not true: {}",
                    false_smoke.join("; ")
                ))
            } else {
                None
            };
        }
        Err(error) => record.error = Some(format!("{error:#}")),
    }
    if record.error.is_none() {
        record.result = DrillResult::Passed;
    }
    record.finished_at = Timestamp::now();
    store
        .put_json(&store.layout.drill(&manifest.id, &id), &record)
        .await
        .context("writing the drill record")?;
    Ok(record)
}

/// Create the scratch database, restore into it, count, probe.
async fn run(
    env: &AgentEnv,
    store: &BackupStore,
    manifest: &Manifest,
    admin: &Client,
    scratch: &str,
    record: &mut DrillRecord,
) -> anyhow::Result<()> {
    drop_scratch(admin, scratch).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote(scratch)))
        .await
        .with_context(|| {
            format!("creating the scratch database {scratch} (the drill's role needs CREATEDB)")
        })?;
    let server = &env.drill_server;
    let key = manifest
        .object
        .clone()
        .context("the backup has no dump object")?;
    let clock = Instant::now();
    let mut pg_restore = tools::start(
        "pg_restore",
        &[
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--no-password",
            "--dbname",
            scratch,
        ],
        server,
        scratch,
        true,
        false,
    )?;
    let stdin = pg_restore.stdin()?;
    let streamed = verify::stream_object(store, &key, Some(stdin)).await;
    let restored = verify::reap(pg_restore, &streamed).await;
    record.restore_seconds = clock.elapsed().as_secs_f64();
    let read = streamed?;
    restored?;
    if let Some(why) = verify::mismatch(manifest, &read.sha256, read.size) {
        anyhow::bail!("{why}");
    }
    let client = counts::connect(server, scratch).await?;
    record.tables = counts::tables(&client).await?;
    record.mismatches = counts::mismatches(&manifest.tables, &record.tables);
    for sql in &env.smoke {
        let passed = smoke(&client, sql).await?;
        stderr_line(&format!(
            "smoke {}: {sql}",
            if passed { "true" } else { "NOT TRUE" }
        ));
        record.smoke.push((sql.clone(), passed));
    }
    Ok(())
}

/// Whether `sql` returns a row whose first column is true.
async fn smoke(client: &Client, sql: &str) -> anyhow::Result<bool> {
    let rows = client
        .query(sql, &[])
        .await
        .with_context(|| format!("smoke query {sql:?}"))?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    row.try_get::<_, Option<bool>>(0)
        .map(|value| value == Some(true))
        .with_context(|| format!("smoke query {sql:?}: its first column must be a boolean"))
}

/// Drop the scratch database, ending any session still in it.
async fn drop_scratch(admin: &Client, scratch: &str) -> anyhow::Result<()> {
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote(scratch)
        ))
        .await
        .with_context(|| format!("dropping the scratch database {scratch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_short_lowercase_identifiers() {
        let name = scratch_name("20261206T112233Z-manual-3fa9", "20261206T120000Z");
        assert_eq!(name, "berth_drill_3fa9_20261206t120000z");
        assert!(scratch_name("x", &"a".repeat(100)).len() <= 63);
    }
}
