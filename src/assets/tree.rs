//! The files of a local asset tree, and the S3 ETag each would get, so that
//! what the bucket already holds is never uploaded again.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use md5::{Digest as _, Md5};

use super::hash_cache::Stamp;
use crate::error::input_error;

/// Files at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;

/// The size of each part of a multipart upload.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;

/// A regular file of an asset tree.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// The path below the tree's root, with `/` separators: the key after the prefix.
    pub relative: String,
    /// Where the file is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its size, times and inode when walked, for the hash cache.
    pub stamp: Stamp,
}

/// Every regular file below `root`, symbolic links followed, sorted by path.
pub fn walk(root: &Path) -> anyhow::Result<Vec<LocalFile>> {
    if !root.is_dir() {
        return Err(input_error(format!(
            "the asset directory {} does not exist or is not a directory; build the assets \
             first, or fix `assets.from.dir` in berth.yaml (or --from-dir)",
            root.display()
        )));
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry =
            entry.with_context(|| format!("reading the asset directory {}", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let below = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let relative = below
            .components()
            .map(|part| part.as_os_str().to_str())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                input_error(format!(
                    "{} has a name that is not UTF-8, which an S3 key cannot hold; rename it",
                    entry.path().display()
                ))
            })?
            .join("/");
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        files.push(LocalFile {
            relative,
            path: entry.into_path(),
            size: meta.len(),
            stamp: Stamp::of(&meta),
        });
    }
    Ok(files)
}

/// The number of parts a file of `size` bytes is uploaded in (1: a single PUT).
pub fn parts(size: u64) -> u64 {
    if size < MULTIPART_THRESHOLD {
        1
    } else {
        size.div_ceil(PART_SIZE)
    }
}

/// The MD5s of what berth uploads for one object: the whole content for a
/// single PUT, or one per part for a multipart upload. S3 derives the ETag
/// from them, and each is sent as Content-MD5 so S3 rejects a corrupted body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// One MD5 per part (a single PUT has one part).
    pub md5s: Vec<[u8; 16]>,
    /// Whether the object is uploaded in parts.
    pub multipart: bool,
}

impl Digest {
    /// The ETag S3 gives the object: the content's MD5, or for a multipart
    /// upload the MD5 of the parts' MD5s followed by `-<parts>`.
    pub fn etag(&self) -> String {
        if !self.multipart {
            return hex::encode(self.md5s[0]);
        }
        let mut all = Md5::new();
        for md5 in &self.md5s {
            all.update(md5);
        }
        format!("{}-{}", hex::encode(all.finalize()), self.md5s.len())
    }

    /// The digest of bytes uploaded with a single PUT.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest {
            md5s: vec![Md5::digest(bytes).into()],
            multipart: false,
        }
    }

    /// The digest of a file of `size` bytes, uploaded the way berth uploads
    /// it (in parts of [`PART_SIZE`] from [`MULTIPART_THRESHOLD`] up). Reads the file once.
    pub fn of_file(path: &Path, size: u64) -> anyhow::Result<Digest> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let multipart = parts(size) > 1;
        let part_size = if multipart { PART_SIZE } else { u64::MAX };
        let mut buffer = vec![0; 256 * 1024];
        let mut md5s = Vec::new();
        let mut part = Md5::new();
        let mut in_part = 0;
        loop {
            let read = file
                .read(&mut buffer)
                .with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                break;
            }
            let mut chunk = &buffer[..read];
            while !chunk.is_empty() {
                let take = chunk
                    .len()
                    .min((part_size - in_part).min(usize::MAX as u64) as usize);
                part.update(&chunk[..take]);
                in_part += take as u64;
                chunk = &chunk[take..];
                if in_part == part_size {
                    md5s.push(part.finalize_reset().into());
                    in_part = 0;
                }
            }
        }
        if in_part > 0 || md5s.is_empty() {
            md5s.push(part.finalize().into());
        }
        Ok(Digest { md5s, multipart })
    }
}

/// Lowercase hexadecimal.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_have_the_md5_of_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"hello\n").unwrap();
        let digest = Digest::of_file(&path, 6).unwrap();
        assert_eq!(digest.etag(), "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(digest, Digest::of_bytes(b"hello\n"));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            Digest::of_file(&empty, 0).unwrap().etag(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn large_files_have_the_multipart_etag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let size = MULTIPART_THRESHOLD + 123;
        let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mut digests = Vec::new();
        for part in content.chunks(PART_SIZE as usize) {
            digests.extend_from_slice(&Md5::digest(part));
        }
        let expected = format!("{}-3", hex::encode(Md5::digest(&digests)));
        assert_eq!(parts(size), 3);
        assert_eq!(Digest::of_file(&path, size).unwrap().etag(), expected);
    }

    #[test]
    fn walking_gives_slash_separated_sorted_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("js/vendor")).unwrap();
        std::fs::write(dir.path().join("js/vendor/b.js"), "b").unwrap();
        std::fs::write(dir.path().join("index.html"), "<html>").unwrap();
        let files = walk(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| (f.relative.as_str(), f.size))
            .collect();
        assert_eq!(names, [("index.html", 6), ("js/vendor/b.js", 1)]);
    }

    #[test]
    fn a_missing_directory_is_an_input_error() {
        let error = walk(Path::new("/nonexistent/berth-assets")).unwrap_err();
        assert_eq!(crate::error::exit_code_number(&error), 2);
        assert!(error.to_string().contains("/nonexistent/berth-assets"));
    }
}
