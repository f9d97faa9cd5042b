//! A helm chart shaped like `helm create` output, whose selector carries
//! `app.kubernetes.io/instance` (the release name): berth must watch its pods
//! and fail fast on a doomed release exactly as it does for the kustomize
//! kwok-backed app, and `status` must judge it by its pods.
//!
//! The environment's timeout is 5 minutes: a deploy blind to the chart's
//! pods would end with exit 4 (timed out), not 1 (failed, with the reason).

mod support;

use support::chart_app::{ChartApp, copy_dir};
use support::*;

/// A throw-away berth.yaml deploying tests/fixtures/helm-create-chart (and,
/// when asked, a migration Job from berth.yaml: the fault tags doom it too, so
/// the rollout's own fail-fast is tested without one) into a namespace of the
/// test's own.
fn chart_app(prefix: &str, migration: bool) -> ChartApp {
    let app = ChartApp::new(prefix);
    let chart = repo_root().join("tests/fixtures/helm-create-chart");
    app.configure(
        "app: wb\nimages:\n  - 127.0.0.1:25000/workbench/frontend\n  - 127.0.0.1:25000/workbench/migrate\n",
        &format!(
            "    context: berth-local\n    chart:\n      path: {chart}\n{migrate}    rollout:\n      timeout: 5m\n",
            chart = chart.display(),
            migrate = if migration {
                "    migrate:\n      image: 127.0.0.1:25000/workbench/migrate\n"
            } else {
                ""
            },
        ),
    );
    app
}

/// The chart's selector keeps the release name; berth's instance label is
/// on the Deployment itself, and its managed-by label on the pod template.
#[tokio::test]
async fn a_chart_deploys_and_status_judges_it_by_its_pods() {
    let app = chart_app("chart-ok", true);
    let client = local_env().kube().await;
    app.deploy("1a2b3c4", 0);

    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), &app.namespace);
    let web = deployments.get("wb-web").await.unwrap();
    let spec = web.spec.unwrap();
    let selector = spec.selector.match_labels.unwrap();
    assert_eq!(
        selector["app.kubernetes.io/instance"], "wb",
        "selector untouched"
    );
    let template = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(template["app.kubernetes.io/instance"], "wb");
    assert_eq!(template["app.kubernetes.io/managed-by"], "berth");
    assert_eq!(
        web.metadata.labels.unwrap()["app.kubernetes.io/instance"],
        "wb-test"
    );

    let out = app.berth(&["status", "test"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status = String::from_utf8_lossy(&out.stdout);
    let line = status
        .lines()
        .find(|l| l.contains("Deployment/wb-web"))
        .unwrap_or_else(|| panic!("status lists the chart's Deployment: {status}"));
    assert!(
        line.contains("healthy") && line.contains("1a2b3c4"),
        "{line}"
    );
}

#[tokio::test]
async fn a_chart_whose_image_never_pulls_fails_fast_naming_the_pod() {
    let app = chart_app("chart-badbad", false);
    app.deploy("1a2b3c4", 0);
    let report = app.deploy("badbad1", 1);
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(
        report["failure"]["workload"], "Deployment/wb-web",
        "{report}"
    );
    let reason = report["failure"]["reason"].as_str().unwrap();
    assert!(
        ["ImagePullBackOff", "ErrImagePull"].contains(&reason),
        "{report}"
    );
    assert!(
        report["failure"]["pod"]
            .as_str()
            .is_some_and(|p| p.starts_with("wb-web-")),
        "{report}"
    );
}

#[tokio::test]
async fn a_chart_whose_pods_crash_fails_fast_naming_crash_loop_back_off() {
    let app = chart_app("chart-deadbeef", false);
    let report = app.deploy("deadbeef1", 1);
    assert_eq!(
        report["failure"]["workload"], "Deployment/wb-web",
        "{report}"
    );
    assert_eq!(report["failure"]["reason"], "CrashLoopBackOff", "{report}");
}

#[tokio::test]
async fn a_chart_whose_migration_fails_stops_before_any_workload_changes() {
    let app = chart_app("chart-fa11ed", true);
    let client = local_env().kube().await;
    let report = app.deploy("fa11ed1", 1);
    assert!(
        report["failure"]["workload"]
            .as_str()
            .is_some_and(|w| w.starts_with("Job/")),
        "{report}"
    );
    assert_eq!(
        deployment_count(&client, &app.namespace).await,
        0,
        "no workload was applied"
    );
}

/// A selector that pins managed-by to another value would hide the pods from
/// berth: refused before anything changes.
#[tokio::test]
async fn a_selector_on_managed_by_is_refused_with_exit_2_and_nothing_changes() {
    let app = chart_app("chart-managed-by", false);
    let client = local_env().kube().await;
    let chart = app.dir.join("chart");
    copy_dir(
        &repo_root().join("tests/fixtures/helm-create-chart"),
        &chart,
    );
    let helpers = chart.join("templates/_helpers.tpl");
    let text = std::fs::read_to_string(&helpers).unwrap();
    std::fs::write(
        &helpers,
        text.replace(
            "app.kubernetes.io/instance: {{ .Release.Name }}\n{{- end }}",
            "app.kubernetes.io/instance: {{ .Release.Name }}\napp.kubernetes.io/managed-by: {{ .Release.Service }}\n{{- end }}",
        ),
    )
    .unwrap();
    let config = app.dir.join("berth.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    let original = repo_root().join("tests/fixtures/helm-create-chart");
    std::fs::write(
        &config,
        yaml.replace(
            &original.display().to_string(),
            &chart.display().to_string(),
        ),
    )
    .unwrap();

    let out = app.berth(&["deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let why = stderr(&out);
    assert!(
        why.contains("Deployment/wb-web")
            && why.contains("app.kubernetes.io/managed-by")
            && why.contains("`Helm`")
            && why.contains("remove app.kubernetes.io/managed-by from the selector"),
        "{why}"
    );
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    assert!(
        namespaces.get_opt(&app.namespace).await.unwrap().is_none(),
        "nothing was created"
    );
}
