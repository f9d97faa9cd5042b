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
use kube::api::ListParams;
use kube::{Api, Client};
use support::apiserver::{self, ApiServer};
use support::app::{Migration, TestApp};
use support::fault_proxy::{FaultProxy, Mode};
use support::faults::{self, Draws, Scenario, Trial};
use support::{code, local_env, report, spawn_captured, stderr};

/// The longest a faulted deploy may take before the trial counts as hung.
const DEPLOY_LIMIT: Duration = Duration::from_secs(240);

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
async fn finish(mut deploy: Child, started: Instant) -> Option<Output> {
    tokio::task::spawn_blocking(move || {
        while deploy.try_wait().unwrap().is_none() {
            if started.elapsed() > DEPLOY_LIMIT {
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

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
