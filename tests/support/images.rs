//! Test images without a Docker daemon: layers described in memory (files,
//! directories, whiteouts, large incompressible files), written as tar.gz
//! files and pushed to the local registry with crane.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{LocalEnv, repo_root, unique_name};

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

/// crane with the local environment's variables, and `DOCKER_CONFIG` if given.
fn crane(env: &LocalEnv, docker_config: Option<&Path>) -> Command {
    let mut command = env.command(env.var("BERTH_LOCAL_CRANE"));
    if let Some(dir) = docker_config {
        command.env("DOCKER_CONFIG", dir);
    }
    command
}

/// Run a command that must succeed; its standard output.
fn run(command: &mut Command) -> String {
    let output = command.output().expect("run crane");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("crane prints UTF-8")
}

/// Push an image of `layers` (lowest first) to a fresh repository of the
/// local registry, tagged [`TAG`].
pub fn push(env: &LocalEnv, name: &str, media: MediaTypes, layers: &[Layer]) -> Pushed {
    push_to(
        env,
        env.var("BERTH_LOCAL_REGISTRY"),
        None,
        name,
        media,
        layers,
    )
}

/// [`push`] to `registry`, logged in with the docker config in
/// `docker_config` if given.
pub fn push_to(
    env: &LocalEnv,
    registry: &str,
    docker_config: Option<&Path>,
    name: &str,
    media: MediaTypes,
    layers: &[Layer],
) -> Pushed {
    let pushed = Pushed {
        repository: format!("{registry}/berth-test/{}", unique_name(name)),
        tag: TAG.to_string(),
    };
    append(env, docker_config, &pushed.reference(), media, layers);
    pushed
}

/// `crane append` an image of `layers` as `reference`.
fn append(
    env: &LocalEnv,
    docker_config: Option<&Path>,
    reference: &str,
    media: MediaTypes,
    layers: &[Layer],
) {
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
    args.extend(["--new_tag".to_string(), reference.to_string()]);
    run(crane(env, docker_config).args(&args));
}

/// Push a Docker image of `layers` as `reference` (`registry/repository:tag`).
pub fn push_as(env: &LocalEnv, reference: &str, layers: &[Layer]) {
    append(env, None, reference, MediaTypes::Docker, layers);
}

/// Copy image `from` to `to` within the local registry.
pub fn copy(env: &LocalEnv, from: &str, to: &str) {
    run(crane(env, None).args(["copy", "--insecure", from, to]));
}

/// Set the platform (`linux/arm64`) in a pushed image's config, in place.
pub fn set_platform(env: &LocalEnv, image: &Pushed, platform: &str) {
    let reference = image.reference();
    run(crane(env, None).args([
        "mutate",
        "--insecure",
        &reference,
        "--set-platform",
        platform,
        "--tag",
        &reference,
    ]));
}

/// Push an OCI image index of `images` (in that order) as `name`.
pub fn push_index(env: &LocalEnv, name: &str, images: &[&Pushed]) -> Pushed {
    let index = Pushed {
        repository: images[0].repository.clone(),
        tag: unique_name(name),
    };
    let mut command = crane(env, None);
    command.args(["index", "append", "--insecure"]);
    for image in images {
        command.args(["--manifest", &image.reference()]);
    }
    run(command.args(["--tag", &index.reference()]));
    index
}

/// The manifest digest the registry reports for `reference`.
pub fn digest(env: &LocalEnv, reference: &str) -> String {
    run(crane(env, None).args(["digest", "--insecure", reference]))
        .trim()
        .to_string()
}

/// A distribution registry of the test's own that wants HTTP basic auth, on
/// a free loopback port, with crane logged in to it; stopped when dropped.
pub struct AuthRegistry {
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The user the registry provisioned.
    pub user: String,
    /// Its password.
    pub password: String,
    /// A docker config directory holding the login.
    pub docker_config: PathBuf,
    server: Child,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    /// Start the registry binary `up` uses with an htpasswd file it creates
    /// itself (the registry provisions user `docker` with a random password
    /// and logs it), and log crane in.
    pub fn start(env: &LocalEnv) -> AuthRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\n\
                 storage: {{filesystem: {{rootdirectory: {data}}}}}\n\
                 auth: {{htpasswd: {{realm: berth-test, path: {htpasswd}}}}}\n\
                 http: {{addr: \"{address}\", debug: {{addr: \"\", prometheus: {{enabled: false}}}}}}\n",
                data = dir.path().join("data").display(),
                htpasswd = dir.path().join("htpasswd").display(),
            ),
        )
        .expect("write registry config");
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).expect("registry log");
        let server = Command::new(registry_binary())
            .args(["serve", &config.display().to_string()])
            .env("OTEL_TRACES_EXPORTER", "none")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the registry");
        std::fs::create_dir(dir.path().join("docker")).expect("docker config directory");
        let mut registry = AuthRegistry {
            address,
            user: "docker".into(),
            password: String::new(),
            docker_config: dir.path().join("docker"),
            server,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start: {}",
                read(&log_path)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry.password = read(&log_path)
            .split_whitespace()
            .find_map(|field| field.strip_prefix("password="))
            .unwrap_or_else(|| panic!("no provisioned password in the log: {}", read(&log_path)))
            .to_string();
        run(crane(env, Some(&registry.docker_config)).args([
            "auth",
            "login",
            &registry.address,
            "--username",
            &registry.user,
            "--password",
            &registry.password,
        ]));
        registry
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The registry binary `build-tools` built for the local environment.
fn registry_binary() -> PathBuf {
    let output = Command::new(repo_root().join("cluster-setup/local/build-tools"))
        .arg("--print")
        .output()
        .expect("run build-tools --print");
    let dirs = String::from_utf8(output.stdout).expect("UTF-8");
    let dir = dirs
        .lines()
        .find_map(|line| line.strip_prefix("registry="))
        .expect("build-tools prints the registry's directory");
    Path::new(dir).join("registry")
}
