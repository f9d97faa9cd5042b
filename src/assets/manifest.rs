//! The manifest written per SHA once its assets are all in the bucket: what
//! that release needs, so `assets prune` knows what it must keep.

use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::s3::Store;

/// The directory below the prefix where berth keeps manifests; asset trees may not use it.
pub const RESERVED: &str = ".berth/";

/// What one SHA's release needs from the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The SHA.
    pub sha: String,
    /// Where the files came from.
    pub source: String,
    /// The image's manifest digest, for an image source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// Every object the release serves, precompressed variants included.
    pub objects: Vec<Entry>,
}

/// One object a release needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The full key.
    pub key: String,
    /// Its ETag.
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The key of `sha`'s manifest under `prefix`.
pub fn key(prefix: &str, sha: &str) -> String {
    format!("{prefix}{RESERVED}manifests/{sha}.json")
}

/// The SHA a manifest key names, if it is one.
pub fn sha_of(prefix: &str, key: &str) -> Option<String> {
    key.strip_prefix(prefix)?
        .strip_prefix(RESERVED)?
        .strip_prefix("manifests/")?
        .strip_suffix(".json")
        .map(str::to_owned)
}

/// Write `manifest` under `prefix`.
pub async fn write(store: &Store, prefix: &str, manifest: &Manifest) -> anyhow::Result<String> {
    let key = key(prefix, &manifest.sha);
    let body = serde_json::to_vec_pretty(manifest).context("encoding the asset manifest")?;
    store
        .client
        .put_object()
        .bucket(&store.bucket)
        .key(&key)
        .content_type("application/json")
        .cache_control("no-store")
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| store.explain(e, &format!("writing the manifest {key} to")))?;
    Ok(key)
}

/// Read `sha`'s manifest under `prefix`; `None` when there is none.
pub async fn read(store: &Store, prefix: &str, sha: &str) -> anyhow::Result<Option<Manifest>> {
    let key = key(prefix, sha);
    let object = match store
        .client
        .get_object()
        .bucket(&store.bucket)
        .key(&key)
        .send()
        .await
    {
        Ok(object) => object,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            return Ok(None);
        }
        Err(error) => return Err(store.explain(error, &format!("reading the manifest {key} from"))),
    };
    let bytes = object
        .body
        .collect()
        .await
        .with_context(|| format!("reading the manifest {key}"))?
        .into_bytes();
    let manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("the manifest s3://{}/{key} is not valid JSON", store.bucket))?;
    Ok(Some(manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_name_their_sha() {
        let key = key("static/", "3f2a9c1");
        assert_eq!(key, "static/.berth/manifests/3f2a9c1.json");
        assert_eq!(sha_of("static/", &key).as_deref(), Some("3f2a9c1"));
        assert_eq!(sha_of("static/", "static/app.js"), None);
        assert_eq!(
            sha_of("", ".berth/manifests/abc.json").as_deref(),
            Some("abc")
        );
    }
}
