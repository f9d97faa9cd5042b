//! A deploy repository written for kustomize v4, deployed as it is
//! (tests/fixtures/real-repo): `render.kustomize` builds its overlays with
//! the pinned standalone kustomize v4 of the local environment, and
//! `migrate.overlay` runs the repository's own migration Pod, with its
//! database-proxy sidecar that never exits, on the real node real-0. The
//! repository is never written to.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use support::real_app::Release;
use support::{
    Cleanup, assert_refused, berth_command, code, local_env, namespace, repo_root, stderr,
    unique_name,
};

/// The fixture repository.
fn fixture() -> PathBuf {
    repo_root().join("tests/fixtures/real-repo")
}

/// The directory of the local environment's pinned kustomize v4: from
/// `.berth/local/env` (BERTH_LOCAL_KUSTOMIZE), else where build-tools
/// caches it (an environment brought up by an older `up`).
fn kustomize_v4_dir() -> PathBuf {
    let binary = match local_env().vars().get("BERTH_LOCAL_KUSTOMIZE") {
        Some(path) => PathBuf::from(path),
        None => {
            let out = Command::new(repo_root().join("cluster-setup/local/build-tools"))
                .arg("--print")
                .output()
                .unwrap();
            let listing = String::from_utf8_lossy(&out.stdout);
            let dir = listing
                .lines()
                .find_map(|line| line.strip_prefix("kustomize="))
                .expect("build-tools --print lists kustomize");
            Path::new(dir).join("kustomize")
        }
    };
    assert!(
        binary.is_file(),
        "no kustomize v4 at {}; run cluster-setup/local/build-tools kustomize",
        binary.display()
    );
    binary.parent().unwrap().to_owned()
}

/// PATH with the pinned kustomize v4 first, as an operator who installed it has.
fn path_with_kustomize_v4() -> String {
    format!(
        "{}:{}",
        kustomize_v4_dir().display(),
        std::env::var("PATH").unwrap()
    )
}

/// berth in `repo` with `repo/berth.yaml`, kustomize v4 in PATH.
fn berth(repo: &Path, args: &[&str]) -> Output {
    berth_command(&repo.join("berth.yaml"), repo, args)
        .env("PATH", path_with_kustomize_v4())
        .env_remove("BERTH_KUSTOMIZE")
        .output()
        .unwrap()
}

/// Like [`berth`], required to exit 0; its stdout.
fn ok(repo: &Path, args: &[&str]) -> String {
    let out = berth(repo, args);
    assert_eq!(code(&out), 0, "berth {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` but `.git`, with the SHA-256 of its content.
fn checksums(dir: &Path) -> BTreeMap<PathBuf, String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|entry| entry.file_name() != ".git")
        .map(Result::unwrap)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            let digest = Sha256::digest(std::fs::read(entry.path()).unwrap());
            let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
            (entry.path().strip_prefix(dir).unwrap().to_owned(), hex)
        })
        .collect()
}

/// Run git in `repo`, required to succeed; its stdout.
fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=ops", "-c", "user.email=ops@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the fixture at `dir` as the team's git checkout, its staging
/// environment in `namespace` (the one change, committed like the rest).
fn checkout(dir: &Path, namespace: &str) {
    let copied = Command::new("cp")
        .arg("-r")
        .arg(fixture())
        .arg(dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let config = dir.join("berth.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "namespace: real-repo-staging",
        &format!("namespace: {namespace}"),
        1,
    );
    std::fs::write(&config, text).unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "deploy with berth"]);
}

/// `config validate` passes with the pinned kustomize v4 (`render.kustomize:
/// kustomize`, found in PATH), and without `render:` kubectl's kustomize v5
/// refuses the overlays' bare patch file names: exit 2, the incompatibility
/// named, `render.kustomize` and the fix to the kustomization offered, and
/// kubectl's version shown.
#[test]
fn validate_passes_with_kustomize_v4_and_names_the_way_out_with_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    checkout(&repo, "real-repo-validate");

    let stdout = ok(&repo, &["config", "validate"]);
    for line in [
        "staging: 19 objects render, 10 images pinned",
        "production: 19 objects render, 10 images pinned",
    ] {
        assert!(stdout.contains(line), "{line:?} in {stdout}");
    }

    let config = repo.join("berth.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let without_render = text.replacen("render:\n  kustomize: kustomize\n", "", 1);
    assert_ne!(without_render, text, "berth.yaml names render.kustomize");
    std::fs::write(&config, without_render).unwrap();
    let out = berth(&repo, &["config", "validate"]);
    assert_refused(
        &out,
        &[
            "`kubectl kustomize overlays/",
            "Kustomization.patches of type types.Patch",
            "rendered by kubectl v1.",
            "(kustomize v5.",
            "known kustomize v4-to-v5 incompatibility: `patches:` lists bare file names",
            "`render: { kustomize: PATH_OR_NAME }` in berth.yaml",
            "BERTH_KUSTOMIZE=PATH for one run",
            "`- path: FILE`",
        ],
    );
    assert!(
        !stderr(&out).contains("fix the overlay"),
        "{}",
        stderr(&out)
    );

    // BERTH_KUSTOMIZE renders with the v4 for one run, berth.yaml unchanged.
    let v4 = kustomize_v4_dir().join("kustomize");
    let out = berth_command(&config, &repo, &["config", "validate"])
        .env("BERTH_KUSTOMIZE", &v4)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// A failure of the standalone kustomize names it and its version.
#[test]
fn a_kustomize_v4_failure_names_kustomize_and_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    checkout(&repo, "real-repo-broken");
    std::fs::remove_file(repo.join("overlays/staging/ingress-host.yaml")).unwrap();
    let out = berth(&repo, &["config", "validate"]);
    assert_refused(
        &out,
        &[
            "`kustomize build overlays/staging` failed",
            "ingress-host.yaml",
            "rendered by kustomize v4.5.7",
            "fix the overlay overlays/staging (environments.staging.overlay in berth.yaml)",
        ],
    );
}

/// The test's environment: the CRDs the cloud would provide, a namespace,
/// a database and role, and the Secret `database` the repository's
/// manifests read.
struct Environment {
    client: Client,
    namespace: String,
    database_url: String,
    _cleanup: [Cleanup; 3],
}

impl Environment {
    async fn new() -> Environment {
        let env = local_env();
        // Cluster-wide, as a cloud provider's; applied, never removed.
        let applied = env
            .command("kubectl")
            .args(["--context", "berth-local", "apply", "-f"])
            .arg(fixture().join("cluster/crds.yaml"))
            .output()
            .unwrap();
        assert!(applied.status.success(), "{}", stderr(&applied));
        let established = env
            .command("kubectl")
            .args([
                "--context",
                "berth-local",
                "wait",
                "--for=condition=Established",
            ])
            .args(["--timeout=60s", "-f"])
            .arg(fixture().join("cluster/crds.yaml"))
            .output()
            .unwrap();
        assert!(established.status.success(), "{}", stderr(&established));

        let client = env.kube().await;
        let namespace = namespace(&client, "real-repo").await;
        let database = unique_name("real_repo").replace('-', "_");
        let password = format!("pw{}", database.replace('_', ""));
        let postgres = env.postgres().await;
        for statement in [
            format!("CREATE ROLE {database} LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE {database} OWNER {database}"),
        ] {
            postgres.batch_execute(&statement).await.unwrap();
        }
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "database"},
            "stringData": {
                "username": database,
                "password": password,
                "name": database,
                "address": format!("{}:25432", env.var("BERTH_NODE_ADDRESS")),
            }
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .create(&Default::default(), &secret)
            .await
            .unwrap();
        let (server, _) = env.var("DATABASE_URL").rsplit_once('/').unwrap();
        Environment {
            client,
            database_url: format!("{server}/{database}"),
            _cleanup: [
                Cleanup::Namespace(namespace.clone()),
                Cleanup::Database(database.clone()),
                Cleanup::Role(database),
            ],
            namespace,
        }
    }

    /// Each Deployment's name and the tags of its images.
    async fn deployments(&self) -> BTreeMap<String, Vec<String>> {
        Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|deployment| {
                let name = deployment.metadata.name.clone().unwrap();
                let tags = deployment
                    .spec
                    .unwrap()
                    .template
                    .spec
                    .unwrap()
                    .containers
                    .into_iter()
                    .map(|c| c.image.unwrap().rsplit(':').next().unwrap().to_owned())
                    .collect();
                (name, tags)
            })
            .collect()
    }

    /// The names of the objects of a custom kind in the namespace.
    async fn custom(&self, group: &str, version: &str, kind: &str) -> Vec<String> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &resource)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|object| object.metadata.name.unwrap())
            .collect()
    }

    /// How many Django migrations the app's database records, or None
    /// before any ran (no django_migrations table).
    async fn migrations_applied(&self) -> Option<i64> {
        let client = support::connect_postgres(&self.database_url).await;
        client
            .query_one("SELECT count(*) FROM django_migrations", &[])
            .await
            .ok()
            .map(|row| row.get(0))
    }
}

/// Every one of the ten Deployments runs `sha`.
async fn assert_release(env: &Environment, sha: &str) {
    let deployments = env.deployments().await;
    assert_eq!(deployments.len(), 10, "{deployments:?}");
    for (name, tags) in &deployments {
        assert_eq!(tags, &[sha.to_owned()], "Deployment {name}");
    }
}

/// The issue's "Done when": the fixture deploys with `render.kustomize` and
/// `migrate.overlay`, no hand-copied manifests: validate, dry-run, diff,
/// deploy (the migration Pod with its never-exiting proxy sidecar, on the
/// real node, migrating the real database through the proxy), status,
/// history, a second SHA, rollback; the checkout untouched (git status and
/// checksums), and the fixture too.
#[tokio::test]
async fn the_real_repository_deploys_as_it_is() {
    let first = Release::GoodA.sha();
    let second = Release::GoodB.sha();
    let env = Environment::new().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    checkout(&repo, &env.namespace);
    let fixture_before = checksums(&fixture());
    let before = checksums(&repo);

    ok(&repo, &["config", "validate"]);

    let plan = ok(&repo, &["advanced-deploy", "staging", first, "--dry-run"]);
    for part in [
        "Pod/migrate",
        "database-proxy",
        "Pod/upload-assets",
        "Deployment/cron-digest",
        "Ingress/orbit",
        "ManagedCertificate/orbit-certificate",
    ] {
        assert!(plan.contains(part), "{part:?} in the plan:\n{plan}");
    }
    assert!(
        env.deployments().await.is_empty(),
        "a dry run changes nothing"
    );
    assert_eq!(env.migrations_applied().await, None);

    let diff = berth(&repo, &["diff", "staging", first]);
    assert_eq!(code(&diff), 1, "differences: {}", stderr(&diff));
    let diff = String::from_utf8_lossy(&diff.stdout).into_owned();
    for part in [
        "Deployment/web",
        "BackendConfig/web-backend",
        "ManagedCertificate/orbit-certificate",
    ] {
        assert!(diff.contains(part), "{part:?} in the diff:\n{diff}");
    }

    let deployed = ok(&repo, &["advanced-deploy", "staging", first]);
    assert_release(&env, first).await;
    assert!(
        env.migrations_applied().await > Some(0),
        "the migration ran through its proxy: {deployed}"
    );
    assert_eq!(
        env.custom("cloud.example.com", "v1", "BackendConfig").await,
        ["web-backend"]
    );
    assert_eq!(
        env.custom(
            "networking.cloud.example.com",
            "v1beta1",
            "ManagedCertificate"
        )
        .await,
        ["orbit-certificate"]
    );

    let status = ok(&repo, &["status", "staging"]);
    for name in ["web", "cron-sync", "realtime", &first[..12]] {
        assert!(status.contains(name), "{name:?} in status:\n{status}");
    }

    ok(&repo, &["advanced-deploy", "staging", second]);
    assert_release(&env, second).await;

    let history = ok(&repo, &["history", "staging"]);
    assert!(history.contains(&second[..12]), "{history}");

    ok(&repo, &["rollback", "staging"]);
    assert_release(&env, first).await;
    let releases: Vec<(String, String)> = ok(&repo, &["history", "staging", "--output", "json"])
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|event| event["event"] == "release")
        .map(|release| {
            let text = |key: &str| release[key].as_str().unwrap().to_owned();
            (text("sha"), text("status"))
        })
        .collect();
    let succeeded = |sha: &str| (sha.to_owned(), "succeeded".to_owned());
    assert_eq!(
        releases,
        [succeeded(first), succeeded(second), succeeded(first)],
        "newest first: the rollback, the second SHA, the first"
    );

    assert_eq!(git(&repo, &["status", "--porcelain", "--ignored"]), "");
    assert_eq!(checksums(&repo), before, "the checkout is untouched");
    assert_eq!(
        checksums(&fixture()),
        fixture_before,
        "the fixture is untouched"
    );
}
