//! `berth history ENV [--limit N]`: the newest releases first: a table with
//! local start times and their age, or with `--output json` one `release`
//! event per release (times in RFC 3339), then the report.

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use crate::cli::{GlobalArgs, HistoryArgs};
use crate::cluster::release::{Release, ReleaseStatus};
use crate::cluster::{client, lock, release};
use crate::config;
use crate::output::{Mode, Output};
use crate::stdout;
use crate::style::{Painter, Tone};

/// Print the environment's releases.
pub async fn run(global: &GlobalArgs, args: &HistoryArgs, out: &Output) -> anyhow::Result<()> {
    let config = crate::commands::load_config(global, &[&args.env], out)?;
    let env = config.environment(&args.env)?;
    let client = client::connect_multiplexed(env.context.as_deref()).await?;
    let (lock, releases) = tokio::try_join!(
        lock::status(&client, &env.namespace),
        release::list(&client, &env.namespace),
    )?;
    // Read-only: a dead deploy's release is shown abandoned, not written so.
    let releases = release::as_seen(releases, lock.identity());
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    out.json_report(&json!({
        "environment": args.env,
        "releases": releases.len(),
        "shown": releases.len().min(limit),
    }));
    if out.mode() == Mode::Json {
        for r in releases.iter().take(limit) {
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
    let painter = Painter::stdout();
    let now = Timestamp::now();
    let shown = releases.len().min(limit);
    for line in table(&releases[..shown], now, painter) {
        stdout::line(line)?;
    }
    if shown < releases.len() {
        stdout::line(format!(
            "({shown} of {} releases; --limit N shows more)",
            releases.len()
        ))?;
    }
    Ok(())
}

/// The colour of a release's status: succeeded green, failed or timed out
/// red, anything else (in progress, stopped midway) yellow.
pub fn tone(status: ReleaseStatus) -> Tone {
    match status {
        ReleaseStatus::Succeeded => Tone::Success,
        ReleaseStatus::Failed | ReleaseStatus::TimedOut => Tone::Error,
        _ => Tone::Warning,
    }
}

/// What the BY / NOTE column says of `r`: who, and what was special.
fn note(r: &Release) -> String {
    let mut note = r.deployer.describe();
    match (r.rollback_of, r.rolled_back_to) {
        (Some(failed), _) => note.push_str(&format!("; automatic rollback of release {failed}")),
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
    if !r.hooks.is_empty() {
        let hooks: Vec<String> = r
            .hooks
            .iter()
            .map(|h| format!("{} {} {}", h.event, h.name, h.status))
            .collect();
        note.push_str(&format!("; hooks: {}", hooks.join(", ")));
    }
    if let Some(step) = r.step.as_ref().filter(|_| r.status.stopped()) {
        note.push_str(&format!("; stopped at {step}"));
    }
    if let Some(f) = &r.failure {
        note.push_str(&format!("; {}: {}", f.workload, f.reason));
    }
    note
}

/// The releases as a table whose columns are as wide as their widest cell:
/// RELEASE, SHA, STATUS (coloured by `painter`), STARTED (local time and
/// age at `now`), TOOK, BY / NOTE.
fn table(releases: &[Release], now: Timestamp, painter: Painter) -> Vec<String> {
    let header = ["RELEASE", "SHA", "STATUS", "STARTED", "TOOK", "BY / NOTE"].map(String::from);
    let rows: Vec<[String; 6]> = releases
        .iter()
        .map(|r| {
            [
                r.number.to_string(),
                config::short_sha(&r.sha).to_string(),
                r.shown_status().to_string(),
                crate::local_time::with_age(&r.started_at, now),
                r.duration_s
                    .map_or("-".to_string(), crate::duration::display_seconds),
                note(r),
            ]
        })
        .collect();
    let widths = crate::style::column_widths(&header, &rows);
    let line = |[number, sha, status, started, took, note]: &[String; 6], tone: Option<Tone>| {
        let status = format!("{status:<w$}", w = widths[2]);
        let status = tone.map_or_else(|| status.clone(), |tone| painter.paint(tone, &status));
        format!(
            "{number:>w0$}  {sha:<w1$}  {status}  {started:<w3$}  {took:>w4$}  {note}",
            w0 = widths[0],
            w1 = widths[1],
            w3 = widths[3],
            w4 = widths[4],
        )
        .trim_end()
        .to_string()
    };
    std::iter::once(line(&header, None))
        .chain(
            rows.iter()
                .zip(releases)
                .map(|(row, r)| line(row, Some(tone(r.status)))),
        )
        .collect()
}
