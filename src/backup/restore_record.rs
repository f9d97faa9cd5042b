//! The record a restore keeps in the cluster while it runs: the ConfigMap
//! `berth-restore` in the environment's namespace, holding what the restore
//! set aside (maintenance, CronJobs, replica counts) and the step it
//! reached. Each change is recorded before it is made, so a restore killed
//! at any point leaves a record that says what to put back; running
//! `db restore` again resumes from it, `--abort` undoes it.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::clients::Workload;
use crate::cluster::{MANAGED_BY, delete_if_present};
use crate::error::input_error;

/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "berth-restore";
/// Its key holding the record's JSON.
const KEY: &str = "record.json";

/// The steps of a restore, in order. A record's step is the last one
/// started: its changes may be partly made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The record exists; nothing else changed.
    Recorded,
    /// Turning maintenance on.
    MaintenanceOn,
    /// Suspending the CronJobs.
    SuspendCronJobs,
    /// Scaling the database's clients to zero and waiting for their pods to go.
    ScaleDown,
    /// Taking the safety backup.
    SafetyBackup,
    /// Restoring the backup (one transaction), then comparing row counts.
    Restore,
    /// The restore failed: restoring the safety backup.
    RollBack,
    /// Scaling back, resuming, maintenance off.
    PutBack,
}

impl Step {
    /// The step's name in progress lines and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Recorded => "record",
            Step::MaintenanceOn => "maintenance on",
            Step::SuspendCronJobs => "suspend CronJobs",
            Step::ScaleDown => "scale down",
            Step::SafetyBackup => "safety backup",
            Step::Restore => "restore",
            Step::RollBack => "restore the safety backup",
            Step::PutBack => "put back",
        }
    }
}

/// How the database step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "detail")]
pub enum Ending {
    /// The backup was restored and its row counts match the manifest.
    Restored,
    /// The restore failed and the safety backup was restored: the data is
    /// as it was before the restore. The detail says why it failed.
    RolledBack(String),
    /// The restore failed and nothing could roll it back; the detail says
    /// which state the database is in.
    Failed(String),
}

/// One step's timing, for the restore's report and its record in the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// The step.
    pub step: Step,
    /// When it started (again, for a resumed restore).
    pub started_at: Timestamp,
    /// How long it took, once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// What a restore has set aside, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// The restore's id: its start time (`YYYYMMDDTHHMMSSZ`), also the key
    /// of its record in the bucket.
    pub id: String,
    /// The environment.
    pub environment: String,
    /// The backup being restored.
    pub backup: String,
    /// The safety backup's id, chosen before its Job starts.
    #[serde(default)]
    pub safety_backup: Option<String>,
    /// `--no-safety-backup`: there is no way back but another backup.
    #[serde(default)]
    pub no_safety_backup: bool,
    /// The last step started.
    pub step: Step,
    /// Replicas to put back, by `Kind/name`: only workloads berth scaled down.
    #[serde(default)]
    pub replicas: BTreeMap<String, i32>,
    /// The CronJobs berth suspended (those already suspended are not here).
    #[serde(default)]
    pub suspended_cron_jobs: Vec<String>,
    /// Whether berth turned maintenance on (`None` until it looked).
    #[serde(default)]
    pub maintenance_turned_on: Option<bool>,
    /// Who started the restore.
    pub who: String,
    /// When.
    pub started_at: Timestamp,
    /// Each step's timing, in order (a resumed step appears again).
    #[serde(default)]
    pub steps: Vec<StepTiming>,
    /// Why the restore failed, while the safety backup is being restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_error: Option<String>,
    /// How the database step ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending: Option<Ending>,
}

impl RestoreRecord {
    /// The record of a restore of `backup` in `environment` about to start.
    pub fn new(
        environment: &str,
        backup: &str,
        no_safety_backup: bool,
        who: &str,
        now: Timestamp,
    ) -> RestoreRecord {
        RestoreRecord {
            id: super::layout::compact_time(now),
            environment: environment.to_owned(),
            backup: backup.to_owned(),
            safety_backup: None,
            no_safety_backup,
            step: Step::Recorded,
            replicas: BTreeMap::new(),
            suspended_cron_jobs: Vec::new(),
            maintenance_turned_on: None,
            who: who.to_owned(),
            started_at: now,
            steps: Vec::new(),
            restore_error: None,
            ending: None,
        }
    }

    /// Start `step`: the record's step moves forward to it (never back:
    /// steps before the one reached are redone, idempotently, on resume).
    /// Putting back moves it only once the database step ended: an abort's
    /// put back leaves the step where the database work stopped, which is
    /// what says the database's state.
    pub fn start(&mut self, step: Step, now: Timestamp) {
        if step != Step::PutBack || self.ending.is_some() {
            self.step = self.step.max(step);
        }
        self.steps.push(StepTiming {
            step,
            started_at: now,
            seconds: None,
        });
    }

    /// The step started last finished at `now`.
    pub fn finish(&mut self, now: Timestamp) {
        if let Some(last) = self.steps.last_mut() {
            let took = now.duration_since(last.started_at);
            last.seconds = Some(took.as_secs_f64().max(0.0));
        }
    }

    /// The CronJobs to suspend, given each CronJob's name and whether it is
    /// suspended now: every one not suspended. Those become the record's
    /// (added to those it holds), so only they are resumed later; one
    /// suspended before the restore began is never recorded.
    pub fn cron_jobs_to_suspend(&mut self, cron_jobs: &BTreeMap<String, bool>) -> Vec<String> {
        let running: Vec<String> = cron_jobs
            .iter()
            .filter(|(_, suspended)| !**suspended)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &running {
            if !self.suspended_cron_jobs.contains(name) {
                self.suspended_cron_jobs.push(name.clone());
            }
        }
        running
    }

    /// Record the replicas of each workload among `workloads` that runs
    /// pods and is not recorded yet. A workload recorded before keeps its
    /// count (on resume it reads 0, which berth set). Returns whether the
    /// record changed.
    pub fn record_replicas(&mut self, workloads: &[Workload]) -> bool {
        let mut changed = false;
        for workload in workloads {
            if workload.replicas > 0 && !self.replicas.contains_key(&workload.key) {
                self.replicas
                    .insert(workload.key.clone(), workload.replicas);
                changed = true;
            }
        }
        changed
    }

    /// The database work left, given the step reached: `None` once it ended.
    pub fn database_work(&self) -> Option<Step> {
        match self.step {
            _ if self.ending.is_some() => None,
            Step::PutBack => None,
            Step::RollBack => Some(Step::RollBack),
            Step::Restore => Some(Step::Restore),
            _ if self.no_safety_backup => Some(Step::Restore),
            _ => Some(Step::SafetyBackup),
        }
    }

    /// Refuse to resume this record as a restore of `asked`, another backup.
    pub fn check_resume(&self, asked: Option<&str>, env: &str) -> anyhow::Result<()> {
        match asked {
            Some(asked) if asked != self.backup => Err(input_error(format!(
                "a restore of backup {} into {env} was interrupted at step `{}` (started {} by {}); \
                 finish it with `{berth} db restore {env} {}`, or undo it with \
                 `{berth} db restore {env} --abort`, then restore {asked}",
                self.backup,
                self.step.as_str(),
                self.started_at,
                self.who,
                self.backup,
                berth = crate::program::name()
            ))),
            _ => Ok(()),
        }
    }

    /// Which state the database may be in, given how far the restore got.
    pub fn database_state(&self) -> String {
        let safety = match (&self.safety_backup, self.no_safety_backup) {
            (_, true) => "no safety backup (--no-safety-backup)".to_owned(),
            (Some(id), false) => format!("the safety backup {id}"),
            (None, false) => "no safety backup (none was taken yet)".to_owned(),
        };
        match (&self.ending, self.step) {
            (Some(Ending::Restored), _) => format!("it holds backup {}'s data", self.backup),
            (Some(Ending::RolledBack(why)), _) => format!(
                "the restore of {} failed ({why}) and {safety} was restored: it holds the data \
                 it had before the restore",
                self.backup
            ),
            (Some(Ending::Failed(state)), _) => state.clone(),
            (None, step) if step < Step::Restore => {
                "it was not touched: the restore had not begun".to_owned()
            }
            (None, Step::Restore) => format!(
                "the restore of {} may have been running; it runs in one transaction, so the \
                 database holds either its data from before or the backup's (row counts \
                 unchecked); {safety} holds the data from before",
                self.backup
            ),
            (None, _) => format!(
                "the restore of {} failed and restoring {safety} did not finish: it runs in one \
                 transaction, so the database holds either that data or the failed restore's",
                self.backup
            ),
        }
    }
}

/// The record as the namespace holds it, with the version to replace.
pub struct Stored {
    api: Api<ConfigMap>,
    version: Option<String>,
}

/// The ConfigMap holding `record`.
fn config_map(record: &RestoreRecord, version: Option<String>) -> anyhow::Result<ConfigMap> {
    let body = serde_json::to_string_pretty(record).context("encoding the restore record")?;
    let map = json!({
        "metadata": {
            "name": CONFIG_MAP,
            "labels": { MANAGED_BY.0: MANAGED_BY.1 },
            "resourceVersion": version,
        },
        "data": { KEY: body },
    });
    Ok(serde_json::from_value(map)?)
}

impl Stored {
    /// The record in `namespace`, if a restore left one.
    pub async fn load(
        client: &Client,
        namespace: &str,
    ) -> anyhow::Result<Option<(Stored, RestoreRecord)>> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let Some(map) = api
            .get_opt(CONFIG_MAP)
            .await
            .with_context(|| format!("reading ConfigMap {CONFIG_MAP} in namespace {namespace}"))?
        else {
            return Ok(None);
        };
        let body = map.data.as_ref().and_then(|d| d.get(KEY));
        let record = body
            .and_then(|b| serde_json::from_str::<RestoreRecord>(b).ok())
            .ok_or_else(|| {
                input_error(format!(
                    "ConfigMap {CONFIG_MAP} in namespace {namespace} holds no restore record berth \
                     can read, so berth cannot tell what an interrupted restore set aside; \
                     check the workloads' replicas, the CronJobs and maintenance by hand \
                     (`kubectl -n {namespace} get configmap {CONFIG_MAP} -o yaml` shows what it \
                     holds), then delete it"
                ))
            })?;
        let version = map.metadata.resource_version;
        Ok(Some((Stored { api, version }, record)))
    }

    /// Write `record` as a new ConfigMap; refused when one exists already
    /// (another restore began meanwhile).
    pub async fn create(
        client: &Client,
        namespace: &str,
        record: &RestoreRecord,
    ) -> anyhow::Result<Stored> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let created = api
            .create(&PostParams::default(), &config_map(record, None)?)
            .await
            .with_context(|| format!("writing ConfigMap {CONFIG_MAP} in namespace {namespace}"))?;
        Ok(Stored {
            api,
            version: created.metadata.resource_version,
        })
    }

    /// Replace the record with `record`, guarded by the version read or
    /// written last (a merge patch carrying `resourceVersion` is refused
    /// when the ConfigMap changed since; patch is what deployers may do).
    pub async fn save(&mut self, record: &RestoreRecord) -> anyhow::Result<()> {
        let map = config_map(record, self.version.clone())?;
        let patch = json!({"metadata": map.metadata, "data": map.data});
        let saved = self
            .api
            .patch(CONFIG_MAP, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("updating ConfigMap {CONFIG_MAP}"))?;
        self.version = saved.metadata.resource_version;
        Ok(())
    }

    /// Delete the record: the restore is over and everything is back.
    pub async fn delete(self) -> anyhow::Result<()> {
        delete_if_present(&self.api, CONFIG_MAP, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting ConfigMap {CONFIG_MAP}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn record() -> RestoreRecord {
        RestoreRecord::new(
            "staging",
            "20261206T112233Z-manual-3fa9",
            false,
            "ada@box",
            at("2026-12-06T12:00:00Z"),
        )
    }

    fn workload(key: &str, replicas: i32) -> Workload {
        Workload {
            key: key.into(),
            replicas,
            selector: None,
        }
    }

    #[test]
    fn only_cron_jobs_running_before_are_recorded_and_a_resume_keeps_them() {
        let mut r = record();
        let before = BTreeMap::from([
            ("berth-backup".to_string(), false),
            ("cron".to_string(), false),
            ("paused".to_string(), true),
        ]);
        assert_eq!(r.cron_jobs_to_suspend(&before), ["berth-backup", "cron"]);
        // Killed after suspending berth-backup only; a resume sees cron running.
        let midway = BTreeMap::from([
            ("berth-backup".to_string(), true),
            ("cron".to_string(), false),
            ("paused".to_string(), true),
        ]);
        assert_eq!(r.cron_jobs_to_suspend(&midway), ["cron"]);
        assert_eq!(r.suspended_cron_jobs, ["berth-backup", "cron"]);
        assert!(!r.suspended_cron_jobs.contains(&"paused".to_string()));
    }

    #[test]
    fn replicas_are_recorded_once_so_a_resume_never_records_the_zero_berth_set() {
        let mut r = record();
        assert!(r.record_replicas(&[
            workload("Deployment/frontend", 2),
            workload("Deployment/idle", 0),
            workload("StatefulSet/worker", 1),
        ]));
        assert!(!r.record_replicas(&[
            workload("Deployment/frontend", 0),
            workload("StatefulSet/worker", 0),
        ]));
        assert_eq!(
            r.replicas,
            BTreeMap::from([
                ("Deployment/frontend".to_string(), 2),
                ("StatefulSet/worker".to_string(), 1)
            ])
        );
        // One that appeared since (a deploy after the kill) is added.
        assert!(r.record_replicas(&[workload("Deployment/new", 3)]));
        assert_eq!(r.replicas["Deployment/new"], 3);
    }

    #[test]
    fn steps_only_move_forward_and_the_database_work_follows_them() {
        let mut r = record();
        let now = at("2026-12-06T12:00:01Z");
        assert_eq!(r.database_work(), Some(Step::SafetyBackup));
        r.start(Step::ScaleDown, now);
        r.finish(at("2026-12-06T12:00:04Z"));
        assert_eq!(r.steps[0].seconds, Some(3.0));
        // A resume redoes the earlier steps; the step reached stays.
        r.start(Step::MaintenanceOn, now);
        assert_eq!(r.step, Step::ScaleDown);
        assert_eq!(r.database_work(), Some(Step::SafetyBackup));
        r.start(Step::Restore, now);
        assert_eq!(r.database_work(), Some(Step::Restore));
        r.start(Step::RollBack, now);
        assert_eq!(r.database_work(), Some(Step::RollBack));
        // An abort's put back leaves the step where the database work stopped.
        r.start(Step::PutBack, now);
        assert_eq!(r.step, Step::RollBack);
        assert_eq!(r.steps.last().unwrap().step, Step::PutBack);
        r.ending = Some(Ending::RolledBack("counts differ".into()));
        assert_eq!(r.database_work(), None);
        let mut skip = record();
        skip.no_safety_backup = true;
        assert_eq!(skip.database_work(), Some(Step::Restore));
    }

    #[test]
    fn the_database_state_follows_the_step_reached() {
        let mut r = record();
        r.start(Step::SafetyBackup, at("2026-12-06T12:00:01Z"));
        assert!(r.database_state().contains("not touched"));
        r.safety_backup = Some("S".into());
        r.start(Step::Restore, at("2026-12-06T12:00:02Z"));
        let state = r.database_state();
        assert!(
            state.contains("one transaction") && state.contains("safety backup S"),
            "{state}"
        );
        r.ending = Some(Ending::Restored);
        assert!(r.database_state().contains("holds backup"));
    }

    #[test]
    fn a_resume_of_another_backup_is_refused_naming_both() {
        let r = record();
        assert!(r.check_resume(None, "staging").is_ok());
        assert!(r.check_resume(Some(&r.backup.clone()), "staging").is_ok());
        let error = r
            .check_resume(Some("20261207T000000Z-manual-0000"), "staging")
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains(&r.backup)
                && message.contains("20261207T000000Z-manual-0000")
                && message.contains("--abort"),
            "{message}"
        );
        assert_eq!(crate::error::exit_code_number(&error), 2);
    }

    #[test]
    fn the_record_round_trips_through_its_config_map() {
        let mut r = record();
        r.replicas.insert("Deployment/frontend".into(), 2);
        r.ending = Some(Ending::Failed("x".into()));
        let map = config_map(&r, Some("7".into())).unwrap();
        assert_eq!(map.metadata.labels.unwrap()[MANAGED_BY.0], MANAGED_BY.1);
        let back: RestoreRecord = serde_json::from_str(&map.data.unwrap()[KEY]).unwrap();
        assert_eq!(back, r);
    }
}
