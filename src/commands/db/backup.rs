//! `berth db backup ENV`: a backup now, run in the cluster by berth's image.
//!
//! Everything that can be checked is checked before anything is created:
//! the `backups:` block, the database and credentials Secrets, the bucket
//! (exit 2 naming the fix). Then a Job runs `berth db agent backup`, its
//! log streamed as `[backup]` lines, and the manifest it wrote is read back
//! from the bucket. Exit 1 when the backup failed, with the agent's error.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::backup::job;
use crate::backup::layout;
use crate::backup::manifest::{BackupStatus, Manifest, Trigger};
use crate::backup::pods::{AgentRun, AgentTask};
use crate::backup::store::BackupStore;
use crate::cli::GlobalArgs;
use crate::cluster::client;
use crate::config::{Backups, Environment};
use crate::error::{BerthError, input_error};
use crate::output::Output;

/// What `db backup` reports (`--output json`).
#[derive(Debug, Serialize)]
struct Report {
    environment: String,
    id: String,
    status: BackupStatus,
    size: u64,
    duration_s: f64,
    tables: usize,
    rows: u64,
    verified: bool,
    object: Option<String>,
    job: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Back up `env`'s database now.
pub async fn run(
    global: &GlobalArgs,
    env_name: &str,
    label: Option<&str>,
    out: Arc<Output>,
) -> anyhow::Result<()> {
    let config = crate::commands::load_config(global, &[env_name], &out)?;
    let env = config.environment(env_name)?;
    let backups = configured(env_name, env)?;
    out.step("validate");
    let client = client::connect(env.context.as_deref()).await?;
    check_secrets(&client, env_name, env, backups).await?;
    let store = BackupStore::connect(&client, env, backups).await?;
    store.store.check().await?;
    let release = job::running_release(&client, &env.namespace).await?;

    let id = layout::new_id(Timestamp::now(), Trigger::Manual);
    let mut vars = vec![
        ("BERTH_BACKUP_ID".to_string(), id.clone()),
        (
            "BERTH_BACKUP_TRIGGER".to_string(),
            Trigger::Manual.as_str().to_string(),
        ),
    ];
    if let Some(label) = label {
        vars.push(("BERTH_BACKUP_LABEL".to_string(), label.to_string()));
    }
    vars.extend(job::who_and_release(release.as_ref()));
    let run = AgentRun {
        env_name,
        env,
        backups,
        task: AgentTask::Backup,
        vars,
    };
    out.step("backup");
    out.info(&format!(
        "backing up {env_name}'s database as {id} to bucket {}",
        backups.bucket
    ));
    let outcome = job::run(&client, &run, &out, "backup").await?;
    let manifest = match store.manifest(&id).await? {
        Some(manifest) => manifest,
        None => {
            serde_json::from_value::<Manifest>(outcome.result["backup"].clone()).map_err(|_| {
                BerthError::DeployFailed(format!(
                    "the agent wrote no manifest for {id} and printed none; Job {} has its log",
                    outcome.job
                ))
            })?
        }
    };
    let report = report(env_name, &manifest, &outcome.job);
    out.json_report(&report);
    let rows: u64 = manifest.tables.values().sum();
    if report.verified && outcome.succeeded {
        out.info(&format!(
            "backup {id}: {} in {}, {} tables ({rows} rows), verified (pg_restore --list read it back)",
            human_size(manifest.size),
            crate::duration::display_seconds(manifest.durations.total_seconds),
            manifest.tables.len(),
        ));
        return Ok(());
    }
    let why = manifest
        .error
        .clone()
        .unwrap_or_else(|| "the agent reported a failure without a reason".into());
    Err(BerthError::DeployFailed(format!(
        "backup {id} failed: {why}; the manifest records it, and no dump was kept"
    ))
    .into())
}

/// The environment's `backups:` block, or an input error saying how to add one.
fn configured<'a>(env_name: &str, env: &'a Environment) -> anyhow::Result<&'a Backups> {
    env.backups.as_ref().ok_or_else(|| {
        input_error(format!(
            "environment {env_name} has no `backups:` block in berth.yaml; add one, e.g.\n\n\
             environments:\n  {env_name}:\n    backups:\n      \
             bucket: myapp-backups\n      \
             credentials_secret: backup-s3   # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY\n"
        ))
    })
}

/// The database and S3 Secrets the agent's pod reads must exist: a pod
/// without them never starts.
async fn check_secrets(
    client: &kube::Client,
    env_name: &str,
    env: &Environment,
    backups: &Backups,
) -> anyhow::Result<()> {
    let ns = &env.namespace;
    let Some(secret) = env.database.as_ref().and_then(|d| d.secret.as_ref()) else {
        return Err(input_error(format!(
            "backups of {env_name} need `database.secret`, a Secret of PGHOST, PGPORT, PGUSER, \
             PGPASSWORD and PGDATABASE as pods reach the database; add it to berth.yaml"
        )));
    };
    job::require_secret(
        client,
        ns,
        secret,
        "database.secret",
        &format!(
            "`kubectl -n {ns} create secret generic {secret} --from-literal=PGHOST=... \
             --from-literal=PGPORT=5432 --from-literal=PGUSER=... --from-literal=PGPASSWORD=... \
             --from-literal=PGDATABASE=...`"
        ),
    )
    .await?;
    let credentials = &backups.credentials_secret;
    job::require_secret(
        client,
        ns,
        credentials,
        "backups.credentials_secret",
        &format!(
            "`kubectl -n {ns} create secret generic {credentials} \
             --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...` \
             (and AWS_ENDPOINT_URL as pods reach S3, when it is not AWS)"
        ),
    )
    .await
}

fn report(env_name: &str, manifest: &Manifest, job: &str) -> Report {
    Report {
        environment: env_name.to_string(),
        id: manifest.id.clone(),
        status: manifest.status,
        size: manifest.size,
        duration_s: manifest.durations.total_seconds,
        tables: manifest.tables.len(),
        rows: manifest.tables.values().sum(),
        verified: manifest.status == BackupStatus::Succeeded,
        object: manifest.object.clone(),
        job: job.to_string(),
        error: manifest.error.clone(),
    }
}

/// `bytes` as B, kB, MB or GB (powers of 1000, one decimal).
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < units.len() {
        size /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(12_345_678), "12.3 MB");
    }
}
