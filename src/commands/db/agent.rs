//! `berth db agent ...`: the work inside the cluster, in berth's image, set
//! up by the environment the pod template gives (see
//! [`crate::backup::pod_env`]). Progress goes to stderr; the last line on
//! stdout is one JSON object naming the task: `{"backup": ...}`,
//! `{"verify": ...}`, `{"restore": ...}`, `{"drill": ...}`, `{"prune": ...}`.
//! Exit 0 when the task succeeded, 1 when it failed (the JSON says why),
//! 2 for bad input (a missing variable, an unknown backup).

use std::sync::Arc;

use serde::Serialize;

use crate::backup::manifest::{BackupStatus, DrillResult, Trigger};
use crate::backup::pod_env::AgentEnv;
use crate::backup::{drill, dump, prune, restore, verify};
use crate::cli::{AgentArgs, AgentCommand, GlobalArgs};
use crate::error::input_error;
use crate::output::{Output, stderr_line};
use crate::stdout;

/// Run `db agent`.
pub async fn run(_global: &GlobalArgs, args: &AgentArgs, _out: Arc<Output>) -> anyhow::Result<()> {
    // A drill without BERTH_BACKUP_ID (the CronJob berth-drill) drills the
    // newest backup that succeeded.
    let needs_id = matches!(args.command, AgentCommand::Verify | AgentCommand::Restore);
    let env = AgentEnv::from_process(needs_id)?;
    let store = env.store().await?;
    match args.command {
        AgentCommand::Backup => {
            let manifest = dump::backup(&env, &store).await?;
            let succeeded = manifest.status == BackupStatus::Succeeded;
            if succeeded
                && manifest.trigger == Trigger::Schedule
                && let Some(retention) = &env.retention
            {
                match prune::prune(&store, retention).await {
                    Ok(pruned) => stderr_line(&format!(
                        "retention: deleted {}, kept {}",
                        pruned.deleted.len(),
                        pruned.kept.len()
                    )),
                    Err(error) => stderr_line(&format!(
                        "warning: the backup succeeded but retention failed: {error:#}"
                    )),
                }
            }
            let error = manifest.error.clone();
            finish("backup", &manifest, succeeded, error)
        }
        AgentCommand::Verify => {
            let manifest = restore::wanted_manifest(&env, &store, false).await?;
            let result = verify::verify(&store, &manifest, &env.database).await;
            finish("verify", &result, result.ok, result.error.clone())
        }
        AgentCommand::Restore => {
            let manifest = restore::wanted_manifest(&env, &store, true).await?;
            let result = restore::restore(&env, &store, &manifest).await;
            finish("restore", &result, result.ok, result.error.clone())
        }
        AgentCommand::Drill => {
            let manifest = match env.backup_id {
                Some(_) => restore::wanted_manifest(&env, &store, true).await?,
                None => restore::newest_succeeded(&env, &store).await?,
            };
            let record = drill::drill(&env, &store, &manifest).await?;
            let passed = record.result == DrillResult::Passed;
            finish("drill", &record, passed, record.error.clone())
        }
        AgentCommand::Prune => {
            let retention = env.retention.as_ref().ok_or_else(|| {
                input_error("set BERTH_RETENTION to the retention counts to prune by")
            })?;
            let pruned = prune::prune(&store, retention).await?;
            finish("prune", &pruned, true, None)
        }
    }
}

/// Print `{task: result}` as the last stdout line; an error (exit 1) when
/// the task failed.
fn finish(
    task: &str,
    result: &impl Serialize,
    ok: bool,
    error: Option<String>,
) -> anyhow::Result<()> {
    stdout::line(serde_json::to_string(&serde_json::json!({ task: result }))?)?;
    if ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{task} failed: {}",
            error.unwrap_or_else(|| "see the log above".to_owned())
        ))
    }
}
