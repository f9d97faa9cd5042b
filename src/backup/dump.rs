//! `berth db agent backup`: pg_dump streamed to the bucket, verified, and
//! its manifest written last.
//!
//! One REPEATABLE READ transaction exports its snapshot; pg_dump dumps that
//! snapshot while the same transaction counts every table's rows and reads
//! Django's migration state, so the manifest describes exactly the data
//! dumped. The dump goes from pg_dump's stdout into a multipart upload
//! (no local file). A backup succeeds only when pg_dump exited 0, the
//! upload completed, the object is non-empty and `pg_restore --list` reads
//! its table of contents back from the bucket; anything else aborts the
//! upload (or deletes the completed object) and records the backup failed.

use std::time::Instant;

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;
use tokio_postgres::Client;

use super::counts;
use super::layout;
use super::manifest::{BackupStatus, Durations, Manifest, SCHEMA};
use super::pod_env::AgentEnv;
use super::store::BackupStore;
use super::tools;
use super::upload::{self, Multipart};
use super::verify;
use crate::error::input_error;
use crate::output::stderr_line;

/// What was learnt about the database before the dump.
struct Facts {
    snapshot: String,
    postgres_version: String,
    database_size: u64,
}

/// Take a backup. `Err` only when nothing was started (bad settings, the
/// bucket or the database unreachable: exit 2); otherwise the manifest
/// written, whose status says whether it counts.
pub async fn backup(env: &AgentEnv, store: &BackupStore) -> anyhow::Result<Manifest> {
    let started_at = Timestamp::now();
    let clock = Instant::now();
    let id = match &env.backup_id {
        Some(id) => id.clone(),
        None => layout::new_id(started_at, env.trigger),
    };
    if store.manifest(&id).await?.is_some() {
        return Err(input_error(format!(
            "backup {id} already exists in bucket {}; leave BERTH_BACKUP_ID unset for a new id",
            store.store.bucket
        )));
    }
    let db = &env.database;
    let client = counts::connect(db, &db.dbname).await.map_err(|e| {
        input_error(format!(
            "{e:#}; check PGHOST, PGPORT, PGUSER and PGPASSWORD (database.secret)"
        ))
    })?;
    let mut manifest = Manifest {
        schema: SCHEMA,
        id: id.clone(),
        environment: env.environment.clone(),
        database: db.dbname.clone(),
        trigger: env.trigger,
        label: env.label.clone(),
        who: env.who.clone(),
        status: BackupStatus::Failed,
        error: None,
        started_at,
        finished_at: started_at,
        durations: Durations::default(),
        object: None,
        size: 0,
        sha256: None,
        part_size: 0,
        postgres_version: None,
        pg_dump_version: None,
        database_size: 0,
        tables: Default::default(),
        release: env.release.clone(),
        migrations: Default::default(),
    };
    stderr_line(&format!(
        "backing up database {} to s3://{}/{}",
        db.dbname,
        store.store.bucket,
        store.layout.dump(&id)
    ));
    let outcome = dump_and_upload(env, store, &client, &mut manifest).await;
    manifest.durations.total_seconds = clock.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => manifest.status = BackupStatus::Succeeded,
        Err(error) => {
            manifest.status = BackupStatus::Failed;
            manifest.error = Some(format!("{error:#}"));
            manifest.object = None;
            stderr_line(&format!("backup {id} failed: {error:#}"));
        }
    }
    manifest.finished_at = Timestamp::now();
    store
        .put_json(&store.layout.manifest(&id), &manifest)
        .await
        .context("writing the manifest")?;
    Ok(manifest)
}

/// Open the snapshot, read the facts, dump and upload, verify. On error the
/// upload is aborted or the object deleted: nothing of the dump remains.
async fn dump_and_upload(
    env: &AgentEnv,
    store: &BackupStore,
    client: &Client,
    manifest: &mut Manifest,
) -> anyhow::Result<()> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .context("opening the snapshot transaction")?;
    let facts = facts(client).await?;
    manifest.postgres_version = Some(facts.postgres_version.clone());
    manifest.database_size = facts.database_size;
    manifest.pg_dump_version = Some(tools::version("pg_dump").await?);
    let part_size = upload::part_size(facts.database_size);
    manifest.part_size = part_size;
    let key = store.layout.dump(&manifest.id);
    let mut multipart = Multipart::start(&store.store, &key).await?;
    let dump_clock = Instant::now();
    let dumped = dump(env, client, &facts.snapshot, &mut multipart, part_size).await;
    manifest.durations.dump_seconds = dump_clock.elapsed().as_secs_f64();
    let (streamed, tables, migrations) = match dumped {
        Ok(dumped) => dumped,
        Err(error) => {
            abort(multipart).await;
            return Err(error);
        }
    };
    let _ = client.batch_execute("COMMIT").await;
    manifest.tables = tables;
    manifest.migrations = migrations;
    manifest.size = streamed.size;
    manifest.sha256 = Some(streamed.sha256.clone());
    if streamed.size == 0 {
        abort(multipart).await;
        anyhow::bail!("pg_dump exited 0 but wrote nothing");
    }
    multipart.complete().await?;
    stderr_line(&format!(
        "uploaded {} bytes in {} parts of {} MiB; reading its table of contents back",
        streamed.size,
        streamed.parts,
        part_size >> 20
    ));
    let verify_clock = Instant::now();
    let listed = verify::list(store, &key, &env.database).await;
    manifest.durations.verify_seconds = verify_clock.elapsed().as_secs_f64();
    let checked = listed.and_then(|(entries, read)| {
        match verify::mismatch(manifest, &read.sha256, read.size) {
            Some(why) => Err(anyhow::anyhow!("the uploaded dump reads back wrong: {why}")),
            None => Ok(entries),
        }
    });
    match checked {
        Ok(entries) => {
            stderr_line(&format!("the dump lists {entries} entries"));
            manifest.object = Some(key);
            Ok(())
        }
        Err(error) => {
            if let Err(e) = store.store.delete(std::slice::from_ref(&key)).await {
                stderr_line(&format!(
                    "could not delete the unverified dump {key}: {e:#}"
                ));
            }
            Err(error)
        }
    }
}

/// The snapshot's id, the server's version and the database's size.
async fn facts(client: &Client) -> anyhow::Result<Facts> {
    let row = client
        .query_one(
            "SELECT pg_export_snapshot(), current_setting('server_version'), \
             pg_database_size(current_database())",
            &[],
        )
        .await
        .context("exporting the snapshot")?;
    Ok(Facts {
        snapshot: row.get(0),
        postgres_version: row.get(1),
        database_size: row.get::<_, i64>(2).max(0) as u64,
    })
}

/// The upload's result, the row counts and the migration state.
type Dumped = (
    upload::Streamed,
    std::collections::BTreeMap<String, u64>,
    std::collections::BTreeMap<String, String>,
);

/// Run pg_dump on `snapshot` into the upload while counting rows in the
/// same snapshot; an error unless pg_dump exited 0.
async fn dump(
    env: &AgentEnv,
    client: &Client,
    snapshot: &str,
    multipart: &mut Multipart,
    part_size: u64,
) -> anyhow::Result<Dumped> {
    let snapshot_arg = format!("--snapshot={snapshot}");
    let mut pg_dump = tools::start(
        "pg_dump",
        &["--format=custom", "--no-password", &snapshot_arg],
        &env.database,
        &env.database.dbname,
        false,
        true,
    )?;
    let stdout = pg_dump.child.stdout.take().context("pg_dump's stdout")?;
    let counting = async {
        let tables = counts::tables(client).await?;
        let migrations = counts::migrations(client).await?;
        anyhow::Ok((tables, migrations))
    };
    let (streamed, counted) = tokio::join!(multipart.send_all(stdout, part_size), counting);
    let streamed = match streamed {
        Ok(streamed) => streamed,
        Err(error) => {
            pg_dump.kill().await;
            return Err(error);
        }
    };
    pg_dump.finish().await?;
    let (tables, migrations) = counted?;
    Ok((streamed, tables, migrations))
}

/// Abort an upload, saying so if even that fails (S3 then expires it by
/// the bucket's lifecycle rule, if any).
async fn abort(multipart: Multipart) {
    if let Err(error) = multipart.abort().await {
        stderr_line(&format!("could not abort the upload: {error:#}"));
    }
}
