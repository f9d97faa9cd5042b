//! The container image `berth:<version>` (packaging/build-image): built
//! daemonless from the static binary, pushed to the local registry twice with
//! the same digest, and run as a pod on the real node. The binary is
//! `$BERTH_STATIC_BINARY` when set (one packaging/build-static already
//! built), else build-image runs packaging/build-static (a release build:
//! many minutes when it is not up to date).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use serde_json::json;
use support::{Cleanup, create, local_env, namespace, unique_name, wait_for_pod};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Run packaging/build-image into `registry`; the pushed `REF@DIGEST`.
fn build_image(registry: &str) -> String {
    let mut command = local_env().command("packaging/build-image");
    command.args(["--registry", registry]);
    if let Some(binary) = std::env::var_os("BERTH_STATIC_BINARY") {
        command.arg("--binary").arg(binary);
    }
    let output = command
        .arg(VERSION)
        .output()
        .expect("run packaging/build-image");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "build-image failed:\n{stderr}");
    let reference = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(
        reference.starts_with(&format!("{registry}/berth:{VERSION}@sha256:")),
        "{reference}\n{stderr}"
    );
    reference
}

/// The image's configuration, as `crane config` shows it.
fn image_config(reference: &str) -> serde_json::Value {
    let output = local_env()
        .command(local_env().var("BERTH_LOCAL_CRANE"))
        .args(["config", "--insecure", reference])
        .output()
        .expect("run crane config");
    assert!(output.status.success(), "crane config {reference} failed");
    serde_json::from_slice(&output.stdout).expect("the image config is JSON")
}

#[tokio::test]
async fn the_image_runs_berth_as_its_own_user_on_the_real_node() {
    let env = local_env();
    // a repository path of this test's own, so parallel runs do not race
    let registry = format!(
        "{}/{}",
        env.var("BERTH_LOCAL_REGISTRY"),
        unique_name("image-test")
    );
    let reference = build_image(&registry);
    assert_eq!(
        build_image(&registry),
        reference,
        "a rebuild pushes the same digest"
    );

    let config = image_config(&reference);
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/usr/local/bin/berth"])
    );
    assert_eq!(config["architecture"], "amd64");

    let client = env.kube().await;
    let ns = namespace(&client, "image").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let (pod, logs) = run_on_real_node(
        &client,
        &ns,
        "berth",
        &reference,
        json!({"args": ["--version"]}),
    )
    .await;
    let status = pod.status.clone().unwrap();
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("real-0"));
    // the kubelet reports the user the container's process ran as
    let user = status.container_statuses.unwrap()[0]
        .user
        .clone()
        .and_then(|user| user.linux)
        .expect("the kubelet reports the container's user");
    assert_eq!((user.uid, user.gid), (65532, 65532));
    assert!(
        logs.starts_with(&format!("berth {VERSION}\n")),
        "berth --version printed {logs:?}"
    );
    assert!(
        logs.lines().any(|line| line == "linkage: static"),
        "the image's berth is not the static build: {logs:?}"
    );

    // the backup pods run PostgreSQL 15's client from the image
    let (_, logs) = run_on_real_node(
        &client,
        &ns,
        "pg-dump",
        &reference,
        json!({"command": ["pg_dump", "--version"]}),
    )
    .await;
    assert!(
        logs.starts_with("pg_dump (PostgreSQL) 15."),
        "pg_dump --version printed {logs:?}"
    );
}

/// Run `image` as pod `name` on real-0 with `command` (the container's
/// `command`/`args`) until it ends; it must succeed. The pod and its log.
async fn run_on_real_node(
    client: &kube::Client,
    ns: &str,
    name: &str,
    image: &str,
    command: serde_json::Value,
) -> (Pod, String) {
    let mut container = json!({ "name": "main", "image": image });
    container
        .as_object_mut()
        .unwrap()
        .extend(command.as_object().unwrap().clone());
    let _: Pod = create(
        client,
        ns,
        json!({
            "metadata": { "name": name, "labels": { "app": name } },
            "spec": {
                "nodeSelector": { "berth.dev/real": "true" },
                "tolerations": [{ "key": "berth.dev/real", "operator": "Exists", "effect": "NoSchedule" }],
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                // the kubelet refuses to start it if the image's user were root
                "securityContext": { "runAsNonRoot": true },
                "containers": [container]
            }
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = wait_for_pod(
        &pods,
        &format!("app={name}"),
        Duration::from_secs(120),
        "the pod to finish",
        |pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, Some("Succeeded" | "Failed"))
        },
    )
    .await;
    let logs = pods.logs(name, &LogParams::default()).await.unwrap();
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(
        phase.as_deref(),
        Some("Succeeded"),
        "{name}: {logs}\n{:?}",
        pod.status
    );
    (pod, logs)
}
