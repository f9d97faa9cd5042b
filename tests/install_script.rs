//! `packaging/install-berth` (the action's download step) against a local
//! HTTP server serving dist directories laid out like a release:
//! `/v<version>/<tarball>` and `/v<version>/SHA256SUMS`. A good release holds
//! this build's berth; every broken one holds a `berth` that is a script
//! leaving a marker file, so "nothing was executed" is checked, not assumed.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// This machine's release target and the runner's name for its arch.
fn platform() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("x86_64-unknown-linux-gnu", "x64"),
        "aarch64" => ("aarch64-unknown-linux-gnu", "arm64"),
        other => panic!("the install test runs on x86_64 or aarch64 Linux, not {other}"),
    }
}

/// A static file server on a free loopback port; every request path is logged.
struct FileServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    /// Serve `root`'s files (GET only; anything else, or a missing file, is 404).
    async fn start(root: PathBuf) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, root.clone(), log.clone()));
            }
        });
        FileServer { url, requests }
    }

    /// The paths requested so far.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Answer one connection's one request, then close it.
async fn answer(stream: tokio::net::TcpStream, root: PathBuf, log: Arc<Mutex<Vec<String>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(request)) = lines.next_line().await else {
        return;
    };
    while let Ok(Some(header)) = lines.next_line().await {
        if header.is_empty() {
            break;
        }
    }
    let mut words = request.split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    log.lock().unwrap().push(path.to_string());
    let file = (method == "GET" && !path.split('/').any(|part| part == ".."))
        .then(|| root.join(path.trim_start_matches('/')))
        .and_then(|file| std::fs::read(file).ok());
    let (status, body) = match file {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = write.write_all(head.as_bytes()).await;
    let _ = write.write_all(&body).await;
}

/// A release tarball in the contract's layout (one top directory holding
/// `berth`, `README.md` and a man page) with `berth`'s bytes as given;
/// gzip without compression (the debug build's deflate is slow).
fn tarball(version: &str, target: &str, berth: &[u8]) -> Vec<u8> {
    let top = format!("berth-{version}-{target}");
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    let mut archive = tar::Builder::new(encoder);
    let files: [(&str, &[u8], u32); 3] = [
        ("berth", berth, 0o755),
        ("README.md", b"# berth\n", 0o644),
        ("man/man1/berth.1", b".TH BERTH 1\n", 0o644),
    ];
    for (name, bytes, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        archive
            .append_data(&mut header, format!("{top}/{name}"), bytes)
            .expect("append to the tarball");
    }
    archive.into_inner().unwrap().finish().unwrap()
}

/// This build's berth without its debug information (a sixth of the size,
/// so packing, serving and checking it takes seconds).
fn stripped_berth(dir: &Path) -> Vec<u8> {
    let out = dir.join("berth-stripped");
    let status = std::process::Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_berth"))
        .status()
        .expect("run strip (binutils)");
    assert!(status.success(), "strip failed");
    std::fs::read(out).unwrap()
}

/// `sha256sum`'s hex digest of `bytes`.
fn sha256(dir: &Path, bytes: &[u8]) -> String {
    let file = dir.join("to-hash");
    std::fs::write(&file, bytes).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// One test's world: a dist root served over HTTP, a tool cache, and the
/// marker path the impostor binaries write.
struct World {
    dir: tempfile::TempDir,
    server: FileServer,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dist")).unwrap();
        std::fs::create_dir_all(dir.path().join("tools")).unwrap();
        let server = FileServer::start(dir.path().join("dist")).await;
        World { dir, server }
    }

    fn tool_cache(&self) -> PathBuf {
        self.dir.path().join("tools")
    }

    fn marker(&self) -> PathBuf {
        self.dir.path().join("impostor-ran")
    }

    /// A `berth` that only leaves the marker and claims to be `version`.
    fn impostor(&self, version: &str) -> Vec<u8> {
        format!(
            "#!/bin/sh\ntouch '{}'\necho 'berth {version}'\n",
            self.marker().display()
        )
        .into_bytes()
    }

    /// Publish `/v<version>/`: each `(name, bytes)` file, then SHA256SUMS
    /// with `sums` lines (`(hex, name)`).
    fn publish(&self, version: &str, files: &[(&str, &[u8])], sums: &[(String, &str)]) {
        let release = self.dir.path().join(format!("dist/v{version}"));
        std::fs::create_dir_all(&release).unwrap();
        for (name, bytes) in files {
            std::fs::write(release.join(name), bytes).unwrap();
        }
        let text: String = sums
            .iter()
            .map(|(hex, name)| format!("{hex}  {name}\n"))
            .collect();
        std::fs::write(release.join("SHA256SUMS"), text).unwrap();
    }

    /// Publish this build's berth as release `CARGO_PKG_VERSION` for this
    /// platform (SHA256SUMS lists another platform's tarball first); the
    /// tarball's name.
    fn publish_this_build(&self) -> String {
        let (target, _) = platform();
        let version = env!("CARGO_PKG_VERSION");
        let asset = format!("berth-{version}-{target}.tar.gz");
        let bytes = tarball(version, target, &stripped_berth(self.dir.path()));
        let other = format!("berth-{version}-x86_64-apple-darwin.tar.gz");
        self.publish(
            version,
            &[(&asset, &bytes)],
            &[
                ("0".repeat(64), other.as_str()),
                (sha256(self.dir.path(), &bytes), asset.as_str()),
            ],
        );
        asset
    }

    /// Run the install script for `version` against this world's server and
    /// tool cache, with `extra_env` set.
    async fn install(&self, version: &str, extra_env: &[(&str, &str)]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/install-berth");
        tokio::process::Command::new(script)
            .arg(version)
            .env("BERTH_DOWNLOAD_URL", &self.server.url)
            .env("RUNNER_TOOL_CACHE", self.tool_cache())
            .env_remove("GITHUB_ACTIONS")
            .envs(extra_env.iter().copied())
            .output()
            .await
            .expect("run packaging/install-berth")
    }

    /// The tool cache holds nothing for `version` (no binary, no marker of
    /// completion, no staging directory), and no impostor ran.
    fn assert_nothing_installed_or_run(&self, version: &str) {
        let dir = self.tool_cache().join("berth").join(version);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
        assert!(!self.marker().exists(), "the downloaded berth was executed");
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Assert the run failed with `code` and said each of `parts`.
fn assert_failed(output: &Output, code: i32, parts: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{text}");
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

#[tokio::test]
async fn a_good_release_installs_runs_and_is_reused_from_the_tool_cache() {
    let world = World::new().await;
    let (_, arch) = platform();
    let version = env!("CARGO_PKG_VERSION");
    let asset = world.publish_this_build();

    // `v` in front is accepted: the action passes its tag.
    let first = world.install(&format!("v{version}"), &[]).await;
    let text = stderr(&first);
    assert!(first.status.success(), "{text}");
    let dir = world.tool_cache().join(format!("berth/{version}/{arch}"));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        dir.to_str().unwrap(),
        "prints the directory for PATH"
    );
    assert!(
        text.lines().any(|line| line == format!("berth {version}")),
        "the final check's output is shown: {text}"
    );
    // only the binary was extracted, and it runs
    let installed: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(installed, ["berth"]);
    assert!(dir.with_extension("complete").exists(), "marked complete");
    let run = std::process::Command::new(dir.join("berth"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&run.stdout).starts_with(&format!("berth {version}")));
    let tarball_path = format!("/v{version}/{asset}");
    assert_eq!(
        world.server.requests(),
        [format!("/v{version}/SHA256SUMS"), tarball_path.clone()]
    );

    // the second run downloads nothing
    let second = world.install(version, &[]).await;
    let text = stderr(&second);
    assert!(second.status.success(), "{text}");
    assert!(text.contains("from the tool cache"), "{text}");
    assert_eq!(
        world.server.requests().len(),
        2,
        "{:?}",
        world.server.requests()
    );
}

#[tokio::test]
async fn a_wrong_checksum_stops_before_extracting_or_running_anything() {
    let world = World::new().await;
    let (target, _) = platform();
    let version = "9.9.1";
    let asset = format!("berth-{version}-{target}.tar.gz");
    let bytes = tarball(version, target, &world.impostor(version));
    let wrong = sha256(world.dir.path(), b"another file");
    world.publish(
        version,
        &[(&asset, &bytes)],
        &[(wrong.clone(), asset.as_str())],
    );

    let output = world.install(version, &[]).await;
    let actual = sha256(world.dir.path(), &bytes);
    assert_failed(
        &output,
        1,
        &[
            &format!("checksum mismatch for {asset}"),
            &format!("expected {wrong}"),
            &format!("got {actual}"),
            "nothing from it was extracted or run",
        ],
    );
    world.assert_nothing_installed_or_run(version);
}

#[tokio::test]
async fn a_missing_asset_stops_the_install() {
    let world = World::new().await;
    let (target, _) = platform();

    // not listed in SHA256SUMS (the tarball is even there: it is not fetched)
    let version = "9.9.2";
    let asset = format!("berth-{version}-{target}.tar.gz");
    let bytes = tarball(version, target, &world.impostor(version));
    let hash = sha256(world.dir.path(), &bytes);
    world.publish(
        version,
        &[(&asset, &bytes)],
        &[(
            hash.clone(),
            "berth-9.9.2-riscv64gc-unknown-linux-gnu.tar.gz",
        )],
    );
    let output = world.install(version, &[]).await;
    assert_failed(
        &output,
        1,
        &[
            &format!("release v{version} has no {asset}"),
            "lists: berth-9.9.2-riscv64gc-unknown-linux-gnu.tar.gz",
        ],
    );
    assert!(
        !world
            .server
            .requests()
            .iter()
            .any(|p| p.ends_with(".tar.gz")),
        "{:?}",
        world.server.requests()
    );
    world.assert_nothing_installed_or_run(version);

    // listed, but the file is not there
    let version = "9.9.3";
    let asset = format!("berth-{version}-{target}.tar.gz");
    world.publish(version, &[], &[(hash, asset.as_str())]);
    let output = world.install(version, &[]).await;
    assert_failed(
        &output,
        1,
        &[&format!(
            "lists {asset} in its SHA256SUMS, but the file is missing (HTTP 404)"
        )],
    );
    world.assert_nothing_installed_or_run(version);
}

#[tokio::test]
async fn an_unknown_version_says_there_is_no_such_release() {
    let world = World::new().await;
    let output = world.install("9.9.9", &[("GITHUB_ACTIONS", "true")]).await;
    assert_failed(
        &output,
        2,
        &[&format!(
            "::error title=install-berth::no release v9.9.9 at {}",
            world.server.url
        )],
    );
    assert_eq!(world.server.requests(), ["/v9.9.9/SHA256SUMS"]);
    world.assert_nothing_installed_or_run("9.9.9");

    let output = world.install("latest", &[]).await;
    assert_failed(&output, 2, &["\"latest\" is not a release version"]);
}

#[tokio::test]
async fn an_unsupported_platform_is_refused_before_any_download() {
    let world = World::new().await;
    // a `uname` ahead of PATH that answers as a Mac would
    let bin = world.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let uname = bin.join("uname");
    std::fs::write(
        &uname,
        "#!/bin/sh\ncase $1 in -s) echo Darwin ;; -m) echo arm64 ;; esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&uname, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let output = world.install("9.9.4", &[("PATH", &path)]).await;
    assert_failed(
        &output,
        2,
        &[
            "released for Linux on x86_64",
            "not for Darwin on arm64",
            "build berth from source",
        ],
    );
    assert!(world.server.requests().is_empty());
    world.assert_nothing_installed_or_run("9.9.4");
}

/// The `run` script of action.yml's step `name`.
fn action_step(name: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml"))
        .expect("read action.yml");
    let action: serde_json::Value = serde_norway::from_str(&text).expect("action.yml is YAML");
    let steps = action["runs"]["steps"].as_array().expect("runs.steps");
    let step = steps
        .iter()
        .find(|step| step["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("action.yml has no step {name:?}"));
    step["run"].as_str().expect("a run step").to_string()
}

/// Run action.yml's step `name` with bash as the runner would (its `env`
/// given as `env`); its exit code, log (stdout, where workflow commands go,
/// then stderr) and what it wrote to GITHUB_OUTPUT and GITHUB_PATH.
async fn run_action_step(
    world: &World,
    name: &str,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String, String) {
    let files = world.dir.path();
    let (output_file, path_file) = (files.join("github-output"), files.join("github-path"));
    std::fs::write(&output_file, "").unwrap();
    std::fs::write(&path_file, "").unwrap();
    let workspace = files.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let output = tokio::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c"])
        .arg(action_step(name))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_ACTION_PATH", env!("CARGO_MANIFEST_DIR"))
        .env("GITHUB_WORKSPACE", &workspace)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "someone/deploys")
        .env("GITHUB_OUTPUT", &output_file)
        .env("GITHUB_PATH", &path_file)
        .env("RUNNER_TOOL_CACHE", world.tool_cache())
        .env_remove("BERTH_DOWNLOAD_URL")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run bash");
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        ),
        std::fs::read_to_string(output_file).unwrap(),
        std::fs::read_to_string(path_file).unwrap(),
    )
}

/// Run action.yml's "Choose the berth to run" step with the inputs
/// `version` and the action's ref and repository (`extra` on top); its exit
/// code, log and GITHUB_OUTPUT.
async fn choose(
    world: &World,
    version: &str,
    action_ref: &str,
    repository: &str,
    extra: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let env = [
        ("VERSION", version),
        ("DOWNLOAD_URL", ""),
        ("ACTION_REF", action_ref),
        ("ACTION_REPOSITORY", repository),
    ];
    let (code, log, outputs, _) =
        run_action_step(world, "Choose", &[&env[..], extra].concat()).await;
    (code, log, outputs)
}

#[tokio::test]
async fn the_action_chooses_its_release_tag_a_given_version_or_the_source() {
    let world = World::new().await;

    // uses: owner/berth@v1.2.3: that release, from the action's repository
    let (code, log, outputs) = choose(&world, "", "v1.2.3", "owner/berth", &[]).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        outputs,
        "how=release\nversion=v1.2.3\ndownload-url=https://github.com/owner/berth/releases/download\n"
    );
    // ... or from a mirror
    let mirror = [("BERTH_DOWNLOAD_URL", "http://127.0.0.1:1/mirror")];
    let (_, _, outputs) = choose(&world, "", "v1.2.3", "owner/berth", &mirror).await;
    assert!(
        outputs.ends_with("download-url=http://127.0.0.1:1/mirror\n"),
        "{outputs}"
    );

    // a source checkout (uses: ./ has no ref) builds from source
    let (code, log, outputs) = choose(&world, "", "", "", &[]).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(outputs.starts_with("how=source\n"), "{outputs}");
    // ... unless a version is given
    let (_, _, outputs) = choose(&world, "0.1.0", "", "", &[]).await;
    assert!(
        outputs.starts_with(
            "how=release\nversion=0.1.0\ndownload-url=https://github.com/someone/deploys/releases/download"
        ),
        "{outputs}"
    );

    // a branch, a commit SHA or a major tag names no release
    for reference in ["main", "v1", "0123456789abcdef0123456789abcdef01234567"] {
        let (code, log, outputs) = choose(&world, "", reference, "owner/berth", &[]).await;
        assert_eq!(code, Some(2), "{log}");
        let problem = format!("owner/berth@{reference} is not a release tag");
        assert!(log.contains(&problem), "{log}");
        assert!(
            log.contains("give the version input (version: 0.1.0)"),
            "{log}"
        );
        assert_eq!(outputs, "");
    }
}

#[tokio::test]
async fn the_action_installs_the_release_and_puts_it_on_path() {
    let world = World::new().await;
    world.publish_this_build();
    let version = env!("CARGO_PKG_VERSION");
    let (_, arch) = platform();
    let tag = format!("v{version}");
    let install = [
        ("VERSION", tag.as_str()),
        ("DOWNLOAD_URL", world.server.url.as_str()),
    ];
    let (code, log, _, path) = run_action_step(&world, "Install berth", &install).await;
    assert_eq!(code, Some(0), "{log}");
    let dir = world.tool_cache().join(format!("berth/{version}/{arch}"));
    assert_eq!(
        path,
        format!("{}\n", dir.display()),
        "the binary's directory goes on PATH"
    );
    assert!(dir.join("berth").is_file());
}
