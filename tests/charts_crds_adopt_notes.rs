//! Real helm charts on the local cluster, run through the local helm:
//! a chart's `crds/` installed in the CRD phase (created when absent,
//! upgraded only with `--upgrade-crds`), a namespace `helm install` manages
//! refused unless `--adopt` (and what `helm upgrade` says after berth), and
//! NOTES.txt shown after the first deploy and by `status --notes`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, ResourceExt};
use support::chart_app::ChartApp;
use support::*;

/// A throw-away copy of one of tests/fixtures/charts, deployed by a
/// berth.yaml of its own into a namespace of the test's own.
struct FixtureApp {
    app: ChartApp,
    chart: PathBuf,
}

impl std::ops::Deref for FixtureApp {
    type Target = ChartApp;

    fn deref(&self) -> &ChartApp {
        &self.app
    }
}

impl FixtureApp {
    /// `fixture` copied, `GROUP` in its files replaced by `group`.
    fn new(prefix: &str, fixture: &str, group: &str) -> FixtureApp {
        let app = ChartApp::new(prefix);
        let chart = app.dir.join("chart");
        copy_with(
            &repo_root().join("tests/fixtures/charts").join(fixture),
            &chart,
            group,
        );
        std::fs::write(app.dir.join("env-values.yaml"), "greeting: welcome\n").unwrap();
        app.configure(
            "app: shop\nimages:\n  - 127.0.0.1:25000/workbench/frontend\n",
            "    context: berth-local\n    chart:\n      path: chart\n      values: [env-values.yaml]\n    rollout:\n      timeout: 5m\n",
        );
        FixtureApp { app, chart }
    }

    /// Deploy `sha` with `flags`, asserting the exit code: the JSON report,
    /// and everything printed (the info and warning events).
    fn deploy(&self, sha: &str, flags: &[&str], expected_code: i32) -> (serde_json::Value, String) {
        let out = self.deploy_with(sha, flags, expected_code);
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        (report(&out), printed)
    }

    /// The local helm, run with `args` against the test's namespace.
    fn helm(&self, args: &[&str]) -> Output {
        local_env()
            .command(local_env().var("BERTH_LOCAL_HELM"))
            .args(args)
            .args([
                "--namespace",
                &self.namespace,
                "--kube-context",
                "berth-local",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Copy directory `from` to `to`, `GROUP` replaced by `group` in every file.
fn copy_with(from: &Path, to: &Path, group: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_with(&entry.path(), &target, group);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(target, text.replace("GROUP", group)).unwrap();
        }
    }
}

/// A CRD group no other test uses, and the CRD deleted when dropped
/// (CRDs are cluster-wide; the cluster is shared).
struct CrdGroup {
    group: String,
}

impl CrdGroup {
    fn new(prefix: &str) -> CrdGroup {
        CrdGroup {
            group: format!("{}.berth.test", unique_name(prefix)),
        }
    }

    fn crd(&self) -> String {
        format!("gadgets.{}", self.group)
    }
}

impl Drop for CrdGroup {
    fn drop(&mut self) {
        let deleted = local_env()
            .command("kubectl")
            .args(["--context", "berth-local", "delete", "crd", &self.crd()])
            .args(["--ignore-not-found", "--wait=false"])
            .stdin(Stdio::null())
            .output();
        if !deleted.is_ok_and(|out| out.status.success()) {
            eprintln!("cleanup: deleting CRD {} failed", self.crd());
        }
    }
}

async fn crd(client: &kube::Client, name: &str) -> CustomResourceDefinition {
    Api::<CustomResourceDefinition>::all(client.clone())
        .get(name)
        .await
        .unwrap()
}

/// A chart's crds/ used to be dropped (no `--include-crds`), so its custom
/// resource was refused: "the cluster does not serve ...".
#[tokio::test]
async fn a_chart_with_crds_and_a_custom_resource_deploys() {
    let group = CrdGroup::new("crds-ok");
    let app = FixtureApp::new("crds-ok", "crds", &group.group);
    let client = local_env().kube().await;

    let (report, said) = app.deploy("1a2b3c4", &[], 0);
    assert_eq!(report["status"], "succeeded", "{report}");
    assert!(
        said.contains(&format!(
            "CustomResourceDefinition {} is Established",
            group.crd()
        )),
        "{said}"
    );
    let installed = crd(&client, &group.crd()).await;
    assert_eq!(
        installed.annotations()["berth.dev/chart-crds"],
        "gadgets/crds/gadgets.yaml"
    );
    let gadgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &app.namespace,
        &ApiResource {
            group: group.group.clone(),
            version: "v1".into(),
            api_version: format!("{}/v1", group.group),
            kind: "Gadget".into(),
            plural: "gadgets".into(),
        },
    );
    let gadget = gadgets.get("shop-gadget").await.unwrap();
    assert_eq!(gadget.data["spec"]["size"], 3);
}

/// helm installs a chart's crds/ when absent and never changes them after;
/// berth too, unless `--upgrade-crds`.
#[tokio::test]
async fn an_existing_crd_is_changed_only_with_upgrade_crds() {
    let group = CrdGroup::new("crds-upgrade");
    let app = FixtureApp::new("crds-upgrade", "crds", &group.group);
    let client = local_env().kube().await;
    app.deploy("1a2b3c4", &[], 0);

    // the chart's next version gives the kind a short name
    let file = app.chart.join("crds/gadgets.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "    singular: gadget\n",
            "    singular: gadget\n    shortNames: [gz]\n",
        ),
    )
    .unwrap();
    let short_names = |crd: CustomResourceDefinition| crd.spec.names.short_names;

    let (_, said) = app.deploy("2b3c4d5", &[], 0);
    let line = format!(
        "CustomResourceDefinition/{} exists: left unchanged",
        group.crd()
    );
    assert!(said.contains(&line), "{said}");
    assert!(said.contains("--upgrade-crds applies them"), "{said}");
    assert_eq!(short_names(crd(&client, &group.crd()).await), None);

    let (_, said) = app.deploy("3c4d5e6", &["--upgrade-crds"], 0);
    assert!(!said.contains(&line), "{said}");
    assert_eq!(
        short_names(crd(&client, &group.crd()).await),
        Some(vec!["gz".to_owned()])
    );
}

/// The Secrets of `ns` that are berth's release records.
async fn berth_records(client: &kube::Client, ns: &str) -> usize {
    Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("berth.dev/release-record=true"))
        .await
        .unwrap()
        .items
        .len()
}

/// helm's release records of `release` in `ns`.
async fn helm_records(client: &kube::Client, ns: &str, release: &str) -> usize {
    Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("owner=helm,name={release}")))
        .await
        .unwrap()
        .items
        .len()
}

fn managed_by(labels: Option<&std::collections::BTreeMap<String, String>>) -> String {
    labels
        .and_then(|l| l.get("app.kubernetes.io/managed-by"))
        .cloned()
        .unwrap_or_default()
}

/// A namespace `helm install` manages is refused (exit 2, the release and
/// its objects named, nothing changed); `--adopt` takes it over in one
/// recorded step, and tells how to delete helm's records; after them,
/// helm refuses berth's objects with a clear message.
#[tokio::test]
async fn a_namespace_helm_manages_is_refused_unless_adopted() {
    let app = FixtureApp::new("adopt", "adopt", "");
    let client = local_env().kube().await;
    let chart = app.chart.to_str().unwrap();
    let installed = app.helm(&["install", "shop", chart, "--create-namespace"]);
    assert!(installed.status.success(), "{}", stderr(&installed));
    let services: Api<Service> = Api::namespaced(client.clone(), &app.namespace);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &app.namespace);

    let out = app.berth(&["deploy", "test", "1a2b3c4"]);
    assert_refused(
        &out,
        &[
            "helm release `shop`",
            "revision 1, deployed",
            "Service/shop-web",
            "ConfigMap/shop-config",
            "berth changed nothing",
            "--adopt",
        ],
    );
    assert_eq!(berth_records(&client, &app.namespace).await, 0);
    let web = services.get("shop-web").await.unwrap();
    assert_eq!(managed_by(web.metadata.labels.as_ref()), "Helm");

    let (report, said) = app.deploy("1a2b3c4", &["--adopt"], 0);
    assert_eq!(report["status"], "succeeded", "{report}");
    assert!(said.contains("adopted helm release shop"), "{said}");
    let cleanup = format!(
        "kubectl -n {} delete secret -l owner=helm,name=shop",
        app.namespace
    );
    assert!(said.contains(&cleanup), "{said}");
    let newest = berth::cluster::release::list(&client, &app.namespace)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(newest.adopted_helm_releases, ["shop"]);
    for labels in [
        services.get("shop-web").await.unwrap().metadata.labels,
        configs.get("shop-config").await.unwrap().metadata.labels,
    ] {
        assert_eq!(managed_by(labels.as_ref()), "berth");
    }
    assert_eq!(
        helm_records(&client, &app.namespace, "shop").await,
        1,
        "berth never deletes helm's records"
    );

    // adopted: its records left behind refuse nothing
    app.deploy("2b3c4d5", &[], 0);

    // with helm's records deleted as berth says, helm refuses berth's objects
    let deleted = local_env()
        .command("kubectl")
        .args(["--context", "berth-local"])
        .args(cleanup.split(' ').skip(1))
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let upgrade = app.helm(&["upgrade", "shop", chart]);
    assert!(!upgrade.status.success());
    assert!(
        stderr(&upgrade).contains("UPGRADE FAILED: \"shop\" has no deployed releases"),
        "{}",
        stderr(&upgrade)
    );
    let upgrade = app.helm(&["upgrade", "--install", "shop", chart]);
    assert!(!upgrade.status.success());
    let said = stderr(&upgrade);
    for part in [
        "exists and cannot be imported into the current release: invalid ownership metadata",
        "label validation error: key \"app.kubernetes.io/managed-by\" must equal \"Helm\": current value is \"berth\"",
    ] {
        assert!(said.contains(part), "{part:?} in {said}");
    }
}

/// NOTES.txt, rendered with the environment's values, release name and
/// namespace: after the first deploy only, and by `status --notes`; neither
/// writes helm's records.
#[tokio::test]
async fn notes_are_shown_after_the_first_deploy_and_by_status() {
    let app = FixtureApp::new("notes", "notes", "");
    let client = local_env().kube().await;
    let expected = format!(
        "welcome from release shop in namespace {ns}.\nOpen it with: kubectl -n {ns} get configmap shop-greeting",
        ns = app.namespace
    );

    let (report, _) = app.deploy("1a2b3c4", &[], 0);
    assert_eq!(report["notes"], expected.as_str(), "{report}");
    let (report, _) = app.deploy("2b3c4d5", &[], 0);
    assert!(report.get("notes").is_none(), "{report}");

    let out = app.berth(&["status", "test", "--notes"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("NOTES:\n{expected}")),
        "{printed}"
    );
    let out = app.berth(&["status", "test", "--notes", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let event: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find(|l| l.contains("\"event\":\"environment\""))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(event["notes"], expected.as_str(), "{event}");
    let out = app.berth(&["status", "test"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("NOTES:"));

    assert_eq!(helm_records(&client, &app.namespace, "shop").await, 0);
    assert_eq!(berth_records(&client, &app.namespace).await, 2);
}

/// The first deploy of a chart prints its notes for people too.
#[tokio::test]
async fn the_first_deploy_prints_notes_for_people() {
    let app = FixtureApp::new("notes-plain", "notes", "");
    let out = app.berth(&["deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!(
            "NOTES:\nwelcome from release shop in namespace {}.",
            app.namespace
        )),
        "{printed}"
    );
}
