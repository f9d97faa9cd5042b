//! Resolving an asset source for one SHA into the files to publish: a
//! local directory as it is, an image's directory extracted to a temporary
//! directory, or a build bucket's prefix as listed.

use std::path::PathBuf;

use anyhow::Context;
use tempfile::TempDir;

use super::hash_cache::Stamp;
use super::tree;
use crate::config::AssetSource;
use crate::error::input_error;
use crate::s3::Store;

/// Where one file's content is.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A local file.
    Local {
        /// Where it is.
        path: PathBuf,
        /// Its size, times and inode when the tree was walked.
        stamp: Stamp,
    },
    /// An object in a build bucket.
    Remote {
        /// The build bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// Its ETag, compared with the destination's to skip unchanged files.
        etag: String,
    },
}

/// One file to publish.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its path below the source's root, `/`-separated: the key after the prefix.
    pub relative: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where its content is.
    pub origin: Origin,
}

/// A source's files, and the temporary directory holding them if any
/// (deleted when this is dropped).
pub struct Resolved {
    /// The files, sorted by path.
    pub files: Vec<SourceFile>,
    /// Where they came from, for messages and the manifest.
    pub description: String,
    /// The image's manifest digest, for an image source.
    pub image_digest: Option<String>,
    /// The root of a local directory source, whose hashes are remembered between pushes.
    pub cache_root: Option<PathBuf>,
    _extracted: Option<TempDir>,
}

/// The files of `source` (its `{sha}` already substituted) for `sha`.
/// `store` reaches a build bucket with the destination's endpoint and credentials.
pub async fn resolve(source: &AssetSource, sha: &str, store: &Store) -> anyhow::Result<Resolved> {
    let description = source.describe(sha);
    let resolved = match source {
        AssetSource::Dir(dir) => {
            let files = walk(dir.clone()).await?;
            Resolved {
                files,
                description,
                image_digest: None,
                cache_root: Some(dir.clone()),
                _extracted: None,
            }
        }
        AssetSource::Image { repository, path } => {
            let extracted = tempfile::Builder::new()
                .prefix("berth-assets-")
                .tempdir()
                .context("creating a temporary directory for the image's files")?;
            let image = super::image::extract(repository, sha, path, extracted.path()).await?;
            let files = walk(extracted.path().to_path_buf()).await?;
            Resolved {
                files,
                description,
                image_digest: Some(image.digest),
                cache_root: None,
                _extracted: Some(extracted),
            }
        }
        AssetSource::S3 { bucket, prefix } => {
            let listed = store.for_bucket(bucket).list(prefix).await?;
            let files = listed
                .into_iter()
                .filter(|object| !object.key.ends_with('/'))
                .filter_map(|object| {
                    // A store that lists a key outside the prefix is ignored, not sliced.
                    let relative = object.key.strip_prefix(prefix.as_str())?.to_owned();
                    Some(SourceFile {
                        relative,
                        size: object.size,
                        origin: Origin::Remote {
                            bucket: bucket.clone(),
                            key: object.key,
                            etag: object.etag,
                        },
                    })
                })
                .collect();
            Resolved {
                files,
                description,
                image_digest: None,
                cache_root: None,
                _extracted: None,
            }
        }
    };
    if resolved.files.is_empty() {
        return Err(input_error(format!(
            "there are no files in {}; check `assets.from` in berth.yaml, and that the build \
             produced the assets for {sha}",
            resolved.description
        )));
    }
    if let Some(reserved) = resolved
        .files
        .iter()
        .find(|f| f.relative.starts_with(super::manifest::RESERVED))
    {
        return Err(input_error(format!(
            "{} has {}, but berth keeps its manifests under {}; rename that directory",
            resolved.description,
            reserved.relative,
            super::manifest::RESERVED
        )));
    }
    Ok(resolved)
}

/// The files below `root`, as source files.
async fn walk(root: PathBuf) -> anyhow::Result<Vec<SourceFile>> {
    let files = tokio::task::spawn_blocking(move || tree::walk(&root))
        .await
        .context("the directory walk panicked")??;
    Ok(files
        .into_iter()
        .map(|file| SourceFile {
            relative: file.relative,
            size: file.size,
            origin: Origin::Local {
                path: file.path,
                stamp: file.stamp,
            },
        })
        .collect())
}
