//! Where `helm template` reads a chart from: a chart directory as it is; a
//! chart directory whose locked dependencies are built in a scratch copy
//! (never in the deploy repo); or a chart from an OCI registry or a chart
//! repository, pulled once per version into berth's cache
//! (`$BERTH_CACHE/charts`, else `~/.cache/berth/charts`), checked, and
//! rendered from there afterwards without the network.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use tokio::process::Command;

use super::tool::{self, TOOL_TIMEOUT};
use crate::cluster::release::ChartRecord;
use crate::config::{Chart, Config};
use crate::error::input_error;

/// How many times an unreachable registry or repository is tried.
const PULL_TRIES: u32 = 3;
/// The archive's name in a cache entry.
const ARCHIVE: &str = "chart.tgz";
/// The record's name in a cache entry.
const ENTRY: &str = "entry.json";

/// A chart ready for `helm template`.
pub(super) struct Prepared {
    /// The directory or archive helm renders.
    pub path: PathBuf,
    /// The scratch copy `path` is in, removed when dropped.
    _scratch: Option<TempDir>,
}

/// Make `chart` (berth.yaml's key `key`) renderable: pull a remote chart
/// unless cached, build a directory's locked dependencies in a scratch copy.
pub(super) async fn prepare(chart: &Chart, key: &str) -> anyhow::Result<Prepared> {
    match chart {
        Chart::Dir(dir) => Ok(match with_dependencies(dir, key).await? {
            Some((scratch, copy)) => Prepared {
                path: copy,
                _scratch: Some(scratch),
            },
            None => Prepared {
                path: dir.clone(),
                _scratch: None,
            },
        }),
        Chart::Oci { .. } | Chart::Repo { .. } => Ok(Prepared {
            path: pulled(chart, key).await?.0,
            _scratch: None,
        }),
    }
}

/// The chart as the release records it, without building anything:
/// for a remote chart, from the cache (pulled if it is not there).
pub(super) async fn record(
    config: &Config,
    chart: &Chart,
    key: &str,
) -> anyhow::Result<ChartRecord> {
    match chart {
        Chart::Dir(dir) => local_record(config, dir, key),
        Chart::Oci { .. } | Chart::Repo { .. } => Ok(pulled(chart, key).await?.1),
    }
}

/// The parts of Chart.yaml and Chart.lock berth reads; helm reads the rest.
#[derive(Debug, Deserialize)]
struct ChartYaml {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    dependencies: Vec<Dependency>,
}

/// One dependency, as Chart.yaml declares it or Chart.lock locks it.
#[derive(Debug, Deserialize)]
struct Dependency {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    repository: String,
}

/// Read `file` (Chart.yaml or Chart.lock) of the chart at `dir`.
fn read_chart_file(dir: &Path, file: &str, key: &str) -> anyhow::Result<ChartYaml> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        input_error(format!(
            "cannot read {}: {error}; point {key}.path in berth.yaml at the chart's directory",
            path.display()
        ))
    })?;
    serde_norway::from_str(&text).map_err(|error| {
        input_error(format!(
            "{} is not valid: {error}; fix it ({key} in berth.yaml)",
            path.display()
        ))
    })
}

/// The record of the chart directory `dir`: its name and version.
fn local_record(config: &Config, dir: &Path, key: &str) -> anyhow::Result<ChartRecord> {
    let chart = read_chart_file(dir, "Chart.yaml", key)?;
    Ok(ChartRecord {
        name: chart.name,
        version: chart.version,
        source: Chart::Dir(dir.to_owned()).describe(&config.dir),
        archive_digest: None,
        manifest_digest: None,
    })
}

/// When the chart at `dir` declares dependencies its `charts/` does not
/// hold, a scratch copy with them built by `helm dependency build` from
/// Chart.lock, and the copy's path; `None` when the directory renders as it
/// is. Relative `file://` dependencies are reached from the copy through
/// symbolic links to where they are, so helm packages them as it would
/// in place. Nothing is written to `dir`.
async fn with_dependencies(dir: &Path, key: &str) -> anyhow::Result<Option<(TempDir, PathBuf)>> {
    let chart = read_chart_file(dir, "Chart.yaml", key)?;
    if chart.dependencies.is_empty() {
        return Ok(None);
    }
    if !dir.join("Chart.lock").is_file() {
        return Err(input_error(format!(
            "{key}.path: {} declares dependencies in Chart.yaml but has no Chart.lock; run \
             `helm dependency update {}` and commit Chart.lock",
            dir.display(),
            dir.display()
        )));
    }
    let lock = read_chart_file(dir, "Chart.lock", key)?;
    let vendored = |d: &Dependency| {
        dir.join("charts").join(&d.name).is_dir()
            || dir
                .join("charts")
                .join(format!("{}-{}.tgz", d.name, d.version))
                .is_file()
    };
    if lock.dependencies.iter().all(vendored) && !lock.dependencies.is_empty() {
        return Ok(None);
    }
    let links: Vec<PathBuf> = chart
        .dependencies
        .iter()
        .filter_map(|d| d.repository.strip_prefix("file://"))
        .map(PathBuf::from)
        .filter(|path| path.is_relative())
        .collect();
    let depth = links
        .iter()
        .map(|path| {
            path.components()
                .take_while(|c| matches!(c, Component::ParentDir | Component::CurDir))
                .filter(|c| matches!(c, Component::ParentDir))
                .count()
        })
        .max()
        .unwrap_or(0);
    let scratch = tempfile::Builder::new()
        .prefix("berth-chart-")
        .tempdir()
        .context("creating a scratch directory for the chart's dependencies")?;
    let mut copy = scratch.path().to_owned();
    for _ in 0..depth {
        copy.push("up");
    }
    copy.push(dir.file_name().unwrap_or(std::ffi::OsStr::new("chart")));
    copy_tree(dir, &copy)
        .with_context(|| format!("copying {} to {}", dir.display(), copy.display()))?;
    for link in &links {
        let inside = normalize(&copy.join(link));
        if inside.starts_with(&copy) || inside.exists() {
            continue;
        }
        let real = normalize(&std::path::absolute(dir)?.join(link));
        if let Some(parent) = inside.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(&real, &inside)
            .with_context(|| format!("linking {} to {}", inside.display(), real.display()))?;
    }
    let program = helm();
    let shown = format!("helm dependency build {}", dir.display());
    let output = run(
        Command::new(&program)
            .arg("dependency")
            .arg("build")
            .arg(&copy),
        &shown,
    )
    .await?;
    if !output.status.success() {
        return Err(input_error(format!(
            "`{shown}` (run on a scratch copy, so the repository is left as it is) failed \
             ({}):\n{}\nfix the chart's dependencies ({key} in berth.yaml): when Chart.yaml \
             changed, run `helm dependency update {}` and commit Chart.lock",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end(),
            dir.display()
        )));
    }
    Ok(Some((scratch, copy)))
}

/// Copy the directory tree `from` to `to`, following symbolic links.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(from).follow_links(true) {
        let entry = entry?;
        let target = to.join(entry.path().strip_prefix(from)?);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `path` with `.` and `..` resolved lexically, as helm resolves `file://` paths.
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// What a cache entry says of the archive next to it.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    record: ChartRecord,
}

/// The remote `chart` in berth's cache, pulled first if it is not there
/// (or its archive no longer has the digest recorded): the archive's path
/// and the chart's record.
async fn pulled(chart: &Chart, key: &str) -> anyhow::Result<(PathBuf, ChartRecord)> {
    let root = crate::cache_dir::base()
        .ok_or_else(|| {
            input_error(format!(
                "{key} is a remote chart, and berth has nowhere to cache it: set BERTH_CACHE \
                 (or HOME) to a writable directory"
            ))
        })?
        .join("charts");
    let dir = root.join(entry_name(chart));
    if let Some(record) = cached(&dir) {
        return Ok((dir.join(ARCHIVE), record));
    }
    std::fs::create_dir_all(&root)
        .with_context(|| format!("creating berth's chart cache {}", root.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(&root)
        .with_context(|| format!("writing to berth's chart cache {}", root.display()))?;
    let record = pull(chart, key, staging.path()).await?;
    let entry = serde_json::to_vec_pretty(&Entry {
        record: record.clone(),
    })?;
    std::fs::write(staging.path().join(ENTRY), entry)?;
    if let Some(theirs) = cached(&dir) {
        // Another berth cached it while this one pulled: keep theirs, which
        // it may be rendering from.
        return Ok((dir.join(ARCHIVE), theirs));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let staged = staging.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        // Another berth cached it meanwhile: theirs is as good.
        let _ = std::fs::remove_dir_all(&staged);
    }
    match cached(&dir) {
        Some(record) => Ok((dir.join(ARCHIVE), record)),
        None => anyhow::bail!(
            "the chart cache entry {} cannot be read back",
            dir.display()
        ),
    }
}

/// The cache entry's record, when its archive still has the recorded digest.
fn cached(dir: &Path) -> Option<ChartRecord> {
    let entry: Entry = serde_json::from_slice(&std::fs::read(dir.join(ENTRY)).ok()?).ok()?;
    let digest = file_digest(&dir.join(ARCHIVE)).ok()?;
    if entry.record.archive_digest.as_deref() == Some(digest.as_str()) {
        Some(entry.record)
    } else {
        tracing::warn!(
            "the cached chart in {} changed since it was pulled; pulling it again",
            dir.display()
        );
        None
    }
}

/// The directory name of `chart`'s cache entry: readable, and unique to
/// where it comes from and its version.
fn entry_name(chart: &Chart) -> String {
    let (name, version, identity) = match chart {
        Chart::Oci {
            reference, version, ..
        } => (
            reference.rsplit('/').next().unwrap_or_default(),
            version.as_str(),
            format!("oci\n{reference}\n{version}"),
        ),
        Chart::Repo { url, name, version } => (
            name.as_str(),
            version.as_str(),
            format!("repo\n{url}\n{name}\n{version}"),
        ),
        Chart::Dir(dir) => ("chart", "", format!("dir\n{}", dir.display())),
    };
    let hash = hex::encode(Sha256::digest(identity.as_bytes()));
    let safe: String = format!("{name}-{version}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{}", &hash[..16])
}

/// `helm pull` the chart into `staging` as [`ARCHIVE`], trying an
/// unreachable source [`PULL_TRIES`] times, and check that the archive is
/// the chart and version asked for.
async fn pull(chart: &Chart, key: &str, staging: &Path) -> anyhow::Result<ChartRecord> {
    let download = staging.join("download");
    std::fs::create_dir_all(&download)?;
    let (args, shown, source, expected_name, version): (
        Vec<OsString>,
        String,
        String,
        String,
        &str,
    ) = match chart {
        Chart::Oci {
            reference,
            version,
            plain_http,
        } => {
            let mut args: Vec<OsString> = vec![
                "pull".into(),
                reference.into(),
                "--version".into(),
                version.into(),
            ];
            let mut shown = format!("helm pull {reference} --version {version}");
            if *plain_http {
                args.push("--plain-http".into());
                shown.push_str(" --plain-http");
            }
            let name = reference.rsplit('/').next().unwrap_or_default().to_owned();
            (args, shown, reference.clone(), name, version)
        }
        Chart::Repo { url, name, version } => (
            vec![
                "pull".into(),
                name.into(),
                "--repo".into(),
                url.into(),
                "--version".into(),
                version.into(),
            ],
            format!("helm pull {name} --repo {url} --version {version}"),
            url.clone(),
            name.clone(),
            version,
        ),
        Chart::Dir(_) => anyhow::bail!("a chart directory is not pulled"),
    };
    let what = chart.describe(Path::new(""));
    let program = helm();
    let mut tries = 0;
    let output = loop {
        tries += 1;
        let output = run(
            Command::new(&program)
                .args(&args)
                .arg("--destination")
                .arg(&download),
            &shown,
        )
        .await?;
        if output.status.success() {
            break output;
        }
        let stderr = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_owned();
        match PullFailure::of(&stderr) {
            PullFailure::Unreachable if tries < PULL_TRIES => {
                tokio::time::sleep(Duration::from_secs(u64::from(tries))).await;
            }
            PullFailure::Unreachable => anyhow::bail!(
                "cannot reach the registry or repository of chart {what} ({key} in berth.yaml) \
                 after {tries} tries: `{shown}` failed:\n{stderr}\ncheck the network and that \
                 the registry is up, then deploy again"
            ),
            PullFailure::Refused => {
                return Err(input_error(format!(
                    "the registry or repository refused to serve chart {what} ({key} in \
                     berth.yaml): `{shown}` failed:\n{stderr}\nlog in as helm does (`helm \
                     registry login REGISTRY` for an oci:// chart), or check the access"
                )));
            }
            PullFailure::Missing => {
                return Err(input_error(format!(
                    "cannot pull chart {what} ({key} in berth.yaml): `{shown}` failed:\n{stderr}\n\
                     check the chart's name and version in berth.yaml (`helm show chart` with \
                     the same reference and `--version` shows whether it exists)"
                )));
            }
        }
    };
    let pulled_archive =
        single_archive(&download).with_context(|| format!("`{shown}` left no chart archive"))?;
    let archive = staging.join(ARCHIVE);
    std::fs::rename(&pulled_archive, &archive)?;
    let inside = archive_chart(&archive).await?;
    if inside.name != expected_name || inside.version != version {
        anyhow::bail!(
            "`{shown}` served chart {} {} where {what} ({key} in berth.yaml) was asked for; \
             the registry or repository is wrong, nothing was deployed",
            inside.name,
            inside.version
        );
    }
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(ChartRecord {
        name: inside.name,
        version: inside.version,
        source,
        archive_digest: Some(file_digest(&archive)?),
        manifest_digest: manifest_digest(&printed),
    })
}

/// Why `helm pull` failed, from what it printed.
#[derive(Debug, PartialEq, Eq)]
enum PullFailure {
    /// The network or the server: worth another try, else exit 1.
    Unreachable,
    /// Credentials or permissions: bad input.
    Refused,
    /// Anything else (no such chart or version): bad input.
    Missing,
}

impl PullFailure {
    /// Classify helm's error text.
    fn of(stderr: &str) -> PullFailure {
        let text = stderr.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
        if any(&[
            "unauthorized",
            "401",
            "403",
            "forbidden",
            "denied",
            "authentication required",
        ]) {
            PullFailure::Refused
        } else if any(&[
            "not found",
            "404",
            "manifest unknown",
            "no chart version",
            "no chart name",
        ]) {
            PullFailure::Missing
        } else if any(&[
            "connection refused",
            "no such host",
            "timeout",
            "connection reset",
            "eof",
            "tls handshake",
            "500 internal",
            "502",
            "503",
            "504",
            "network is unreachable",
            "server misbehaving",
        ]) {
            PullFailure::Unreachable
        } else {
            PullFailure::Missing
        }
    }
}

/// The one `.tgz` in `dir`.
fn single_archive(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut archives = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "tgz"));
    match (archives.next(), archives.next()) {
        (Some(one), None) => Ok(one),
        _ => anyhow::bail!("expected one .tgz in {}", dir.display()),
    }
}

/// The chart's name and version inside `archive`, as `helm show chart` reads them.
async fn archive_chart(archive: &Path) -> anyhow::Result<ChartYaml> {
    let shown = format!("helm show chart {}", archive.display());
    let output = run(
        Command::new(helm()).arg("show").arg("chart").arg(archive),
        &shown,
    )
    .await?;
    if !output.status.success() {
        anyhow::bail!(
            "`{shown}` failed: {}; the pulled archive is not a chart",
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    serde_norway::from_slice(&output.stdout)
        .with_context(|| format!("reading what `{shown}` printed"))
}

/// The `Digest: sha256:...` line `helm pull` prints for an OCI chart.
fn manifest_digest(printed: &str) -> Option<String> {
    printed.lines().find_map(|line| {
        let digest = line.trim().strip_prefix("Digest:")?.trim();
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest.to_owned())
    })
}

/// `sha256:<hex>` of the file at `path`.
fn file_digest(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))))
}

/// Lowercase hexadecimal.
/// The helm binary: `BERTH_HELM`, else `helm` from PATH.
fn helm() -> OsString {
    tool::program("BERTH_HELM", "helm").0
}

/// Run `command` (shown as `shown`) within [`TOOL_TIMEOUT`], killed if it
/// runs longer; a helm that cannot start says how to point at it.
async fn run(command: &mut Command, shown: &str) -> anyhow::Result<std::process::Output> {
    let running = command.kill_on_drop(true).output();
    match tokio::time::timeout(TOOL_TIMEOUT, running).await {
        Err(_) => anyhow::bail!(
            "`{shown}` did not finish within {} and was stopped; check the network",
            crate::duration::display(TOOL_TIMEOUT)
        ),
        Ok(Err(error)) => Err(input_error(format!(
            "cannot run helm for `{shown}`: {error}; install it, or set BERTH_HELM to its path"
        ))),
        Ok(Ok(output)) => Ok(output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_failures_are_told_apart() {
        for (stderr, failure) in [
            (
                "Error: failed to do request: Head \"http://127.0.0.1:1/v2/charts/web/manifests/0.1.0\": dial tcp 127.0.0.1:1: connect: connection refused",
                PullFailure::Unreachable,
            ),
            (
                "Error: 127.0.0.1:25000/charts/web:9.9.9: not found",
                PullFailure::Missing,
            ),
            (
                "Error: chart \"web\" version \"9.9.9\" not found in http://127.0.0.1:4000 repository",
                PullFailure::Missing,
            ),
            (
                "Error: failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized",
                PullFailure::Refused,
            ),
            (
                "Error: looks like \"https://x\" is not a valid chart repository or cannot be reached: Get \"https://x/index.yaml\": dial tcp: lookup x: no such host",
                PullFailure::Unreachable,
            ),
        ] {
            assert_eq!(PullFailure::of(stderr), failure, "{stderr}");
        }
    }

    #[test]
    fn the_manifest_digest_is_read_from_helms_output() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let printed = format!("Pulled: 127.0.0.1:25000/charts/web:0.1.0\nDigest: {digest}\n");
        assert_eq!(manifest_digest(&printed), Some(digest));
        assert_eq!(manifest_digest("Digest: sha256:short\n"), None);
    }

    #[test]
    fn cache_entries_differ_by_source_and_version_and_stay_readable() {
        let oci = |reference: &str, version: &str| Chart::Oci {
            reference: reference.into(),
            version: version.into(),
            plain_http: false,
        };
        let a = entry_name(&oci("oci://r.example/charts/web", "1.0.0"));
        assert!(a.starts_with("web-1.0.0-"), "{a}");
        assert_ne!(a, entry_name(&oci("oci://r.example/charts/web", "1.0.1")));
        assert_ne!(a, entry_name(&oci("oci://s.example/charts/web", "1.0.0")));
        let repo = entry_name(&Chart::Repo {
            url: "https://r.example/charts".into(),
            name: "web".into(),
            version: "1.0.0+a/b".into(),
        });
        assert!(repo.starts_with("web-1.0.0_a_b-"), "{repo}");
        assert_ne!(a, repo);
    }

    #[test]
    fn file_paths_resolve_lexically() {
        assert_eq!(
            normalize(Path::new("/s/up/web/../common")),
            PathBuf::from("/s/up/common")
        );
        assert_eq!(
            normalize(Path::new("/s/web/./sub")),
            PathBuf::from("/s/web/sub")
        );
    }
}
