//! Test images without a Docker daemon: layers described in memory (files,
//! directories, whiteouts, large incompressible files), written as tar.gz
//! files and pushed to the local registry with crane.

use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{LocalEnv, unique_name};

/// The tag test images get, shaped like the commit SHA CI tags with.
pub const TAG: &str = "1a2b3c4";

/// One entry of a layer, in tar order.
enum Entry {
    File(String, Vec<u8>),
    Dir(String),
}

/// One layer of a test image, built entry by entry in tar order.
#[derive(Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Layer {
        Layer::default()
    }

    /// A regular file at `path` (relative to the image root, e.g. `app/static/a.css`).
    pub fn file(mut self, path: &str, contents: impl AsRef<[u8]>) -> Layer {
        self.entries
            .push(Entry::File(path.into(), contents.as_ref().to_vec()));
        self
    }

    /// A directory at `path`.
    pub fn dir(mut self, path: &str) -> Layer {
        self.entries.push(Entry::Dir(path.into()));
        self
    }

    /// A whiteout hiding `path` of lower layers: the file `dir/.wh.name`.
    pub fn whiteout(self, path: &str) -> Layer {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let marker = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&marker, "")
    }

    /// An opaque whiteout hiding everything lower layers put in `dir`.
    pub fn opaque(self, dir: &str) -> Layer {
        self.file(&format!("{dir}/.wh..wh..opq"), "")
    }

    /// The layer as a gzip-compressed tar file at `path`.
    fn write(&self, path: &Path) {
        let file = std::fs::File::create(path).expect("create layer file");
        let mut builder = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            match entry {
                Entry::File(path, contents) => {
                    header.set_mode(0o644);
                    header.set_size(contents.len() as u64);
                    builder
                        .append_data(&mut header, path, contents.as_slice())
                        .expect("append file");
                }
                Entry::Dir(path) => {
                    header.set_mode(0o755);
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, path, std::io::empty())
                        .expect("append directory");
                }
            }
        }
        builder
            .into_inner()
            .expect("finish tar")
            .finish()
            .expect("finish gzip");
    }
}

/// `size` pseudo-random bytes, the same for the same `seed`: a large file
/// gzip cannot shrink, so its layer is as large as the file.
pub fn noise(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// The manifest media types of a pushed image.
#[derive(Clone, Copy)]
pub enum MediaTypes {
    /// Docker image manifest v2 schema 2 (crane's default).
    Docker,
    /// OCI image manifest.
    Oci,
}

/// An image in the local registry.
pub struct Pushed {
    /// `127.0.0.1:25000/berth-test/NAME-PID-N`.
    pub repository: String,
    /// Its tag.
    pub tag: String,
}

impl Pushed {
    /// `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// crane with the local environment's variables.
fn crane(env: &LocalEnv, args: &[&str]) -> String {
    let output = env
        .command(env.var("BERTH_LOCAL_CRANE"))
        .args(args)
        .output()
        .expect("run crane");
    assert!(
        output.status.success(),
        "crane {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("crane prints UTF-8")
}

/// Push an image of `layers` (lowest first) to a fresh repository of the
/// local registry, tagged [`TAG`].
pub fn push(env: &LocalEnv, name: &str, media: MediaTypes, layers: &[Layer]) -> Pushed {
    let registry = env.var("BERTH_LOCAL_REGISTRY");
    let pushed = Pushed {
        repository: format!("{registry}/berth-test/{}", unique_name(name)),
        tag: TAG.to_string(),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["append".to_string(), "--insecure".to_string()];
    for (i, layer) in layers.iter().enumerate() {
        let file = dir.path().join(format!("layer{i}.tar.gz"));
        layer.write(&file);
        args.extend(["--new_layer".to_string(), file.display().to_string()]);
    }
    if let MediaTypes::Oci = media {
        args.push("--oci-empty-base".into());
    }
    args.extend(["--new_tag".to_string(), pushed.reference()]);
    crane(env, &args.iter().map(String::as_str).collect::<Vec<_>>());
    pushed
}

/// Set the platform (`linux/arm64`) in a pushed image's config, in place.
pub fn set_platform(env: &LocalEnv, image: &Pushed, platform: &str) {
    let reference = image.reference();
    crane(
        env,
        &[
            "mutate",
            "--insecure",
            &reference,
            "--set-platform",
            platform,
            "--tag",
            &reference,
        ],
    );
}

/// Push an OCI image index of `images` (in that order) as `name`.
pub fn push_index(env: &LocalEnv, name: &str, images: &[&Pushed]) -> Pushed {
    let index = Pushed {
        repository: images[0].repository.clone(),
        tag: unique_name(name),
    };
    let mut args = vec!["index".to_string(), "append".into(), "--insecure".into()];
    for image in images {
        args.extend(["--manifest".to_string(), image.reference()]);
    }
    args.extend(["--tag".to_string(), index.reference()]);
    crane(env, &args.iter().map(String::as_str).collect::<Vec<_>>());
    index
}

/// The manifest digest the registry reports for `reference`.
pub fn digest(env: &LocalEnv, reference: &str) -> String {
    crane(env, &["digest", "--insecure", reference])
        .trim()
        .to_string()
}
