//! `berth db drill --check ENV --max-age 7d`: whether the newest good
//! backup has a passing drill that recent, from the records alone. Nothing
//! runs in the cluster; CI and alerting call this.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::backup::manifest::{BackupStatus, DrillRecord, DrillResult, Manifest};

/// A drill, as the check reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillSeen {
    /// The drill's id.
    pub id: String,
    /// `passed` or `failed`.
    pub result: DrillResult,
    /// When it finished.
    pub finished_at: Timestamp,
    /// How long ago it finished, in seconds.
    pub age_seconds: i64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The check's verdict and its evidence: the JSON report's fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The environment.
    pub environment: String,
    /// Whether the newest good backup passed a drill within `max_age`.
    pub ok: bool,
    /// The limit, in seconds.
    pub max_age_seconds: u64,
    /// The newest succeeded backup, if any.
    pub newest_backup: Option<String>,
    /// When it started.
    pub newest_backup_at: Option<Timestamp>,
    /// Its newest drill, passed or not.
    pub last_drill: Option<DrillSeen>,
    /// Its newest passing drill.
    pub last_passed: Option<DrillSeen>,
    /// The verdict in words, naming what to run when it is not ok.
    pub message: String,
}

/// Check environment `env`'s `manifests` and `drills` (by backup id) at
/// `now` against `max_age`; `berth` is the program name for the commands
/// the message suggests.
pub fn check(
    env: &str,
    manifests: &[Manifest],
    drills: &BTreeMap<String, Vec<DrillRecord>>,
    now: Timestamp,
    max_age: Duration,
    berth: &str,
) -> Check {
    let newest = manifests
        .iter()
        .filter(|m| m.status == BackupStatus::Succeeded)
        .max_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    let mut check = Check {
        environment: env.to_owned(),
        ok: false,
        max_age_seconds: max_age.as_secs(),
        newest_backup: newest.map(|m| m.id.clone()),
        newest_backup_at: newest.map(|m| m.started_at),
        last_drill: None,
        last_passed: None,
        message: String::new(),
    };
    let Some(newest) = newest else {
        check.message = format!(
            "{env} has no succeeded backup, so nothing has been drilled; take one with \
             `{berth} db backup {env}`, then drill it with `{berth} db drill {env}`"
        );
        return check;
    };
    let seen = |record: &DrillRecord| DrillSeen {
        id: record.id.clone(),
        result: record.result,
        finished_at: record.finished_at,
        age_seconds: now.duration_since(record.finished_at).as_secs(),
        error: record.error.clone(),
    };
    let of_newest: Vec<&DrillRecord> = drills
        .get(&newest.id)
        .map(|records| records.iter().collect())
        .unwrap_or_default();
    let by_time = |a: &&&DrillRecord, b: &&&DrillRecord| {
        a.finished_at.cmp(&b.finished_at).then(a.id.cmp(&b.id))
    };
    check.last_drill = of_newest.iter().max_by(by_time).map(|r| seen(r));
    check.last_passed = of_newest
        .iter()
        .filter(|r| r.result == DrillResult::Passed)
        .max_by(by_time)
        .map(|r| seen(r));
    let limit = SignedDuration::try_from(max_age).unwrap_or(SignedDuration::MAX);
    let recent = |d: &DrillSeen| now.duration_since(d.finished_at) <= limit;
    let id = &newest.id;
    let run = format!("`{berth} db drill {env} {id}`");
    check.ok = check.last_passed.as_ref().is_some_and(recent);
    check.message = match (&check.last_passed, &check.last_drill) {
        (Some(passed), _) if check.ok => format!(
            "the newest backup {id} passed drill {} {} ago (limit {})",
            passed.id,
            human(passed.age_seconds),
            human(max_age.as_secs() as i64)
        ),
        (_, None) => format!(
            "the newest backup {id} has never been drilled; run {run} \
             (and schedule `backups.drill.schedule` after the backup's)"
        ),
        (Some(passed), Some(last)) if last.result == DrillResult::Failed => format!(
            "the newest backup {id}'s last drill {} failed ({}); its last passing drill {} \
             is {} old, over the limit of {}; fix what failed, then run {run}",
            last.id,
            last.error.as_deref().unwrap_or("no reason recorded"),
            passed.id,
            human(passed.age_seconds),
            human(max_age.as_secs() as i64)
        ),
        (Some(passed), _) => format!(
            "the newest backup {id}'s last passing drill {} is {} old, over the limit of {}; \
             run {run}",
            passed.id,
            human(passed.age_seconds),
            human(max_age.as_secs() as i64)
        ),
        (None, Some(last)) => format!(
            "the newest backup {id} has never passed a drill: its last drill {} failed ({}); \
             fix what failed, then run {run}",
            last.id,
            last.error.as_deref().unwrap_or("no reason recorded")
        ),
    };
    check
}

/// `seconds` as people read it: `3d4h`, `5h12m`, `42m`, `17s` ([`crate::duration::display`]).
pub fn human(seconds: i64) -> String {
    crate::duration::display(std::time::Duration::from_secs(seconds.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{SCHEMA, Trigger};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn backup(id: &str, started: &str, status: BackupStatus) -> Manifest {
        Manifest::example(id, started, Trigger::Schedule, status)
    }

    fn drill(backup: &str, finished: &str, result: DrillResult) -> DrillRecord {
        DrillRecord {
            schema: SCHEMA,
            id: finished.replace(['-', ':'], ""),
            backup: backup.into(),
            environment: "production".into(),
            who: "ada@box".into(),
            started_at: at(finished),
            finished_at: at(finished),
            restore_seconds: 1.0,
            data_age_seconds: 60.0,
            scratch_database: "berth_drill_x".into(),
            tables: BTreeMap::new(),
            mismatches: BTreeMap::new(),
            smoke: vec![],
            result,
            error: (result == DrillResult::Failed).then(|| "smoke query 1 was false".into()),
        }
    }

    fn by_backup(records: Vec<DrillRecord>) -> BTreeMap<String, Vec<DrillRecord>> {
        let mut map: BTreeMap<String, Vec<DrillRecord>> = BTreeMap::new();
        for r in records {
            map.entry(r.backup.clone()).or_default().push(r);
        }
        map
    }

    const WEEK: Duration = Duration::from_secs(7 * 86_400);
    const NOW: &str = "2026-12-06T12:00:00Z";

    fn run(manifests: &[Manifest], drills: Vec<DrillRecord>) -> Check {
        check(
            "production",
            manifests,
            &by_backup(drills),
            at(NOW),
            WEEK,
            "berth",
        )
    }

    #[test]
    fn a_recent_passing_drill_of_the_newest_good_backup_is_ok() {
        let manifests = [
            backup("old", "2026-12-04T03:00:00Z", BackupStatus::Succeeded),
            backup("new", "2026-12-05T03:00:00Z", BackupStatus::Succeeded),
            backup("broken", "2026-12-06T03:00:00Z", BackupStatus::Failed),
        ];
        let checked = run(
            &manifests,
            vec![drill("new", "2026-12-05T04:00:00Z", DrillResult::Passed)],
        );
        assert!(checked.ok, "{}", checked.message);
        assert_eq!(
            checked.newest_backup.as_deref(),
            Some("new"),
            "a failed backup is never the newest good one"
        );
        assert_eq!(checked.last_passed.as_ref().unwrap().age_seconds, 115_200);
        assert!(
            checked.message.contains("passed drill"),
            "{}",
            checked.message
        );
    }

    #[test]
    fn no_drill_of_the_newest_backup_fails_and_says_what_to_run() {
        let manifests = [
            backup("old", "2026-12-04T03:00:00Z", BackupStatus::Succeeded),
            backup("new", "2026-12-05T03:00:00Z", BackupStatus::Succeeded),
        ];
        // A passing drill of an older backup does not vouch for the newest.
        let checked = run(
            &manifests,
            vec![drill("old", "2026-12-05T01:00:00Z", DrillResult::Passed)],
        );
        assert!(!checked.ok);
        assert_eq!(checked.last_drill, None);
        assert!(
            checked.message.contains("new has never been drilled")
                && checked.message.contains("`berth db drill production new`"),
            "{}",
            checked.message
        );
    }

    #[test]
    fn a_passing_drill_older_than_max_age_fails() {
        let manifests = [backup("b", "2026-11-01T03:00:00Z", BackupStatus::Succeeded)];
        let checked = run(
            &manifests,
            vec![drill("b", "2026-11-20T03:00:00Z", DrillResult::Passed)],
        );
        assert!(!checked.ok);
        assert!(
            checked.message.contains("16d9h old, over the limit of 7d"),
            "{}",
            checked.message
        );
    }

    #[test]
    fn a_failed_last_drill_is_named_with_its_reason() {
        let manifests = [backup("b", "2026-12-05T03:00:00Z", BackupStatus::Succeeded)];
        let checked = run(
            &manifests,
            vec![drill("b", "2026-12-06T03:00:00Z", DrillResult::Failed)],
        );
        assert!(!checked.ok);
        assert_eq!(checked.last_drill.unwrap().result, DrillResult::Failed);
        assert!(
            checked.message.contains("never passed a drill")
                && checked.message.contains("smoke query 1 was false"),
            "{}",
            checked.message
        );
        // A failure after a recent pass: the pass still counts.
        let checked = run(
            &manifests,
            vec![
                drill("b", "2026-12-05T05:00:00Z", DrillResult::Passed),
                drill("b", "2026-12-06T03:00:00Z", DrillResult::Failed),
            ],
        );
        assert!(checked.ok, "{}", checked.message);
    }

    #[test]
    fn no_good_backup_at_all_fails_saying_to_take_one() {
        let manifests = [backup("x", "2026-12-05T03:00:00Z", BackupStatus::Failed)];
        let checked = run(&manifests, vec![]);
        assert!(!checked.ok);
        assert_eq!(checked.newest_backup, None);
        assert!(
            checked.message.contains("`berth db backup production`"),
            "{}",
            checked.message
        );
    }

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(human(17), "17s");
        assert_eq!(human(42 * 60 + 10), "42m10s");
        assert_eq!(human(5 * 3600 + 12 * 60), "5h12m");
        assert_eq!(human(3 * 86_400 + 4 * 3600 + 59), "3d4h");
    }
}
