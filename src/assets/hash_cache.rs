//! Content hashes of a local asset tree remembered between pushes, as git's
//! index remembers them: a file whose size, modification time, change time
//! and inode are all unchanged has the content it had, so a re-push of an
//! unchanged tree reads no file at all. Anything changed is hashed again.
//!
//! The cache lives in `${BERTH_CACHE:-~/.cache/berth}/hashes/`, one file per
//! tree (named by the MD5 of its absolute path). It is an optimisation only:
//! when it cannot be read, every file is hashed; when it cannot be written
//! (a full disk, a read-only home), berth warns and the push goes on.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

use super::tree::Digest;

/// Files modified this recently are not remembered: a change within the
/// clock's granularity could leave their times as they were.
const SETTLED: Duration = Duration::from_secs(1);

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

impl Stamp {
    /// The stamp of a file, from its metadata.
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
        }
    }

    /// Whether the file was last changed long enough ago to be remembered.
    fn settled(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        now_ns - self.mtime_ns.max(self.ctime_ns) > SETTLED.as_nanos() as i128
    }
}

/// One remembered file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    stamp: Stamp,
    md5s: Vec<String>,
    multipart: bool,
}

/// The remembered hashes of one tree.
#[derive(Debug, Default)]
pub struct HashCache {
    file: Option<PathBuf>,
    entries: HashMap<String, Remembered>,
}

impl HashCache {
    /// The cache of the tree at `root`, empty if there is none yet.
    pub fn open(root: &Path) -> HashCache {
        let Some(file) = cache_file(root) else {
            return HashCache::default();
        };
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        HashCache {
            file: Some(file),
            entries,
        }
    }

    /// The digest of `relative` if its stamp is the remembered one.
    pub fn get(&self, relative: &str, stamp: &Stamp) -> Option<Digest> {
        let remembered = self.entries.get(relative)?;
        if remembered.stamp != *stamp {
            return None;
        }
        let md5s = remembered
            .md5s
            .iter()
            .map(|hex| parse_md5(hex))
            .collect::<Option<Vec<_>>>()?;
        Some(Digest {
            md5s,
            multipart: remembered.multipart,
        })
    }

    /// Remember the digests of this push's files (only those settled), forgetting the rest.
    pub fn save(&self, files: impl Iterator<Item = (String, Stamp, Digest)>) {
        let Some(path) = &self.file else { return };
        let now = SystemTime::now();
        let entries: HashMap<String, Remembered> = files
            .filter(|(_, stamp, _)| stamp.settled(now))
            .map(|(relative, stamp, digest)| {
                let md5s = digest.md5s.iter().map(hex::encode).collect();
                let remembered = Remembered {
                    stamp,
                    md5s,
                    multipart: digest.multipart,
                };
                (relative, remembered)
            })
            .collect();
        if entries.is_empty() {
            let _ = std::fs::remove_file(path);
            return;
        }
        // A cache is no reason to fail a push or a deploy: said, not raised.
        if let Err(error) = write_atomically(path, &entries) {
            tracing::warn!(
                "the asset hash cache {} could not be written ({error}); the upload is unaffected, \
                 but the next push hashes every file again. Free space there or point BERTH_CACHE elsewhere",
                path.display()
            );
        }
        forget_stale(path.parent().unwrap_or(Path::new(".")), now);
    }
}

/// Caches of trees not pushed for this long are deleted.
const STALE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Delete the caches in `dir` of trees not pushed for [`STALE`] (best effort).
fn forget_stale(dir: &Path, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let modified = entry.metadata().and_then(|m| m.modified());
        if modified.is_ok_and(|m| now.duration_since(m).unwrap_or_default() > STALE) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Where the cache of the tree at `root` lives.
fn cache_file(root: &Path) -> Option<PathBuf> {
    let base = crate::cache_dir::base()?;
    let root = std::path::absolute(root).ok()?;
    let name = hex::encode(Md5::digest(root.as_os_str().as_encoded_bytes()));
    Some(base.join("hashes").join(format!("{name}.json")))
}

/// Write `entries` to `path` through a temporary file, so a reader never sees half.
fn write_atomically(path: &Path, entries: &HashMap<String, Remembered>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(&serde_json::to_vec(entries)?)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Lowercase hexadecimal.
/// 32 hexadecimal digits as 16 bytes.
fn parse_md5(digits: &str) -> Option<[u8; 16]> {
    let mut md5 = [0; 16];
    hex::decode_to_slice(digits, &mut md5).ok()?;
    Some(md5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_digest_is_used_only_while_the_stamp_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.js");
        std::fs::write(&file, "one").unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut stamp = Stamp::of(&std::fs::metadata(&file).unwrap());
        // ctime cannot be set back; pretend the file settled long ago.
        stamp.ctime_ns = stamp.mtime_ns;
        let digest = Digest::of_bytes(b"one");
        let cache = HashCache {
            file: Some(cache_dir.path().join("t.json")),
            entries: HashMap::new(),
        };
        cache.save([("a.js".to_string(), stamp, digest.clone())].into_iter());
        let reopened = HashCache {
            file: cache.file.clone(),
            entries: serde_json::from_slice(&std::fs::read(cache.file.as_ref().unwrap()).unwrap())
                .unwrap(),
        };
        assert_eq!(reopened.get("a.js", &stamp), Some(digest));
        let changed = Stamp { size: 4, ..stamp };
        assert_eq!(reopened.get("a.js", &changed), None);
        assert_eq!(reopened.get("b.js", &stamp), None);
    }

    #[test]
    fn files_changed_just_now_are_not_remembered() {
        let cache_dir = tempfile::tempdir().unwrap();
        let now_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let fresh = Stamp {
            size: 3,
            mtime_ns: now_ns,
            ctime_ns: now_ns,
            inode: 1,
        };
        let cache = HashCache {
            file: Some(cache_dir.path().join("t.json")),
            entries: HashMap::new(),
        };
        cache.save([("a.js".to_string(), fresh, Digest::of_bytes(b"one"))].into_iter());
        assert!(
            !cache.file.unwrap().exists(),
            "nothing to remember, no file"
        );
    }

    #[test]
    fn md5s_round_trip_through_hex() {
        let md5: [u8; 16] = Md5::digest(b"x").into();
        assert_eq!(parse_md5(&hex::encode(md5)), Some(md5));
        assert_eq!(parse_md5("zz"), None);
    }
}
