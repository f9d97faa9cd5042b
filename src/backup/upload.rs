//! A stream uploaded to S3 as a multipart upload, with no local copy and
//! bounded memory: one part is filled while the previous one is in flight,
//! never more. The SHA-256 and size of the whole stream are computed on the
//! way. Nothing is visible in the bucket until [`Multipart::complete`];
//! [`Multipart::abort`] leaves nothing behind.

use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use crate::s3::Store;

/// S3's most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// The smallest part berth uses (S3's minimum is 5 MiB).
pub const MIN_PART: u64 = 8 * MIB;
/// S3's largest part.
pub const MAX_PART: u64 = 5 * 1024 * MIB;
const MIB: u64 = 1024 * 1024;

/// The part size for dumping a database of `database_size` bytes: at least
/// [`MIN_PART`], and large enough that a dump twice the database's size
/// fits in 9,000 parts (custom-format dumps are compressed and hold no
/// indexes, so they are smaller than the database; the margin covers the
/// size changing during the dump). Rounded up to whole MiB.
pub fn part_size(database_size: u64) -> u64 {
    let needed = database_size.saturating_mul(2).div_ceil(9_000);
    needed
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(MIN_PART, MAX_PART)
}

/// What was streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    /// Bytes in the stream.
    pub size: u64,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
    /// Parts uploaded.
    pub parts: u64,
}

/// One multipart upload in progress.
pub struct Multipart {
    store: Store,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl Multipart {
    /// Start an upload to `key`.
    pub async fn start(store: &Store, key: &str) -> anyhow::Result<Multipart> {
        let created = store
            .client
            .create_multipart_upload()
            .bucket(&store.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(|e| store.explain(e, "starting an upload to"))?;
        let upload_id = created
            .upload_id
            .context("S3 started a multipart upload without an upload id")?;
        Ok(Multipart {
            store: store.clone(),
            key: key.to_owned(),
            upload_id,
            parts: Vec::new(),
        })
    }

    /// Upload everything `reader` yields in parts of `part_size` bytes, one
    /// part read while the previous one uploads. The two part buffers are
    /// reused: memory stays at two parts however long the stream.
    pub async fn send_all(
        &mut self,
        mut reader: impl AsyncRead + Unpin,
        part_size: u64,
    ) -> anyhow::Result<Streamed> {
        let part_size = usize::try_from(part_size).context("part size")?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut in_flight: Option<JoinHandle<anyhow::Result<Sent>>> = None;
        let mut spare: Option<BytesMut> = None;
        let mut number = 0i32;
        loop {
            let mut buffer = spare
                .take()
                .unwrap_or_else(|| BytesMut::with_capacity(part_size));
            while buffer.len() < part_size {
                if reader
                    .read_buf(&mut buffer)
                    .await
                    .context("reading the dump")?
                    == 0
                {
                    break;
                }
            }
            if let Some(previous) = in_flight.take() {
                spare = self.finished(previous).await?;
            }
            if buffer.is_empty() {
                break;
            }
            let full = buffer.len() == part_size;
            hasher.update(&buffer);
            size += buffer.len() as u64;
            number += 1;
            in_flight = Some(tokio::spawn(upload_part(
                self.store.clone(),
                self.key.clone(),
                self.upload_id.clone(),
                number,
                buffer.freeze(),
            )));
            if !full {
                if let Some(last) = in_flight.take() {
                    self.finished(last).await?;
                }
                break;
            }
        }
        Ok(Streamed {
            size,
            sha256: hex::encode(hasher.finalize()),
            parts: self.parts.len() as u64,
        })
    }

    /// Record a part whose upload finished; its buffer, emptied, when no
    /// one else holds it any more.
    async fn finished(
        &mut self,
        upload: JoinHandle<anyhow::Result<Sent>>,
    ) -> anyhow::Result<Option<BytesMut>> {
        let (part, body) = upload.await.context("a part upload")??;
        self.parts.push(part);
        Ok(body.try_into_mut().ok().map(|mut buffer| {
            buffer.clear();
            buffer
        }))
    }

    /// Complete the upload: the object appears.
    pub async fn complete(self) -> anyhow::Result<()> {
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(self.parts.clone()))
            .build();
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(upload)
            .send()
            .await
            .map_err(|e| self.store.explain(e, "completing the upload to"))?;
        Ok(())
    }

    /// Abort the upload: S3 drops the parts, no object appears.
    pub async fn abort(self) -> anyhow::Result<()> {
        self.store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .map_err(|e| self.store.explain(e, "aborting the upload to"))?;
        Ok(())
    }
}

/// An uploaded part, and its body handed back for reuse.
type Sent = (CompletedPart, bytes::Bytes);

/// Upload one part, with its Content-MD5 so S3 rejects a damaged one.
async fn upload_part(
    store: Store,
    key: String,
    upload_id: String,
    number: i32,
    body: bytes::Bytes,
) -> anyhow::Result<Sent> {
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
    let uploaded = store
        .client
        .upload_part()
        .bucket(&store.bucket)
        .key(&key)
        .upload_id(&upload_id)
        .part_number(number)
        .content_md5(md5)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .map_err(|e| store.explain(e, &format!("uploading part {number} to")))?;
    let part = CompletedPart::builder()
        .part_number(number)
        .set_e_tag(uploaded.e_tag)
        .build();
    Ok((part, body))
}

/// `bytes` as lowercase hex.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_at_least_8_mib_and_never_more_than_10000() {
        const GIB: u64 = 1024 * MIB;
        assert_eq!(part_size(0), 8 * MIB);
        assert_eq!(part_size(GIB), 8 * MIB);
        // 8 MiB parts carry 9,000 × 8 MiB = 70 GiB of dump: up to a 35 GiB database.
        assert_eq!(part_size(35 * GIB), 8 * MIB);
        assert_eq!(part_size(100 * GIB), 23 * MIB);
        for database in [0, GIB, 40 * GIB, 100 * GIB, 1024 * GIB, 2500 * GIB] {
            let part = part_size(database);
            assert!(part >= MIN_PART && part.is_multiple_of(MIB));
            // A dump twice the database's size still fits.
            assert!((2 * database).div_ceil(part) <= 9_000, "{database}");
            assert!((2 * database).div_ceil(part) < MAX_PARTS);
        }
        // Beyond S3's 5 TiB object limit the part size stops at S3's maximum.
        assert_eq!(part_size(u64::MAX), MAX_PART);
    }
}
