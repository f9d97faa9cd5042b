//! Charts from where users keep them (issue 22, point 5): a chart pushed to
//! the local OCI registry with `helm push`, a chart repository served on
//! 127.0.0.1 by the test, pulled once per version into berth's cache and
//! rendered from there; the chart's digest in the release record; `set:`
//! values in the rendered objects; a local chart whose dependency berth
//! builds without writing into the chart's directory; bad input refused
//! with exit 2 naming the key.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};
use support::chart_app::{ChartApp, copy_dir};
use support::chart_repo::ChartRepo;
use support::*;

/// A throw-away deploy repo (berth.yaml in a directory of its own), a
/// namespace, and berth's cache for this test only.
struct SourcesApp {
    app: ChartApp,
    cache: PathBuf,
}

impl std::ops::Deref for SourcesApp {
    type Target = ChartApp;

    fn deref(&self) -> &ChartApp {
        &self.app
    }
}

impl SourcesApp {
    fn new(prefix: &str) -> SourcesApp {
        let app = ChartApp::new(prefix);
        SourcesApp {
            cache: app.dir.join("cache"),
            app,
        }
    }

    /// Write berth.yaml with environment `test` rendering `chart` (the
    /// inside of `chart:`, indented by 6).
    fn configure(&self, chart: &str) {
        self.write_config("berth.yaml", chart);
    }

    /// Write the berth.yaml `name` with `chart` as [`SourcesApp::configure`] does.
    fn write_config(&self, name: &str, chart: &str) -> PathBuf {
        self.app.write_config(
            name,
            "app: wb\nimages:\n  - 127.0.0.1:25000/workbench/frontend\n",
            &format!(
                "    context: berth-local\n    chart:\n{chart}    rollout:\n      timeout: 3m\n"
            ),
        )
    }

    /// berth with the local helm and this test's cache.
    fn berth_with(&self, config: &Path, args: &[&str]) -> Output {
        self.command_with(config, args)
            .env("BERTH_CACHE", &self.cache)
            .output()
            .unwrap()
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.berth_with(&self.dir.join("berth.yaml"), args)
    }

    /// Deploy `sha`, asserting exit 0.
    fn deploy(&self, sha: &str) {
        let out = self.berth(&["deploy", "test", sha, "--output", "json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }

    /// The newest release as `history --output json` shows it.
    fn newest_release(&self) -> serde_json::Value {
        let out = self.berth(&["history", "test", "--output", "json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|event| event["event"] == "release")
            .expect("history lists a release")
    }

    /// The ConfigMap `name` of the namespace.
    async fn config_map(&self, name: &str) -> BTreeMap<String, String> {
        let client = local_env().kube().await;
        let maps: kube::Api<ConfigMap> = kube::Api::namespaced(client, &self.namespace);
        maps.get(name).await.unwrap().data.unwrap_or_default()
    }
}

/// The local environment's helm.
fn helm() -> String {
    local_env().var("BERTH_LOCAL_HELM").to_owned()
}

/// Run helm with `args`, asserting success.
fn run_helm(args: &[&str]) {
    let out = local_env().command(helm()).args(args).output().unwrap();
    assert!(out.status.success(), "helm {args:?}: {}", stderr(&out));
}

/// `helm package` the fixture chart `name` into `into`; the archive's path.
fn package(name: &str, into: &Path) -> PathBuf {
    let chart = repo_root().join("tests/fixtures/charts").join(name);
    run_helm(&[
        "package",
        chart.to_str().unwrap(),
        "--destination",
        into.to_str().unwrap(),
    ]);
    into.join(format!("{name}-0.1.0.tgz"))
}

/// `sha256:<hex>` of the file at `path`.
fn digest(path: &Path) -> String {
    let hex: String = Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Every file under `dir` with its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .map(|entry| {
            let content = if entry.file_type().is_file() {
                std::fs::read(entry.path()).unwrap()
            } else {
                Vec::new()
            };
            (entry.path().to_owned(), content)
        })
        .collect()
}

/// A chart pushed with `helm push` to the local registry deploys from
/// `path: oci://...` with `set:` values reaching the objects (a comma, an
/// equals sign and a quote need no escaping; a number stays a number), and
/// the release records the archive's sha256 and the manifest digest.
#[tokio::test]
async fn an_oci_chart_deploys_with_set_values_and_its_digests_are_recorded() {
    let app = SourcesApp::new("sources-oci");
    let archive = package("sources-web", &app.dir.join("package"));
    run_helm(&[
        "push",
        archive.to_str().unwrap(),
        "oci://127.0.0.1:25000/charts",
        "--plain-http",
    ]);
    app.configure(
        "      path: oci://127.0.0.1:25000/charts/sources-web\n      version: 0.1.0\n      \
         set:\n        greeting: \"a,b=c it's {x}\"\n        replicaCount: 2\n",
    );
    app.deploy("1a2b3c4");

    let settings = app.config_map("wb-settings").await;
    assert_eq!(settings["greeting"], "a,b=c it's {x}");
    assert_eq!(settings["replicas"], "2");
    assert_eq!(settings["chart"], "sources-web-0.1.0");
    let client = local_env().kube().await;
    let deployments: kube::Api<Deployment> = kube::Api::namespaced(client, &app.namespace);
    let web = deployments.get("wb-web").await.unwrap();
    assert_eq!(web.spec.unwrap().replicas, Some(2));

    let release = app.newest_release();
    let chart = &release["chart"];
    assert_eq!(chart["name"], "sources-web", "{release}");
    assert_eq!(chart["version"], "0.1.0", "{release}");
    assert_eq!(chart["source"], "oci://127.0.0.1:25000/charts/sources-web");
    assert_eq!(chart["archive_digest"], digest(&archive), "{release}");
    let manifest = chart["manifest_digest"].as_str().unwrap_or_default();
    assert!(
        manifest.starts_with("sha256:") && manifest.len() == 71,
        "{release}"
    );

    let out = app.berth(&["status", "test", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let environment: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|event| event["event"] == "environment")
        .expect("status reports the environment");
    assert_eq!(
        environment["last_release"]["chart"]["archive_digest"],
        digest(&archive),
        "{environment}"
    );

    // Pulled once: one cache entry, holding the archive pushed.
    let entries: Vec<PathBuf> = std::fs::read_dir(app.cache.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(digest(&entries[0].join("chart.tgz")), digest(&archive));
}

/// A chart repository (index.yaml and the archive, served on 127.0.0.1)
/// is pulled once; with the server stopped, a warm cache still deploys,
/// a cold one fails with exit 1 naming the chart, and an unknown version
/// is exit 2.
#[tokio::test]
async fn a_repository_chart_is_pulled_once_and_a_warm_cache_needs_no_server() {
    let app = SourcesApp::new("sources-repo");
    let repo = ChartRepo::serve(&app.dir.join("repo"));
    let archive = package("sources-web", &repo.dir);
    run_helm(&[
        "repo",
        "index",
        repo.dir.to_str().unwrap(),
        "--url",
        &repo.url,
    ]);
    let url = repo.url.clone();
    app.configure(&format!(
        "      repo: {url}\n      name: sources-web\n      version: 0.1.0\n      values: [values.yaml]\n"
    ));
    std::fs::write(
        app.dir.join("values.yaml"),
        "greeting: from a values file\n",
    )
    .unwrap();
    app.deploy("1a2b3c4");
    assert_eq!(
        app.config_map("wb-settings").await["greeting"],
        "from a values file"
    );
    let release = app.newest_release();
    assert_eq!(
        release["chart"]["archive_digest"],
        digest(&archive),
        "{release}"
    );
    assert_eq!(release["chart"]["source"], url.as_str(), "{release}");
    assert!(release["chart"]["manifest_digest"].is_null(), "{release}");

    let unknown = app.write_config(
        "unknown-version.yaml",
        &format!("      repo: {url}\n      name: sources-web\n      version: 9.9.9\n"),
    );
    let out = app.berth_with(&unknown, &["config", "validate"]);
    assert_refused(
        &out,
        &[
            &format!("cannot pull chart sources-web 9.9.9 from {url}"),
            "environments.test.chart in berth.yaml",
            "check the chart's name and version",
        ],
    );

    drop(repo);
    assert!(
        std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err(),
        "the repository is gone"
    );
    app.deploy("2b3c4d5");
    let release = app.newest_release();
    assert_eq!(release["sha"], "2b3c4d5");
    assert_eq!(
        release["chart"]["archive_digest"],
        digest(&archive),
        "{release}"
    );

    let cold = app
        .command(&["config", "validate"])
        .env("BERTH_CACHE", app.dir.join("cold-cache"))
        .output()
        .unwrap();
    let text = stderr(&cold);
    assert_eq!(code(&cold), 1, "{text}");
    let unreachable =
        format!("cannot reach the registry or repository of chart sources-web 0.1.0 from {url}");
    for part in [unreachable.as_str(), "after 3 tries", "connection refused"] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}

/// A local chart whose dependency is a `file://` chart, with its
/// Chart.lock committed and no charts/: berth builds the dependency in a
/// scratch copy, deploys both charts' objects, and leaves the fixture
/// directories exactly as they were.
#[tokio::test]
async fn a_local_chart_with_a_dependency_deploys_and_its_directory_is_unchanged() {
    let app = SourcesApp::new("sources-deps");
    let charts = repo_root().join("tests/fixtures/charts");
    let before = snapshot(&charts);
    app.configure(&format!(
        "      path: {}\n      set:\n        sources-common.message: set by berth.yaml\n",
        charts.join("with-dependency").display()
    ));
    app.deploy("1a2b3c4");
    assert_eq!(
        app.config_map("wb-common").await["message"],
        "set by berth.yaml"
    );
    let release = app.newest_release();
    assert_eq!(release["chart"]["name"], "with-dependency", "{release}");
    assert!(release["chart"]["archive_digest"].is_null(), "{release}");
    assert_eq!(snapshot(&charts), before, "no file was added or changed");
    assert!(!charts.join("with-dependency/charts").exists());
}

/// Mistakes in `chart:` are exit 2 naming the key and the fix, from
/// `deploy` and `config validate` alike, and nothing is created.
#[tokio::test]
async fn chart_mistakes_exit_2_naming_the_key_and_nothing_changes() {
    let app = SourcesApp::new("sources-bad");
    let chart = app.dir.join("chart");
    copy_dir(
        &repo_root().join("tests/fixtures/charts/with-dependency"),
        &chart,
    );
    std::fs::remove_file(chart.join("Chart.lock")).unwrap();
    for (inside, parts) in [
        (
            "      path: oci://127.0.0.1:25000/charts/sources-web\n".to_owned(),
            vec!["environments.test.chart.version: is missing", "add `version: X.Y.Z`"],
        ),
        (
            "      path: oci://127.0.0.1:25000/charts/sources-web\n      version: ~0.1.0\n".to_owned(),
            vec!["environments.test.chart.version: \"~0.1.0\" is a range"],
        ),
        (
            "      repo: oci://127.0.0.1:25000/charts\n      name: sources-web\n      version: 0.1.0\n"
                .to_owned(),
            vec!["environments.test.chart.repo: \"oci://127.0.0.1:25000/charts\" is an OCI registry"],
        ),
        (
            format!(
                "      path: {}\n      repo: https://charts.example.com\n      name: web\n      version: 1.0.0\n",
                chart.display()
            ),
            vec!["environments.test.chart: has both `path` and `repo`"],
        ),
        (
            format!("      path: {}\n", chart.display()),
            vec![
                "environments.test.chart.path:",
                "declares dependencies in Chart.yaml but has no Chart.lock",
                "run `helm dependency update",
            ],
        ),
    ] {
        app.configure(&inside);
        for args in [&["config", "validate"][..], &["deploy", "test", "1a2b3c4"]] {
            let out = app.berth(args);
            assert_refused(&out, &parts);
        }
    }
    let client = local_env().kube().await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    assert!(namespaces.get_opt(&app.namespace).await.unwrap().is_none());
    assert!(!chart.join("charts").exists());
}
