//! helm hooks, run as `helm upgrade` runs them, on the local environment:
//! tests/fixtures/charts/hooks has pre-install/pre-upgrade hooks of three
//! weights (two ConfigMaps around a Job), a post-install/post-upgrade Job
//! deleted once it succeeded, pre-rollback and post-rollback hooks, and a
//! `test` Pod. On kwok a hook Job succeeds, or fails when berth pins its
//! image to a SHA starting with fa11ed.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{Api, Client};
use support::chart_app::ChartApp;
use support::*;

/// A throw-away berth.yaml deploying the hooks chart into a namespace of
/// the test's own (release name `wb`).
struct HooksApp(ChartApp);

impl std::ops::Deref for HooksApp {
    type Target = ChartApp;

    fn deref(&self) -> &ChartApp {
        &self.0
    }
}

impl HooksApp {
    fn new(prefix: &str) -> HooksApp {
        let app = ChartApp::new(prefix);
        let chart = repo_root().join("tests/fixtures/charts/hooks");
        app.configure(
            "app: wb\nimages:\n  - 127.0.0.1:25000/workbench/frontend\n  - 127.0.0.1:25000/workbench/migrate\n",
            &format!(
                "    context: berth-local\n    chart:\n      path: {}\n    rollout:\n      timeout: 2m\n",
                chart.display()
            ),
        );
        HooksApp(app)
    }

    /// Deploy the chart with `values` (a values file's text) too.
    fn with_values(self, values: &str) -> HooksApp {
        let file = self.dir.join("values.yaml");
        std::fs::write(&file, values).unwrap();
        let config = self.dir.join("berth.yaml");
        let yaml = std::fs::read_to_string(&config).unwrap();
        let chart = repo_root().join("tests/fixtures/charts/hooks");
        std::fs::write(
            &config,
            yaml.replace(
                &format!("      path: {}\n", chart.display()),
                &format!(
                    "      path: {}\n      values: [{}]\n",
                    chart.display(),
                    file.display()
                ),
            ),
        )
        .unwrap();
        self
    }

    /// Deploy `sha` and return the JSON report, asserting the exit code.
    fn deploy(&self, sha: &str, expected_code: i32) -> (serde_json::Value, String) {
        let out = self.deploy_with(sha, &[], expected_code);
        (report(&out), stderr(&out))
    }

    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(client.clone(), &self.namespace)
    }
}

/// The report's hooks as `event Kind/name status`.
fn hooks_run(report: &serde_json::Value) -> Vec<String> {
    report["hooks"]
        .as_array()
        .unwrap_or_else(|| panic!("the report lists the hooks run: {report}"))
        .iter()
        .map(|h| {
            format!(
                "{} {} {}",
                h["event"].as_str().unwrap(),
                h["name"].as_str().unwrap(),
                h["status"].as_str().unwrap()
            )
        })
        .collect()
}

fn resource_version<K: kube::Resource>(object: &K) -> u64 {
    object
        .meta()
        .resource_version
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
}

fn job_image(job: &Job) -> String {
    job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

async fn web_image(client: &Client, app: &HooksApp) -> String {
    let web = app.api::<Deployment>(client).get("wb-web").await.unwrap();
    web.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// Two SHAs in a row: today's second deploy failed with `Job ... field is
/// immutable`, the Deployment already moved. The hooks run in weight
/// order (seen in the cluster: each object created after the one before
/// finished), the post hook after the rollout and deleted once it
/// succeeded, the pre hooks kept until the next run recreates them, the
/// test hook never applied, and every hook carries berth's labels.
#[tokio::test]
async fn two_shas_deploy_with_their_hooks_run_in_weight_order_around_the_rollout() {
    let app = HooksApp::new("hooks-order");
    let client = local_env().kube().await;
    let (first, _) = app.deploy("1a2b3c4", 0);
    assert_eq!(
        hooks_run(&first),
        [
            "pre-install ConfigMap/wb-hook-first succeeded",
            "pre-install Job/wb-db-migrate succeeded",
            "pre-install ConfigMap/wb-hook-last succeeded",
            "post-install Job/wb-notify succeeded",
        ],
        "{first}"
    );
    let configs = app.api::<ConfigMap>(&client);
    let jobs = app.api::<Job>(&client);
    let hook_first = configs.get("wb-hook-first").await.unwrap();
    let migrate = jobs.get("wb-db-migrate").await.unwrap();
    let hook_last = configs.get("wb-hook-last").await.unwrap();
    // A ConfigMap is never written after its creation, and the Job's last
    // write is its completion: created one after the other's end.
    assert!(
        resource_version(&hook_first) < resource_version(&migrate)
            && resource_version(&migrate) < resource_version(&hook_last),
        "weight order: -5, 0 (finished), 5"
    );
    assert_eq!(
        hook_last.metadata.labels.as_ref().unwrap()["app.kubernetes.io/instance"],
        "wb-test",
        "hooks carry berth's environment labels"
    );
    assert_eq!(
        job_image(&migrate),
        "127.0.0.1:25000/workbench/migrate:1a2b3c4"
    );
    assert!(
        jobs.get_opt("wb-notify").await.unwrap().is_none(),
        "hook-succeeded: deleted"
    );
    assert!(
        app.api::<Pod>(&client)
            .get_opt("wb-smoke")
            .await
            .unwrap()
            .is_none(),
        "a test hook is never applied"
    );
    assert!(
        configs
            .get_opt("wb-before-rollback")
            .await
            .unwrap()
            .is_none()
            && jobs.get_opt("wb-after-rollback").await.unwrap().is_none(),
        "rollback hooks do not run on a deploy"
    );

    let (second, _) = app.deploy("2b3c4d5", 0);
    assert_eq!(
        hooks_run(&second),
        [
            "pre-upgrade ConfigMap/wb-hook-first succeeded",
            "pre-upgrade Job/wb-db-migrate succeeded",
            "pre-upgrade ConfigMap/wb-hook-last succeeded",
            "post-upgrade Job/wb-notify succeeded",
        ],
        "{second}"
    );
    let again = jobs.get("wb-db-migrate").await.unwrap();
    assert_ne!(
        again.metadata.uid, migrate.metadata.uid,
        "before-hook-creation: deleted, then created anew"
    );
    assert_eq!(
        job_image(&again),
        "127.0.0.1:25000/workbench/migrate:2b3c4d5"
    );
    assert_eq!(
        web_image(&client, &app).await,
        "127.0.0.1:25000/workbench/frontend:2b3c4d5"
    );

    let out = app.berth(&["history", "test", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let newest: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "release")
        .expect("a release event");
    assert_eq!(newest["hooks"].as_array().unwrap().len(), 4, "{newest}");
    assert_eq!(newest["hooks"][1]["name"], "Job/wb-db-migrate", "{newest}");
    let out = app.berth(&["history", "test"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("hooks: pre-upgrade ConfigMap/wb-hook-first succeeded"),
        "{table}"
    );
}

/// A pre-upgrade hook that fails stops the deploy before any workload
/// changes: exit 1 naming the hook and why, the Deployment as it was, the
/// failed Job deleted (its hook-failed policy), the release recorded failed.
#[tokio::test]
async fn a_failing_pre_upgrade_hook_stops_the_deploy_before_any_workload_changes() {
    let app = HooksApp::new("hooks-fail");
    let client = local_env().kube().await;
    app.deploy("1a2b3c4", 0);
    let (report, stderr) = app.deploy("fa11ed1", 1);
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(
        report["failure"]["workload"], "Job/wb-db-migrate",
        "{report}"
    );
    assert!(
        stderr.contains("pre-upgrade hook Job/wb-db-migrate failed")
            && stderr.contains("no workload was changed"),
        "{stderr}"
    );
    assert_eq!(
        hooks_run(&report),
        [
            "pre-upgrade ConfigMap/wb-hook-first succeeded",
            "pre-upgrade Job/wb-db-migrate failed",
        ],
        "the hooks after the failed one do not run: {report}"
    );
    assert_eq!(
        web_image(&client, &app).await,
        "127.0.0.1:25000/workbench/frontend:1a2b3c4",
        "the Deployment did not change"
    );
    assert!(
        app.api::<Job>(&client)
            .get_opt("wb-db-migrate")
            .await
            .unwrap()
            .is_none(),
        "hook-failed: deleted"
    );
    let out = app.berth(&["history", "test"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("failed") && table.contains("Job/wb-db-migrate"),
        "{table}"
    );
}

/// `berth rollback` runs the release returned to's rollback hooks, as
/// `helm rollback` runs the target's: pre-rollback before its objects are
/// applied again, post-rollback after they are healthy, with that
/// release's images.
#[tokio::test]
async fn rollback_runs_the_target_releases_rollback_hooks() {
    let app = HooksApp::new("hooks-rollback");
    let client = local_env().kube().await;
    app.deploy("1a2b3c4", 0);
    app.deploy("2b3c4d5", 0);
    let out = app.berth(&["rollback", "test", "--to", "1", "--yes", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rolled_back = report(&out);
    assert_eq!(
        hooks_run(&rolled_back),
        [
            "pre-rollback ConfigMap/wb-before-rollback succeeded",
            "post-rollback Job/wb-after-rollback succeeded",
        ],
        "{rolled_back}"
    );
    let after = app
        .api::<Job>(&client)
        .get("wb-after-rollback")
        .await
        .unwrap();
    assert_eq!(
        job_image(&after),
        "127.0.0.1:25000/workbench/migrate:1a2b3c4",
        "release 1's hook"
    );
    let before = app
        .api::<ConfigMap>(&client)
        .get("wb-before-rollback")
        .await
        .unwrap();
    assert!(resource_version(&before) < resource_version(&after));
    assert_eq!(
        web_image(&client, &app).await,
        "127.0.0.1:25000/workbench/frontend:1a2b3c4"
    );
    assert!(
        app.api::<Job>(&client)
            .get_opt("wb-notify")
            .await
            .unwrap()
            .is_none(),
        "no upgrade hook ran on the rollback"
    );
}

/// Ctrl-C while a hook Job runs deletes it, as it deletes the migration
/// Job, and stops the deploy before any workload changes (exit 130).
#[tokio::test]
async fn ctrl_c_during_a_hook_deletes_its_job() {
    // the hook Job's pod can never be scheduled, and berth waits for it
    let app = HooksApp::new("hooks-interrupt")
        .with_values("hookNodeSelector: {type: kwok, berth.dev/test: nowhere}\n");
    let config = app.dir.join("berth.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        yaml.replace("timeout: 2m", "timeout: 5m\n      unschedulable_after: 5m"),
    )
    .unwrap();
    let client = local_env().kube().await;
    let child =
        spawn_captured(&mut app.command(&["deploy", "test", "1a2b3c4", "--output", "json"]));
    let pods = app.api::<Pod>(&client);
    poll(Duration::from_secs(60), "the hook Job's pod", async || {
        let listed = pods
            .list(&kube::api::ListParams::default().labels("job-name=wb-db-migrate"))
            .await
            .ok()?;
        (!listed.items.is_empty()).then_some(())
    })
    .await;
    let out = interrupt(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(report(&out)["status"], "interrupted");
    let jobs = app.api::<Job>(&client);
    poll(
        Duration::from_secs(30),
        "the hook Job deleted",
        async || {
            jobs.get_opt("wb-db-migrate")
                .await
                .ok()
                .and_then(|j| j.is_none().then_some(()))
        },
    )
    .await;
    assert_eq!(
        deployment_count(&client, &app.namespace).await,
        0,
        "no workload was applied"
    );
}

/// A post-upgrade hook that fails fails the deploy once its objects are
/// applied and healthy; `--rollback-on-failure` then goes back, running
/// the release returned to's rollback hooks.
#[tokio::test]
async fn a_failing_post_upgrade_hook_fails_the_deploy_and_the_automatic_rollback_runs_rollback_hooks()
 {
    let app = HooksApp::new("hooks-post").with_values("{}\n");
    let client = local_env().kube().await;
    app.deploy("1a2b3c4", 0);
    // an image berth does not pin, tagged to fail on kwok
    std::fs::write(
        app.dir.join("values.yaml"),
        "notifyImage: 127.0.0.1:25000/workbench/notify:fa11ed0\n",
    )
    .unwrap();
    let out = app.berth(&[
        "deploy",
        "test",
        "2b3c4d5",
        "--rollback-on-failure",
        "--output",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let failed = report(&out);
    assert_eq!(failed["failure"]["workload"], "Job/wb-notify", "{failed}");
    assert!(
        stderr(&out).contains("post-upgrade hook Job/wb-notify failed")
            && stderr(&out).contains("the release's objects are applied and healthy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        hooks_run(&failed).last().map(String::as_str),
        Some("post-upgrade Job/wb-notify failed"),
        "{failed}"
    );
    // release 1's objects and its rollback hooks, with its images
    assert_eq!(
        web_image(&client, &app).await,
        "127.0.0.1:25000/workbench/frontend:1a2b3c4"
    );
    let after = app
        .api::<Job>(&client)
        .get("wb-after-rollback")
        .await
        .unwrap();
    assert_eq!(
        job_image(&after),
        "127.0.0.1:25000/workbench/migrate:1a2b3c4"
    );
    let out = app.berth(&["history", "test"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.contains("automatic rollback of release 2"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("pre-rollback ConfigMap/wb-before-rollback succeeded")
            && line.contains("post-rollback Job/wb-after-rollback succeeded"),
        "{line}"
    );
}
