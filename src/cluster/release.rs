//! The release record: one Secret per release in the environment's namespace,
//! holding the release as gzip-compressed JSON.
//!
//! A Secret, not a ConfigMap, because the record keeps the applied manifest
//! (for rollback), and that manifest can contain Secrets. The record is kept
//! within the API's object size limit by dropping the manifest, never the
//! facts, when it would not fit.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use anyhow::Context;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use crate::identity::Deployer;

/// Label marking a release-record Secret.
const RECORD_LABEL: &str = "berth.dev/release-record";
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
    /// Interrupted by Ctrl-C or SIGTERM.
    Interrupted,
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
        }
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
    pub manifest: Vec<serde_json::Value>,
    /// True when the manifest was dropped to fit the size limit.
    #[serde(default)]
    pub manifest_omitted: bool,
    /// The failed release this one rolled back, for automatic rollbacks.
    #[serde(default)]
    pub rollback_of: Option<u64>,
    /// The earlier release whose objects `berth rollback` re-applied.
    #[serde(default)]
    pub rolled_back_to: Option<u64>,
    /// The environment and release this one was promoted from.
    #[serde(default)]
    pub promoted_from: Option<PromotedFrom>,
}

/// Where a promoted release came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedFrom {
    /// The source environment.
    pub environment: String,
    /// Its release that was promoted.
    pub release: u64,
}

/// Gzip the release as JSON, dropping the manifest if it would not fit.
pub fn encode(release: &Release) -> anyhow::Result<Vec<u8>> {
    let bytes = gzip(&serde_json::to_vec(release)?)?;
    if bytes.len() <= MAX_RECORD_BYTES {
        return Ok(bytes);
    }
    let mut slim = release.clone();
    slim.manifest.clear();
    slim.manifest_omitted = true;
    gzip(&serde_json::to_vec(&slim)?)
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
    api.create(&PostParams::default(), &to_secret(release)?)
        .await
        .with_context(|| format!("recording release {}", release.number))?;
    Ok(())
}

/// Overwrite an existing release record (its final status, timings...).
pub async fn update(client: &Client, namespace: &str, release: &Release) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secret = to_secret(release)?;
    let current = api
        .get(&secret_name(release.number))
        .await
        .with_context(|| format!("reading release record {}", release.number))?;
    secret.metadata.resource_version = current.metadata.resource_version;
    api.replace(
        &secret_name(release.number),
        &PostParams::default(),
        &secret,
    )
    .await
    .with_context(|| format!("updating release record {}", release.number))?;
    Ok(())
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
        manifest: Vec::new(),
        manifest_omitted: false,
        rollback_of: None,
        rolled_back_to: None,
        promoted_from: None,
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
            manifest: (0..manifest_objects)
                .map(|i| serde_json::json!({"kind": "ConfigMap", "data": {"k": format!("{:x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))}}))
                .collect(),
            ..example(7, "1a2b3c4", ReleaseStatus::Succeeded)
        }
    }

    #[test]
    fn a_release_round_trips_through_its_compressed_form() {
        let r = release(10);
        assert_eq!(decode(&encode(&r).unwrap()).unwrap(), r);
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
}
