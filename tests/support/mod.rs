//! The local environment for integration tests: brought up once per test
//! binary by `cluster-setup/local/up` (which reuses whatever already runs),
//! with a namespace, bucket or database of its own for each test.
//!
//! Nothing is skipped: if the environment cannot start, every test that needs
//! it fails with `up`'s own explanation.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod apiserver;
pub mod app;
pub mod backups;
pub mod berth_image;
pub mod capture;
pub mod chart_app;
pub mod chart_repo;
pub mod deployer;
pub mod fault_proxy;
pub mod faults;
pub mod github;
pub mod images;
pub mod load;
pub mod real_app;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

/// The variables `up` exported in `.berth/local/env`.
pub struct LocalEnv {
    vars: HashMap<String, String>,
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kwok-backed example app the suite deploys (tests/fixtures/kwok-app):
/// berth.yaml, `overlays/` and `tasks/`, its pods on kwok's fake nodes only.
/// The repository root's example is the real app, not this.
pub fn kwok_app() -> PathBuf {
    repo_root().join("tests/fixtures/kwok-app")
}

/// The running local environment; the first call in a test binary brings it up.
pub fn local_env() -> &'static LocalEnv {
    static ENV: OnceLock<Result<LocalEnv, String>> = OnceLock::new();
    ENV.get_or_init(bring_up)
        .as_ref()
        .unwrap_or_else(|why| panic!("the local environment is not available: {why}"))
}

fn bring_up() -> Result<LocalEnv, String> {
    let root = repo_root();
    let output = Command::new(root.join("cluster-setup/local/up"))
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cannot run cluster-setup/local/up: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cluster-setup/local/up failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let env_file = root.join(".berth/local/env");
    let text = std::fs::read_to_string(&env_file)
        .map_err(|e| format!("cannot read {}: {e}", env_file.display()))?;
    Ok(LocalEnv {
        vars: parse_env_file(&text),
    })
}

/// Parse `export NAME=VALUE` lines.
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl LocalEnv {
    /// One exported variable; panics naming it if `up` did not write it.
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from .berth/local/env"))
    }

    /// Every exported variable, for child processes.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// A kube-rs client for the `berth-local` context.
    pub async fn kube(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.var("KUBECONFIG")).expect("read kubeconfig");
        let options = KubeConfigOptions {
            context: Some("berth-local".into()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .expect("kubeconfig context berth-local");
        Client::try_from(config).expect("kube client")
    }

    /// An S3 client for the local MinIO.
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let credentials = aws_sdk_s3::config::Credentials::new(
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "berth-local",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .region(aws_sdk_s3::config::Region::new(
                self.var("AWS_REGION").to_string(),
            ))
            .credentials_provider(credentials)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// GET `key` from MinIO's `bucket`.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<
        aws_sdk_s3::operation::get_object::GetObjectOutput,
        aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
    > {
        self.s3()
            .await
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
    }

    /// A connection to the local PostgreSQL's `postgres` database.
    pub async fn postgres(&self) -> tokio_postgres::Client {
        connect_postgres(self.var("DATABASE_URL")).await
    }

    /// A fresh database of this test's own; returns its connection URL.
    pub async fn database(&self, prefix: &str) -> String {
        let name = unique_name(prefix).replace('-', "_");
        self.postgres()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let base = self.var("DATABASE_URL");
        let (server, _) = base.rsplit_once('/').expect("DATABASE_URL has a database");
        format!("{server}/{name}")
    }

    /// Run a command with the environment's variables set.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut command = Command::new(program.as_ref());
        command.envs(&self.vars).current_dir(repo_root());
        command
    }
}

/// Connect to PostgreSQL and drive the connection in the background.
pub async fn connect_postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

/// berth.yaml for a throw-away copy of the kwok-backed app ([`kwok_app`]):
/// its images, and one environment `test` on the local cluster in
/// `namespace`, rendered from `overlay`, with a 90 s rollout timeout. Append
/// keys of `test` indented by 4.
pub fn example_config(namespace: &str, overlay: &Path) -> String {
    test_config(
        &["frontend", "renderer", "fetcher", "cron", "migrate"],
        namespace,
        overlay,
        "90s",
    )
}

/// berth.yaml with the local registry's `workbench/IMAGE` repositories and
/// one environment `test` on the local cluster in `namespace`, rendered from
/// `overlay`, with rollout `timeout`. Append keys of `rollout` indented by 6,
/// or of `test` by 4.
pub fn test_config(images: &[&str], namespace: &str, overlay: &Path, timeout: &str) -> String {
    let images: String = images
        .iter()
        .map(|image| format!("  - 127.0.0.1:25000/workbench/{image}\n"))
        .collect();
    format!(
        r#"app: wb
images:
{images}environments:
  test:
    context: berth-local
    namespace: {namespace}
    overlay: {overlay}
    rollout:
      timeout: {timeout}
"#,
        overlay = overlay.display()
    )
}

/// `berth --config CONFIG ARGS` run in `dir` with the local environment's
/// variables, outside GitHub Actions, with no standard input. What it prints
/// is also kept for the suite's canary check ([`capture`]).
pub fn berth_command(config: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut command = capture::captured(Path::new(env!("CARGO_BIN_EXE_berth")));
    command
        .envs(local_env().vars())
        .env_remove("GITHUB_ACTIONS")
        // The suite's kwok deploys use made-up short SHAs with no images
        // (kwok pulls nothing): taken as given, not looked up. Tests of the
        // lookup remove it.
        .env("BERTH_SHA_AS_GIVEN", "1")
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    // berth as an ordinary shell starts it: SIGHUP at its default, even when
    // the suite itself runs with it ignored (`nohup make test`), where berth
    // would rightly leave SIGHUP alone and the SIGHUP trials would test
    // nothing. A test of `nohup berth` sets it ignored after this.
    // SAFETY: signal(2) is async-signal-safe; nothing else runs in the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    command
}

/// Whether `job` has failed (its `Failed` condition is true).
pub fn job_failed(job: &k8s_openapi::api::batch::v1::Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
}

/// How many Deployments `namespace` has.
pub async fn deployment_count(client: &Client, namespace: &str) -> usize {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), namespace);
    deployments
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

/// Start `command` with its output piped and `input` written to its
/// standard input, which is then closed.
pub fn spawn_with_input(command: &mut Command, input: &str) -> std::process::Child {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child
}

/// Send Ctrl-C (SIGINT) to `child` and wait for it to finish.
pub fn interrupt(child: std::process::Child) -> Output {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success(), "kill -INT {pid}");
    child.wait_with_output().unwrap()
}

/// The last JSON line of a `--output json` run: its report.
pub fn report(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no JSON output; stderr: {}", stderr(output)));
    serde_json::from_str(last).unwrap()
}

/// A finished command's standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A finished command's exit code (-1 when killed by a signal).
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// A name no other test (in this or another process) uses: `prefix-PID-N`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Create the namespace `name`, labelled as a test's.
pub async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "berth.dev/test": "true" } }
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// A namespace of the test's own, with its default ServiceAccount ready.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique_name(prefix);
    create_namespace(client, &name).await;
    // Pods are refused until the ServiceAccount controller made `default`.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &name);
    within(
        Duration::from_secs(30),
        "the default ServiceAccount",
        async {
            while accounts.get_opt("default").await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    name
}

/// Something a test made on the shared local environment, removed when
/// dropped: at the end of the test, whether it passed or failed. Hold it in
/// the test's fixture (or a `let _cleanup`).
pub enum Cleanup {
    /// A namespace: its deletion is requested (kubectl), not waited for.
    Namespace(String),
    /// A MinIO bucket, emptied first.
    Bucket(String),
    /// A PostgreSQL database, dropped even while connections remain.
    Database(String),
    /// A PostgreSQL role (drop its databases first).
    Role(String),
    /// A local directory and what is in it.
    Dir(PathBuf),
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Namespace(name) => {
                // Blocks the test's thread for one API call, not the deletion.
                let deleted = local_env()
                    .command("kubectl")
                    .args(["--context", "berth-local", "delete", "namespace", name])
                    .args(["--ignore-not-found", "--wait=false"])
                    .stdin(Stdio::null())
                    .output();
                match deleted {
                    Ok(out) if out.status.success() => {}
                    Ok(out) => eprintln!(
                        "cleanup: deleting namespace {name} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ),
                    Err(error) => eprintln!("cleanup: cannot run kubectl for {name}: {error}"),
                }
            }
            Cleanup::Bucket(bucket) => off_runtime(remove_bucket(bucket.clone())),
            Cleanup::Database(name) => off_runtime(drop_database(name.clone())),
            Cleanup::Role(name) => off_runtime(drop_role(name.clone())),
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Run `work` on a thread of its own with its own runtime, and wait for it:
/// `Drop` cannot await, and runs inside the test's runtime. A failure is
/// reported, not raised (a panic in a panicking test's Drop would abort).
fn off_runtime(work: impl Future<Output = ()> + Send + 'static) {
    let finished = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for cleanup")
            .block_on(work)
    })
    .join();
    if finished.is_err() {
        eprintln!("cleanup failed (see the panic above)");
    }
}

/// Delete every object of `bucket`, then the bucket.
async fn remove_bucket(bucket: String) {
    let s3 = local_env().s3().await;
    let mut pages = s3.list_objects_v2().bucket(&bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        let Ok(page) = page else { return }; // already gone
        for key in page.contents().iter().filter_map(|o| o.key()) {
            s3.delete_object()
                .bucket(&bucket)
                .key(key)
                .send()
                .await
                .expect("delete a test object");
        }
    }
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("delete a test bucket");
}

/// Drop the database `name`.
async fn drop_database(name: String) {
    local_env()
        .postgres()
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop a test database");
}

/// Drop the role `name`.
async fn drop_role(name: String) {
    local_env()
        .postgres()
        .await
        .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
        .await
        .expect("drop a test role");
}

/// `to` relative to the directory `from` (kustomize refuses absolute resource paths).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let ups = from.components().count() - 1; // every component but the root
    let mut path: PathBuf = std::iter::repeat_n("..", ups).collect();
    path.push(to.strip_prefix("/").unwrap());
    path
}

/// Assert exit 2 (bad input) and that stderr mentions every one of `parts`.
pub fn assert_refused(output: &Output, parts: &[&str]) {
    let text = stderr(output);
    assert_eq!(code(output), 2, "{text}");
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

/// Delete a test namespace (its contents go with it).
pub async fn delete_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

/// Await `future`, failing the test with `what` if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Ask `check` every 20 ms until it answers `Some`, failing the test with
/// `what` after `limit`; the answer.
pub async fn poll<T>(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    within(limit, what, async {
        loop {
            if let Some(answer) = check().await {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Start `command` with its stdout and stderr captured, for
/// `wait_with_output` (or [`interrupt`]) later.
pub fn spawn_captured(command: &mut Command) -> std::process::Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command")
}

/// Watch pods matching `labels` until one satisfies `done`; return it.
pub async fn wait_for_pod(
    api: &Api<Pod>,
    labels: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&Pod) -> bool,
) -> Pod {
    let stream = watcher(api.clone(), watcher::Config::default().labels(labels))
        .default_backoff()
        .applied_objects();
    within(limit, what, async {
        let mut stream = std::pin::pin!(stream);
        while let Some(pod) = stream.try_next().await.expect("watch pods") {
            if done(&pod) {
                return pod;
            }
        }
        panic!("pod watch ended while waiting for {what}")
    })
    .await
}

/// Create an object from JSON in `namespace`.
pub async fn create<K>(client: &Client, namespace: &str, object: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let object: K = serde_json::from_value(object).expect("valid object JSON");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create object")
}

/// The waiting reason of a pod's first container, if it is waiting.
pub fn waiting_reason(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

/// The restart count of a pod's first container.
pub fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}
