//! The release record: one Secret per release in the environment's namespace,
//! holding the release as gzip-compressed JSON.
//!
//! A Secret, not a ConfigMap, because the record keeps the applied manifest
//! (for rollback), and that manifest can contain Secrets. The record is kept
//! within the API's object size limit by dropping the manifest, never the
//! facts, when it would not fit.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::retry;
use crate::identity::Deployer;

/// Label marking a release-record Secret: berth's own bookkeeping, which a
/// prune must never take for an object the overlay stopped rendering.
pub const RECORD_LABEL: &str = "berth.dev/release-record";
/// Label holding the release number.
const NUMBER_LABEL: &str = "berth.dev/release";
/// Secret type of release records.
const RECORD_TYPE: &str = "berth.dev/release.v1";
/// Key of the compressed JSON in the Secret's data.
const DATA_KEY: &str = "release.json.gz";
/// Largest compressed record written with its manifest; the API server refuses
/// objects over 1 MiB (etcd's default request limit is about 1.5 MiB).
const MAX_RECORD_BYTES: usize = 900 * 1024;

/// How a release ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// The deploy is running (or its deployer died; the lock tells).
    InProgress,
    /// Every workload became healthy.
    Succeeded,
    /// The migration or the rollout failed.
    Failed,
    /// The rollout did not finish within the timeout.
    TimedOut,
    /// Interrupted by Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
    /// Its deployer died (SIGKILL, lost machine) while it was in progress;
    /// set by the deploy that found its lock expired ([`AbandonedRecord`]).
    Abandoned,
}

impl ReleaseStatus {
    /// The status as the JSON report and `history` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::InProgress => "in_progress",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::TimedOut => "timed_out",
            ReleaseStatus::Interrupted => "interrupted",
            ReleaseStatus::Abandoned => "abandoned",
        }
    }

    /// Whether the deploy stopped midway (interrupted or abandoned), so
    /// the step it had reached is worth saying.
    pub fn stopped(self) -> bool {
        matches!(self, ReleaseStatus::Interrupted | ReleaseStatus::Abandoned)
    }
}

impl Release {
    /// The status as people read it: `interrupted after apply` or
    /// `abandoned after apply` for a release stopped once its objects were
    /// applied ([`Release::stopped_after_apply`]), else
    /// [`ReleaseStatus::as_str`]. JSON keeps `status`, `step` and `applied`.
    pub fn shown_status(&self) -> &'static str {
        match self.status {
            ReleaseStatus::Interrupted if self.stopped_after_apply() => "interrupted after apply",
            ReleaseStatus::Abandoned if self.stopped_after_apply() => "abandoned after apply",
            status => status.as_str(),
        }
    }

    /// Stopped midway (interrupted, or abandoned by a deployer that died)
    /// once every object was applied, while the rollout was waited for or
    /// later: the environment runs its objects. The record says so with
    /// `applied`, or (records kept before `applied` was) with the step it
    /// had reached: `wait` or `record`.
    pub fn stopped_after_apply(&self) -> bool {
        self.status.stopped()
            && (self.applied || matches!(self.step.as_deref(), Some("wait" | "record")))
    }

    /// Interrupted once every object was applied, while the rollout was
    /// waited for: the environment runs its objects.
    pub fn interrupted_after_apply(&self) -> bool {
        self.status == ReleaseStatus::Interrupted && self.stopped_after_apply()
    }

    /// Whether the environment runs what this release applied: it
    /// succeeded, or it stopped after its apply.
    pub fn is_live(&self) -> bool {
        self.status == ReleaseStatus::Succeeded || self.stopped_after_apply()
    }
}

/// An image berth pinned, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `Kind/name` of the object.
    pub object: String,
    /// Container name.
    pub container: String,
    /// The image reference deployed.
    pub image: String,
}

/// The migration Job's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Job (or task) name.
    pub name: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// How long it ran.
    pub duration_s: f64,
}

/// A chart hook's outcome (see `crate::hooks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRecord {
    /// `Kind/name` of the hook's object.
    pub name: String,
    /// The event it ran on, e.g. `pre-upgrade`.
    pub event: String,
    /// `succeeded`, `failed` or `timed_out`.
    pub status: String,
    /// How long it ran.
    pub duration_s: f64,
}

/// What the asset upload did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetsRecord {
    /// Objects written.
    pub uploaded: u64,
    /// Objects already in the bucket.
    pub skipped: u64,
    /// Bytes written.
    pub bytes_uploaded: u64,
    /// The key of the SHA's asset manifest.
    pub manifest: String,
    /// How long it took.
    pub duration_s: f64,
}

/// Why a release failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// `Kind/name` of the workload (or task) that failed.
    pub workload: String,
    /// The pod that showed it, if any.
    pub pod: Option<String>,
    /// A short reason, e.g. `ImagePullBackOff`.
    pub reason: String,
    /// The human explanation.
    pub message: String,
}

/// How an abandoned release was found: by whom, when, and how far its
/// deploy had got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbandonedRecord {
    /// RFC 3339 time it was found.
    pub found_at: String,
    /// The lock identity of the deploy that found it.
    pub found_by: String,
    /// The step its deploy had reached ([`Release::step`]).
    pub step: Option<String>,
}

/// One release of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// 1, 2, 3... per environment.
    pub number: u64,
    /// The app (berth.yaml `app`).
    pub app: String,
    /// The environment name.
    pub environment: String,
    /// The full or short git SHA deployed.
    pub sha: String,
    /// Every image berth pinned.
    pub images: Vec<ImageRecord>,
    /// How it ended.
    pub status: ReleaseStatus,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: Option<String>,
    /// Seconds from start to end.
    pub duration_s: Option<f64>,
    /// Seconds per pipeline step.
    pub timings: BTreeMap<String, f64>,
    /// Who deployed, from where.
    pub deployer: Deployer,
    /// The migration's outcome, when there was one.
    pub migration: Option<TaskRecord>,
    /// The asset upload's outcome, when assets are configured.
    #[serde(default)]
    pub assets: Option<AssetsRecord>,
    /// The release this one replaced.
    pub previous: Option<u64>,
    /// That release's SHA.
    pub previous_sha: Option<String>,
    /// Why it failed.
    pub failure: Option<FailureRecord>,
    /// The objects applied, for rollback. Empty when too large to keep.
    pub manifest: Manifest,
    /// True when the manifest was dropped to fit the size limit.
    #[serde(default)]
    pub manifest_omitted: bool,
    /// The chart's hooks (objects annotated `helm.sh/hook`), as rendered
    /// and pinned, for a rollback to run this release's rollback hooks.
    /// Dropped with the manifest when too large to keep.
    #[serde(default)]
    pub hook_manifest: Manifest,
    /// Each hook run by this deploy or rollback, in the order run.
    #[serde(default)]
    pub hooks: Vec<HookRecord>,
    /// The failed release this one rolled back, for automatic rollbacks.
    #[serde(default)]
    pub rollback_of: Option<u64>,
    /// The earlier release whose objects `berth rollback` re-applied.
    #[serde(default)]
    pub rolled_back_to: Option<u64>,
    /// The environment and release this one was promoted from.
    #[serde(default)]
    pub promoted_from: Option<PromotedFrom>,
    /// The backup taken before its migration (`backups.before_migrate`).
    #[serde(default)]
    pub backup: Option<String>,
    /// The deployer skipped the pre-migration backup (`--no-backup`).
    #[serde(default)]
    pub no_backup: bool,
    /// The schema as the release left it (`migrate.framework`): per app the
    /// last migration applied, the migration image by digest, what this
    /// release migrated and what of it cannot be undone.
    #[serde(default)]
    pub schema: Option<crate::schema::record::SchemaRecord>,
    /// The step the deploy had reached (`pre-deploy`, `apply`, `wait`...),
    /// kept as it goes, so an interrupted or abandoned release says where
    /// it stopped.
    #[serde(default)]
    pub step: Option<String>,
    /// Every object was applied (the apply step finished). An interrupted
    /// release with it set stopped while its rollout was waited for: its
    /// objects are what the environment runs ([`Release::shown_status`]).
    #[serde(default)]
    pub applied: bool,
    /// The lock identity (`user@host (pid N)`) of the process running the
    /// deploy: while the release is in progress, a lock not held by it
    /// means the deploy died.
    #[serde(default)]
    pub holder: Option<String>,
    /// Set when a later deploy found this one's deployer gone.
    #[serde(default)]
    pub abandoned: Option<AbandonedRecord>,
    /// The helm releases whose objects this deploy took over (`--adopt`);
    /// their records (helm's Secrets) stay until someone deletes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted_helm_releases: Vec<String>,
    /// The helm chart rendered, with its digests when pulled from a
    /// registry or repository; `None` for an overlay (and older records).
    #[serde(default)]
    pub chart: Option<ChartRecord>,
}

/// The helm chart a release rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartRecord {
    /// The chart's name (Chart.yaml).
    pub name: String,
    /// The chart's version (Chart.yaml).
    pub version: String,
    /// Where it came from: its directory (relative to berth.yaml's),
    /// `oci://REGISTRY/REPO/NAME`, or the chart repository's URL.
    pub source: String,
    /// `sha256:<hex>` of the chart archive berth pulled and rendered, for a
    /// chart from a registry or repository.
    #[serde(default)]
    pub archive_digest: Option<String>,
    /// The OCI manifest digest the registry served, for an `oci://` chart.
    #[serde(default)]
    pub manifest_digest: Option<String>,
}

/// Where a promoted release came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedFrom {
    /// The source environment.
    pub environment: String,
    /// Its release that was promoted.
    pub release: u64,
}

/// The objects a release applied, kept in its record for rollback.
///
/// They can include Secrets, so this type cannot be printed with their
/// values: `Serialize` and `Debug` give only a redacted summary (the
/// `Kind/name` of each object). The objects themselves are written only by
/// [`encode`], into the release record (itself a Secret), and read back by
/// [`decode`] and [`Manifest::objects`].
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Manifest(Vec<Value>);

impl Manifest {
    /// The manifest of the objects a release applies.
    pub fn of<'a>(objects: impl IntoIterator<Item = &'a DynamicObject>) -> anyhow::Result<Self> {
        let objects = objects
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .context("recording the applied objects")?;
        Ok(Manifest(objects))
    }

    /// The recorded objects, to apply again.
    pub fn objects(&self) -> anyhow::Result<Vec<DynamicObject>> {
        self.0
            .iter()
            .map(|v| serde_json::from_value(v.clone()))
            .collect::<Result<_, _>>()
            .context("reading the recorded objects")
    }

    /// The manifest of one Job as it ran (a schema record's migration
    /// Job), without its status.
    pub fn of_job(job: &Job) -> anyhow::Result<Self> {
        let mut job = job.clone();
        job.status = None;
        let value = serde_json::to_value(&job).context("recording the migration Job")?;
        Ok(Manifest(vec![value]))
    }

    /// The one Job recorded by [`Manifest::of_job`].
    pub fn job(&self) -> anyhow::Result<Job> {
        match &self.0[..] {
            [one] => serde_json::from_value(one.clone()).context("reading the recorded Job"),
            other => anyhow::bail!(
                "the record holds {} objects where one migration Job was expected",
                other.len()
            ),
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Kind/name` of each object: all that may be shown of a manifest.
    fn summary(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|o| {
                let field = |v: &Value| v.as_str().unwrap_or("?").to_string();
                format!("{}/{}", field(&o["kind"]), field(&o["metadata"]["name"]))
            })
            .collect()
    }
}

impl Serialize for Manifest {
    /// `{"redacted": true, "objects": ["Kind/name", ...]}`: never the objects.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({"redacted": true, "objects": self.summary()}).serialize(serializer)
    }
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Manifest").field(&self.summary()).finish()
    }
}

/// Gzip the release as JSON, dropping the manifest if it would not fit.
///
/// The one place a manifest (and the schema record's migration Job) is
/// serialised whole: into the record.
pub fn encode(release: &Release) -> anyhow::Result<Vec<u8>> {
    let whole = |release: &Release| -> anyhow::Result<Vec<u8>> {
        let mut value = serde_json::to_value(release)?;
        value["manifest"] = Value::Array(release.manifest.0.clone());
        value["hook_manifest"] = Value::Array(release.hook_manifest.0.clone());
        if let Some(schema) = &release.schema {
            value["schema"]["job"] = Value::Array(schema.job.0.clone());
        }
        gzip(&serde_json::to_vec(&value)?)
    };
    let bytes = whole(release)?;
    if bytes.len() <= MAX_RECORD_BYTES {
        return Ok(bytes);
    }
    let mut slim = release.clone();
    slim.manifest = Manifest::default();
    slim.hook_manifest = Manifest::default();
    slim.manifest_omitted = true;
    whole(&slim)
}

/// Read a release back from its compressed JSON.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Release> {
    let mut json = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .context("the release record is not gzip")?;
    serde_json::from_slice(&json).context("the release record is not a berth release")
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

fn secret_name(number: u64) -> String {
    format!("berth-release-{number}")
}

fn to_secret(release: &Release) -> anyhow::Result<Secret> {
    let labels = [
        (
            crate::cluster::MANAGED_BY.0,
            crate::cluster::MANAGED_BY.1.to_string(),
        ),
        (
            crate::cluster::INSTANCE_LABEL,
            crate::cluster::instance(&release.app, &release.environment),
        ),
        (RECORD_LABEL, "true".to_string()),
        (NUMBER_LABEL, release.number.to_string()),
        ("berth.dev/status", release.status.as_str().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(release.number)),
            labels: Some(labels),
            ..Default::default()
        },
        type_: Some(RECORD_TYPE.into()),
        data: Some([(DATA_KEY.to_string(), ByteString(encode(release)?))].into()),
        ..Default::default()
    })
}

/// Every release recorded in `namespace`, newest first.
pub async fn list(client: &Client, namespace: &str) -> anyhow::Result<Vec<Release>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secrets = api
        .list(&ListParams::default().labels(&format!("{RECORD_LABEL}=true")))
        .await
        .context("listing release records")?;
    let mut releases = Vec::new();
    for secret in secrets {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let Some(data) = secret.data.as_ref().and_then(|d| d.get(DATA_KEY)) else {
            tracing::warn!("release record {name} has no {DATA_KEY}; ignored");
            continue;
        };
        match decode(&data.0) {
            Ok(release) => releases.push(release),
            Err(e) => tracing::warn!("release record {name} is unreadable ({e:#}); ignored"),
        }
    }
    releases.sort_by_key(|r| std::cmp::Reverse(r.number));
    Ok(releases)
}

/// Write a new release record.
pub async fn create(client: &Client, namespace: &str, release: &Release) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    super::create::create(&api, &to_secret(release)?)
        .await
        .with_context(|| format!("recording release {}", release.number))?;
    Ok(())
}

/// Overwrite an existing release record (its final status, timings...).
///
/// A replace whose answer was lost may or may not have been written, so it
/// is not repeated blindly: the record is read again, and written again
/// only if it does not already hold `release` (for up to
/// [`retry::BUDGET`]). A conflict is the same case: the earlier try wrote.
/// What is written is [`reconcile`]d with what is recorded; returns the
/// record as it stands afterwards.
pub async fn update(
    client: &Client,
    namespace: &str,
    release: &Release,
) -> anyhow::Result<Release> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = secret_name(release.number);
    let started = Instant::now();
    loop {
        let current = api
            .get(&name)
            .await
            .with_context(|| format!("reading release record {}", release.number))?;
        let recorded = current
            .data
            .as_ref()
            .and_then(|d| d.get(DATA_KEY))
            .and_then(|bytes| decode(&bytes.0).ok());
        let merged = match recorded {
            // An unreadable record is written over.
            None => release.clone(),
            Some(recorded) => match reconcile(&recorded, release) {
                Some(merged) => merged,
                None => {
                    tracing::debug!(
                        "release record {} is {} by another deploy's write; left as it is",
                        release.number,
                        recorded.status.as_str()
                    );
                    return Ok(recorded);
                }
            },
        };
        let wanted = to_secret(&merged)?;
        if current.data == wanted.data {
            return Ok(merged);
        }
        let mut secret = wanted.clone();
        secret.metadata.resource_version = current.metadata.resource_version;
        match api.replace(&name, &PostParams::default(), &secret).await {
            Ok(_) => return Ok(merged),
            Err(e)
                if (retry::transient(&e) || is_conflict(&e))
                    && started.elapsed() < retry::BUDGET =>
            {
                tracing::debug!("writing release record {} again: {e}", release.number);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("updating release record {}", release.number));
            }
        }
    }
}

/// What to write over `recorded` (the record as read) when a deploy wants
/// `wanted`; `None` leaves the record as it is. Two deploys may write one
/// record: its own deploy, and the deploy that took its expired lock and
/// settled it `abandoned`. Neither erases the other:
/// - a settlement never overwrites a release that ended meanwhile;
/// - a deploy that lost its lock never puts a settled release back
///   `in_progress`, and its final write keeps who found it abandoned,
///   when, and at which step ([`Release::abandoned`]), beside how it ended.
pub fn reconcile(recorded: &Release, wanted: &Release) -> Option<Release> {
    let settling = wanted.status == ReleaseStatus::Abandoned;
    let settled = recorded.status == ReleaseStatus::Abandoned;
    match (settling, settled) {
        (true, _) if recorded.status != ReleaseStatus::InProgress && !settled => None,
        (false, true) if wanted.status == ReleaseStatus::InProgress => None,
        (false, true) => Some(Release {
            abandoned: recorded.abandoned.clone(),
            ..wanted.clone()
        }),
        _ => Some(wanted.clone()),
    }
}

/// Whether `error` is the API server's 409 Conflict.
fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Delete all but the newest `keep` records; returns the numbers deleted.
pub async fn prune(
    client: &Client,
    namespace: &str,
    releases: &[Release],
    keep: usize,
) -> anyhow::Result<Vec<u64>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut deleted = Vec::new();
    for old in releases.iter().skip(keep) {
        let existed =
            super::delete_if_present(&api, &secret_name(old.number), &DeleteParams::default())
                .await
                .context("pruning old release records")?;
        if existed {
            deleted.push(old.number);
        }
    }
    Ok(deleted)
}

/// Whether `release` is in progress but its deployer is gone: the lock is
/// free (or expired), or held by another identity than the release's
/// holder. A release without a holder (recorded before berth kept one)
/// is only judged so when the lock is free.
pub fn deployer_gone(release: &Release, lock_holder: Option<&str>) -> bool {
    release.status == ReleaseStatus::InProgress
        && match (lock_holder, release.holder.as_deref()) {
            (None, _) => true,
            (Some(held_by), Some(holder)) => held_by != holder,
            (Some(_), None) => false,
        }
}

/// The releases as read-only commands show them: an in-progress release
/// whose deployer is gone ([`deployer_gone`]) is shown `abandoned`, even
/// before a deploy settles it (which also records who found it).
pub fn as_seen(mut releases: Vec<Release>, lock_holder: Option<&str>) -> Vec<Release> {
    for release in &mut releases {
        if deployer_gone(release, lock_holder) {
            release.status = ReleaseStatus::Abandoned;
        }
    }
    releases
}

/// A bare release for tests: number, SHA and status, nothing recorded.
#[cfg(test)]
pub fn example(number: u64, sha: &str, status: ReleaseStatus) -> Release {
    Release {
        number,
        app: "workbench".into(),
        environment: "staging".into(),
        sha: sha.into(),
        images: Vec::new(),
        status,
        started_at: "2026-11-21T10:00:00Z".into(),
        finished_at: None,
        duration_s: None,
        timings: BTreeMap::new(),
        deployer: Deployer {
            user: "ada".into(),
            host: "box".into(),
            ci_run_url: None,
        },
        migration: None,
        assets: None,
        previous: None,
        previous_sha: None,
        failure: None,
        manifest: Manifest::default(),
        manifest_omitted: false,
        hook_manifest: Manifest::default(),
        hooks: Vec::new(),
        rollback_of: None,
        rolled_back_to: None,
        promoted_from: None,
        backup: None,
        no_backup: false,
        schema: None,
        step: None,
        applied: false,
        holder: None,
        abandoned: None,
        adopted_helm_releases: Vec::new(),
        chart: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(manifest_objects: usize) -> Release {
        Release {
            images: vec![ImageRecord {
                object: "Deployment/frontend".into(),
                container: "frontend".into(),
                image: "registry.example.com/workbench/frontend:1a2b3c4".into(),
            }],
            finished_at: Some("2026-11-21T10:01:00Z".into()),
            duration_s: Some(60.0),
            timings: [("apply".to_string(), 1.5)].into(),
            previous: Some(6),
            previous_sha: Some("0f0f0f0".into()),
            // incompressible-ish payload: distinct random-looking strings
            manifest: Manifest((0..manifest_objects)
                .map(|i| serde_json::json!({"kind": "ConfigMap", "data": {"k": format!("{:x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))}}))
                .collect()),
            ..example(7, "1a2b3c4", ReleaseStatus::Succeeded)
        }
    }

    #[test]
    fn an_in_progress_release_is_seen_abandoned_once_its_holder_lost_the_lock() {
        let holder = |h: Option<&str>, status| Release {
            holder: h.map(str::to_string),
            ..example(4, "ddddddd", status)
        };
        let ours = holder(Some("ada@box (pid 7)"), ReleaseStatus::InProgress);
        let legacy = holder(None, ReleaseStatus::InProgress);
        let done = holder(Some("ada@box (pid 7)"), ReleaseStatus::Succeeded);
        let seen =
            |r: &Release, lock: Option<&str>| as_seen(vec![r.clone()], lock)[0].status.as_str();
        assert_eq!(seen(&ours, Some("ada@box (pid 7)")), "in_progress");
        assert_eq!(seen(&ours, Some("bob@ci (pid 9)")), "abandoned");
        assert_eq!(seen(&ours, None), "abandoned");
        assert_eq!(seen(&legacy, Some("bob@ci (pid 9)")), "in_progress");
        assert_eq!(seen(&legacy, None), "abandoned");
        assert_eq!(seen(&done, None), "succeeded");
    }

    #[test]
    fn a_release_stopped_after_its_apply_says_so_and_counts_as_live() {
        let stopped = |status, step: &str, applied| Release {
            step: Some(step.into()),
            applied,
            ..example(4, "ddddddd", status)
        };
        let cases = [
            (
                ReleaseStatus::Abandoned,
                "wait",
                false,
                "abandoned after apply",
            ),
            (
                ReleaseStatus::Abandoned,
                "record",
                false,
                "abandoned after apply",
            ),
            (
                ReleaseStatus::Abandoned,
                "post-upgrade",
                true,
                "abandoned after apply",
            ),
            (ReleaseStatus::Abandoned, "apply", false, "abandoned"),
            (ReleaseStatus::Abandoned, "pre-deploy", false, "abandoned"),
            (
                ReleaseStatus::Interrupted,
                "wait",
                true,
                "interrupted after apply",
            ),
            (
                ReleaseStatus::Interrupted,
                "wait",
                false,
                "interrupted after apply",
            ),
            (ReleaseStatus::Interrupted, "apply", false, "interrupted"),
            (ReleaseStatus::Failed, "wait", true, "failed"),
        ];
        for (status, step, applied, shown) in cases {
            let r = stopped(status, step, applied);
            assert_eq!(r.shown_status(), shown, "{status:?} at {step}");
            assert_eq!(r.is_live(), shown.ends_with("after apply"), "{shown}");
        }
    }

    #[test]
    fn a_release_round_trips_through_its_compressed_form() {
        let r = release(10);
        assert_eq!(decode(&encode(&r).unwrap()).unwrap(), r);
    }

    #[test]
    fn a_chart_record_round_trips_and_a_record_without_one_still_loads() {
        let mut r = release(1);
        r.chart = Some(ChartRecord {
            name: "web".into(),
            version: "0.1.0".into(),
            source: "oci://127.0.0.1:25000/charts/web".into(),
            archive_digest: Some(format!("sha256:{}", "a".repeat(64))),
            manifest_digest: Some(format!("sha256:{}", "b".repeat(64))),
        });
        assert_eq!(decode(&encode(&r).unwrap()).unwrap(), r);
        let mut older = serde_json::to_value(release(1)).unwrap();
        older.as_object_mut().unwrap().remove("chart");
        older["manifest"] = serde_json::json!([]);
        older["hook_manifest"] = serde_json::json!([]);
        let older: Release = serde_json::from_value(older).unwrap();
        assert_eq!(older.chart, None);
    }

    #[test]
    fn a_manifest_too_large_for_the_api_is_dropped_not_the_facts() {
        let r = release(200_000);
        let bytes = encode(&r).unwrap();
        assert!(bytes.len() <= MAX_RECORD_BYTES);
        let back = decode(&bytes).unwrap();
        assert!(back.manifest.is_empty() && back.manifest_omitted);
        assert_eq!(back.sha, "1a2b3c4");
        assert_eq!(back.images, r.images);
    }

    /// A release whose manifest holds a Secret with `value`.
    fn with_secret(value: &str) -> Release {
        let secret: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db"},
            "stringData": {"password": value}
        }))
        .unwrap();
        Release {
            manifest: Manifest::of([&secret]).unwrap(),
            ..example(3, "1a2b3c4", ReleaseStatus::Succeeded)
        }
    }

    #[test]
    fn a_release_prints_its_manifest_as_names_only() {
        let r = with_secret("s3cr3t-value");
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("s3cr3t-value"), "{json}");
        assert_eq!(
            serde_json::to_value(&r).unwrap()["manifest"],
            serde_json::json!({"redacted": true, "objects": ["Secret/db"]})
        );
        let debug = format!("{r:?}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert!(debug.contains("Secret/db"), "{debug}");
    }

    #[test]
    fn the_record_keeps_the_manifest_whole_for_rollback() {
        let r = with_secret("s3cr3t-value");
        let back = decode(&encode(&r).unwrap()).unwrap();
        let objects = back.manifest.objects().unwrap();
        assert_eq!(objects[0].data["stringData"]["password"], "s3cr3t-value");
    }

    #[test]
    fn the_record_keeps_the_hooks_whole_and_prints_them_as_names_only() {
        let mut r = with_secret("s3cr3t-value");
        std::mem::swap(&mut r.manifest, &mut r.hook_manifest);
        r.hooks.push(HookRecord {
            name: "Secret/db".into(),
            event: "pre-install".into(),
            status: "succeeded".into(),
            duration_s: 0.1,
        });
        let json = serde_json::to_value(&r).unwrap();
        assert!(!json.to_string().contains("s3cr3t-value"), "{json}");
        assert_eq!(json["hooks"][0]["event"], "pre-install");
        let back = decode(&encode(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let objects = back.hook_manifest.objects().unwrap();
        assert_eq!(objects[0].data["stringData"]["password"], "s3cr3t-value");
    }

    #[test]
    fn the_schema_records_migration_job_is_kept_whole_and_printed_as_its_name() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "wb-s-migrate-3-1a2b3c4"},
            "spec": {"template": {"spec": {"containers": [{"name": "migrate", "image": "m:1",
                "env": [{"name": "DATABASE_URL", "value": "postgres://u:s3cr3t-value@db/x"}]}]}}},
            "status": {"succeeded": 1}
        }))
        .unwrap();
        let r = Release {
            schema: Some(crate::schema::record::SchemaRecord {
                framework: "django".into(),
                applied: [("workbench".to_string(), "0004_module".to_string())].into(),
                image: format!("m@sha256:{}", "0".repeat(64)),
                migrated: Vec::new(),
                irreversible: Vec::new(),
                job: Manifest::of_job(&job).unwrap(),
            }),
            ..example(3, "1a2b3c4", ReleaseStatus::Succeeded)
        };
        let json = serde_json::to_value(&r).unwrap();
        assert!(!json.to_string().contains("s3cr3t-value"), "{json}");
        assert_eq!(
            json["schema"]["job"],
            serde_json::json!({"redacted": true, "objects": ["Job/wb-s-migrate-3-1a2b3c4"]})
        );
        let back = decode(&encode(&r).unwrap()).unwrap();
        let recorded = back.schema.unwrap().job.job().unwrap();
        assert_eq!(
            recorded.status, None,
            "recorded as it ran, without its status"
        );
        assert_eq!(recorded.spec, job.spec);
        assert!(Manifest::default().job().is_err());
    }

    fn abandoned_by(number: u64, by: &str) -> Release {
        let mut r = example(number, "1a2b3c4", ReleaseStatus::Abandoned);
        r.abandoned = Some(AbandonedRecord {
            found_at: "2026-12-07T08:00:00Z".into(),
            found_by: by.into(),
            step: Some("schema".into()),
        });
        r
    }

    #[test]
    fn a_deploy_that_lost_its_lock_keeps_the_abandoned_marking_beside_how_it_ended() {
        let settled = abandoned_by(1, "bob@box (pid 9)");
        let ended = example(1, "1a2b3c4", ReleaseStatus::Failed);
        let written = reconcile(&settled, &ended).unwrap();
        assert_eq!(written.status, ReleaseStatus::Failed);
        assert_eq!(written.abandoned, settled.abandoned);
    }

    #[test]
    fn a_deploy_that_lost_its_lock_never_puts_a_settled_release_back_in_progress() {
        let settled = abandoned_by(1, "bob@box (pid 9)");
        let step = example(1, "1a2b3c4", ReleaseStatus::InProgress);
        assert_eq!(reconcile(&settled, &step), None);
    }

    #[test]
    fn a_settlement_never_overwrites_a_release_that_ended_meanwhile() {
        let ended = example(1, "1a2b3c4", ReleaseStatus::Failed);
        assert_eq!(reconcile(&ended, &abandoned_by(1, "bob")), None);
        let running = example(1, "1a2b3c4", ReleaseStatus::InProgress);
        let settling = abandoned_by(1, "bob");
        assert_eq!(reconcile(&running, &settling), Some(settling));
    }

    #[test]
    fn an_ordinary_write_is_written_as_wanted() {
        let running = example(1, "1a2b3c4", ReleaseStatus::InProgress);
        let done = example(1, "1a2b3c4", ReleaseStatus::Succeeded);
        assert_eq!(reconcile(&running, &done), Some(done));
    }
}
