//! `berth history ENV`: the release log, newest first: a table, or with
//! `--output json` one `release` event per release, then the report.

use serde_json::json;

use crate::cli::{EnvArg, GlobalArgs};
use crate::cluster::{client, lock, release};
use crate::config;
use crate::output::{Mode, Output};
use crate::stdout;

/// Print the environment's releases.
pub async fn run(global: &GlobalArgs, args: &EnvArg, out: &Output) -> anyhow::Result<()> {
    let config = crate::commands::load_config(global, &[&args.env], out)?;
    let env = config.environment(&args.env)?;
    let client = client::connect_multiplexed(env.context.as_deref()).await?;
    let (lock, releases) = tokio::try_join!(
        lock::status(&client, &env.namespace),
        release::list(&client, &env.namespace),
    )?;
    // Read-only: a dead deploy's release is shown abandoned, not written so.
    let releases = release::as_seen(releases, lock.identity());
    out.json_report(&json!({"environment": args.env, "releases": releases.len()}));
    if out.mode() == Mode::Json {
        for r in &releases {
            // a release's manifest serialises redacted: object names only
            let mut value = serde_json::to_value(r)?;
            value["event"] = json!("release");
            stdout::line(value)?;
        }
        return Ok(());
    }
    if releases.is_empty() {
        stdout::line(format!("{}: no releases yet", args.env))?;
        return Ok(());
    }
    stdout::line(format!(
        "{:<8} {:<12} {:<12} {:<26} {:>8}  BY / NOTE",
        "RELEASE", "SHA", "STATUS", "STARTED", "TOOK"
    ))?;
    for r in &releases {
        let took = r.duration_s.map_or("-".to_string(), |d| format!("{d:.1}s"));
        let mut note = r.deployer.describe();
        match (r.rollback_of, r.rolled_back_to) {
            (Some(failed), _) => {
                note.push_str(&format!("; automatic rollback of release {failed}"))
            }
            (None, Some(to)) => note.push_str(&format!("; rollback to release {to}")),
            (None, None) => {}
        }
        if let Some(from) = &r.promoted_from {
            note.push_str(&format!(
                "; promoted from {} release {}",
                from.environment, from.release
            ));
        }
        match (&r.backup, r.no_backup) {
            (Some(id), _) => note.push_str(&format!("; backup {id}")),
            (None, true) => note.push_str("; pre-migration backup skipped (--no-backup)"),
            (None, false) => {}
        }
        if let Some(schema) = r.schema.as_ref().filter(|s| !s.irreversible.is_empty()) {
            let names: Vec<String> = schema
                .irreversible
                .iter()
                .map(|i| i.migration.to_string())
                .collect();
            note.push_str(&format!("; irreversible: {}", names.join(", ")));
        }
        if let Some(step) = r.step.as_ref().filter(|_| r.status.stopped()) {
            note.push_str(&format!("; stopped at {step}"));
        }
        if let Some(f) = &r.failure {
            note.push_str(&format!("; {}: {}", f.workload, f.reason));
        }
        let short = config::short_sha(&r.sha);
        stdout::line(format!(
            "{:<8} {:<12} {:<12} {:<26} {:>8}  {}",
            r.number,
            short,
            r.shown_status(),
            r.started_at,
            took,
            note
        ))?;
    }
    Ok(())
}
