//! The pre-deploy tasks: the asset upload beside the migration (which the
//! backup `backups.before_migrate` asks for precedes): assets ‖ (backup →
//! migrate). With `migrate.framework: django`, the framework reads what the
//! migration will apply before the backup, and the state it left after the
//! migration, for the release record ([`super::schema`]). Either side
//! failing cancels the other, and the deploy stops before any workload
//! changes.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use kube::Client;
use tokio_util::sync::CancellationToken;

use super::plan::Plan;
use super::pre_migrate;
use super::schema;
use crate::cluster::release::{AssetsRecord, FailureRecord, Release};
use crate::error::{BerthError, Cancelled};
use crate::migrate;
use crate::output::Output;
use crate::schema::record::SchemaRecord;
use crate::wait;

/// Run the plan's migration and asset upload, filling in `record`.
/// `cancel` stops both with [`Cancelled`].
pub async fn run(
    client: &Client,
    plan: &Plan,
    out: &Arc<Output>,
    record: &mut Release,
    timeout: Duration,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if plan.migration.is_none() && plan.assets.is_none() {
        return Ok(());
    }
    out.step("pre-deploy");
    let ns = &plan.env.namespace;
    super::record::reach(client, ns, record, "pre-deploy", out).await;
    // A task's failure cancels its sibling; an interruption cancels both.
    let sibling = cancel.child_token();
    let number = record.number;
    let mut backup: Option<String> = None;
    let mut backup_failure: Option<anyhow::Error> = None;
    let mut backup_seconds: Option<f64> = None;
    let mut schema_failure: Option<anyhow::Error> = None;
    let mut schema_record: Option<SchemaRecord> = None;
    let mut schema_seconds: f64 = 0.0;
    let migration = async {
        let Some(template) = &plan.migration else {
            return Ok(None);
        };
        let inspected = match &plan.schema {
            Some(adapter) => {
                let inspected = schema::inspect(
                    client,
                    plan,
                    adapter.as_ref(),
                    template,
                    number,
                    timeout,
                    &sibling,
                    out,
                )
                .await;
                match inspected {
                    Ok(inspected) => {
                        schema_seconds += inspected.duration_s;
                        Some(inspected)
                    }
                    Err(error) => {
                        stop_sibling(&sibling, error, &mut schema_failure);
                        return Ok(None);
                    }
                }
            }
            None => None,
        };
        let t = Instant::now();
        let pending = inspected.as_ref().map(|i| &i.pending[..]);
        match pre_migrate::back_up(client, plan, number, pending, timeout, &sibling, out).await {
            Ok(id) => {
                if id.is_some() {
                    backup_seconds = Some(t.elapsed().as_secs_f64());
                }
                backup = id;
            }
            Err(error) => {
                stop_sibling(&sibling, error, &mut backup_failure);
                return Ok(None);
            }
        }
        if sibling.is_cancelled() {
            return Err(Cancelled.into());
        }
        let t = Instant::now();
        let job =
            migrate::for_release(template.clone(), &plan.instance(), record.number, &plan.sha);
        let result = migrate::run(
            client,
            ns,
            migrate::JobTask::Migrate,
            job.clone(),
            plan.thresholds(),
            timeout,
            &sibling,
            out,
        )
        .await;
        if !matches!(result, Ok(Ok(_))) {
            sibling.cancel();
        }
        let seconds = t.elapsed().as_secs_f64();
        if let (Ok(Ok(_)), Some(adapter), Some(inspected)) = (&result, &plan.schema, &inspected) {
            let t = Instant::now();
            let recorded = schema::record(
                client,
                plan,
                adapter.as_ref(),
                &job,
                inspected,
                number,
                timeout,
                &sibling,
                out,
            )
            .await;
            schema_seconds += t.elapsed().as_secs_f64();
            match recorded {
                Ok(recorded) => schema_record = Some(recorded),
                Err(error) => {
                    stop_sibling(&sibling, error, &mut schema_failure);
                }
            }
        }
        result.map(|r| Some((r, seconds)))
    };
    let assets = async {
        let Some(prepared) = &plan.assets else {
            return Ok(None);
        };
        let result = prepared.upload(&sibling, out).await;
        if result.is_err() {
            sibling.cancel();
        }
        result.map(Some)
    };
    let (migration, assets) = tokio::join!(migration, assets);
    record.backup = backup;
    record.schema = schema_record;
    if schema_seconds > 0.0 {
        record.timings.insert("schema".into(), schema_seconds);
    }
    if let Some(seconds) = backup_seconds {
        record.timings.insert("backup".into(), seconds);
    }
    if cancel.is_cancelled() {
        return Err(Cancelled.into());
    }
    let assets_stopped = matches!(&assets, Err(e) if e.downcast_ref::<Cancelled>().is_some());
    let assets_failure = match assets {
        Ok(Some(report)) => {
            record.timings.insert("assets".into(), report.duration_s);
            record.assets = Some(AssetsRecord::from(&report));
            None
        }
        Ok(None) => None,
        Err(error) if error.downcast_ref::<Cancelled>().is_some() => {
            let failed = if backup_failure.is_some() {
                "the backup"
            } else if schema_failure.is_some() {
                "reading the schema"
            } else {
                "the migration"
            };
            out.task_finished(
                "assets",
                &format!("cancelled: {failed} failed; nothing more is uploaded"),
            );
            None
        }
        Err(error) => Some(error),
    };
    if let Some(error) = backup_failure {
        return Err(failed_before_workloads(
            record,
            ("backup", "BackupFailed"),
            Some("the backup before the migration failed, so the migration did not run"),
            error,
            assets_stopped,
            out,
        ));
    }
    let migration_failure = match migration {
        Ok(Some((Ok(task), seconds))) => {
            record.timings.insert("migrate".into(), seconds);
            record.migration = Some(task);
            None
        }
        Ok(Some((Err(failed), seconds))) => {
            record.timings.insert("migrate".into(), seconds);
            Some(failed)
        }
        Ok(None) => None,
        Err(error) if error.downcast_ref::<Cancelled>().is_some() => None,
        Err(error) => return Err(error),
    };
    if let Some(failed) = migration_failure {
        record.migration = Some(failed.record.clone());
        record.failure = Some(FailureRecord {
            workload: format!("Job/{}", failed.job),
            pod: failed.failure.pod.clone(),
            reason: failed.failure.reason.clone(),
            message: failed.failure.message.clone(),
        });
        let summary =
            wait::explain(client, ns, &format!("Job/{}", failed.job), &failed.failure).await;
        let ended = match failed.end {
            migrate::MigrationEnd::Failed => "failed",
            migrate::MigrationEnd::TimedOut => "timed out",
        };
        let kept = migrate::kept_or_not(&failed.job, failed.kept);
        out.failure(&format!(
            "migration {ended}; no workload was changed; {kept}\n{summary}"
        ));
        let message = format!(
            "the migration {ended} ({}: {}); {kept}",
            failed.failure.reason, failed.failure.message
        );
        return Err(match failed.end {
            migrate::MigrationEnd::Failed => BerthError::DeployFailed(message),
            migrate::MigrationEnd::TimedOut => BerthError::TimedOut(message),
        }
        .into());
    }
    if let Some(error) = schema_failure {
        let what = ("schema", "SchemaReadFailed");
        return Err(failed_before_workloads(
            record,
            what,
            None,
            error,
            assets_stopped,
            out,
        ));
    }
    if let Some(error) = assets_failure {
        let stopped = if plan.migration.is_some() {
            "; the migration was stopped"
        } else {
            ""
        };
        let message = format!("{error:#}");
        record.failure = Some(FailureRecord {
            workload: "assets".into(),
            pod: None,
            reason: "AssetUploadFailed".into(),
            message: message.clone(),
        });
        out.failure(&format!(
            "the asset upload failed{stopped}; no workload was changed\n  {message}"
        ));
        return Err(BerthError::DeployFailed(format!(
            "the asset upload failed{stopped}: {message}"
        ))
        .into());
    }
    Ok(())
}

/// A task failed: cancel its sibling, and keep `error` in `slot` unless it
/// is that cancellation itself.
fn stop_sibling(
    sibling: &CancellationToken,
    error: anyhow::Error,
    slot: &mut Option<anyhow::Error>,
) {
    sibling.cancel();
    if error.downcast_ref::<Cancelled>().is_none() {
        *slot = Some(error);
    }
}

/// The deploy's error when a task before the migration's end failed (the
/// backup, or reading the schema): recorded as the release's failure
/// (`workload`, `reason`), and said with what did not happen: `meaning`,
/// or the error itself when it says it.
fn failed_before_workloads(
    record: &mut Release,
    (workload, reason): (&str, &str),
    meaning: Option<&str>,
    error: anyhow::Error,
    assets_stopped: bool,
    out: &Output,
) -> anyhow::Error {
    let message = format!("{error:#}");
    record.failure = Some(FailureRecord {
        workload: workload.into(),
        pod: None,
        reason: reason.into(),
        message: message.clone(),
    });
    let stopped = if assets_stopped {
        "; the asset upload was stopped"
    } else {
        ""
    };
    match meaning {
        Some(meaning) => {
            out.failure(&format!(
                "{meaning}{stopped}; no workload was changed\n  {message}"
            ));
            super::restated(error, meaning)
        }
        None => {
            out.failure(&format!("{message}{stopped}; no workload was changed"));
            error
        }
    }
}
