//! Publishing one SHA's assets: resolve the source, hash it, compare with
//! what the bucket holds, upload only what is missing or changed (with
//! precompressed variants if configured), then write the SHA's manifest.
//! Nothing is ever deleted here: pods mid-rollout still serve old assets.
//! A SHA that already has a manifest keeps every file it listed: the push
//! adds to it, unless told to replace it ([`ManifestMode`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::content;
use super::hash_cache::{HashCache, Stamp};
use super::manifest::{self, Entry, Manifest};
use super::source::{self, Origin, Resolved, SourceFile};
use super::tree::Digest;
use super::upload::{Body, Object, Transfer};
use crate::cluster::release::AssetsRecord;
use crate::config::{AssetSource, Assets};
use crate::error::Cancelled;
use crate::output::Output;
use crate::s3::{Listed, Store};

/// The largest file berth precompresses (in memory).
const PRECOMPRESS_LIMIT: u64 = 16 * 1024 * 1024;

/// How many bytes of precompressed variants may be held in memory at once.
const PRECOMPRESS_MEMORY: usize = 64 * 1024 * 1024;

/// What a push did: the last JSON line of `assets push --output json`.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// Objects written (precompressed variants included).
    pub uploaded: u64,
    /// Objects the bucket already held with the same content.
    pub skipped: u64,
    /// Bytes written.
    pub bytes_uploaded: u64,
    /// Files in the source.
    pub files: u64,
    /// The manifest's key.
    pub manifest: String,
    /// Seconds from start to end.
    pub duration_s: f64,
}

impl From<&PushReport> for AssetsRecord {
    fn from(report: &PushReport) -> Self {
        AssetsRecord {
            uploaded: report.uploaded,
            skipped: report.skipped,
            bytes_uploaded: report.bytes_uploaded,
            manifest: report.manifest.clone(),
            duration_s: report.duration_s,
        }
    }
}

/// What a push does with a manifest its SHA already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestMode {
    /// Keep every file it listed and add the pushed ones: a release serving
    /// this SHA never loses a file to `assets prune` because of a push.
    Add,
    /// Make the pushed files the whole manifest (`assets push --replace`):
    /// files only the old manifest listed are no longer kept by prune.
    Replace,
}

/// A source resolved and a bucket checked: ready to upload, nothing written yet.
pub struct Prepared {
    /// The environment's asset settings.
    pub assets: Assets,
    /// The SHA whose assets these are.
    pub sha: String,
    /// The destination bucket.
    pub store: Store,
    /// The source's files.
    pub resolved: Resolved,
    /// What to do with a manifest the SHA already has ([`ManifestMode::Add`] unless set).
    pub mode: ManifestMode,
}

/// Check the bucket and resolve the source, concurrently, writing nothing:
/// every problem with either (a missing bucket, refused credentials, a
/// missing image or path) is found before anything changes.
pub async fn prepare(
    assets: &Assets,
    source: &AssetSource,
    sha: &str,
    store: Store,
) -> anyhow::Result<Prepared> {
    check_and_resolve(assets, source, sha, store).await?
}

/// [`prepare`], its two findings apart: the bucket's problem is the outer
/// error, the source's (the SHA's image not built yet, a path it lacks)
/// the inner one, which a plan that only shows what would happen reports
/// as a warning.
pub async fn check_and_resolve(
    assets: &Assets,
    source: &AssetSource,
    sha: &str,
    store: Store,
) -> anyhow::Result<anyhow::Result<Prepared>> {
    let (checked, resolved) = tokio::join!(store.check(), source::resolve(source, sha, &store));
    checked?;
    Ok(resolved.map(|resolved| Prepared {
        assets: assets.clone(),
        sha: sha.to_owned(),
        store,
        resolved,
        mode: ManifestMode::Add,
    }))
}

impl Prepared {
    /// Upload what the bucket lacks, then write the SHA's manifest.
    /// `cancel` stops it with [`Cancelled`], multipart uploads aborted.
    pub async fn upload(
        &self,
        cancel: &CancellationToken,
        out: &Arc<Output>,
    ) -> anyhow::Result<PushReport> {
        let started = Instant::now();
        let (assets, sha) = (&self.assets, self.sha.as_str());
        let prefix = &assets.prefix;
        let resolved = &self.resolved;
        out.task_started(
            "assets",
            &format!(
                "{} to s3://{}/{prefix}",
                resolved.description, self.store.bucket
            ),
        );
        let splits = list_splits(prefix, &resolved.files);
        let (listed, digests, earlier) = cancellable(cancel, async {
            Ok(tokio::join!(
                self.store.list_split(prefix, &splits),
                digests(&resolved.files, resolved.cache_root.as_deref()),
                self.earlier_manifest()
            ))
        })
        .await?;
        let earlier = earlier?;
        let remote: HashMap<String, Listed> = listed?
            .into_iter()
            .map(|object| (object.key.clone(), object))
            .collect();
        let digests = digests?;

        let names: HashSet<&str> = resolved.files.iter().map(|f| f.relative.as_str()).collect();
        let planned: Vec<Planned> = resolved
            .files
            .iter()
            .zip(digests)
            .map(|(file, digest)| plan(assets, file, digest, &remote, &names))
            .collect();
        let changed: Vec<&Planned> = planned.iter().filter(|p| !p.unchanged).collect();
        let bytes: u64 = changed.iter().map(|p| p.object.size).sum();
        out.task_line(
            "assets",
            &format!(
                "{} files: {} unchanged, {} to upload ({})",
                planned.len(),
                planned.len() - changed.len(),
                changed.len(),
                indicatif::BinaryBytes(bytes)
            ),
        );

        // One write failing stops the others cleanly (multipart uploads
        // aborted) rather than dropping them mid-flight.
        let stop = cancel.child_token();
        let transfer = Transfer::new(self.store.clone(), assets.concurrency, stop.clone());
        let memory = Arc::new(Semaphore::new(PRECOMPRESS_MEMORY));
        let progress = out.transfer("assets", changed.len() as u64, bytes);
        let outcomes: Vec<anyhow::Result<Published>> = futures::stream::iter(&planned)
            .map(|planned| {
                let (transfer, memory, remote, progress, stop) =
                    (&transfer, &memory, &remote, &progress, &stop);
                async move {
                    let published = publish(planned, transfer, memory, remote).await;
                    match &published {
                        Ok(_) if !planned.unchanged => progress.add(planned.object.size),
                        Ok(_) => {}
                        Err(_) => stop.cancel(),
                    }
                    published
                }
            })
            .buffer_unordered(assets.concurrency)
            .collect()
            .await;
        let results = first_failure(outcomes)?;
        drop(progress);

        let mut report = PushReport {
            uploaded: 0,
            skipped: 0,
            bytes_uploaded: 0,
            files: planned.len() as u64,
            manifest: String::new(),
            duration_s: 0.0,
        };
        let mut objects = Vec::new();
        for published in results {
            report.uploaded += published.uploaded;
            report.skipped += published.skipped;
            report.bytes_uploaded += published.bytes;
            objects.extend(published.entries);
        }
        let mut manifest = Manifest {
            sha: sha.to_owned(),
            source: resolved.description.clone(),
            image_digest: resolved.image_digest.clone(),
            created_at: Timestamp::now().to_string(),
            objects: merged(Vec::new(), objects),
        };
        if let Some(earlier) = earlier {
            let pushed: HashSet<&str> = manifest.objects.iter().map(|o| o.key.as_str()).collect();
            let kept = earlier
                .objects
                .iter()
                .filter(|e| !pushed.contains(e.key.as_str()))
                .count();
            if kept > 0 {
                out.task_line(
                    "assets",
                    &format!(
                        "the manifest of {} keeps {kept} objects an earlier push listed \
                         (`--replace` drops them)",
                        crate::config::short_sha(sha)
                    ),
                );
            }
            manifest.objects = merged(earlier.objects, manifest.objects);
            manifest.image_digest = manifest.image_digest.or(earlier.image_digest);
        }
        report.manifest =
            cancellable(cancel, manifest::write(&self.store, prefix, &manifest)).await?;
        report.duration_s = started.elapsed().as_secs_f64();
        out.task_finished(
            "assets",
            &format!(
                "uploaded {} objects ({}), {} objects unchanged, in {}",
                report.uploaded,
                indicatif::BinaryBytes(report.bytes_uploaded),
                report.skipped,
                crate::duration::display_seconds(report.duration_s)
            ),
        );
        Ok(report)
    }
}

impl Prepared {
    /// The manifest the SHA already has, to add to; `None` when it has none
    /// or it is to be replaced.
    async fn earlier_manifest(&self) -> anyhow::Result<Option<Manifest>> {
        match self.mode {
            ManifestMode::Replace => Ok(None),
            ManifestMode::Add => manifest::read(&self.store, &self.assets.prefix, &self.sha).await,
        }
    }
}

/// The entries of both, sorted by key; a key in both takes `now`'s entry,
/// which describes the object the bucket holds since this push.
fn merged(earlier: Vec<Entry>, now: Vec<Entry>) -> Vec<Entry> {
    let mut by_key: BTreeMap<String, Entry> = BTreeMap::new();
    for entry in earlier.into_iter().chain(now) {
        by_key.insert(entry.key.clone(), entry);
    }
    by_key.into_values().collect()
}

/// Every write's result, or the error that stopped them: the first one
/// that is not merely [`Cancelled`] by it.
fn first_failure<T>(outcomes: Vec<anyhow::Result<T>>) -> anyhow::Result<Vec<T>> {
    let (ok, failed): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
    let mut errors = failed.into_iter().filter_map(Result::err);
    let Some(first) = errors.next() else {
        return Ok(ok.into_iter().filter_map(Result::ok).collect());
    };
    let cause = std::iter::once(first)
        .chain(errors)
        .find(|error| error.downcast_ref::<Cancelled>().is_none());
    Err(cause.unwrap_or_else(|| Cancelled.into()))
}

/// Run `work` unless `cancel` fires first.
async fn cancellable<T>(
    cancel: &CancellationToken,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Cancelled.into()),
        result = work => result,
    }
}

/// What to write for one file, and whether the bucket already has it.
fn plan(
    assets: &Assets,
    file: &SourceFile,
    digest: Option<Digest>,
    remote: &HashMap<String, Listed>,
    names: &HashSet<&str>,
) -> Planned {
    let key = format!("{}{}", assets.prefix, file.relative);
    let (body, etag) = match &file.origin {
        Origin::Local { path, .. } => (
            Body::File(path.clone()),
            digest.as_ref().map(Digest::etag).unwrap_or_default(),
        ),
        Origin::Remote { bucket, key, etag } => (
            Body::Copy {
                bucket: bucket.clone(),
                key: key.clone(),
            },
            etag.clone(),
        ),
    };
    let unchanged = remote
        .get(&key)
        .is_some_and(|r| r.etag == etag && !etag.is_empty());
    let cache_control = if content::has_content_hash(&key) {
        &assets.immutable_cache_control
    } else {
        &assets.cache_control
    };
    let precompressible = matches!(file.origin, Origin::Local { .. })
        && file.size <= PRECOMPRESS_LIMIT
        && content::compressible(&key, file.size);
    let encodings = [
        (assets.gzip, Encoding::Gzip),
        (assets.brotli, Encoding::Brotli),
    ]
    .into_iter()
    .filter(|(enabled, encoding)| {
        // A tree that ships its own NAME.gz keeps it.
        *enabled
            && precompressible
            && !names.contains(format!("{}{}", file.relative, encoding.suffix()).as_str())
    })
    .map(|(_, encoding)| encoding)
    .collect();
    Planned {
        object: Object {
            content_type: content::content_type(&key),
            key,
            body,
            size: file.size,
            digest,
            cache_control: cache_control.clone(),
            content_encoding: None,
        },
        etag,
        unchanged,
        encodings,
    }
}

/// One file's plan.
struct Planned {
    /// The object as it should be in the bucket.
    object: Object,
    /// Its ETag.
    etag: String,
    /// Whether the bucket already holds it with this content.
    unchanged: bool,
    /// Precompressed variants to publish alongside.
    encodings: Vec<Encoding>,
}

/// What publishing one file did.
struct Published {
    uploaded: u64,
    skipped: u64,
    bytes: u64,
    /// The objects the release needs: the file and its variants.
    entries: Vec<Entry>,
}

/// A precompressed variant's encoding.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Gzip,
    Brotli,
}

impl Encoding {
    /// The key suffix.
    fn suffix(self) -> &'static str {
        match self {
            Encoding::Gzip => ".gz",
            Encoding::Brotli => ".br",
        }
    }

    /// The Content-Encoding header.
    fn header(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
        }
    }

    /// `bytes` compressed.
    fn compress(self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Encoding::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                encoder.write_all(bytes)?;
                encoder.finish()
            }
            Encoding::Brotli => {
                let mut compressed = Vec::new();
                let params = brotli::enc::BrotliEncoderParams {
                    quality: 9,
                    ..Default::default()
                };
                brotli::BrotliCompress(&mut &bytes[..], &mut compressed, &params)?;
                Ok(compressed)
            }
        }
    }
}

/// Publish one file: its precompressed variants first, then the file, so a
/// file present in the bucket implies its variants are too.
async fn publish(
    planned: &Planned,
    transfer: &Transfer,
    memory: &Arc<Semaphore>,
    remote: &HashMap<String, Listed>,
) -> anyhow::Result<Published> {
    let mut published = Published {
        uploaded: 0,
        skipped: 0,
        bytes: 0,
        entries: Vec::new(),
    };
    let object = &planned.object;
    let variant_keys: Vec<String> = planned
        .encodings
        .iter()
        .map(|e| format!("{}{}", object.key, e.suffix()))
        .collect();
    let variants_present = variant_keys.iter().all(|key| remote.contains_key(key));
    if planned.unchanged && variants_present {
        published.skipped += variant_keys.len() as u64;
        for key in variant_keys {
            let listed = &remote[&key];
            published.entries.push(Entry {
                key,
                etag: listed.etag.clone(),
                size: listed.size,
            });
        }
    } else if !planned.encodings.is_empty() {
        let Body::File(path) = &object.body else {
            unreachable!("only local files are precompressed")
        };
        // Hold the original's size of the memory budget while its variants exist.
        let _budget = memory
            .acquire_many(object.size.min(PRECOMPRESS_MEMORY as u64) as u32)
            .await
            .context("the upload was shut down")?;
        let original = Bytes::from(
            tokio::fs::read(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?,
        );
        for (encoding, key) in planned.encodings.iter().zip(variant_keys) {
            let input = original.clone();
            let encoding = *encoding;
            let compressed = tokio::task::spawn_blocking(move || encoding.compress(&input))
                .await
                .context("compression panicked")?
                .with_context(|| format!("compressing {}", object.key))?;
            let digest = Digest::of_bytes(&compressed);
            let etag = digest.etag();
            let size = compressed.len() as u64;
            if remote.get(&key).is_some_and(|r| r.etag == etag) {
                published.skipped += 1;
            } else {
                transfer
                    .write(&Object {
                        key: key.clone(),
                        body: Body::Bytes(Bytes::from(compressed)),
                        size,
                        digest: Some(digest),
                        content_type: object.content_type.clone(),
                        cache_control: object.cache_control.clone(),
                        content_encoding: Some(encoding.header()),
                    })
                    .await?;
                published.uploaded += 1;
                published.bytes += size;
            }
            published.entries.push(Entry { key, etag, size });
        }
    }
    if planned.unchanged {
        published.skipped += 1;
    } else {
        transfer.write(object).await?;
        published.uploaded += 1;
        published.bytes += object.size;
    }
    published.entries.push(Entry {
        key: object.key.clone(),
        etag: planned.etag.clone(),
        size: object.size,
    });
    Ok(published)
}

/// Keys that split the listing of the destination into ranges of about a
/// page each: every 1,000th of the keys the source will write, sorted.
fn list_splits(prefix: &str, files: &[SourceFile]) -> Vec<String> {
    let mut keys: Vec<String> = files
        .iter()
        .map(|f| format!("{prefix}{}", f.relative))
        .collect();
    keys.sort_unstable();
    // A split after the last key would only open an empty range.
    keys.pop();
    keys.into_iter().skip(999).step_by(1000).collect()
}

/// The digest of every local file (`None` for remote ones), in the files'
/// order: remembered ones from the tree's hash cache, the others computed on
/// every core, in batches of about 8 MiB so small files cost few hand-offs.
async fn digests(
    files: &[SourceFile],
    cache_root: Option<&Path>,
) -> anyhow::Result<Vec<Option<Digest>>> {
    const BATCH_BYTES: u64 = 8 * 1024 * 1024;
    let cache = match cache_root {
        Some(root) => {
            let root = root.to_path_buf();
            tokio::task::spawn_blocking(move || HashCache::open(&root))
                .await
                .context("reading the hash cache panicked")?
        }
        None => HashCache::default(),
    };
    let cache = Arc::new(cache);
    let mut batches: Vec<Vec<SourceFile>> = vec![Vec::new()];
    let mut batch_bytes = 0;
    for file in files {
        if batch_bytes >= BATCH_BYTES {
            batches.push(Vec::new());
            batch_bytes = 0;
        }
        batch_bytes += file.size;
        batches
            .last_mut()
            .expect("one batch at least")
            .push(file.clone());
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hashed: Vec<Vec<Option<Digest>>> = futures::stream::iter(batches)
        .map(|batch| {
            let cache = cache.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    batch
                        .iter()
                        .map(|file| digest(file, &cache))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .await
                .context("hashing panicked")?
            }
        })
        .buffered(cores)
        .try_collect()
        .await?;
    let hashed: Vec<Option<Digest>> = hashed.into_iter().flatten().collect();
    if cache_root.is_some() {
        let remembered: Vec<(String, Stamp, Digest)> = files
            .iter()
            .zip(&hashed)
            .filter_map(|(file, digest)| match (&file.origin, digest) {
                (Origin::Local { stamp, .. }, Some(digest)) => {
                    Some((file.relative.clone(), *stamp, digest.clone()))
                }
                _ => None,
            })
            .collect();
        let cache = cache.clone();
        // Best effort: a cache that cannot be written only costs hashing next time.
        let _ = tokio::task::spawn_blocking(move || cache.save(remembered.into_iter())).await;
    }
    Ok(hashed)
}

/// One local file's digest: remembered if its stamp is unchanged since, else computed.
fn digest(file: &SourceFile, cache: &HashCache) -> anyhow::Result<Option<Digest>> {
    let Origin::Local { path, stamp } = &file.origin else {
        return Ok(None);
    };
    if let Some(remembered) = cache.get(&file.relative, stamp) {
        return Ok(Some(remembered));
    }
    Ok(Some(Digest::of_file(path, file.size)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: impl Iterator<Item = String>) -> Vec<SourceFile> {
        names
            .map(|relative| SourceFile {
                relative,
                size: 1,
                origin: Origin::Local {
                    path: "/dev/null".into(),
                    stamp: Stamp::of(&std::fs::metadata("/dev/null").unwrap()),
                },
            })
            .collect()
    }

    #[test]
    fn the_error_reported_is_the_cause_not_the_cancellations_it_caused() {
        let outcomes: Vec<anyhow::Result<u8>> = vec![
            Ok(1),
            Err(Cancelled.into()),
            Err(anyhow::anyhow!("KeyTooLongError")),
            Err(Cancelled.into()),
        ];
        let error = first_failure(outcomes).unwrap_err();
        assert_eq!(error.to_string(), "KeyTooLongError");
        let cancelled: Vec<anyhow::Result<u8>> = vec![Ok(1), Err(Cancelled.into())];
        assert!(
            first_failure(cancelled)
                .unwrap_err()
                .downcast_ref::<Cancelled>()
                .is_some()
        );
        assert_eq!(first_failure(vec![Ok(1), Ok(2)]).unwrap(), [1, 2]);
    }

    fn entry(key: &str, etag: &str) -> Entry {
        Entry {
            key: key.into(),
            etag: etag.into(),
            size: 1,
        }
    }

    #[test]
    fn a_merged_manifest_keeps_every_earlier_key_and_takes_the_new_etags() {
        let earlier = vec![entry("s/b.js", "old"), entry("s/a.css", "a")];
        let now = vec![entry("s/c.js", "c"), entry("s/b.js", "new")];
        assert_eq!(
            merged(earlier, now),
            [
                entry("s/a.css", "a"),
                entry("s/b.js", "new"),
                entry("s/c.js", "c")
            ]
        );
    }

    #[test]
    fn listing_splits_every_thousand_sorted_keys() {
        assert!(list_splits("p/", &files((0..1000).map(|i| format!("{i:04}")))).is_empty());
        let splits = list_splits("p/", &files((0..2500).rev().map(|i| format!("{i:04}"))));
        assert_eq!(splits, ["p/0999", "p/1999"]);
    }
}
