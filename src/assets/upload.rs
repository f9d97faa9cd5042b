//! Writing one object: a single PUT, a multipart upload (aborted on any
//! failure or cancellation, so no partial object is ever visible), or a
//! server-side copy. Every request takes a permit from a shared semaphore,
//! which bounds the requests in flight and, with bodies streamed from disk,
//! the memory used whatever the total size.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::tree::{Digest, PART_SIZE};
use crate::error::Cancelled;
use crate::s3::Store;

/// Where an object's content comes from.
#[derive(Debug, Clone)]
pub enum Body {
    /// A local file, streamed from disk.
    File(PathBuf),
    /// Bytes in memory (a precompressed variant).
    Bytes(Bytes),
    /// An object in a bucket the same credentials can read, copied server-side.
    Copy {
        /// The source bucket.
        bucket: String,
        /// The source key.
        key: String,
    },
}

/// One object to write, with the headers it is served with.
#[derive(Debug, Clone)]
pub struct Object {
    /// The destination key.
    pub key: String,
    /// The content.
    pub body: Body,
    /// The content's size in bytes.
    pub size: u64,
    /// The content's MD5s (absent for a copy: S3 already has the bytes).
    pub digest: Option<Digest>,
    /// Content-Type.
    pub content_type: String,
    /// Cache-Control.
    pub cache_control: String,
    /// Content-Encoding of a precompressed variant.
    pub content_encoding: Option<&'static str>,
}

/// Writes objects to one bucket, a bounded number of requests at a time.
#[derive(Clone)]
pub struct Transfer {
    store: Store,
    permits: Arc<Semaphore>,
    cancel: CancellationToken,
}

impl Transfer {
    /// At most `concurrency` requests in flight; `cancel` stops every write.
    pub fn new(store: Store, concurrency: usize, cancel: CancellationToken) -> Transfer {
        Transfer {
            store,
            permits: Arc::new(Semaphore::new(concurrency)),
            cancel,
        }
    }

    /// Write `object`. A cancelled write returns [`Cancelled`] and leaves
    /// nothing behind: a single PUT is atomic, a multipart upload is aborted.
    pub async fn write(&self, object: &Object) -> anyhow::Result<()> {
        match (&object.body, &object.digest) {
            (Body::Copy { bucket, key }, _) => self.copy(object, bucket, key).await,
            (_, Some(digest)) if digest.multipart => self.multipart(object, digest).await,
            _ => self.put(object).await,
        }
    }

    /// Run one request under a permit, to the end even if cancelled meanwhile:
    /// for the requests that start and complete a multipart upload, whose
    /// outcome must be known to abort it.
    async fn request_to_the_end<T>(
        &self,
        request: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if self.cancel.is_cancelled() {
            return Err(Cancelled.into());
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .context("the upload was shut down")?;
        request.await
    }

    /// Run one request under a permit, unless cancelled first.
    async fn request<T>(
        &self,
        request: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Cancelled.into()),
            result = async {
                let _permit = self.permits.acquire().await.context("the upload was shut down")?;
                request.await
            } => result,
        }
    }

    /// A single PUT, with Content-MD5 so S3 rejects a corrupted body.
    async fn put(&self, object: &Object) -> anyhow::Result<()> {
        self.request(async {
            let body = match &object.body {
                // Read small files whole, in one blocking call: cheaper than
                // streaming them in chunks, and memory stays bounded by the
                // requests in flight.
                Body::File(path) if object.size <= READ_WHOLE => {
                    let file = path.clone();
                    let bytes = tokio::task::spawn_blocking(move || std::fs::read(file))
                        .await
                        .context("reading a file panicked")?
                        .with_context(|| format!("reading {}", path.display()))?;
                    ByteStream::from(bytes)
                }
                Body::File(path) => ByteStream::from_path(path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?,
                Body::Bytes(bytes) => ByteStream::from(bytes.clone()),
                Body::Copy { .. } => unreachable!("copies are not PUT"),
            };
            let mut put = self
                .store
                .client
                .put_object()
                .bucket(&self.store.bucket)
                .key(&object.key)
                .body(body)
                .content_length(object.size as i64)
                .content_type(&object.content_type)
                .cache_control(&object.cache_control)
                .set_content_encoding(object.content_encoding.map(str::to_owned));
            if let Some(digest) = &object.digest {
                put = put.content_md5(BASE64.encode(digest.md5s[0]));
            }
            put.customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| {
                    self.store
                        .explain(e, &format!("uploading {} to", object.key))
                })?;
            Ok(())
        })
        .await
    }

    /// A multipart upload of a file, its parts in parallel; aborted unless it completes.
    async fn multipart(&self, object: &Object, digest: &Digest) -> anyhow::Result<()> {
        let Body::File(path) = &object.body else {
            unreachable!("only files are uploaded in parts")
        };
        let store = &self.store;
        // An earlier push of this key that S3 stopped answering before its
        // abort went through left its parts behind: drop them first.
        self.request(abort_earlier_uploads(store, &object.key))
            .await?;
        // Not dropped half-way: an upload created but never heard of could not be aborted.
        let created = self
            .request_to_the_end(async {
                store
                    .client
                    .create_multipart_upload()
                    .bucket(&store.bucket)
                    .key(&object.key)
                    .content_type(&object.content_type)
                    .cache_control(&object.cache_control)
                    .set_content_encoding(object.content_encoding.map(str::to_owned))
                    .send()
                    .await
                    .map_err(|e| {
                        store.explain(e, &format!("starting the upload of {} to", object.key))
                    })
            })
            .await?;
        let upload_id = created
            .upload_id()
            .context("S3 started a multipart upload without an upload ID")?
            .to_owned();
        let parts = futures::stream::iter(digest.md5s.iter().enumerate())
            .map(|(index, md5)| {
                let upload_id = &upload_id;
                async move {
                    let offset = index as u64 * PART_SIZE;
                    let length = PART_SIZE.min(object.size - offset);
                    self.request(async {
                        let body = ByteStream::read_from()
                            .path(path)
                            .offset(offset)
                            .length(Length::Exact(length))
                            .build()
                            .await
                            .with_context(|| format!("reading {}", path.display()))?;
                        let number = index as i32 + 1;
                        let uploaded = store
                            .client
                            .upload_part()
                            .bucket(&store.bucket)
                            .key(&object.key)
                            .upload_id(upload_id)
                            .part_number(number)
                            .content_length(length as i64)
                            .content_md5(BASE64.encode(md5))
                            .body(body)
                            .customize()
                            .disable_payload_signing()
                            .send()
                            .await
                            .map_err(|e| {
                                store.explain(
                                    e,
                                    &format!("uploading part {number} of {} to", object.key),
                                )
                            })?;
                        Ok(CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(uploaded.e_tag)
                            .build())
                    })
                    .await
                }
            })
            .buffered(digest.md5s.len().min(8))
            .try_collect::<Vec<_>>();
        let completed = async {
            let parts = parts.await?;
            self.request_to_the_end(async {
                store
                    .client
                    .complete_multipart_upload()
                    .bucket(&store.bucket)
                    .key(&object.key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        store.explain(e, &format!("completing the upload of {} to", object.key))
                    })
            })
            .await
        }
        .await;
        if completed.is_err() {
            // Not cancellable: an abandoned upload would hold its parts (and cost) forever.
            let aborted = store
                .client
                .abort_multipart_upload()
                .bucket(&store.bucket)
                .key(&object.key)
                .upload_id(&upload_id)
                .send()
                .await;
            match aborted {
                Ok(_) => {}
                // The bucket is gone, and its parts with it: nothing to abort.
                Err(error) if error.code() == Some("NoSuchBucket") => {
                    tracing::debug!(
                        "bucket {} is gone with the upload of {}",
                        store.bucket,
                        object.key
                    );
                }
                Err(error) => tracing::warn!(
                    "could not abort the multipart upload of {} (ID {upload_id}): {}; \
                     the next push of it aborts it (or a bucket lifecycle rule for \
                     incomplete uploads removes its parts)",
                    object.key,
                    aws_sdk_s3::error::DisplayErrorContext(&error)
                ),
            }
        }
        completed.map(|_| ())
    }

    /// A server-side copy from the build bucket, headers replaced by berth's.
    async fn copy(&self, object: &Object, bucket: &str, key: &str) -> anyhow::Result<()> {
        const COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;
        if object.size > COPY_LIMIT {
            anyhow::bail!(
                "s3://{bucket}/{key} is larger than 5 GiB, which one server-side copy cannot \
                 move; serve it from elsewhere"
            );
        }
        let source = format!(
            "{bucket}/{}",
            percent_encoding::utf8_percent_encode(key, COPY_SOURCE_ESCAPES)
        );
        self.request(async {
            self.store
                .client
                .copy_object()
                .bucket(&self.store.bucket)
                .key(&object.key)
                .copy_source(source)
                .metadata_directive(MetadataDirective::Replace)
                .content_type(&object.content_type)
                .cache_control(&object.cache_control)
                .send()
                .await
                .map_err(|e| {
                    self.store.explain(
                        e,
                        &format!("copying s3://{bucket}/{key} to {} in", object.key),
                    )
                })?;
            Ok(())
        })
        .await
    }
}

/// Abort every incomplete multipart upload of `key`: those of an earlier
/// push that failed while S3 was down, whose own abort could not reach it.
/// (This push writes the key anyway, so nothing it would keep is lost.)
async fn abort_earlier_uploads(store: &Store, key: &str) -> anyhow::Result<()> {
    let listed = store
        .client
        .list_multipart_uploads()
        .bucket(&store.bucket)
        .prefix(key)
        .send()
        .await
        .map_err(|e| store.explain(e, &format!("listing earlier uploads of {key} in")))?;
    for upload in listed.uploads() {
        let (Some(found), Some(id)) = (upload.key(), upload.upload_id()) else {
            continue;
        };
        if found != key {
            continue;
        }
        tracing::info!("aborting an earlier incomplete upload of {key} (ID {id})");
        let aborted = store
            .client
            .abort_multipart_upload()
            .bucket(&store.bucket)
            .key(key)
            .upload_id(id)
            .send()
            .await;
        match aborted {
            // Completed or aborted meanwhile: gone either way.
            Err(e) if e.code() == Some("NoSuchUpload") => {}
            aborted => {
                aborted.map_err(|e| {
                    store.explain(e, &format!("aborting an earlier upload of {key} in"))
                })?;
            }
        }
    }
    Ok(())
}

/// Files up to this size are read whole for a single PUT; larger ones are streamed.
const READ_WHOLE: u64 = 512 * 1024;

/// What a copy source's key escapes: everything but unreserved characters and `/`.
const COPY_SOURCE_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
