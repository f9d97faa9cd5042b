//! Applying an image's layers, in order, to a directory: the part of each
//! layer's tar archive under one path inside the image, with whiteouts.
//!
//! Only regular files and directories are ever written, so nothing on disk
//! points outside the directory: symlinks inside the path become copies of
//! their targets once every layer is applied, hardlinks become copies at
//! once, and an entry whose path climbs with `..` fails the layer.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use flate2::read::MultiGzDecoder;
use tar::EntryType;
use tracing::debug;

use crate::error::input_error;

/// A file name that hides the same name without the prefix in lower layers.
const WHITEOUT: &str = ".wh.";
/// A file name that hides everything lower layers put in its directory.
const OPAQUE: &str = ".wh..wh..opq";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Symlink chains longer than this are left out (Linux's own limit).
const MAX_LINK_HOPS: usize = 40;
/// Names remembered per directory for the "nothing found" hint.
const MAX_HINTS: usize = 12;

/// Where an image path lies relative to the extracted path.
#[derive(Debug, PartialEq)]
enum Place {
    /// Below it, at this relative path.
    Under(PathBuf),
    /// The extracted path itself, or a directory above it.
    AtOrAbove,
    /// Elsewhere in the image.
    Outside,
}

/// How much ended up in the directory.
#[derive(Debug, PartialEq)]
pub(super) struct Totals {
    /// Regular files.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

/// The extraction in progress: the directory being filled and what the
/// layers applied so far left in it.
pub(super) struct Tree {
    root: PathBuf,
    prefix: Vec<OsString>,
    /// Paths the current layer wrote: a whiteout hides lower layers only.
    current: BTreeSet<PathBuf>,
    /// Symlinks to paths below the prefix, copied once every layer is applied.
    links: BTreeMap<PathBuf, PathBuf>,
    /// Names seen in the prefix and in each directory above it, for the
    /// hint when nothing is found.
    seen: Vec<BTreeSet<String>>,
}

/// The components of an absolute path inside an image (`/app/static`), or
/// `None` when it is relative or climbs with `..`.
pub(super) fn image_path(path: &str) -> Option<Vec<OsString>> {
    path.starts_with('/')
        .then(|| entry_components(Path::new(path)))
        .flatten()
}

/// The components of a tar entry's path (`./app/x`, `app/x`, `/app/x`), or
/// `None` when it climbs with `..`.
fn entry_components(path: &Path) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name.to_os_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Where a symlink in directory `parent` pointing at `target` leads, resolved
/// lexically inside the image: `..` stops at the image root, as in a chroot.
fn resolve_link(parent: &[OsString], target: &Path) -> Vec<OsString> {
    let mut out = if target.is_absolute() {
        Vec::new()
    } else {
        parent.to_vec()
    };
    for component in target.components() {
        match component {
            Component::Normal(name) => out.push(name.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Where `path` lies relative to `prefix` (both as image components).
fn place(prefix: &[OsString], path: &[OsString]) -> Place {
    if path.len() > prefix.len() && path.starts_with(prefix) {
        Place::Under(path[prefix.len()..].iter().collect())
    } else if prefix.starts_with(path) {
        Place::AtOrAbove
    } else {
        Place::Outside
    }
}

/// Whether anything is at `path` on disk (a dangling name counts).
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

impl Tree {
    /// Fill the existing empty directory `root` with what the image has
    /// below `prefix`.
    pub(super) fn new(root: PathBuf, prefix: Vec<OsString>) -> Self {
        let seen = vec![BTreeSet::new(); prefix.len()];
        Tree {
            root,
            prefix,
            current: BTreeSet::new(),
            links: BTreeMap::new(),
            seen,
        }
    }

    /// Apply one layer, read as a gzip or uncompressed tar stream, on top of
    /// the layers before it. Reads `raw` to its end, so a verifying stream
    /// gets to check its digest.
    pub(super) fn apply_layer(&mut self, raw: impl Read) -> Result<()> {
        self.current.clear();
        let mut raw = BufReader::new(raw);
        let head = raw.fill_buf().context("reading the layer")?;
        if head.starts_with(&ZSTD_MAGIC) {
            return Err(input_error(
                "the layer is zstd-compressed, and berth reads gzip and uncompressed layers only; \
                 rebuild the image with gzip layers (docker buildx: --output type=image,compression=gzip)",
            ));
        }
        let gzip = head.starts_with(&GZIP_MAGIC);
        {
            let decoded: Box<dyn Read + '_> = if gzip {
                Box::new(MultiGzDecoder::new(&mut raw))
            } else {
                Box::new(&mut raw)
            };
            let mut archive = tar::Archive::new(decoded);
            for entry in archive
                .entries()
                .context("reading the layer's tar archive")?
            {
                let mut entry = entry.context("reading the layer's tar archive")?;
                self.apply_entry(&mut entry)?;
            }
            io::copy(&mut archive.into_inner(), &mut io::sink())
                .context("reading the layer's tar archive to its end")?;
        }
        io::copy(&mut raw, &mut io::sink()).context("reading the layer to its end")?;
        Ok(())
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let path = entry
            .path()
            .context("reading a tar entry's path")?
            .into_owned();
        let components = entry_components(&path).ok_or_else(|| {
            input_error(format!(
                "the layer has an entry `{}` that climbs out of its directory with `..`; \
                 berth refuses such layers, rebuild the image",
                path.display()
            ))
        })?;
        let Some((name, parent)) = components.split_last() else {
            return Ok(()); // the archive's root directory
        };
        if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(WHITEOUT)) {
            return if name == OPAQUE {
                match place(&self.prefix, parent) {
                    Place::Under(dir) => self.hide_below(&dir),
                    Place::AtOrAbove => self.hide_below(Path::new("")),
                    Place::Outside => Ok(()),
                }
            } else if hidden.starts_with(WHITEOUT) {
                Ok(()) // other overlay metadata, such as .wh..wh.plnk
            } else {
                let mut target = parent.to_vec();
                target.push(hidden.into());
                match place(&self.prefix, &target) {
                    Place::Under(rel) => self.remove_lower(&rel),
                    Place::AtOrAbove => self.hide_below(Path::new("")),
                    Place::Outside => Ok(()),
                }
            };
        }
        self.note_seen(&components);
        let kind = entry.header().entry_type();
        let rel = match place(&self.prefix, &components) {
            Place::Under(rel) => rel,
            // The path (or a directory above it) replaced by a non-directory
            // hides everything lower layers put below it.
            Place::AtOrAbove if !kind.is_dir() => return self.hide_below(Path::new("")),
            Place::AtOrAbove | Place::Outside => return Ok(()),
        };
        match kind {
            EntryType::Directory => self.write_dir(&rel),
            EntryType::Regular | EntryType::Continuous => self.write_file(&rel, entry),
            EntryType::Symlink => {
                let target = entry.link_name().context("reading a symlink's target")?;
                let target = resolve_link(parent, &target.unwrap_or_default());
                self.write_symlink(&rel, &target)
            }
            EntryType::Link => {
                let target = entry.link_name().context("reading a hardlink's target")?;
                let target = target.as_deref().and_then(entry_components);
                self.write_hardlink(&rel, target)
            }
            other => {
                debug!(path = %path.display(), kind = ?other, "skipping a special file");
                Ok(())
            }
        }
    }

    /// Remember a name in the prefix or in a directory above it.
    fn note_seen(&mut self, components: &[OsString]) {
        let common = components
            .iter()
            .zip(&self.prefix)
            .take_while(|(a, b)| a == b)
            .count();
        if common < self.prefix.len() && components.len() > common {
            let names = &mut self.seen[common];
            if names.len() < MAX_HINTS {
                names.insert(components[common].to_string_lossy().into_owned());
            }
        }
    }

    fn write_dir(&mut self, rel: &Path) -> Result<()> {
        self.make_parents(rel)?;
        let dest = self.root.join(rel);
        if exists(&dest) && !dest.is_dir() {
            self.clear(rel)?;
        }
        self.links.remove(rel);
        if !dest.is_dir() {
            fs::create_dir(&dest).with_context(|| format!("creating {}", dest.display()))?;
        }
        self.current.insert(rel.to_path_buf());
        Ok(())
    }

    fn write_file(&mut self, rel: &Path, content: &mut impl Read) -> Result<()> {
        self.make_parents(rel)?;
        self.clear(rel)?;
        let dest = self.root.join(rel);
        let mut file =
            File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        io::copy(content, &mut file).with_context(|| format!("writing {}", dest.display()))?;
        self.current.insert(rel.to_path_buf());
        Ok(())
    }

    fn write_symlink(&mut self, rel: &Path, target: &[OsString]) -> Result<()> {
        self.clear(rel)?;
        self.current.insert(rel.to_path_buf());
        match place(&self.prefix, target) {
            Place::Under(target) => {
                self.links.insert(rel.to_path_buf(), target);
            }
            _ => debug!(link = %rel.display(), "skipping a symlink that points outside the path"),
        }
        Ok(())
    }

    fn write_hardlink(&mut self, rel: &Path, target: Option<Vec<OsString>>) -> Result<()> {
        self.clear(rel)?;
        let Some(Place::Under(target)) = target.map(|t| place(&self.prefix, &t)) else {
            debug!(link = %rel.display(), "skipping a hardlink to a file outside the path");
            return Ok(());
        };
        if let Some(further) = self.links.get(&target).cloned() {
            self.links.insert(rel.to_path_buf(), further);
        } else if self.root.join(&target).is_file() {
            self.make_parents(rel)?;
            let (from, to) = (self.root.join(&target), self.root.join(rel));
            fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        } else {
            debug!(link = %rel.display(), "skipping a hardlink to something that is not a file");
            return Ok(());
        }
        self.current.insert(rel.to_path_buf());
        Ok(())
    }

    /// Make the directories above `rel`, replacing files that lower layers
    /// had at those paths.
    fn make_parents(&mut self, rel: &Path) -> Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut dir = PathBuf::new();
        for name in parent.components() {
            dir.push(name);
            let path = self.root.join(&dir);
            if path.is_dir() {
                continue;
            }
            if exists(&path) {
                self.clear(&dir)?;
            }
            self.links.remove(&dir);
            fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        Ok(())
    }

    /// Whether the current layer wrote `rel` or anything below it. Paths
    /// order by component, so `rel`'s descendants sort right after it.
    fn written_here(&self, rel: &Path) -> bool {
        self.current
            .range(rel.to_path_buf()..)
            .next()
            .is_some_and(|p| p.starts_with(rel))
    }

    /// Hide what lower layers put at `rel`, keeping what this layer wrote.
    fn remove_lower(&mut self, rel: &Path) -> Result<()> {
        if !self.written_here(rel) {
            return self.clear(rel);
        }
        if self.current.contains(rel) && !self.root.join(rel).is_dir() {
            return Ok(());
        }
        self.hide_below(rel)
    }

    /// Hide what lower layers put inside directory `rel` (`""` for the
    /// extracted path itself), keeping what this layer wrote.
    fn hide_below(&mut self, rel: &Path) -> Result<()> {
        let mut children: BTreeSet<PathBuf> = self
            .links_at_or_under(rel)
            .into_iter()
            .filter(|link| link.parent() == Some(rel))
            .collect();
        let dir = self.root.join(rel);
        if dir.is_dir() {
            for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
                children.insert(rel.join(entry.file_name()));
            }
        }
        for child in children {
            self.remove_lower(&child)?;
        }
        Ok(())
    }

    /// Remove whatever is at `rel` (file, directory, pending symlinks).
    fn clear(&mut self, rel: &Path) -> Result<()> {
        let path = self.root.join(rel);
        let removed = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
        for link in self.links_at_or_under(rel) {
            self.links.remove(&link);
        }
        Ok(())
    }

    /// The pending symlinks at `rel` or below it (they sort right after it).
    fn links_at_or_under(&self, rel: &Path) -> Vec<PathBuf> {
        self.links
            .range(rel.to_path_buf()..)
            .map(|(link, _)| link)
            .take_while(|link| link.starts_with(rel))
            .cloned()
            .collect()
    }

    /// Copy each symlink's final target into its place and count what the
    /// directory holds.
    pub(super) fn finish(&mut self) -> Result<Totals> {
        let links = std::mem::take(&mut self.links);
        for (link, target) in &links {
            let mut target = target;
            for _ in 0..MAX_LINK_HOPS {
                match links.get(target) {
                    Some(next) => target = next,
                    None => break,
                }
            }
            let from = self.root.join(target);
            if from.is_file() {
                self.make_parents(link)?;
                let to = self.root.join(link);
                fs::copy(&from, &to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            } else {
                debug!(link = %link.display(), "skipping a symlink that does not lead to a file");
            }
        }
        count(&self.root)
    }

    /// What the image has in the deepest existing directory on the way to
    /// the prefix, as "/app: assets, src", for an error when nothing is found.
    pub(super) fn hint(&self) -> Option<String> {
        let (depth, names) = self
            .seen
            .iter()
            .enumerate()
            .rev()
            .find(|(_, names)| !names.is_empty())?;
        let dir: PathBuf = self.prefix[..depth].iter().collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Some(format!("/{}: {}", dir.display(), names.join(", ")))
    }
}

/// The regular files below `root` and their total size.
fn count(root: &Path) -> Result<Totals> {
    let mut totals = Totals { files: 0, bytes: 0 };
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                totals.files += 1;
                totals.bytes += meta.len();
            }
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components(path: &str) -> Vec<OsString> {
        entry_components(Path::new(path)).unwrap()
    }

    /// One tar entry of a test layer.
    enum Item<'a> {
        File(&'a str, &'a str),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
    }

    fn tar(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            match *item {
                Item::File(path, content) => {
                    header.set_size(content.len() as u64);
                    builder
                        .append_data(&mut header, path, content.as_bytes())
                        .unwrap();
                }
                Item::Dir(path) => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_size(0);
                    builder.append_data(&mut header, path, io::empty()).unwrap();
                }
                Item::Symlink(path, target) | Item::Hardlink(path, target) => {
                    let kind = match item {
                        Item::Symlink(..) => EntryType::Symlink,
                        _ => EntryType::Link,
                    };
                    header.set_entry_type(kind);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut encoder, data).unwrap();
        encoder.finish().unwrap()
    }

    /// Apply the layers with prefix `/app/static`; the resulting files and
    /// contents, sorted.
    fn extract(layers: &[Vec<u8>]) -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::new(dir.path().to_path_buf(), components("/app/static"));
        for layer in layers {
            tree.apply_layer(layer.as_slice()).unwrap();
        }
        let totals = tree.finish().unwrap();
        let mut files = Vec::new();
        let mut dirs = vec![dir.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for entry in fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                assert!(!path.is_symlink(), "no symlink is written: {path:?}");
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(dir.path()).unwrap();
                    files.push((
                        rel.display().to_string(),
                        fs::read_to_string(&path).unwrap(),
                    ));
                }
            }
        }
        files.sort();
        assert_eq!(totals.files, files.len() as u64);
        files
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn entry_paths_lose_dot_and_slash_prefixes_and_refuse_to_climb() {
        assert_eq!(components("./app/static/a"), components("app/static/a"));
        assert_eq!(components("/app/static/a"), components("app/static/a"));
        assert_eq!(entry_components(Path::new("app/../etc/passwd")), None);
        assert_eq!(entry_components(Path::new("../x")), None);
    }

    #[test]
    fn the_extracted_path_must_be_absolute_without_climbing() {
        assert_eq!(image_path("/app/static"), Some(components("app/static")));
        assert_eq!(image_path("/"), Some(vec![]));
        assert_eq!(image_path("app/static"), None);
        assert_eq!(image_path("/app/../etc"), None);
    }

    #[test]
    fn paths_map_below_the_prefix_by_whole_components() {
        let prefix = components("app/static");
        assert_eq!(
            place(&prefix, &components("app/static/css/a.css")),
            Place::Under(PathBuf::from("css/a.css"))
        );
        assert_eq!(place(&prefix, &components("app/static")), Place::AtOrAbove);
        assert_eq!(place(&prefix, &components("app")), Place::AtOrAbove);
        assert_eq!(place(&prefix, &[]), Place::AtOrAbove);
        assert_eq!(place(&prefix, &components("app/statics/a")), Place::Outside);
        assert_eq!(place(&prefix, &components("etc/passwd")), Place::Outside);
        assert_eq!(
            place(&[], &components("etc/passwd")),
            Place::Under("etc/passwd".into())
        );
    }

    #[test]
    fn symlink_targets_resolve_inside_the_image_root() {
        let parent = components("app/static/js");
        let resolve = |target: &str| resolve_link(&parent, Path::new(target));
        assert_eq!(
            resolve("main.1a2b.js"),
            components("app/static/js/main.1a2b.js")
        );
        assert_eq!(resolve("../css/a.css"), components("app/static/css/a.css"));
        assert_eq!(resolve("/app/static/a"), components("app/static/a"));
        assert_eq!(
            resolve("../../../../../../etc/passwd"),
            components("etc/passwd")
        );
    }

    #[test]
    fn later_layers_override_and_only_the_path_is_extracted() {
        let lower = tar(&[
            Item::Dir("app/static"),
            Item::File("app/static/a.css", "a1"),
            Item::File("app/static/b/c.js", "c1"),
            Item::File("app/main.py", "print()"),
            Item::File("app/statics/x", "x"),
        ]);
        let upper = tar(&[Item::File("./app/static/a.css", "a2")]);
        assert_eq!(
            extract(&[lower, gzip(&upper)]),
            pairs(&[("a.css", "a2"), ("b/c.js", "c1")])
        );
    }

    #[test]
    fn a_whiteout_removes_a_file_or_directory_of_lower_layers_only() {
        let lower = tar(&[
            Item::File("app/static/gone.css", "g"),
            Item::File("app/static/old/x.js", "x"),
            Item::File("app/static/kept.css", "k"),
        ]);
        let upper = tar(&[
            Item::File("app/static/.wh.gone.css", ""),
            Item::File("app/static/.wh.old", ""),
            Item::File("app/static/.wh..wh.plnk", ""),
        ]);
        assert_eq!(extract(&[lower, upper]), pairs(&[("kept.css", "k")]));
    }

    #[test]
    fn an_opaque_directory_hides_lower_contents_but_keeps_its_own_in_any_order() {
        let lower = tar(&[
            Item::File("app/static/img/old.png", "o"),
            Item::File("app/static/img/sub/deep.png", "d"),
            Item::File("app/static/top.css", "t"),
        ]);
        // The marker comes after a file of its own layer: that file stays.
        let upper = tar(&[
            Item::File("app/static/img/new.png", "n"),
            Item::File("app/static/img/.wh..wh..opq", ""),
        ]);
        assert_eq!(
            extract(&[lower, upper]),
            pairs(&[("img/new.png", "n"), ("top.css", "t")])
        );
    }

    #[test]
    fn whiting_out_the_path_or_a_parent_hides_everything_lower() {
        let lower = tar(&[Item::File("app/static/a", "a")]);
        let whiteout = tar(&[Item::File("app/.wh.static", "")]);
        assert_eq!(extract(&[lower.clone(), whiteout]), pairs(&[]));
        let opaque_parent = tar(&[
            Item::File("app/.wh..wh..opq", ""),
            Item::File("app/static/b", "b"),
        ]);
        assert_eq!(extract(&[lower, opaque_parent]), pairs(&[("b", "b")]));
    }

    #[test]
    fn a_file_replaces_a_directory_and_a_directory_replaces_a_file() {
        let lower = tar(&[
            Item::File("app/static/d/x", "x"),
            Item::File("app/static/f", "f"),
        ]);
        let upper = tar(&[
            Item::File("app/static/d", "now a file"),
            Item::File("app/static/f/y", "y"),
        ]);
        assert_eq!(
            extract(&[lower, upper]),
            pairs(&[("d", "now a file"), ("f/y", "y")])
        );
    }

    #[test]
    fn links_inside_the_path_become_copies_and_others_are_skipped() {
        let layer = tar(&[
            Item::Symlink("app/static/index.html", "index.1a2b.html"),
            Item::File("app/static/index.1a2b.html", "<html>"),
            Item::Hardlink("app/static/copy.html", "app/static/index.1a2b.html"),
            Item::Symlink("app/static/chain.html", "/app/static/index.html"),
            Item::Symlink("app/static/passwd", "../../etc/passwd"),
            Item::Symlink("app/static/dangling", "nowhere"),
            Item::File("etc/passwd", "root"),
            Item::Hardlink("app/static/shadow", "etc/passwd"),
        ]);
        assert_eq!(
            extract(&[layer]),
            pairs(&[
                ("chain.html", "<html>"),
                ("copy.html", "<html>"),
                ("index.1a2b.html", "<html>"),
                ("index.html", "<html>"),
            ])
        );
    }

    #[test]
    fn a_whiteout_removes_a_lower_symlink_and_a_later_layer_updates_its_target() {
        let lower = tar(&[
            Item::Symlink("app/static/gone", "a"),
            Item::Symlink("app/static/latest", "a"),
            Item::File("app/static/a", "v1"),
        ]);
        let upper = tar(&[
            Item::File("app/static/.wh.gone", ""),
            Item::File("app/static/a", "v2"),
        ]);
        assert_eq!(
            extract(&[lower, upper]),
            pairs(&[("a", "v2"), ("latest", "v2")])
        );
    }

    #[test]
    fn an_entry_climbing_with_dot_dot_fails_the_layer_as_an_input_error() {
        let mut header = tar::Header::new_gnu();
        let name = b"app/static/../../etc/x";
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_size(1);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b"x"[..]).unwrap();
        let layer = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::new(dir.path().to_path_buf(), components("/app/static"));
        let error = tree.apply_layer(layer.as_slice()).unwrap_err();
        assert_eq!(crate::error::exit_code_number(&error), 2);
        assert!(format!("{error:#}").contains("climbs out"), "{error:#}");
    }

    #[test]
    fn a_layer_is_read_to_its_end_so_the_stream_checks_its_digest() {
        // Tar writers pad past the end-of-archive blocks; the registry
        // stream verifies the digest only once it is read to its end.
        let mut padded = tar(&[Item::File("app/static/a", "a")]);
        padded.extend_from_slice(&[0; 64 << 10]);
        for layer in [padded.clone(), gzip(&padded)] {
            let dir = tempfile::tempdir().unwrap();
            let mut tree = Tree::new(dir.path().to_path_buf(), components("/app/static"));
            let mut rest = layer.as_slice();
            tree.apply_layer(&mut rest).unwrap();
            assert!(rest.is_empty(), "{} bytes left unread", rest.len());
        }
    }

    #[test]
    fn a_zstd_layer_is_an_input_error_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::new(dir.path().to_path_buf(), components("/app/static"));
        let layer = [ZSTD_MAGIC.as_slice(), &[0; 16]].concat();
        let error = tree.apply_layer(layer.as_slice()).unwrap_err();
        assert_eq!(crate::error::exit_code_number(&error), 2);
        assert!(
            format!("{error:#}").contains("compression=gzip"),
            "{error:#}"
        );
    }

    #[test]
    fn the_hint_lists_the_deepest_directory_on_the_way_to_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::new(dir.path().to_path_buf(), components("/app/static"));
        let layer = tar(&[
            Item::File("app/assets/a.css", "a"),
            Item::File("app/main.py", "m"),
            Item::File("etc/hosts", "h"),
        ]);
        tree.apply_layer(layer.as_slice()).unwrap();
        assert_eq!(tree.finish().unwrap(), Totals { files: 0, bytes: 0 });
        assert_eq!(tree.hint().as_deref(), Some("/app: assets, main.py"));
    }
}
