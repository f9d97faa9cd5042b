//! `berth db agent restore`: a verified dump restored into the live
//! database in one transaction, then counted against its manifest.
//!
//! The dump is read twice from the bucket: first checked whole (size,
//! SHA-256, table of contents) before anything touches the database, then
//! streamed into `pg_restore --single-transaction`, so a failure midway
//! leaves the database as it was.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::counts;
use super::manifest::{BackupStatus, Manifest};
use super::pod_env::AgentEnv;
use super::store::BackupStore;
use super::tools;
use super::verify;
use crate::error::input_error;
use crate::output::stderr_line;

/// The result of `berth db agent restore`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restored {
    /// The backup restored.
    pub id: String,
    /// Restored, and every table's count equals the manifest's.
    pub ok: bool,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the database was changed: false when the check failed before
    /// pg_restore started, or pg_restore failed and its single transaction
    /// rolled back.
    pub changed: bool,
    /// Row counts found after the restore.
    pub tables: BTreeMap<String, u64>,
    /// Tables whose counts differ: table → (manifest, found).
    pub mismatches: BTreeMap<String, (u64, u64)>,
    /// How long pg_restore ran.
    pub restore_seconds: f64,
}

/// The manifest of the backup BERTH_BACKUP_ID names; input errors when
/// there is none, or it belongs to another environment, or (`succeeded`)
/// it did not succeed.
pub async fn wanted_manifest(
    env: &AgentEnv,
    store: &BackupStore,
    succeeded: bool,
) -> anyhow::Result<Manifest> {
    let id = env.id()?;
    let manifest = store.manifest(id).await?.ok_or_else(|| {
        input_error(format!(
            "there is no backup {id} in bucket {} under {:?}; `berth db backups {}` lists them",
            store.store.bucket, store.layout.prefix, env.environment
        ))
    })?;
    if manifest.environment != env.environment {
        return Err(input_error(format!(
            "backup {id} is of environment {}, not {}; restore a backup of {} instead",
            manifest.environment, env.environment, env.environment
        )));
    }
    if succeeded && manifest.status != BackupStatus::Succeeded {
        return Err(input_error(format!(
            "backup {id} failed ({}); choose one that succeeded",
            manifest.error.as_deref().unwrap_or("no reason recorded")
        )));
    }
    Ok(manifest)
}

/// The newest backup of the environment that succeeded: what a scheduled
/// drill checks. An input error when there is none.
pub async fn newest_succeeded(env: &AgentEnv, store: &BackupStore) -> anyhow::Result<Manifest> {
    store
        .manifests()
        .await?
        .into_iter()
        .rev()
        .find(|m| m.status == BackupStatus::Succeeded && m.environment == env.environment)
        .ok_or_else(|| {
            input_error(format!(
                "environment {} has no backup that succeeded to drill; take one with \
                 `berth db backup {}`",
                env.environment, env.environment
            ))
        })
}

/// Restore `manifest`'s dump into the live database.
pub async fn restore(env: &AgentEnv, store: &BackupStore, manifest: &Manifest) -> Restored {
    let mut result = Restored {
        id: manifest.id.clone(),
        ok: false,
        error: None,
        changed: false,
        tables: BTreeMap::new(),
        mismatches: BTreeMap::new(),
        restore_seconds: 0.0,
    };
    stderr_line(&format!(
        "checking backup {} before restoring it",
        manifest.id
    ));
    let checked = verify::verify(store, manifest, &env.database).await;
    if let Some(error) = checked.error {
        result.error = Some(format!(
            "{error}; nothing was restored, the database is unchanged"
        ));
        return result;
    }
    if let Err(error) = run(env, store, manifest, &mut result).await {
        result.error = Some(format!("{error:#}"));
        return result;
    }
    result.mismatches = counts::mismatches(&manifest.tables, &result.tables);
    if !result.mismatches.is_empty() {
        result.error = Some(format!(
            "restored, but {} tables' row counts differ from the manifest",
            result.mismatches.len()
        ));
    }
    result.ok = result.error.is_none();
    result
}

/// End the other client sessions on the database; the number ended. A
/// session the role may not end (another role's) is reported and left.
async fn end_sessions(client: &tokio_postgres::Client) -> anyhow::Result<usize> {
    let sessions = client
        .query(
            "SELECT pid, coalesce(usename::text, '?') FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend'",
            &[],
        )
        .await
        .context("listing the database's other sessions")?;
    let mut ended = 0;
    for session in sessions {
        let (pid, role): (i32, String) = (session.get(0), session.get(1));
        match client
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
        {
            Ok(row) if row.get::<_, bool>(0) => ended += 1,
            Ok(_) => {}
            Err(error) => stderr_line(&format!(
                "warning: could not end session {pid} of role {role}: {}",
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |e| e.message().to_owned())
            )),
        }
    }
    Ok(ended)
}

/// End the other sessions, restore, count.
async fn run(
    env: &AgentEnv,
    store: &BackupStore,
    manifest: &Manifest,
    result: &mut Restored,
) -> anyhow::Result<()> {
    let db = &env.database;
    let client = counts::connect(db, &db.dbname).await?;
    let ended = end_sessions(&client).await?;
    stderr_line(&format!("ended {ended} other sessions; restoring"));
    drop(client);
    let key = manifest.object.clone().unwrap_or_default();
    let clock = Instant::now();
    let mut pg_restore = tools::start(
        "pg_restore",
        &[
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--no-password",
            "--dbname",
            &db.dbname,
        ],
        db,
        &db.dbname,
        true,
        false,
    )?;
    let stdin = pg_restore.stdin()?;
    let streamed = verify::stream_object(store, &key, Some(stdin)).await;
    let restored = verify::reap(pg_restore, &streamed).await;
    result.restore_seconds = clock.elapsed().as_secs_f64();
    let read = streamed.map_err(|e| {
        e.context("reading the dump failed midway; pg_restore was stopped and its transaction rolled back, the database is unchanged")
    })?;
    restored.map_err(|e| {
        e.context(
            "the restore failed; its single transaction rolled back, the database is unchanged",
        )
    })?;
    result.changed = true;
    let client = counts::connect(db, &db.dbname).await?;
    result.tables = counts::tables(&client).await?;
    match verify::mismatch(manifest, &read.sha256, read.size) {
        Some(why) => anyhow::bail!("restored, but the dump changed after it was checked: {why}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_json_has_the_contract_shape() {
        let result = Restored {
            id: "20261206T112233Z-manual-3fa9".into(),
            ok: false,
            error: Some("restored, but 1 tables' row counts differ from the manifest".into()),
            changed: true,
            tables: BTreeMap::from([("public.t".into(), 2)]),
            mismatches: BTreeMap::from([("public.t".into(), (3, 2))]),
            restore_seconds: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({
                "id": "20261206T112233Z-manual-3fa9", "ok": false,
                "error": "restored, but 1 tables' row counts differ from the manifest",
                "changed": true, "tables": {"public.t": 2},
                "mismatches": {"public.t": [3, 2]}, "restore_seconds": 1.5
            })
        );
    }
}
