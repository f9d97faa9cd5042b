//! Secrets never reach berth's output: the kwok-backed app's canary Secret
//! (`tests/fixtures/kwok-app/overlays/base/canary.yaml`) and its
//! `secretGenerator` canary, through deploy, diff, history, `-vv`,
//! `--log-file` and the GitHub step summary.
//! The whole suite's output is checked for them too (`tests/support/canary`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use support::{berth_command, code, example_config, kwok_app, local_env, stderr, unique_name};

/// What every canary value starts with, and its base64 (a Secret's `data`).
const CANARY: [&str; 2] = ["berth-canary", "YmVydGgtY2FuYXJ5"];

/// Fail naming `what` if `text` shows a canary, in clear or base64.
fn assert_no_canary(what: &str, text: &str) {
    for pattern in CANARY {
        assert!(
            !text.contains(pattern),
            "{what} shows a Secret value: {text}"
        );
    }
}

/// The kwok-backed app deployed from its staging overlay (its migration Job
/// left out) into a namespace of its own, deleted when the test ends.
struct App {
    dir: PathBuf,
    namespace: String,
}

impl App {
    fn new(namespace: String) -> App {
        let dir = std::env::temp_dir().join(&namespace);
        let staging = kwok_app().join("overlays/staging");
        let overlay = dir.join("overlay");
        write_overlay(
            &overlay,
            &relative(&overlay, &staging),
            "$patch: delete\napiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}",
        );
        let app = App { dir, namespace };
        app.use_overlay(&overlay);
        app
    }

    /// Render the environment from `overlay` from now on.
    fn use_overlay(&self, overlay: &Path) {
        std::fs::write(
            self.dir.join("berth.yaml"),
            example_config(&self.namespace, overlay),
        )
        .unwrap();
    }

    /// The overlay with the canary Secret's value replaced by `value`.
    fn with_canary(&self, value: &str) -> PathBuf {
        let changed = self.dir.join("changed");
        write_overlay(
            &changed,
            Path::new("../overlay"),
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: canary}}\nstringData: {{token: {value}}}"
            ),
        );
        changed
    }

    fn command(&self, args: &[&str]) -> Command {
        berth_command(&self.dir.join("berth.yaml"), &self.dir, args)
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Deploy the app, asserting it succeeded.
    fn deploy(&self) {
        let out = self.berth(&["deploy", "test", "1a2b3c4"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }

    /// The live canary Secret's token.
    async fn live_token(&self) -> String {
        let secrets: Api<Secret> = Api::namespaced(local_env().kube().await, &self.namespace);
        let secret = secrets.get("canary").await.expect("the canary Secret");
        let data = secret.data.expect("the canary has data");
        String::from_utf8(data["token"].0.clone()).unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // runs when an assertion fails too; the namespace goes in the background
        let _ = local_env()
            .command("kubectl")
            .args(["--context", "berth-local", "delete", "namespace"])
            .args([&self.namespace, "--wait=false", "--ignore-not-found"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A kustomization in `dir` of `resource` with one strategic merge `patch`.
fn write_overlay(dir: &Path, resource: &Path, patch: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let patch = patch.replace('\n', "\n      ");
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "resources: [{}]\npatches:\n  - patch: |-\n      {patch}\n",
            resource.display()
        ),
    )
    .unwrap();
}

/// `to` relative to the directory `from` (kustomize refuses absolute resource paths).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let ups = from.components().count() - 1; // every component but the root
    std::iter::repeat_n(Path::new(".."), ups)
        .chain([to.strip_prefix("/").unwrap()])
        .collect()
}

/// stdout and stderr of a run, as text.
fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out))
}

/// `berth diff`'s stdout, asserting it names the canary's key `(changed)`
/// and shows no canary anywhere.
fn diff_changing_the_canary(app: &App) -> String {
    let out = app.berth(&["diff", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 1, "differences: {}", stderr(&out));
    assert_no_canary("diff", &both(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("~ Secret/canary"), "{stdout}");
    assert!(stdout.contains("token: (changed)"), "{stdout}");
    stdout
}

#[tokio::test]
async fn diff_names_a_changed_secret_key_without_either_value() {
    let app = App::new(unique_name("secrets-diff"));
    app.deploy();
    assert!(app.live_token().await.starts_with("berth-canary-"));
    app.use_overlay(&app.with_canary("berth-canary-changed-31c7e0d4"));
    let stdout = diff_changing_the_canary(&app);
    // the generated canary kept its value
    assert!(!stdout.contains("~ Secret/canary-generated"), "{stdout}");
}

#[tokio::test]
async fn a_live_secret_applied_by_kubectl_does_not_leak_through_its_annotation() {
    let client = local_env().kube().await;
    let app = App::new(support::namespace(&client, "secrets-kubectl").await);
    // client-side apply keeps the whole object, values in clear, in
    // kubectl.kubernetes.io/last-applied-configuration
    let mut kubectl = local_env()
        .command("kubectl")
        .args(["--context", "berth-local", "-n", &app.namespace])
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        kubectl.stdin.as_mut().unwrap(),
        b"apiVersion: v1\nkind: Secret\nmetadata: {name: canary}\nstringData: {token: berth-canary-kubectl-9b04e6}\n",
    )
    .unwrap();
    assert!(kubectl.wait_with_output().unwrap().status.success());
    assert_eq!(app.live_token().await, "berth-canary-kubectl-9b04e6");
    let stdout = diff_changing_the_canary(&app);
    assert!(!stdout.contains("last-applied-configuration"), "{stdout}");
}

#[tokio::test]
async fn history_json_the_debug_log_and_the_step_summary_keep_secrets_out() {
    let app = App::new(unique_name("secrets-report"));
    let summary = app.dir.join("step-summary.md");
    let log = app.dir.join("berth.log");
    let out = app
        .command(&["deploy", "test", "1a2b3c4", "-vv", "--output", "json"])
        .arg("--log-file")
        .arg(&log)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(app.live_token().await.starts_with("berth-canary-"));
    let text = both(&out);
    assert_no_canary("deploy -vv --output json", &text);
    // -vv is the debug log: it names the canaries it applied, nothing more
    assert!(text.contains("applied Secret/canary"), "{text}");
    assert!(text.contains("applied Secret/canary-generated-"), "{text}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_no_canary("--log-file", &logged);
    assert!(
        logged.contains("applied Secret/canary dry_run=false"),
        "{logged}"
    );
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert_no_canary("the step summary", &markdown);
    assert!(markdown.contains("### berth: deployed"), "{markdown}");

    let out = app.berth(&["history", "test", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_no_canary("history --output json", &stdout);
    let release: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    // the record keeps the objects for rollback; printed, they are names only
    assert_eq!(release["manifest"]["redacted"], true, "{release}");
    let objects = release["manifest"]["objects"].as_array().unwrap();
    assert!(objects.iter().any(|o| o == "Secret/canary"), "{release}");
}

#[test]
fn an_unwritable_log_file_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = berth_command(
        &dir.path().join("berth.yaml"),
        dir.path(),
        &["config", "schema"],
    )
    .arg("--log-file")
    .arg(dir.path().join("missing/berth.log"))
    .output()
    .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--log-file"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing ran");
}
