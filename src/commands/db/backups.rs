//! `berth db backups ENV`: the backups in the bucket, newest first, with
//! their last drill: a table, or with `--output json` the report holding
//! every manifest and its drills' summaries.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::setup;
use crate::backup::manifest::{BackupStatus, DrillRecord, DrillResult, Manifest};
use crate::cli::{BackupsArgs, GlobalArgs};
use crate::config;
use crate::output::{Mode, Output};
use crate::stdout;

/// One drill, as the list sums it up.
#[derive(Debug, Serialize)]
struct DrillSummary {
    id: String,
    result: DrillResult,
    finished_at: Timestamp,
    restore_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<&DrillRecord> for DrillSummary {
    fn from(d: &DrillRecord) -> DrillSummary {
        DrillSummary {
            id: d.id.clone(),
            result: d.result,
            finished_at: d.finished_at,
            restore_seconds: d.restore_seconds,
            error: d.error.clone(),
        }
    }
}

/// One backup in the report: its manifest and its drills, oldest first.
#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    manifest: Manifest,
    drills: Vec<DrillSummary>,
}

/// The report of `db backups`.
#[derive(Debug, Serialize)]
struct Report {
    environment: String,
    bucket: String,
    prefix: String,
    /// Newest first.
    backups: Vec<Listed>,
}

/// Run `db backups`.
pub async fn run(global: &GlobalArgs, args: &BackupsArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let config = crate::commands::load_config(global, &[&args.env], &out)?;
    let configured = setup::connect(&config, &args.env).await?;
    let store = &configured.store;
    let (mut manifests, mut drills) = tokio::try_join!(store.manifests(), store.all_drills())?;
    manifests.reverse();
    let listed: Vec<Listed> = manifests
        .into_iter()
        .map(|manifest| {
            let of = drills.remove(&manifest.id).unwrap_or_default();
            Listed {
                drills: of.iter().map(DrillSummary::from).collect(),
                manifest,
            }
        })
        .collect();
    if out.mode() != Mode::Json {
        print(&args.env, &listed, Timestamp::now())?;
    }
    out.json_report(&Report {
        environment: args.env.clone(),
        bucket: store.store.bucket.clone(),
        prefix: store.layout.prefix.clone(),
        backups: listed,
    });
    Ok(())
}

/// The table, for people.
fn print(env: &str, listed: &[Listed], now: Timestamp) -> anyhow::Result<()> {
    if listed.is_empty() {
        stdout::line(format!(
            "{env}: no backups yet; `{} db backup {env}` takes one",
            crate::program::name()
        ))?;
        return Ok(());
    }
    let rows: Vec<[String; 8]> = listed.iter().map(|l| row(l, now)).collect();
    let header = [
        "ID",
        "WHEN (UTC)",
        "TRIGGER",
        "SIZE",
        "TOOK",
        "RELEASE",
        "STATUS",
        "LAST DRILL",
    ]
    .map(String::from);
    let mut widths = [0usize; 8];
    for r in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(r) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        stdout::line(cells.join("  ").trim_end())?;
    }
    Ok(())
}

/// One backup's cells.
fn row(listed: &Listed, now: Timestamp) -> [String; 8] {
    let m = &listed.manifest;
    let trigger = match &m.label {
        Some(label) => format!("{} ({label})", m.trigger.as_str()),
        None => m.trigger.as_str().to_owned(),
    };
    let release = m.release.as_ref().map_or("-".to_owned(), |r| {
        format!("{} ({})", r.name, config::short_sha(&r.sha))
    });
    let status = match (m.status, &m.error) {
        (BackupStatus::Succeeded, _) => "succeeded".to_owned(),
        (BackupStatus::Failed, Some(error)) => format!("failed: {}", short(error, 48)),
        (BackupStatus::Failed, None) => "failed".to_owned(),
    };
    let size = if m.status == BackupStatus::Succeeded {
        indicatif::BinaryBytes(m.size).to_string()
    } else {
        "-".to_owned()
    };
    let drill = listed.drills.last().map_or("never".to_owned(), |d| {
        let result = match d.result {
            DrillResult::Passed => "passed",
            DrillResult::Failed => "failed",
        };
        format!(
            "{result} {} ago",
            span(now.duration_since(d.finished_at).as_secs_f64())
        )
    });
    [
        m.id.clone(),
        m.started_at.strftime("%Y-%m-%d %H:%M").to_string(),
        trigger,
        size,
        span(m.durations.total_seconds),
        release,
        status,
        drill,
    ]
}

/// The first line of `text`, at most `max` characters.
fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// Seconds in the largest two units: `42s`, `3m 5s`, `2h 5m`, `3d 4h`.
fn span(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    let parts = [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    let shown: Vec<String> = parts[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if shown.is_empty() {
        "0s".to_owned()
    } else {
        shown.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{ReleaseRef, Trigger};

    fn manifest(status: BackupStatus, error: Option<&str>) -> Manifest {
        let mut manifest = Manifest::example(
            "20261206T112233Z-manual-3fa9",
            "2026-12-06T11:22:33Z",
            Trigger::Manual,
            status,
        );
        manifest.environment = "staging".into();
        manifest.label = Some("before upgrade".into());
        manifest.who = "ada@box".into();
        manifest.error = error.map(str::to_owned);
        manifest.finished_at = "2026-12-06T11:23:40Z".parse().unwrap();
        manifest.durations.total_seconds = 67.2;
        manifest.size = 3 * 1024 * 1024;
        manifest.release = Some(ReleaseRef {
            name: "12".into(),
            sha: "3f2a9c1d0e5b7a8c".into(),
        });
        manifest
    }

    #[test]
    fn spans_read_in_the_largest_two_units() {
        assert_eq!(span(0.2), "0s");
        assert_eq!(span(42.0), "42s");
        assert_eq!(span(185.0), "3m 5s");
        assert_eq!(span(7500.0), "2h 5m");
        assert_eq!(span(3.0 * 86_400.0 + 4.0 * 3600.0 + 7.0), "3d 4h");
        assert_eq!(span(7200.0), "2h");
    }

    #[test]
    fn a_row_says_size_release_status_and_the_last_drill_with_its_age() {
        let now: Timestamp = "2026-12-08T12:00:00Z".parse().unwrap();
        let drill = DrillSummary {
            id: "d".into(),
            result: DrillResult::Passed,
            finished_at: "2026-12-06T12:00:00Z".parse().unwrap(),
            restore_seconds: 3.0,
            error: None,
        };
        let good = Listed {
            manifest: manifest(BackupStatus::Succeeded, None),
            drills: vec![drill],
        };
        let cells = row(&good, now);
        assert_eq!(cells[1], "2026-12-06 11:22");
        assert_eq!(cells[2], "manual (before upgrade)");
        assert_eq!(cells[3], "3.00 MiB");
        assert_eq!(cells[4], "1m 7s");
        assert_eq!(cells[5], "12 (3f2a9c1d0e5b)");
        assert_eq!(cells[7], "passed 2d ago");
        let failed = Listed {
            manifest: manifest(
                BackupStatus::Failed,
                Some("pg_dump exited 1: connection refused\nmore"),
            ),
            drills: vec![],
        };
        let cells = row(&failed, now);
        assert_eq!(cells[3], "-");
        assert_eq!(cells[6], "failed: pg_dump exited 1: connection refused");
        assert_eq!(cells[7], "never");
    }
}
