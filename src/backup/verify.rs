//! Reading a dump back from the bucket: streamed into a PostgreSQL client
//! program's stdin (no local copy), hashed on the way; and the check of a
//! dump against its manifest (size, SHA-256, table of contents).

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::process::ChildStdin;

use super::manifest::Manifest;
use super::pod_env::Pg;
use super::store::BackupStore;
use super::tools::{self, Tool};

/// The result of `berth db agent verify`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// The backup.
    pub id: String,
    /// Size, checksum and table of contents all good.
    pub ok: bool,
    /// What was wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The object's SHA-256 as read.
    pub sha256: String,
    /// The object's size as read.
    pub size: u64,
    /// Entries in its table of contents.
    pub entries: u64,
}

/// What streaming an object read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Bytes read.
    pub size: u64,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
}

/// Stream object `key` into `stdin` (while it is open) and hash all of it;
/// the pipe is closed at the end so the reader sees end of input.
pub async fn stream_object(
    store: &BackupStore,
    key: &str,
    stdin: Option<ChildStdin>,
) -> anyhow::Result<Read> {
    let mut stdin = stdin;
    let got = store
        .store
        .client
        .get_object()
        .bucket(&store.store.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| store.store.explain(e, &format!("reading {key} from")))?;
    let mut body = got.body;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body
        .try_next()
        .await
        .with_context(|| format!("reading {key}"))?
    {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        tools::feed(&mut stdin, &chunk).await?;
    }
    drop(stdin);
    Ok(Read {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// `pg_restore --list` of object `key`, streamed from the bucket: the
/// number of entries in its table of contents, and what the whole object
/// read as. An error when pg_restore fails or prints no archive header (an empty database has no entries).
pub async fn list(store: &BackupStore, key: &str, server: &Pg) -> anyhow::Result<(u64, Read)> {
    let mut tool = tools::start(
        "pg_restore",
        &["--list"],
        server,
        &server.dbname,
        true,
        true,
    )?;
    let stdin = tool.stdin()?;
    let stdout = tool.child.stdout.take().context("pg_restore's stdout")?;
    let counting = tokio::spawn(count_entries(stdout));
    let read = stream_object(store, key, Some(stdin)).await;
    let finished = tool.finish().await;
    let listing = counting.await.context("reading pg_restore's list")??;
    let read = read?;
    finished.context("the dump's table of contents does not read back")?;
    // An empty database dumps no entries, only the archive's header: what
    // proves the archive reads back is the header naming its database.
    if !listing.header {
        anyhow::bail!("pg_restore --list printed no archive header for the dump");
    }
    Ok((listing.entries, read))
}

/// What a `pg_restore --list` listing showed.
struct Listing {
    /// Entries: lines not starting with `;`.
    entries: u64,
    /// Whether the header's `;     dbname:` line was there.
    header: bool,
}

/// Read a `pg_restore --list` listing.
async fn count_entries(stdout: tokio::process::ChildStdout) -> anyhow::Result<Listing> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut listing = Listing {
        entries: 0,
        header: false,
    };
    while let Some(line) = lines.next_line().await? {
        if line.starts_with(';') {
            listing.header |= line
                .trim_start_matches(';')
                .trim_start()
                .starts_with("dbname:");
        } else if !line.trim().is_empty() {
            listing.entries += 1;
        }
    }
    Ok(listing)
}

/// Check backup `manifest`'s dump: it must have succeeded, and its object
/// must have the manifest's size and SHA-256 and a table of contents.
pub async fn verify(store: &BackupStore, manifest: &Manifest, server: &Pg) -> Verification {
    let mut result = Verification {
        id: manifest.id.clone(),
        ok: false,
        error: None,
        sha256: String::new(),
        size: 0,
        entries: 0,
    };
    let Some(key) = manifest
        .object
        .clone()
        .filter(|_| manifest.status == super::manifest::BackupStatus::Succeeded)
    else {
        result.error = Some(format!(
            "backup {} did not succeed{}; there is no dump to verify",
            manifest.id,
            manifest
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
        return result;
    };
    match list(store, &key, server).await {
        Ok((entries, read)) => {
            result.entries = entries;
            result.size = read.size;
            result.sha256 = read.sha256;
            result.error = mismatch(manifest, &result.sha256, result.size);
            result.ok = result.error.is_none();
        }
        Err(error) => result.error = Some(format!("{error:#}")),
    }
    result
}

/// Why an object read as `sha256` and `size` is not the manifest's dump.
pub fn mismatch(manifest: &Manifest, sha256: &str, size: u64) -> Option<String> {
    if size != manifest.size {
        Some(format!(
            "the dump is {size} bytes, its manifest says {}: it was changed or damaged",
            manifest.size
        ))
    } else if manifest.sha256.as_deref() != Some(sha256) {
        Some(format!(
            "the dump's SHA-256 is {sha256}, its manifest says {}: it was changed or damaged",
            manifest.sha256.as_deref().unwrap_or("nothing")
        ))
    } else {
        None
    }
}

/// Hold a tool's result to be reaped even when streaming failed.
pub async fn reap(tool: Tool, streamed: &anyhow::Result<Read>) -> anyhow::Result<()> {
    if streamed.is_err() {
        tool.kill().await;
        return Ok(());
    }
    tool.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_json_has_the_contract_shape() {
        let ok = Verification {
            id: "20261206T112233Z-manual-3fa9".into(),
            ok: true,
            error: None,
            sha256: "ab".into(),
            size: 10,
            entries: 9,
        };
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({"id": "20261206T112233Z-manual-3fa9", "ok": true,
                               "sha256": "ab", "size": 10, "entries": 9})
        );
        let failed = Verification {
            ok: false,
            error: Some("damaged".into()),
            ..ok
        };
        assert_eq!(serde_json::to_value(&failed).unwrap()["error"], "damaged");
    }
}
