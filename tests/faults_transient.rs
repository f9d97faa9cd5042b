//! Transient faults of the Kubernetes API during a deploy: the API server
//! stopped and started again (a second kube-apiserver of the test's own on
//! the shared etcd, see `support::apiserver`) during the migration, the
//! apply and the rollout's wait; and, through the fault proxy in front of
//! the shared API server, connections refused, reset mid-answer or
//! mid-watch, cut all at once, delayed or left unanswered for a while.
//! Every deploy must end with its true result (succeeded, recorded, the
//! migration Job cleaned up), neither a false failure nor a hang.

mod support;

use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client, ResourceExt};
use support::apiserver::{self, ApiServer};
use support::app::{Migration, TestApp};
use support::fault_proxy::{FaultProxy, Mode};
use support::faults::{self, Draws, Scenario, Trial};
use support::real_app::Release;
use support::{
    Cleanup, berth_command, code, local_env, namespace, poll, repo_root, report, spawn_captured,
    stderr, test_config,
};

/// The longest a faulted deploy may take before the trial counts as hung.
const DEPLOY_LIMIT: Duration = Duration::from_secs(240);

/// The longest a deploy whose API server stays down may take before the
/// trial counts as hung: far more than berth's retry budget (a minute, two
/// for a wait's watches, then a few seconds for each request left).
const DOWN_LIMIT: Duration = Duration::from_secs(420);

/// Where a deploy is, as the cluster shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// The deploy lock is taken: the migration runs.
    Locked,
    /// The workloads exist: the rollout's wait runs.
    Applied,
}

/// Whether the deploy into `namespace` reached `point`.
async fn reached(client: &Client, namespace: &str, point: Point) -> bool {
    match point {
        Point::Locked => Api::<Lease>::namespaced(client.clone(), namespace)
            .get_opt("berth-deploy-lock")
            .await
            .is_ok_and(|l| l.is_some()),
        Point::Applied => Api::<Deployment>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .is_ok_and(|l| !l.items.is_empty()),
    }
}

/// Poll (through the shared API server) until the deploy reached `point`,
/// or ended.
async fn until(client: &Client, namespace: &str, point: Point, deploy: &mut Child) {
    let started = Instant::now();
    while !reached(client, namespace, point).await {
        if deploy.try_wait().unwrap().is_some() || started.elapsed() > DEPLOY_LIMIT {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kwok-backed app whose Deployments count as available only 6 s after
/// their pods are ready (`minReadySeconds`), so the rollout's wait lasts
/// long enough to fault it.
fn slow_app(prefix: &str) -> TestApp {
    let app = TestApp::new(prefix, Migration::Kept);
    let kustomization = app.overlay().join("kustomization.yaml");
    let mut text = std::fs::read_to_string(&kustomization).unwrap();
    text.push_str(
        "patches:\n  - target: {kind: Deployment}\n    patch: |-\n      \
         - {op: add, path: /spec/minReadySeconds, value: 6}\n",
    );
    std::fs::write(kustomization, text).unwrap();
    app
}

/// `berth advanced-deploy test SHA --output json` of `app` against the
/// cluster in `kubeconfig`, started.
fn deploy(app: &TestApp, kubeconfig: &Path, sha: &str) -> Child {
    spawn_captured(
        app.command(&["advanced-deploy", "test", sha, "--output", "json"])
            .env("KUBECONFIG", kubeconfig),
    )
}

/// Wait for `deploy` to end (blocking, off the runtime), or kill it once
/// [`DEPLOY_LIMIT`] passed since `started`.
async fn finish(deploy: Child, started: Instant) -> Option<Output> {
    finish_within(deploy, started, DEPLOY_LIMIT).await
}

/// Wait for `deploy` to end, or kill it once `limit` passed since `started`.
async fn finish_within(mut deploy: Child, started: Instant, limit: Duration) -> Option<Output> {
    tokio::task::spawn_blocking(move || {
        while deploy.try_wait().unwrap().is_none() {
            if started.elapsed() > limit {
                let _ = deploy.kill();
                let _ = deploy.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(deploy.wait_with_output().unwrap())
    })
    .await
    .unwrap()
}

/// Judge a faulted deploy's end: exit 0, reported and recorded as
/// succeeded, every workload at `sha`, no Job left behind.
async fn judge(
    client: &Client,
    app: &TestApp,
    sha: &str,
    out: Option<Output>,
    fault_at: Instant,
    what: &str,
) -> Trial {
    let recovered_in = fault_at.elapsed();
    let mut notes = vec![what.to_string()];
    let Some(out) = out else {
        notes.push(format!("the deploy hung for more than {DEPLOY_LIMIT:?}"));
        return Trial {
            survived: false,
            recovered_in,
            notes,
            ..Trial::default()
        };
    };
    let mut survived = code(&out) == 0 && report(&out)["status"] == "succeeded";
    if what.ends_with("(deploy running: false)") {
        survived = false;
        notes.push("the deploy ended before the fault: the trial tried nothing".into());
    }
    if !survived {
        notes.push(format!("exit {}: {}", code(&out), stderr(&out)));
    }
    let history = app.history();
    let recorded: Vec<_> = history.iter().map(|r| r["status"].clone()).collect();
    if recorded != [serde_json::json!("succeeded")] {
        survived = false;
        notes.push(format!("history: {recorded:?}"));
    }
    let deployments = Api::<Deployment>::namespaced(client.clone(), &app.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let stale = deployments
        .iter()
        .flat_map(|d| d.spec.iter().flat_map(|s| s.template.spec.iter()))
        .flat_map(|pod| pod.containers.iter())
        .filter(|c| !c.image.as_deref().unwrap_or("").ends_with(sha))
        .count();
    if deployments.is_empty() || stale > 0 {
        survived = false;
        notes.push(format!(
            "{stale} containers of {} Deployments not at {sha}",
            deployments.len()
        ));
    }
    let jobs = Api::<Job>::namespaced(client.clone(), &app.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    if jobs > 0 {
        notes.push(format!("{jobs} Job(s) left"));
    }
    eprintln!(
        "trial: {} (recovered in {recovered_in:?})",
        notes.join("; ")
    );
    Trial {
        survived,
        data_lost: usize::from(history.len() != 1),
        leftovers: jobs,
        recovered_in,
        notes,
    }
}

/// The API server stopped (gracefully or killed) and started again while a
/// deploy runs: during its migration, its apply, or its rollout's wait.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_spanning_an_api_server_restart_ends_with_its_true_result() {
    let client = local_env().kube().await;
    let mut server = tokio::task::block_in_place(ApiServer::start);
    let mut draws = Draws::for_scenario("apiserver restart");
    let mut scenario = Scenario::new("apiserver restart");
    for trial in 0..faults::trials(3, 9) {
        let app = slow_app("fault-restart");
        // the points in turn, so the bounded form tries each one
        let (point, during, delay) = match trial % 3 {
            0 => (
                Point::Locked,
                "the migration",
                draws.between(ms(0), ms(1500)),
            ),
            1 => (Point::Applied, "the apply", ms(0)),
            _ => (Point::Applied, "the wait", draws.between(ms(500), ms(3000))),
        };
        let crash = draws.below(2) == 0;
        let down = draws.between(ms(2000), ms(8000));
        let started = Instant::now();
        let mut berth = deploy(&app, &server.kubeconfig(), "1a2b3c4");
        until(&client, &app.namespace, point, &mut berth).await;
        tokio::time::sleep(delay).await;
        let fault_at = Instant::now();
        let running = berth.try_wait().unwrap().is_none();
        tokio::task::block_in_place(|| {
            server.stop(crash);
            std::thread::sleep(down);
            server.start_again();
        });
        let how = if crash { "killed" } else { "stopped" };
        let what =
            format!("API server {how} during {during} for {down:?} (deploy running: {running})");
        let out = finish(berth, started).await;
        scenario.record(judge(&client, &app, "1a2b3c4", out, fault_at, &what).await);
    }
    scenario.finish();
}

/// A fault of the network path to the API server, through the proxy.
#[derive(Debug, Clone, Copy)]
enum PathFault {
    /// New connections refused for a while.
    Refuse,
    /// Every connection reset after some bytes of answer, for a while.
    Reset,
    /// All live connections (watches, the log stream) cut, a few times.
    Cut,
    /// Everything delayed, the whole deploy long.
    Delay,
    /// Nothing forwarded for a while.
    Blackhole,
}

/// Connections to the API server refused, reset mid-answer, cut, delayed
/// or unanswered during a deploy, through the fault proxy.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_through_a_faulty_network_path_to_the_api_server_succeeds() {
    let client = local_env().kube().await;
    let proxy = FaultProxy::start(&apiserver::shared_address());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = apiserver::kubeconfig_at(dir.path(), &proxy.address().to_string());
    let mut draws = Draws::for_scenario("apiserver path");
    let mut scenario = Scenario::new("apiserver path");
    let kinds = [
        PathFault::Refuse,
        PathFault::Reset,
        PathFault::Cut,
        PathFault::Delay,
        PathFault::Blackhole,
    ];
    for trial in 0..faults::trials(kinds.len(), 3 * kinds.len()) {
        let fault = kinds[trial % kinds.len()];
        let app = slow_app("fault-path");
        proxy.set(Mode::Pass);
        let started = Instant::now();
        let mut berth = deploy(&app, &kubeconfig, "1a2b3c4");
        let point = if draws.below(2) == 0 {
            Point::Locked
        } else {
            Point::Applied
        };
        until(&client, &app.namespace, point, &mut berth).await;
        let fault_at = Instant::now();
        let running = berth.try_wait().unwrap().is_none();
        let lasting = draws.between(ms(2000), ms(6000));
        let what = match fault {
            PathFault::Refuse => {
                proxy.set(Mode::Refuse);
                format!("connections refused for {lasting:?} once {point:?}")
            }
            PathFault::Reset => {
                let after = 500 + draws.below(8_000);
                proxy.set(Mode::ResetAfter(after));
                format!("connections reset after {after} bytes for {lasting:?} once {point:?}")
            }
            PathFault::Cut => {
                proxy.cut();
                format!("live connections cut once {point:?}, and again after {lasting:?}")
            }
            PathFault::Delay => {
                let delay = draws.between(ms(50), ms(400));
                proxy.set(Mode::Delay(delay));
                format!("every chunk delayed {delay:?} once {point:?}")
            }
            PathFault::Blackhole => {
                proxy.set(Mode::Blackhole);
                format!("nothing forwarded for {lasting:?} once {point:?}")
            }
        };
        tokio::time::sleep(lasting).await;
        match fault {
            PathFault::Cut => proxy.cut(),
            PathFault::Delay => {}
            _ => proxy.set(Mode::Pass),
        }
        let what = format!("{what} (deploy running: {running})");
        let out = finish(berth, started).await;
        scenario.record(judge(&client, &app, "1a2b3c4", out, fault_at, &what).await);
    }
    scenario.finish();
}

/// How many numbered lines the real node's migration prints, one every
/// half second: 15 s of log to stream across a restart.
const LOG_LINES: usize = 30;

/// The real node's migration: one container printing `line-1` to
/// `line-N`, one every half second.
fn counting_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: counting
spec:
  nodeSelector: {{berth.dev/real: "true"}}
  tolerations: [{{key: berth.dev/real, operator: Exists, effect: NoSchedule}}]
  containers:
    - name: migrate-main
      image: 127.0.0.1:25000/workbench/migrate:latest
      command: [sh, -c, 'for i in $(seq 1 {LOG_LINES}); do echo line-$i; sleep 0.5; done']
"#
    )
}

/// An environment of its own whose overlay is one ConfigMap and whose
/// migration is [`counting_pod`], run on the real node `real-0`.
struct CountingMigration {
    config: std::path::PathBuf,
    namespace: String,
    _cleanup: [Cleanup; 2],
}

impl CountingMigration {
    async fn new(client: &Client) -> CountingMigration {
        let namespace = namespace(client, "fault-logs").await;
        let dir = std::env::temp_dir().join(&namespace);
        let cleanup = [
            Cleanup::Namespace(namespace.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        let overlay = dir.join("overlay");
        let migrate = dir.join("migrate");
        for (path, text) in [
            (
                overlay.join("kustomization.yaml"),
                "resources: [settings.yaml]\n".to_string(),
            ),
            (
                overlay.join("settings.yaml"),
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"
                    .into(),
            ),
            (
                migrate.join("kustomization.yaml"),
                "resources: [pod.yaml]\n".into(),
            ),
            (migrate.join("pod.yaml"), counting_pod()),
        ] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config = dir.join("berth.yaml");
        std::fs::write(
            &config,
            format!(
                "{}    migrate:\n      overlay: migrate\n      name: counting\n      deadline: 5m\n",
                test_config(&["migrate"], &namespace, &overlay, "90s")
            ),
        )
        .unwrap();
        CountingMigration {
            config,
            namespace,
            _cleanup: cleanup,
        }
    }

    /// `berth advanced-deploy test SHA --output json` against the cluster
    /// in `kubeconfig`, started.
    fn deploy(&self, kubeconfig: &Path, sha: &str) -> Child {
        spawn_captured(
            berth_command(
                &self.config,
                &repo_root(),
                &["advanced-deploy", "test", sha, "--output", "json"],
            )
            .env("KUBECONFIG", kubeconfig),
        )
    }

    /// `berth history test --output json` through the shared API server.
    fn history(&self) -> Vec<serde_json::Value> {
        let out = berth_command(
            &self.config,
            &repo_root(),
            &["history", "test", "--output", "json"],
        )
        .output()
        .unwrap();
        assert_eq!(code(&out), 0, "berth history: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|event| event["event"] == "release")
            .collect()
    }
}

/// The numbers of the `line-N` lines berth printed as the migration's
/// output (its `task_output` events), in the order it printed them.
fn printed_lines(out: &Output) -> Vec<usize> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "task_output" && event["task"] == "migrate")
        .filter_map(|event| {
            let line = event["line"].as_str()?.strip_prefix("line-")?;
            Some(line.trim().parse().unwrap_or(0))
        })
        .collect()
}

/// How many Jobs are active and pods running (not being deleted) in
/// `namespace`.
async fn still_running(client: &Client, namespace: &str) -> (usize, usize) {
    let jobs = Api::<Job>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0)
        .count();
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();
    (jobs, pods)
}

/// Whether the migration's pod in `namespace` has logged `line`
/// (through the shared API server).
async fn logged(client: &Client, namespace: &str, line: &str) -> bool {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let Ok(list) = pods.list(&ListParams::default().labels("job-name")).await else {
        return false;
    };
    for pod in list.items {
        let params = LogParams {
            container: Some("migrate-main".into()),
            ..LogParams::default()
        };
        if let Ok(log) = pods.logs(&pod.name_any(), &params).await
            && log.lines().any(|l| l == line)
        {
            return true;
        }
    }
    false
}

/// The API server stopped (gracefully or killed) and started again while
/// berth streams the log of a migration running on the real node: the
/// deploy succeeds and berth prints every line of the log once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_migration_log_streamed_across_an_api_server_restart_loses_and_repeats_no_line() {
    let client = local_env().kube().await;
    let sha = tokio::task::block_in_place(|| Release::GoodA.sha());
    let mut server = tokio::task::block_in_place(ApiServer::start);
    let mut draws = Draws::for_scenario("apiserver restart, real log");
    let mut scenario = Scenario::new("apiserver restart, real log");
    let expected: Vec<usize> = (1..=LOG_LINES).collect();
    for _ in 0..faults::trials(1, 4) {
        let env = CountingMigration::new(&client).await;
        let started = Instant::now();
        let mut berth = env.deploy(&server.kubeconfig(), sha);
        // a few lines streamed, then the fault, while most are still to come
        let from = format!("line-{}", 2 + draws.below(4));
        let waited = Instant::now();
        while !logged(&client, &env.namespace, &from).await
            && berth.try_wait().unwrap().is_none()
            && waited.elapsed() < DEPLOY_LIMIT
        {
            tokio::time::sleep(ms(100)).await;
        }
        let fault_at = Instant::now();
        let running = berth.try_wait().unwrap().is_none();
        let crash = draws.below(2) == 0;
        let down = draws.between(ms(2000), ms(5000));
        tokio::task::block_in_place(|| {
            server.stop(crash);
            std::thread::sleep(down);
            server.start_again();
        });
        let how = if crash { "killed" } else { "stopped" };
        let mut notes = vec![format!(
            "API server {how} once the log showed {from}, for {down:?} (deploy running: {running})"
        )];
        let out = finish(berth, started).await;
        let recovered_in = fault_at.elapsed();
        let Some(out) = out else {
            notes.push(format!("the deploy hung for more than {DEPLOY_LIMIT:?}"));
            scenario.record(Trial {
                recovered_in,
                notes,
                ..Trial::default()
            });
            continue;
        };
        let mut survived = running && code(&out) == 0 && report(&out)["status"] == "succeeded";
        if !survived {
            notes.push(format!("exit {}: {}", code(&out), stderr(&out)));
        }
        let printed = printed_lines(&out);
        if printed != expected {
            survived = false;
            notes.push(format!(
                "printed lines {printed:?}, not 1 to {LOG_LINES} once each"
            ));
        }
        let history = env.history();
        let recorded: Vec<_> = history.iter().map(|r| r["status"].clone()).collect();
        if recorded != [serde_json::json!("succeeded")] {
            survived = false;
            notes.push(format!("history: {recorded:?}"));
        }
        // the finished Job is deleted in the background: give its pod a moment
        let mut left = (0, 0);
        for _ in 0..60 {
            left = still_running(&client, &env.namespace).await;
            if left == (0, 0) {
                break;
            }
            tokio::time::sleep(ms(500)).await;
        }
        let (running_jobs, running_pods) = left;
        if running_jobs + running_pods > 0 {
            notes.push(format!(
                "{running_jobs} Job(s) and {running_pods} pod(s) left running"
            ));
        }
        eprintln!(
            "trial: {} (recovered in {recovered_in:?})",
            notes.join("; ")
        );
        scenario.record(Trial {
            survived,
            data_lost: usize::from(history.len() != 1) + LOG_LINES.abs_diff(printed.len()),
            leftovers: running_jobs + running_pods,
            recovered_in,
            notes,
        });
    }
    scenario.finish();
}

/// The API server killed, then stopped, for good during the rollout's wait
/// (a trial lasts two to three minutes: one under `make test`, two under `make faults`):
/// berth gives up within its retry budget (exit 1, a message naming the step, the
/// wait or, when the rollout was done before the server went silent, the
/// record, and the API server that did not answer, no secret); once it is back and the
/// lock expired, `history` shows the release no longer `in_progress` and
/// the next deploy succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_whose_api_server_stays_down_ends_with_a_clear_failure() {
    let client = local_env().kube().await;
    let mut server = tokio::task::block_in_place(ApiServer::start);
    Draws::for_scenario("apiserver down");
    let mut scenario = Scenario::new("apiserver down");
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    let secrets: Vec<String> = kubeconfig
        .lines()
        .filter_map(|l| l.split_once("client-key-data: "))
        .map(|(_, key)| key.trim().to_string())
        .collect();
    // two to three minutes a trial: the kill under `make test`, the kill
    // and the graceful stop under `make faults`
    for trial in 0..faults::trials(1, 2) {
        let app = slow_app("fault-down");
        // killed, then stopped (graceful), during the rollout's wait
        let (point, during, delay) = (Point::Applied, "the wait", ms(1500));
        let crash = trial == 0;
        let started = Instant::now();
        let mut berth = deploy(&app, &server.kubeconfig(), "1a2b3c4");
        until(&client, &app.namespace, point, &mut berth).await;
        tokio::time::sleep(delay).await;
        let fault_at = Instant::now();
        let running = berth.try_wait().unwrap().is_none();
        tokio::task::block_in_place(|| server.stop(crash));
        let how = if crash { "killed" } else { "stopped" };
        let mut notes = vec![format!(
            "API server {how} for good during {during} (deploy running: {running})"
        )];
        let out = finish_within(berth, started, DOWN_LIMIT).await;
        let ended_in = fault_at.elapsed();
        notes.push(format!("berth ended {ended_in:?} after the fault"));
        let mut survived = running;
        match &out {
            None => {
                survived = false;
                notes.push(format!("the deploy hung for more than {DOWN_LIMIT:?}"));
            }
            Some(out) => {
                let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
                let failure = report(out);
                let message = failure["failure"]["message"].as_str().unwrap_or_default();
                // The step: the wait, or, when the rollout was done before
                // the server (draining when stopped) went silent, the record.
                let said = stderr(out);
                let step_named = said.contains("wait") || said.contains("recording release");
                if code(out) != 1
                    || !said.contains("the API server did not answer")
                    || !step_named
                    || output.contains("panicked")
                    || secrets.iter().any(|s| output.contains(s.as_str()))
                {
                    survived = false;
                    notes.push(format!(
                        "exit {}, report {failure}: {}",
                        code(out),
                        stderr(out)
                    ));
                }
                eprintln!("berth's message: {message}\n{}", stderr(out));
            }
        }
        tokio::task::block_in_place(|| server.start_again());
        // once the lock expired, the release is no longer shown in progress
        let shown = poll(Duration::from_secs(60), "the lock to expire", async || {
            let history = app.history();
            let status = history.first()?["status"].as_str()?.to_string();
            (status != "in_progress").then_some(status)
        })
        .await;
        if !["abandoned", "failed"].contains(&shown.as_str()) {
            survived = false;
            notes.push(format!("history shows the release {shown}"));
        }
        let again = finish(
            deploy(&app, &server.kubeconfig(), "1a2b3c4"),
            Instant::now(),
        )
        .await;
        let recovered_in = fault_at.elapsed();
        let recorded: Vec<_> = app.history().iter().map(|r| r["status"].clone()).collect();
        let next_ok = again
            .as_ref()
            .is_some_and(|o| code(o) == 0 && report(o)["status"] == "succeeded");
        if !next_ok || recorded.iter().any(|s| s == "in_progress") {
            survived = false;
            notes.push(format!(
                "the next deploy: {:?}; history {recorded:?}",
                again.as_ref().map(|o| (code(o), stderr(o)))
            ));
        }
        let jobs = Api::<Job>::namespaced(client.clone(), &app.namespace)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        eprintln!(
            "trial: {} (recovered in {recovered_in:?})",
            notes.join("; ")
        );
        scenario.record(Trial {
            survived,
            data_lost: usize::from(recorded.len() != 2),
            leftovers: jobs,
            recovered_in,
            notes,
        });
    }
    scenario.finish();
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
