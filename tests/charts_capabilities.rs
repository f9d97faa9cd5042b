//! Charts rendered for the cluster they deploy to: `.Capabilities` is the
//! cluster's (version and API versions, from discovery), and `lookup` reads
//! it, so the "reuse the existing Secret, else generate a password" pattern
//! keeps its password; `diff` names the keys of a Secret that change, never
//! a value. Charts: tests/fixtures/charts/capabilities-*.

mod support;

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde_json::Value;
use support::chart_app::ChartApp;
use support::*;

/// What every value of the lookup chart's Secret starts with, in clear and
/// in base64 (the suite's canary check looks for them in every run too).
const CANARY: [&str; 2] = ["berth-canary", "YmVydGgtY2FuYXJ5"];

/// A throw-away berth.yaml deploying one of the fixture charts into a
/// namespace of the test's own, through the local environment's context.
struct CapabilitiesApp {
    app: ChartApp,
    chart: PathBuf,
}

impl std::ops::Deref for CapabilitiesApp {
    type Target = ChartApp;

    fn deref(&self) -> &ChartApp {
        &self.app
    }
}

impl CapabilitiesApp {
    /// An app of tests/fixtures/charts/`chart`, its environment `test` on
    /// kubeconfig context `context`.
    fn new(prefix: &str, chart: &str, context: &str) -> CapabilitiesApp {
        let app = CapabilitiesApp {
            app: ChartApp::new(prefix),
            chart: repo_root().join("tests/fixtures/charts").join(chart),
        };
        app.configure(context, &[]);
        app
    }

    /// Write berth.yaml: context `context`, the chart with `values` files.
    fn configure(&self, context: &str, values: &[&str]) {
        let values = if values.is_empty() {
            String::new()
        } else {
            format!("      values: [{}]\n", values.join(", "))
        };
        self.app.configure(
            "app: wb\nimages:\n  - 127.0.0.1:25000/workbench/frontend\n",
            &format!(
                "    context: {context}\n    chart:\n      path: {}\n{values}",
                self.chart.display()
            ),
        );
    }

    /// Deploy `sha`, which must succeed.
    fn deploy(&self, sha: &str) {
        self.app.deploy(sha, 0);
    }

    /// The password in the chart's Secret, as the cluster has it.
    async fn password(&self) -> Vec<u8> {
        let secrets: Api<Secret> = Api::namespaced(local_env().kube().await, &self.namespace);
        let secret = secrets.get("wb-db").await.unwrap();
        secret.data.unwrap()["password"].0.clone()
    }
}

/// Fail if `text` shows a canary value or `secret`, in clear or base64.
fn assert_no_value(text: &str, secret: &[u8]) {
    for canary in CANARY {
        assert!(!text.contains(canary), "a Secret value in: {text}");
    }
    let plain = String::from_utf8_lossy(secret);
    assert!(!text.contains(plain.as_ref()), "the password in: {text}");
    assert!(
        !text.contains(&BASE64.encode(secret)),
        "the password in: {text}"
    );
}

/// helm template's own default cluster (v1.20.0) fails `kubeVersion:
/// >=1.23.0-0` and lacks `batch/v1/CronJob`: rendered for the real cluster,
/// the chart deploys, sees the cluster's version, and picks batch/v1.
#[tokio::test]
async fn a_chart_renders_for_the_version_and_api_versions_of_its_cluster() {
    let app = CapabilitiesApp::new("chart-caps", "capabilities-cluster", "berth-local");
    let client = local_env().kube().await;
    let server = client.apiserver_version().await.unwrap();

    let out = app.berth(&["config", "validate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("rendered for Kubernetes {})", server.git_version)),
        "{said}"
    );

    app.deploy("1a2b3c4");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &app.namespace);
    let data = maps.get("wb-capabilities").await.unwrap().data.unwrap();
    assert_eq!(data["kubeVersion"], server.git_version);
    assert_eq!(data["cronJobV1"], "true", "a kind the cluster serves");
    assert_eq!(data["deployment"], "true", "a kind the cluster serves");
    assert_eq!(data["widget"], "false", "a kind it does not serve");
    let cron_jobs: Api<CronJob> = Api::namespaced(client, &app.namespace);
    let nightly = serde_json::to_value(cron_jobs.get("wb-nightly").await.unwrap()).unwrap();
    assert_eq!(
        nightly.pointer("/spec/jobTemplate/spec/template/spec/containers/0/image"),
        Some(&Value::from("127.0.0.1:25000/workbench/frontend:1a2b3c4"))
    );
}

/// `lookup` answered by the cluster: the Secret generated at the first
/// deploy is found at the next one, whose SHA differs, and kept.
#[tokio::test]
async fn a_password_the_chart_generates_survives_the_next_deploy() {
    let app = CapabilitiesApp::new("chart-lookup", "capabilities-lookup", "berth-local");
    app.deploy("1a2b3c4");
    let first = app.password().await;
    assert!(
        first.starts_with(b"berth-canary-"),
        "the chart generated it"
    );
    app.deploy("5e6f7a8");
    assert_eq!(app.password().await, first, "the password was kept");
}

/// The object event of `object` among `--output json` lines.
fn object_event<'a>(events: &'a [Value], object: &str) -> &'a Value {
    events
        .iter()
        .find(|e| {
            e["event"] == "object" && e["object"].as_str().is_some_and(|o| o.starts_with(object))
        })
        .unwrap_or_else(|| panic!("no event for {object} in {events:?}"))
}

/// `diff` says which keys of a Secret change (here not the password, which
/// `lookup` keeps), in words and in JSON, and never a value.
#[tokio::test]
async fn diff_names_the_keys_of_a_secret_that_change_never_a_value() {
    let app = CapabilitiesApp::new("chart-diff-keys", "capabilities-lookup", "berth-local");
    app.deploy("1a2b3c4");
    let password = app.password().await;

    // Another SHA, the same values: the Secret stays as it is.
    let out = app.berth(&["diff", "test", "5e6f7a8", "--output", "json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!([0, 1].contains(&code(&out)), "{}", stderr(&out));
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let secret = object_event(&events, "Secret/wb-db");
    assert_eq!(secret["change"], "unchanged", "{secret}");
    assert!(secret.get("secret_keys").is_none(), "{secret}");

    // A values file changes one key, removes one and adds one.
    std::fs::write(
        app.dir.join("keys.yaml"),
        "secretKeys:\n  user: berth-canary-admin\n  legacy: null\n  token: berth-canary-token\n",
    )
    .unwrap();
    app.configure("berth-local", &["keys.yaml"]);

    let out = app.berth(&["diff", "test", "5e6f7a8"]);
    assert_eq!(code(&out), 1, "differences: {}", stderr(&out));
    let human = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        human.contains(
            "~ Secret/wb-db (its data changes: user changed; token added; legacy removed)"
        ),
        "{human}"
    );
    assert_no_value(&human, &password);
    assert_no_value(&stderr(&out), &password);

    let out = app.berth(&["diff", "test", "5e6f7a8", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_no_value(&text, &password);
    assert_no_value(&stderr(&out), &password);
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let secret = object_event(&events, "Secret/wb-db");
    assert_eq!(secret["change"], "changed", "{secret}");
    let keys = serde_json::json!({"added": ["token"], "removed": ["legacy"], "changed": ["user"]});
    assert_eq!(secret["secret_keys"], keys, "{secret}");
    let report = report(&out);
    assert_eq!(
        report["secrets_changing"],
        serde_json::json!([{"object": "Secret/wb-db", "added": ["token"], "removed": ["legacy"], "changed": ["user"]}]),
        "{report}"
    );
    assert_eq!(app.password().await, password, "diff changed nothing");
}

/// `config validate` without its cluster renders the chart for helm's
/// default cluster, and says so in one line.
#[tokio::test]
async fn config_validate_without_the_cluster_says_what_the_chart_rendered_for() {
    let app = CapabilitiesApp::new("chart-offline", "capabilities-lookup", "berth-nowhere");
    let out = app.berth(&["config", "validate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let notes: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("helm's default Kubernetes version"))
        .collect();
    assert_eq!(notes.len(), 1, "{said}");
    assert!(
        notes[0].contains("test: its chart renders for helm's default Kubernetes version")
            && notes[0].contains("berth-nowhere"),
        "{said}"
    );
    assert!(said.contains("is valid"), "{said}");
}
