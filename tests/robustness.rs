//! Deploys that must end, and say why, instead of hanging: a deployer that
//! may not watch what berth watches, a migration that never finishes, and a
//! machine with no cluster configuration at all.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Resource};
use support::deployer::deployer_without;
use support::*;

/// Run `command`, killing it if it runs past `limit` (berth without these
/// fixes waits forever on some of them).
fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "berth still ran after {limit:?}; stderr so far:\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// A directory with berth.yaml deploying the kwok-backed app's staging
/// overlay, changed by `patch` (a strategic merge patch of its migration Job),
/// into `namespace`.
fn app(namespace: &str, patch: Option<&str>) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("robust"));
    let staging = kwok_app().join("overlays/staging");
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    // kustomize refuses absolute resource paths
    let up: PathBuf = std::iter::repeat_n("..", overlay.components().count() - 1).collect();
    let patches = patch.map_or(String::new(), |patch| {
        format!(
            "patches:\n  - patch: |-\n      {patch}\n      apiVersion: batch/v1\n      kind: Job\n      metadata: {{name: migrate}}\n"
        )
    });
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "resources: [{}]\n{patches}",
            up.join(staging.strip_prefix("/").unwrap()).display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("berth.yaml"), example_config(namespace, &overlay)).unwrap();
    dir
}

/// How many objects of kind `K` are in `namespace`.
async fn count<K>(client: &Client, namespace: &str) -> usize
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default()).await.unwrap().items.len()
}

/// A deploy by a deployer missing `verb` on `resource` exits 2 naming both,
/// and changes nothing in the namespace.
async fn refused_before_any_change(resource: &str, verb: &str, group: &str) {
    let client = local_env().kube().await;
    let namespace = namespace(&client, "robust-rbac").await;
    let kubeconfig = deployer_without(&client, &namespace, resource, verb).await;
    let dir = app(&namespace, None);
    let out = run_bounded(
        berth_command(
            &dir.join("berth.yaml"),
            &repo_root(),
            &["deploy", "test", "1a2b3c4"],
        )
        .env("KUBECONFIG", &kubeconfig),
        Duration::from_secs(150),
    );
    let text = stderr(&out);
    assert_eq!(code(&out), 2, "{text}");
    let denied = format!("{verb} {resource} ({group}) in namespace {namespace}");
    assert!(text.contains(&denied), "names {denied:?}: {text}");
    assert_eq!(
        count::<Deployment>(&client, &namespace).await,
        0,
        "no Deployment"
    );
    assert_eq!(
        count::<Job>(&client, &namespace).await,
        0,
        "no migration Job"
    );
    assert_eq!(
        count::<Lease>(&client, &namespace).await,
        0,
        "no lock taken"
    );
    assert_eq!(
        count::<Secret>(&client, &namespace).await,
        0,
        "no release recorded"
    );
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn a_deployer_that_may_not_watch_pods_exits_2_naming_the_verb_before_any_change() {
    refused_before_any_change("pods", "watch", "core").await;
}

#[tokio::test]
async fn a_deployer_that_may_not_watch_deployments_exits_2_before_any_change() {
    refused_before_any_change("deployments", "watch", "apps").await;
}

#[tokio::test]
async fn a_deployer_that_may_not_watch_the_migration_job_exits_2_before_any_change() {
    refused_before_any_change("jobs", "watch", "batch").await;
}

/// Records nothing: the refusal is what this test looks at.
struct Silent;

impl berth::progress::RolloutReporter for Silent {
    fn workload(&self, _: &str, _: berth::progress::Progress, _: &berth::progress::WorkloadState) {}
}

#[tokio::test]
async fn a_refused_watch_ends_the_wait_naming_verb_and_resource() {
    let admin = local_env().kube().await;
    let namespace = namespace(&admin, "robust-watch").await;
    let kubeconfig = deployer_without(&admin, &namespace, "deployments", "watch").await;
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let deployer = Client::try_from(config).unwrap();
    let tracked = [berth::wait::Tracked {
        kind: "Deployment".into(),
        name: "frontend".into(),
        generation: 1,
    }];
    let waited = within(
        Duration::from_secs(60),
        "the wait to end",
        berth::wait::wait_all(
            &deployer,
            berth::wait::Scope {
                namespace: &namespace,
                workloads: "app.kubernetes.io/managed-by=berth",
                pods: "app.kubernetes.io/managed-by=berth",
            },
            &tracked,
            berth::rollout::Thresholds {
                unschedulable_after: Duration::from_secs(300),
                unready_after: Duration::from_secs(120),
            },
            Duration::from_secs(600),
            &Silent,
        ),
    )
    .await;
    match waited {
        Err(berth::wait::WaitFailure::Unwatchable(refusal)) => {
            assert_eq!(
                (refusal.verb, refusal.watched.resource),
                ("watch", "deployments")
            );
            assert!(
                refusal
                    .to_string()
                    .contains("grant `watch` on `deployments`"),
                "{refusal}"
            );
        }
        other => panic!("expected a refused watch, got {other:?}"),
    }
    delete_namespace(&admin, &namespace).await;
}

#[tokio::test]
async fn a_migration_that_never_finishes_times_out_with_exit_4_and_keeps_its_job() {
    let client = local_env().kube().await;
    let namespace = namespace(&client, "robust-migrate").await;
    // suspended: the Job controller never starts its pod
    let dir = app(
        &namespace,
        Some("spec: {suspend: true, activeDeadlineSeconds: 2}"),
    );
    let out = run_bounded(
        &mut berth_command(
            &dir.join("berth.yaml"),
            &repo_root(),
            &[
                "deploy",
                "test",
                "1a2b3c4",
                "--timeout",
                "3s",
                "--output",
                "json",
            ],
        ),
        Duration::from_secs(120),
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let report = report(&out);
    assert_eq!(report["status"], "timed_out", "{report}");
    assert!(
        stderr(&out).contains("did not finish within 5s")
            || report.to_string().contains("did not finish within 5s"),
        "{}\n{report}",
        stderr(&out)
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "the Job is kept"
    );
    assert_eq!(
        count::<Deployment>(&client, &namespace).await,
        0,
        "no workload changed"
    );
    delete_namespace(&client, &namespace).await;
}

#[test]
fn without_a_kubeconfig_or_a_pod_to_run_in_berth_exits_2_naming_both() {
    let home = std::env::temp_dir().join(unique_name("no-kube-home"));
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("berth.yaml");
    // no `context:`, so berth infers its configuration
    std::fs::write(
        &config,
        example_config("nowhere", &kwok_app().join("overlays/staging"))
            .replace("    context: berth-local\n", ""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", &home)
        .env("KUBECONFIG", home.join("missing"))
        .arg("--config")
        .arg(&config)
        .args(["history", "test"])
        .current_dir(&home)
        .output()
        .unwrap();
    let text = stderr(&out);
    assert_eq!(code(&out), 2, "{text}");
    for part in [
        "kubeconfig",
        "in-cluster",
        "KUBERNETES_SERVICE_HOST",
        "set KUBECONFIG",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}
