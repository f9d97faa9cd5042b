//! One drill: the Drill Job in the cluster, and its evidence as people read it.

use std::sync::Arc;

use anyhow::Context;

use crate::backup::job;
use crate::backup::manifest::{DrillRecord, DrillResult, Manifest};
use crate::backup::pods::{AgentRun, AgentTask};
use crate::config::{Backups, Environment};
use crate::error::BerthError;
use crate::identity::Deployer;
use crate::output::Output;

/// Run the Drill Job for `manifest`'s backup and return the record the
/// agent wrote to the bucket (a failed drill is a record too).
pub async fn drill(
    client: &kube::Client,
    env_name: &str,
    env: &Environment,
    backups: &Backups,
    manifest: &Manifest,
    out: &Arc<Output>,
) -> anyhow::Result<DrillRecord> {
    out.info(&format!(
        "drilling backup {} of {env_name} ({} taken {}): restore into a scratch database, \
         compare with the manifest, {} smoke queries, drop it",
        manifest.id,
        manifest.trigger.as_str(),
        manifest.started_at,
        backups.drill.smoke.len()
    ));
    let run = AgentRun {
        env_name,
        env,
        backups,
        task: AgentTask::Drill,
        vars: vec![
            ("BERTH_BACKUP_ID".into(), manifest.id.clone()),
            ("BERTH_WHO".into(), Deployer::current().describe()),
        ],
    };
    let outcome = job::run(client, &run, out, "drill").await?;
    let Some(record) = outcome.result.get("drill").cloned() else {
        return Err(BerthError::DeployFailed(format!(
            "the drill agent in pod {} gave no drill record (its result: {})",
            outcome.pod, outcome.result
        ))
        .into());
    };
    serde_json::from_value(record).context("reading the drill agent's record")
}

/// The evidence of `record`, a drill of `manifest`'s backup, stored at
/// `key`: one line per fact.
pub fn lines(record: &DrillRecord, manifest: &Manifest, key: &str) -> Vec<String> {
    let result = match (record.result, &record.error) {
        (DrillResult::Passed, _) => "passed".to_owned(),
        (DrillResult::Failed, Some(error)) => format!("FAILED: {error}"),
        (DrillResult::Failed, None) => "FAILED".to_owned(),
    };
    let failed = record.result == DrillResult::Failed;
    let tables = if failed && record.tables.is_empty() && !manifest.tables.is_empty() {
        format!(
            "{} in the manifest, not compared: the drill stopped before counting",
            manifest.tables.len()
        )
    } else if record.mismatches.is_empty() {
        format!(
            "{} compared with the manifest, all equal",
            manifest.tables.len()
        )
    } else {
        let differ: Vec<String> = record
            .mismatches
            .iter()
            .map(|(table, (expected, found))| {
                format!("{table} (manifest {expected}, found {found})")
            })
            .collect();
        format!(
            "{} compared with the manifest, {} differ: {}",
            manifest.tables.len(),
            differ.len(),
            differ.join(", ")
        )
    };
    let mut lines = vec![
        format!(
            "drill {} of backup {} ({}): {result}",
            record.id, record.backup, record.environment
        ),
        format!(
            "  restore time  {} into scratch database {} (dropped)",
            crate::duration::display_seconds(record.restore_seconds),
            record.scratch_database
        ),
        format!(
            "  data age      {} (backup started {})",
            super::check::human(record.data_age_seconds as i64),
            manifest.started_at
        ),
        format!("  tables        {tables}"),
    ];
    if record.smoke.is_empty() {
        lines.push(if failed {
            "  smoke         not run".to_owned()
        } else {
            "  smoke         none configured (backups.drill.smoke)".to_owned()
        });
    }
    for (query, ok) in &record.smoke {
        let verdict = if *ok { "true " } else { "FALSE" };
        lines.push(format!("  smoke         {verdict} {query}"));
    }
    lines.push(format!("  evidence      {key}"));
    lines
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::backup::manifest::{BackupStatus, SCHEMA, Trigger};

    #[test]
    fn the_evidence_names_every_fact_and_each_failure() {
        let mut manifest = Manifest::example(
            "20261206T112233Z-manual-3fa9",
            "2026-12-06T11:22:33Z",
            Trigger::Manual,
            BackupStatus::Succeeded,
        );
        manifest.environment = "staging".into();
        manifest.tables = BTreeMap::from([("public.a".into(), 3), ("public.b".into(), 4)]);
        let record = DrillRecord {
            schema: SCHEMA,
            id: "20261206T140000Z".into(),
            backup: manifest.id.clone(),
            environment: "staging".into(),
            who: "ada@box".into(),
            started_at: manifest.started_at,
            finished_at: manifest.started_at,
            restore_seconds: 2.25,
            data_age_seconds: 9000.0,
            scratch_database: "berth_drill_1".into(),
            tables: BTreeMap::from([("public.a".into(), 3), ("public.b".into(), 5)]),
            mismatches: BTreeMap::from([("public.b".into(), (4, 5))]),
            smoke: vec![("SELECT true".into(), true), ("SELECT false".into(), false)],
            result: DrillResult::Failed,
            error: Some("public.b has 5 rows, the manifest says 4".into()),
        };
        let text = lines(&record, &manifest, "s3://b/staging/drills/x/y.json").join("\n");
        for expected in [
            "drill 20261206T140000Z of backup 20261206T112233Z-manual-3fa9 (staging): FAILED: public.b has 5 rows",
            "restore time  2.3s into scratch database berth_drill_1 (dropped)",
            "data age      2h30m",
            "2 compared with the manifest, 1 differ: public.b (manifest 4, found 5)",
            "smoke         true  SELECT true",
            "smoke         FALSE SELECT false",
            "evidence      s3://b/staging/drills/x/y.json",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }
}
