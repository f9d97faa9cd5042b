//! What berth says under real names and real failures, against the local
//! cluster: `status` under long names and foreign sidecars, a deploy failing
//! on unschedulable pods, a refused rollback, a lock with no namespace yet.

mod support;

use support::app::{Migration, TestApp};
use support::*;

#[tokio::test]
async fn a_rollback_refused_before_it_changed_anything_says_nothing_about_the_schema() {
    let app = TestApp::new("msg-refused", Migration::Deleted);
    app.ok(&["advanced-deploy", "test", "1a2b3c4"]);
    app.ok(&["advanced-deploy", "test", "5e6f7a8"]);
    app.ok(&["lock", "test", "acquire", "--ttl", "10m"]);
    let out = app.berth(&["rollback", "test"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("is locked by"), "it says why: {said}");
    // the plan (stdout) says what the rollback would do; nothing after it
    // claims what happened to the schema
    assert!(
        !said.contains("schema") && !said.contains("warning"),
        "no warning, nothing about the schema: {said}"
    );
    app.ok(&["lock", "test", "release"]);
    // the rollback that runs still says the schema stayed where it was
    let out = app.ok(&["rollback", "test"]);
    assert!(
        stderr(&out).contains("the database schema was NOT rolled back"),
        "{}",
        stderr(&out)
    );
}

/// A Deployment of the app's frontend image whose pods no node can take:
/// `placement` is its pod spec's nodeSelector or affinity (YAML, indented 6).
fn unplaceable(name: &str, placement: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{placement}
      containers:
        - {{name: main, image: 127.0.0.1:25000/workbench/frontend:latest}}
"
    )
}

#[tokio::test]
async fn a_deploy_failing_on_unschedulable_pods_names_every_such_workload_and_its_selector() {
    let gpu = unplaceable("gpu-worker", "      nodeSelector: {pool: gpu-a100}");
    let zonal = unplaceable(
        "zonal-worker",
        "      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: topology.kubernetes.io/zone, operator: In, values: [mars-1]}",
    );
    let app = TestApp::with_resources(
        "msg-unsched",
        Migration::Deleted,
        &[("gpu.yaml", &gpu), ("zonal.yaml", &zonal)],
    );
    app.configure("      unschedulable_after: 5s\n");
    let out = app.berth(&["advanced-deploy", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = report(&out);
    let failure = &report["failure"];
    assert_eq!(failure["reason"], "Unschedulable", "{report}");
    let message = failure["message"].as_str().unwrap();
    let said = format!("{} {message}", failure["workload"]);
    for expected in [
        "Deployment/gpu-worker",
        "no node matches its nodeSelector pool=gpu-a100",
        "Deployment/zonal-worker",
        "no node matches its required node affinity topology.kubernetes.io/zone In [mars-1]",
        "didn't match Pod's node affinity/selector",
    ] {
        assert!(said.contains(expected), "{expected:?} not in {said}");
    }
    let printed = stderr(&out);
    assert!(
        printed.contains("also unschedulable: Deployment/"),
        "{printed}"
    );
}

#[tokio::test]
async fn status_fits_long_names_shows_one_sha_and_other_images_with_their_tag() {
    let name = "europe-west1-workbench-frontend-with-cloud-sql-proxy-sidecar";
    assert!(name.len() >= 50);
    let long = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: long}}}}
  template:
    metadata: {{labels: {{app: long}}}}
    spec:
      nodeSelector: {{type: kwok}}
      containers:
        - {{name: web, image: 127.0.0.1:25000/workbench/frontend:latest}}
        - {{name: render, image: 127.0.0.1:25000/workbench/renderer:latest}}
        - {{name: proxy, image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0}}
"
    );
    let app = TestApp::with_resources("msg-status", Migration::Deleted, &[("long.yaml", &long)]);
    app.ok(&["advanced-deploy", "test", "1a2b3c4"]);

    let out = app.ok(&["status", "test"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("WORKLOAD"))
        .take_while(|l| !l.trim_start().starts_with("drift"))
        .collect();
    let row = rows
        .iter()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("no row for {name}: {text}"));
    assert!(
        row.contains(&format!("Deployment/{name}  ")),
        "the name is whole and a column apart: {text}"
    );
    assert!(
        row.contains(" 1a2b3c4,cloud-sql-proxy:2.8.0 "),
        "one SHA, then the sidecar with its own tag: {text}"
    );
    // every row's READY, SHA and HEALTH start where the header's do
    let header = rows[0];
    for column in ["SHA", "HEALTH"] {
        let at = header.find(column).unwrap();
        for row in &rows[1..] {
            assert_eq!(&row[at - 2..at], "  ", "{column} column misaligned: {text}");
        }
    }
    let ready = header.find("READY").unwrap() + "READY".len();
    for row in &rows[1..] {
        assert!(
            row[..ready].ends_with("/1") || row[..ready].ends_with("/2"),
            "READY is right-aligned under its header: {text}"
        );
    }

    let out = app.ok(&["status", "test", "--output", "json"]);
    let event: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "environment")
        .unwrap();
    let workload = event["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["object"] == format!("Deployment/{name}"))
        .unwrap();
    assert_eq!(
        workload["shas"],
        serde_json::json!(["1a2b3c4"]),
        "{workload}"
    );
    assert_eq!(
        workload["other_images"],
        serde_json::json!(["cloud-sql-proxy:2.8.0"]),
        "{workload}"
    );
}

#[test]
fn version_says_the_server_version_of_the_current_context() {
    let berth = || local_env().command(env!("CARGO_BIN_EXE_berth"));
    let out = berth().arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(
        text.starts_with(concat!("berth ", env!("CARGO_PKG_VERSION"), "\n")),
        "{text}"
    );
    assert!(text.contains("\ncommit: "), "{text}");
    assert!(text.contains("\nserver: v1."), "{text}");
    let out = berth()
        .args(["version", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = report(&out);
    assert_eq!(report["command"], "version", "{report}");
    assert!(
        report["server"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.")),
        "{report}"
    );
}

#[tokio::test]
async fn locking_an_environment_never_deployed_says_its_namespace_does_not_exist_yet() {
    let app = TestApp::new("msg-nolock", Migration::Deleted);
    let out = app.berth(&["lock", "test", "acquire", "--ttl", "10m"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!("namespace {} does not exist", app.namespace))
            && said.contains("the first `berth deploy`")
            && !said.contains("ApiError"),
        "one line naming the namespace, no raw API error: {said}"
    );
}
