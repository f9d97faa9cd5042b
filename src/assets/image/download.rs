//! One layer's bytes, resumed where a cut left them.
//!
//! A registry connection reset midway through a large layer would otherwise
//! fail the whole push. The stream here opens the layer again from the byte
//! it had reached (an HTTP `Range` request; a registry that answers with the
//! whole blob instead has the bytes already delivered skipped), waiting
//! between tries like every other registry request ([`crate::net::backoff`]).
//! The wait starts over whenever a try made progress, so only a registry
//! that keeps cutting before any new byte ends the download. The layer's
//! sha256 is checked over every byte delivered, whichever tries they came
//! from.

use std::io;

use backon::BackoffBuilder;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use oci_client::client::BlobResponse;
use oci_client::manifest::OciDescriptor;
use sha2::{Digest, Sha256};

use crate::error::root_cause;
use crate::registry::Session;

/// The bytes of `layer` of the session's image, resumed after cuts and
/// checked against the layer's sha256 digest at the end. The first request
/// is made here, so a missing or refused layer is the registry error it
/// means (see [`crate::registry::Image::error`]).
pub async fn layer(
    session: Session,
    layer: OciDescriptor,
) -> anyhow::Result<impl Stream<Item = io::Result<Bytes>>> {
    let mut state = Download {
        waits: crate::net::backoff::waits().build(),
        session,
        layer,
        received: 0,
        skip: 0,
        hasher: Sha256::new(),
        body: None,
        done: false,
    };
    state.body = Some(state.open().await?);
    Ok(futures::stream::unfold(state, |mut download| async move {
        let item = download.next_chunk().await?;
        Some((item, download))
    }))
}

/// Where a layer's download stands.
struct Download {
    session: Session,
    layer: OciDescriptor,
    /// The waits left before giving up, started over after progress.
    waits: backon::ExponentialBackoff,
    /// Bytes delivered so far.
    received: u64,
    /// Bytes of the open body to drop: already delivered by an earlier try.
    skip: u64,
    hasher: Sha256,
    body: Option<BoxStream<'static, io::Result<Bytes>>>,
    done: bool,
}

impl Download {
    /// The next chunk, an error that ends the download, or `None` at its
    /// verified end.
    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        loop {
            let Some(body) = self.body.as_mut() else {
                match self.open().await {
                    Ok(body) => self.body = Some(body),
                    Err(e) => return self.end(Err(io::Error::other(e))),
                }
                continue;
            };
            match body.next().await {
                Some(Ok(chunk)) => {
                    let Some(chunk) = self.unseen(chunk) else {
                        continue;
                    };
                    self.received += chunk.len() as u64;
                    self.hasher.update(&chunk);
                    self.waits = crate::net::backoff::waits().build();
                    return Some(Ok(chunk));
                }
                Some(Err(cut)) => {
                    self.body = None;
                    let Some(wait) = self.waits.next() else {
                        let gave_up = io::Error::other(format!(
                            "registry {} cut the download of layer {} {} times in a row without \
                             a new byte ({}); nothing was changed: run the command again once the \
                             registry answers",
                            self.session.image.registry(),
                            self.layer.digest,
                            crate::net::backoff::RETRIES + 1,
                            root_cause(&cut)
                        ));
                        return self.end(Err(gave_up));
                    };
                    tracing::warn!(
                        "registry {} cut layer {} of image {} after {} bytes ({}); resuming in {}",
                        self.session.image.registry(),
                        self.layer.digest,
                        self.session.image.shown,
                        self.received,
                        root_cause(&cut),
                        crate::duration::display(wait)
                    );
                    tokio::time::sleep(wait).await;
                }
                None => {
                    let verified = self.verify();
                    return match verified {
                        Ok(()) => {
                            self.done = true;
                            None
                        }
                        Err(e) => self.end(Err(e)),
                    };
                }
            }
        }
    }

    /// `chunk` without the bytes an earlier try already delivered.
    fn unseen(&mut self, chunk: Bytes) -> Option<Bytes> {
        let len = chunk.len() as u64;
        if self.skip >= len {
            self.skip -= len;
            return None;
        }
        let unseen = chunk.slice(self.skip as usize..);
        self.skip = 0;
        Some(unseen)
    }

    /// Open the layer from the byte reached, retried like any request.
    async fn open(&mut self) -> anyhow::Result<BoxStream<'static, io::Result<Bytes>>> {
        let Session {
            client,
            reference,
            image,
            ..
        } = &self.session;
        let (offset, layer) = (self.received, &self.layer);
        let response = image
            .retried("pulling a layer of", || {
                client.pull_blob_stream_partial(reference, layer, offset, None)
            })
            .await
            .map_err(|e| image.error(e))?;
        Ok(match response {
            // The whole blob: skip what was delivered.
            BlobResponse::Full(sized) => {
                self.skip = offset;
                sized.stream
            }
            BlobResponse::Partial(sized) => sized.stream,
        })
    }

    /// Whether every byte delivered hashes to the layer's sha256 digest.
    fn verify(&mut self) -> io::Result<()> {
        let Some(expected) = self.layer.digest.strip_prefix("sha256:") else {
            // Another algorithm: the client checked a whole-blob answer.
            return Ok(());
        };
        let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if got == expected {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "layer {} of image {} arrived with sha256:{got} ({} bytes); the registry served \
             other bytes than the image's manifest names",
            self.layer.digest, self.session.image.shown, self.received
        )))
    }

    fn end(&mut self, result: io::Result<Bytes>) -> Option<io::Result<Bytes>> {
        self.done = true;
        Some(result)
    }
}
