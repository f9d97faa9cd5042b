//! The records berth keeps beside each backup in the bucket: the manifest
//! (what was dumped, how, when, from which release) and the drill records
//! (evidence that the backup restores). Both are JSON; every field a reader
//! may lack is optional, so older records still read.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The manifest's format version.
pub const SCHEMA: u32 = 1;

/// What started a backup. Retention counts each kind separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The CronJob `berth-backup`.
    Schedule,
    /// `berth db backup`.
    Manual,
    /// A deploy, before its migration.
    PreMigrate,
    /// `berth db restore`, the safety backup before it restores.
    PreRestore,
}

impl Trigger {
    /// The name used in ids, records and lists.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::PreMigrate => "pre-migrate",
            Trigger::PreRestore => "pre-restore",
        }
    }
}

/// Whether a backup counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupStatus {
    /// pg_dump exited 0, the upload completed, the object is non-empty and
    /// its table of contents read back with `pg_restore --list`.
    Succeeded,
    /// Anything else; `error` says what. No dump object is left.
    Failed,
}

/// The release running when the backup was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    /// The release's name, as `berth history` lists it.
    pub name: String,
    /// The git SHA it runs.
    pub sha: String,
}

/// How long each step took, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    /// pg_dump and the upload, which run together.
    pub dump_seconds: f64,
    /// Reading the table of contents back.
    pub verify_seconds: f64,
    /// Start to manifest.
    pub total_seconds: f64,
}

/// One backup's manifest, `backups/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The backup id (see [`super::layout`]).
    pub id: String,
    /// The environment, as berth.yaml names it.
    pub environment: String,
    /// The database name.
    pub database: String,
    /// What started it.
    pub trigger: Trigger,
    /// The operator's `--label`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Who started it: user@host, the CI run's URL, or `cronjob/<name>`.
    pub who: String,
    /// Whether it counts.
    pub status: BackupStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When pg_dump started.
    pub started_at: Timestamp,
    /// When the manifest was written.
    pub finished_at: Timestamp,
    /// Step durations.
    pub durations: Durations,
    /// The dump's key in the bucket (absent when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The dump's size in bytes.
    #[serde(default)]
    pub size: u64,
    /// The dump's SHA-256, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The multipart upload's part size in bytes.
    #[serde(default)]
    pub part_size: u64,
    /// The server's version (`server_version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// `pg_dump --version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_dump_version: Option<String>,
    /// `pg_database_size` when the dump started.
    #[serde(default)]
    pub database_size: u64,
    /// Exact row counts per table (`schema.table`), counted in the snapshot
    /// pg_dump dumped.
    #[serde(default)]
    pub tables: BTreeMap<String, u64>,
    /// The release running, when berth knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRef>,
    /// Django's migration state: per app, the last applied migration
    /// (`django_migrations`), empty when the database has no such table.
    #[serde(default)]
    pub migrations: BTreeMap<String, String>,
}

/// The result of one restore drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillResult {
    /// Restored without error, counts equal the manifest's, smoke queries true.
    Passed,
    /// Anything else; `error` says what.
    Failed,
}

/// One drill's evidence, `drills/<backup-id>/<drill-id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The drill's id: its start time, `YYYYMMDDTHHMMSSZ`.
    pub id: String,
    /// The backup drilled.
    pub backup: String,
    /// The environment.
    pub environment: String,
    /// Who ran it.
    pub who: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
    /// How long pg_restore took, in seconds.
    pub restore_seconds: f64,
    /// How old the backup's data was at the drill, in seconds.
    pub data_age_seconds: f64,
    /// The scratch database restored into (dropped afterwards).
    pub scratch_database: String,
    /// Row counts found per table.
    #[serde(default)]
    pub tables: BTreeMap<String, u64>,
    /// Tables whose counts differ from the manifest: table → (manifest, found).
    #[serde(default)]
    pub mismatches: BTreeMap<String, (u64, u64)>,
    /// Each smoke query and whether it returned true.
    #[serde(default)]
    pub smoke: Vec<(String, bool)>,
    /// Passed or failed.
    pub result: DrillResult,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
impl Manifest {
    /// A manifest for tests: backup `id` of environment `production`,
    /// started and finished at `at`, with no tables.
    pub fn example(id: &str, at: &str, trigger: Trigger, status: BackupStatus) -> Manifest {
        let at: Timestamp = at.parse().expect("an RFC 3339 time");
        Manifest {
            schema: SCHEMA,
            id: id.into(),
            environment: "production".into(),
            database: "app".into(),
            trigger,
            label: None,
            who: "test".into(),
            status,
            error: None,
            started_at: at,
            finished_at: at,
            durations: Durations::default(),
            object: None,
            size: 1,
            sha256: None,
            part_size: 0,
            postgres_version: None,
            pg_dump_version: None,
            database_size: 0,
            tables: BTreeMap::new(),
            release: None,
            migrations: BTreeMap::new(),
        }
    }
}
