//! Which backups retention keeps: grandfather-father-son for scheduled
//! backups, newest N for each other trigger, and nothing good ever evicted
//! by a failed one.
//!
//! The calendar rules, in UTC:
//! - `daily: N` keeps the newest scheduled backup of each of the N most
//!   recent days that have one;
//! - `weekly: N`, of each of the N most recent ISO weeks (Monday to Sunday);
//! - `monthly: N`, of each of the N most recent calendar months.
//!
//! A backup kept by any rule stays. `manual`, `pre_migrate` and
//! `pre_restore` keep the newest N succeeded backups of their trigger, so
//! they never evict scheduled ones (nor each other). The newest succeeded
//! backup is always kept, whatever the counts. Failed backups have no dump,
//! only a manifest; the newest [`FAILED_KEPT`] of those stay as a record,
//! and they never count toward any rule.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;

use super::manifest::{BackupStatus, Manifest, Trigger};
use crate::config::Retention;

/// How many failed backups' manifests are kept, newest first.
pub const FAILED_KEPT: usize = 10;

/// One backup's fate, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The backup id.
    pub id: String,
    /// Why it is kept or deleted, e.g. `daily 2026-12-05`.
    pub reason: String,
}

/// What retention keeps and deletes, each newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Backups that stay.
    pub keep: Vec<Decision>,
    /// Backups to delete (dump, drills and manifest).
    pub delete: Vec<Decision>,
}

/// The plan for `manifests` under `retention`. The rules count periods
/// that have backups, not periods back from today, so a schedule that
/// stopped running never empties the bucket.
pub fn plan(manifests: &[Manifest], retention: &Retention) -> Plan {
    let mut newest_first: Vec<&Manifest> = manifests.iter().collect();
    newest_first.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let good = |m: &&Manifest| m.status == BackupStatus::Succeeded;
    if let Some(newest) = newest_first.iter().find(|m| good(m)) {
        reasons
            .entry(newest.id.as_str())
            .or_default()
            .push("the newest good backup".into());
    }
    let scheduled: Vec<&Manifest> = newest_first
        .iter()
        .copied()
        .filter(|m| good(m) && m.trigger == Trigger::Schedule)
        .collect();
    for (rule, count, period) in [
        ("daily", retention.daily, Period::Day),
        ("weekly", retention.weekly, Period::Week),
        ("monthly", retention.monthly, Period::Month),
    ] {
        let mut seen = BTreeSet::new();
        for manifest in &scheduled {
            let label = period.label(manifest.started_at);
            if seen.contains(&label) {
                continue;
            }
            if seen.len() == count as usize {
                break;
            }
            reasons
                .entry(manifest.id.as_str())
                .or_default()
                .push(format!("{rule} {label}"));
            seen.insert(label);
        }
    }
    for (trigger, count) in [
        (Trigger::Manual, retention.manual),
        (Trigger::PreMigrate, retention.pre_migrate),
        (Trigger::PreRestore, retention.pre_restore),
    ] {
        let of_trigger = newest_first
            .iter()
            .filter(|m| good(m) && m.trigger == trigger);
        for (n, manifest) in of_trigger.take(count as usize).enumerate() {
            reasons
                .entry(manifest.id.as_str())
                .or_default()
                .push(format!("{} {} of {count}", trigger.as_str(), n + 1));
        }
    }
    let failed = newest_first.iter().filter(|m| !good(m));
    for (n, manifest) in failed.take(FAILED_KEPT).enumerate() {
        reasons
            .entry(manifest.id.as_str())
            .or_default()
            .push(format!("failed record {} of {FAILED_KEPT}", n + 1));
    }
    let mut plan = Plan::default();
    for manifest in newest_first {
        match reasons.get(manifest.id.as_str()) {
            Some(why) => plan.keep.push(Decision {
                id: manifest.id.clone(),
                reason: why.join(", "),
            }),
            None => plan.delete.push(Decision {
                id: manifest.id.clone(),
                reason: match manifest.status {
                    BackupStatus::Succeeded => format!(
                        "{} backup beyond the counts kept",
                        manifest.trigger.as_str()
                    ),
                    BackupStatus::Failed => {
                        format!("failed record beyond the newest {FAILED_KEPT}")
                    }
                },
            }),
        }
    }
    plan
}

/// A calendar period of a retention rule.
#[derive(Debug, Clone, Copy)]
enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    /// The period `at` falls in, in UTC: `2026-12-06`, `2026-W49`, `2026-12`.
    fn label(self, at: Timestamp) -> String {
        let date = at.to_zoned(TimeZone::UTC).date();
        match self {
            Period::Day => date.to_string(),
            Period::Week => {
                let week = date.iso_week_date();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Period::Month => format!("{}-{:02}", date.year(), date.month()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, at: &str, trigger: Trigger, status: BackupStatus) -> Manifest {
        Manifest::example(id, at, trigger, status)
    }

    fn counts(daily: u32, weekly: u32, monthly: u32, manual: u32) -> Retention {
        Retention {
            daily,
            weekly,
            monthly,
            manual,
            pre_migrate: 1,
            pre_restore: 1,
        }
    }

    fn ids(decisions: &[Decision]) -> Vec<&str> {
        decisions.iter().map(|d| d.id.as_str()).collect()
    }

    /// One scheduled backup a day at 03:00 from `first` for `days` days.
    fn nightly(first: &str, days: i64) -> Vec<Manifest> {
        let start: Timestamp = first.parse().unwrap();
        (0..days)
            .map(|n| {
                let at = start + k8s_openapi::jiff::SignedDuration::from_hours(24 * n);
                manifest(
                    &format!("s{n:03}"),
                    &at.to_string(),
                    Trigger::Schedule,
                    BackupStatus::Succeeded,
                )
            })
            .collect()
    }

    #[test]
    fn grandfather_father_son_keeps_the_newest_of_each_day_week_and_month() {
        // 2026-10-01 (a Thursday) to 2026-12-06 (a Sunday): 67 nights.
        let all = nightly("2026-10-01T03:00:00Z", 67);
        let plan = plan(&all, &counts(3, 2, 3, 0));
        // daily: the last three nights; weekly: the newest of ISO weeks 49
        // (Sun 12-06, already daily) and 48 (Sun 11-29); monthly: the newest
        // of December (12-06), November (11-30) and October (10-31).
        assert_eq!(
            ids(&plan.keep),
            ["s066", "s065", "s064", "s059", "s060", "s030"]
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
        assert_eq!(plan.keep.len() + plan.delete.len(), 67);
        let reason = |id: &str| {
            plan.keep
                .iter()
                .find(|d| d.id == id)
                .unwrap()
                .reason
                .clone()
        };
        assert_eq!(reason("s059"), "weekly 2026-W48");
        assert_eq!(reason("s060"), "monthly 2026-11");
        assert_eq!(reason("s030"), "monthly 2026-10");
        assert!(
            reason("s066").contains("daily 2026-12-06"),
            "{}",
            reason("s066")
        );
    }

    #[test]
    fn two_backups_on_one_day_count_once_and_the_newer_is_kept() {
        let all = vec![
            manifest(
                "a",
                "2026-12-06T01:00:00Z",
                Trigger::Schedule,
                BackupStatus::Succeeded,
            ),
            manifest(
                "b",
                "2026-12-06T13:00:00Z",
                Trigger::Schedule,
                BackupStatus::Succeeded,
            ),
            manifest(
                "c",
                "2026-12-05T13:00:00Z",
                Trigger::Schedule,
                BackupStatus::Succeeded,
            ),
        ];
        let plan = plan(&all, &counts(2, 0, 0, 0));
        assert_eq!(ids(&plan.keep), ["b", "c"]);
        assert_eq!(ids(&plan.delete), ["a"]);
    }

    #[test]
    fn manual_and_pre_migrate_backups_never_evict_scheduled_ones() {
        let mut all = nightly("2026-12-01T03:00:00Z", 2);
        for n in 0..5 {
            all.push(manifest(
                &format!("m{n}"),
                &format!("2026-12-05T1{n}:00:00Z"),
                Trigger::Manual,
                BackupStatus::Succeeded,
            ));
        }
        all.push(manifest(
            "p0",
            "2026-12-05T20:00:00Z",
            Trigger::PreMigrate,
            BackupStatus::Succeeded,
        ));
        let plan = plan(&all, &counts(2, 0, 0, 2));
        assert_eq!(ids(&plan.keep), ["p0", "m4", "m3", "s001", "s000"]);
        assert_eq!(ids(&plan.delete), ["m2", "m1", "m0"]);
    }

    #[test]
    fn failed_backups_never_count_and_never_evict_a_good_one() {
        let mut all = nightly("2026-12-01T03:00:00Z", 1);
        for n in 0..12 {
            all.push(manifest(
                &format!("f{n:02}"),
                &format!("2026-12-02T{n:02}:00:00Z"),
                Trigger::Schedule,
                BackupStatus::Failed,
            ));
        }
        let plan = plan(&all, &counts(1, 0, 0, 0));
        assert!(
            ids(&plan.keep).contains(&"s000"),
            "the only good backup stays"
        );
        assert_eq!(
            ids(&plan.delete),
            ["f01", "f00"],
            "only the oldest failed records go"
        );
    }

    #[test]
    fn the_newest_good_backup_stays_even_when_every_count_is_zero() {
        let all = vec![
            manifest(
                "old",
                "2026-12-01T03:00:00Z",
                Trigger::Manual,
                BackupStatus::Succeeded,
            ),
            manifest(
                "new",
                "2026-12-02T03:00:00Z",
                Trigger::Manual,
                BackupStatus::Succeeded,
            ),
        ];
        let plan = plan(&all, &counts(0, 0, 0, 0));
        assert_eq!(ids(&plan.keep), ["new"]);
        assert_eq!(ids(&plan.delete), ["old"]);
    }
}
