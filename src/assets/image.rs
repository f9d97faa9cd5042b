//! The `image` asset source: files at a path inside an OCI image, read
//! straight from the registry.
//!
//! No Docker daemon: the manifest (the linux/amd64 one of an index) and each
//! layer come from the registry over HTTP, and each layer streams through
//! gzip and tar into the target directory, its digest checked as it goes, so
//! memory stays bounded whatever the layer size.
//!
//! Registry access (credentials, plain HTTP) is [`crate::registry`]'s.

mod download;
mod layers;

use std::path::Path;

use anyhow::{Context, Result};
use oci_client::Reference;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::input_error;
use crate::registry::Session;

/// The berth.yaml key naming an asset image's repository.
const ASSETS_IMAGE_KEY: &str = "`assets.from.image`";

/// What was extracted from an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The image as asked for, `repository:tag`.
    pub reference: String,
    /// The digest of the image's (linux/amd64) manifest, `sha256:...`.
    pub digest: String,
    /// Regular files extracted.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Copy the regular files under `path` (absolute path inside the image, e.g.
/// "/app/static") of image `repository:tag` into the existing empty
/// directory `into`, keeping their relative paths below `path`.
pub async fn extract(repository: &str, tag: &str, path: &str, into: &Path) -> Result<Extracted> {
    let shown = format!("{repository}:{tag}");
    let reference: Reference = shown.parse().map_err(|e| {
        input_error(format!(
            "image {shown} is not a valid image reference ({e}); \
             check `assets.from.image` in berth.yaml and the SHA"
        ))
    })?;
    let prefix = layers::image_path(path).ok_or_else(|| {
        input_error(format!(
            "the asset path {path:?} is not an absolute path inside the image; \
             set `assets.from.path` in berth.yaml to one like /app/static"
        ))
    })?;
    ensure_empty_dir(into)?;

    let session = Session::open(reference, shown, ASSETS_IMAGE_KEY).await?;
    let Session {
        client,
        auth,
        image,
        reference,
    } = &session;
    let (manifest, digest) = image
        .retried("reading the manifest of", || {
            client.pull_image_manifest(reference, auth)
        })
        .await
        .map_err(|e| image.error(e))?;

    let mut tree = layers::Tree::new(into.to_path_buf(), prefix);
    for layer in &manifest.layers {
        let stream = Box::pin(download::layer(session.clone(), layer.clone()).await?);
        let reader = SyncIoBridge::new(StreamReader::new(stream));
        tree = tokio::task::spawn_blocking(move || tree.apply_layer(reader).map(|()| tree))
            .await
            .context("applying an image layer")?
            .with_context(|| format!("reading layer {} of image {}", layer.digest, image.shown))?;
    }
    let (tree, totals) = tokio::task::spawn_blocking(move || {
        let totals = tree.finish();
        (tree, totals)
    })
    .await
    .context("finishing the extraction")?;
    let totals = totals.with_context(|| format!("extracting {path} of image {}", image.shown))?;
    if totals.files == 0 {
        let found = tree
            .hint()
            .map(|hint| format!(" (the image has {hint})"))
            .unwrap_or_default();
        return Err(input_error(format!(
            "image {} has no files under {path}; check `assets.from.path` in berth.yaml{found}",
            image.shown
        )));
    }
    Ok(Extracted {
        reference: image.shown.clone(),
        digest,
        files: totals.files,
        bytes: totals.bytes,
    })
}

fn ensure_empty_dir(dir: &Path) -> Result<()> {
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("opening directory {}", dir.display()))?;
    anyhow::ensure!(
        entries.next().is_none(),
        "{} is not empty; image assets are extracted into an empty directory",
        dir.display()
    );
    Ok(())
}
