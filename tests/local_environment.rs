//! The local environment works through the clients berth itself uses:
//! kube-rs, aws-sdk-s3, tokio-postgres and plain HTTP.

mod support;

use std::time::Duration;

use berth::cluster::pods::is_ready;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{AttachParams, ListParams, LogParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::*;
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(60);
/// The bound on three crash-loop restarts: kwok replays its crash stage on
/// its own status writes, which takes 40-50 s alone and longer beside the
/// other tests of this file.
const CRASH_LOOP_WAIT: Duration = Duration::from_secs(150);

fn deployment(name: &str, image: &str) -> serde_json::Value {
    json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": image, "ports": [{ "containerPort": 5432 }] }] }
            }
        }
    })
}

fn job(name: &str, image: &str) -> serde_json::Value {
    json!({
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": { "job": name } },
                "spec": { "restartPolicy": "Never", "containers": [{ "name": "task", "image": image }] }
            }
        }
    })
}

/// Run a Deployment of `image` in `ns` and return one of its Ready pods.
async fn ready_pod(client: &kube::Client, ns: &str, name: &str) -> Pod {
    let _: Deployment = create(client, ns, deployment(name, "registry.example/app:1a2b3c4")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for_pod(&pods, &format!("app={name}"), WAIT, "a Ready pod", is_ready).await
}

#[tokio::test]
async fn kube_rs_lists_the_ready_fake_nodes_of_a_real_apiserver() {
    let client = local_env().kube().await;
    let version = client.apiserver_version().await.unwrap();
    let pinned = std::fs::read_to_string(repo_root().join("cluster-setup/local/versions.env"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION=").map(str::to_string))
        .unwrap();
    assert_eq!(
        version.git_version, pinned,
        "the apiserver reports its real version"
    );

    let nodes: Api<Node> = Api::all(client);
    let ready: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|n| n.name_any())
        .collect();
    assert!(ready.len() >= 2, "two Ready fake nodes, got {ready:?}");
}

#[tokio::test]
async fn a_deployment_becomes_available_as_seen_by_a_watch() {
    let client = local_env().kube().await;
    let ns = namespace(&client, "smoke-deploy").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let created: Deployment = create(
        &client,
        &ns,
        deployment("web", "registry.example/app:1a2b3c4"),
    )
    .await;
    let generation = created.metadata.generation;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let observed_current = move |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.observed_generation)
            == generation
    };
    let done = within(
        WAIT,
        "Deployment web to complete",
        await_condition(
            deployments,
            "web",
            conditions::is_deployment_completed().and(observed_current),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let status = done.status.unwrap();
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.updated_replicas, Some(2));
}

#[tokio::test]
async fn a_badbad_image_never_pulls() {
    let client = local_env().kube().await;
    let ns = namespace(&client, "smoke-badbad").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let _: Deployment = create(
        &client,
        &ns,
        deployment("broken", "registry.example/app:badbad1"),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_for_pod(&pods, "app=broken", WAIT, "ImagePullBackOff", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert!(!is_ready(&pod));
}

#[tokio::test]
async fn a_deadbeef_image_crash_loops_with_rising_restarts() {
    let client = local_env().kube().await;
    let ns = namespace(&client, "smoke-deadbeef").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let _: Deployment = create(
        &client,
        &ns,
        deployment("crashy", "registry.example/app:deadbeef1"),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_for_pod(
        &pods,
        "app=crashy",
        CRASH_LOOP_WAIT,
        "CrashLoopBackOff with 3 restarts",
        |p| waiting_reason(p).as_deref() == Some("CrashLoopBackOff") && restart_count(p) >= 3,
    )
    .await;
    assert!(!is_ready(&pod));
}

#[tokio::test]
async fn jobs_complete_and_a_fa11ed_job_fails() {
    let client = local_env().kube().await;
    let ns = namespace(&client, "smoke-job").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let _: Job = create(&client, &ns, job("ok", "registry.example/migrate:1a2b3c4")).await;
    let _: Job = create(&client, &ns, job("bad", "registry.example/migrate:fa11ed1")).await;
    within(
        WAIT,
        "Job ok to complete",
        await_condition(jobs.clone(), "ok", conditions::is_job_completed()),
    )
    .await
    .unwrap();
    let has_failed = |j: Option<&Job>| j.is_some_and(job_failed);
    within(
        WAIT,
        "Job bad to fail",
        await_condition(jobs, "bad", has_failed),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let failed = pods
        .list(&ListParams::default().labels("job=bad"))
        .await
        .unwrap();
    assert!(
        failed
            .items
            .iter()
            .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")),
        "the fa11ed pod ended Failed"
    );
}

#[tokio::test]
async fn exec_into_a_fake_pod_runs_a_local_command_with_its_exit_code() {
    let client = local_env().kube().await;
    let ns = namespace(&client, "smoke-exec").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let pod = ready_pod(&client, &ns, "shell").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut process = pods
        .exec(
            &pod.name_any(),
            ["sh", "-c", "echo hello from $(uname -s); exit 3"],
            &AttachParams::default().stdout(true).stderr(false),
        )
        .await
        .unwrap();
    let mut output = String::new();
    process
        .stdout()
        .unwrap()
        .read_to_string(&mut output)
        .await
        .unwrap();
    let status = process.take_status().unwrap().await.unwrap();
    process.join().await.unwrap();
    assert_eq!(output, "hello from Linux\n");
    let exit_code = status
        .details
        .and_then(|d| d.causes)
        .and_then(|c| {
            c.into_iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message);
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(exit_code.as_deref(), Some("3"));
}

#[tokio::test]
async fn logs_of_a_fake_pod_come_through_the_apiserver() {
    let client = local_env().kube().await;
    let ns = namespace(&client, "smoke-logs").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let pod = ready_pod(&client, &ns, "chatty").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let logs = pods
        .logs(&pod.name_any(), &LogParams::default())
        .await
        .unwrap();
    assert!(logs.contains("fake container started"), "logs: {logs:?}");
}

#[tokio::test]
async fn port_forward_to_a_pod_reaches_the_local_postgresql() {
    let env = local_env();
    let client = env.kube().await;
    let ns = namespace(&client, "smoke-portforward").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let pod = ready_pod(&client, &ns, "db-proxy").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut forwarder = pods.portforward(&pod.name_any(), &[5432]).await.unwrap();
    let stream = forwarder.take_stream(5432).unwrap();
    let config: tokio_postgres::Config = env.var("DATABASE_URL").parse().unwrap();
    let (db, connection) = config
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = db
        .query_one("SELECT current_setting('port')", &[])
        .await
        .unwrap();
    let port: String = row.get(0);
    assert_eq!(
        port,
        env.var("DATABASE_URL")
            .rsplit_once(':')
            .unwrap()
            .1
            .split('/')
            .next()
            .unwrap()
    );
    drop(db);
    forwarder.abort();
}

#[tokio::test]
async fn a_deleted_namespace_goes_away() {
    let client = local_env().kube().await;
    let ns = namespace(&client, "smoke-delete").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let _pod = ready_pod(&client, &ns, "doomed").await;
    delete_namespace(&client, &ns).await;
    let namespaces: Api<Namespace> = Api::all(client);
    within(
        WAIT,
        "the namespace to be deleted",
        await_condition(namespaces, &ns, conditions::is_deleted("")),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn aws_sdk_s3_puts_and_gets_an_object_on_minio() {
    let s3 = local_env().s3().await;
    let bucket = unique_name("smoke");
    let _cleanup = Cleanup::Bucket(bucket.clone());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("static/app.css")
        .content_type("text/css")
        .body(b"body { color: teal }".to_vec().into())
        .send()
        .await
        .unwrap();
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key("static/app.css")
        .send()
        .await
        .unwrap();
    assert_eq!(object.content_type(), Some("text/css"));
    let body = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"body { color: teal }");
    s3.delete_object()
        .bucket(&bucket)
        .key("static/app.css")
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
}

#[tokio::test]
async fn the_registry_answers_the_v2_api() {
    let registry = local_env().var("BERTH_LOCAL_REGISTRY");
    let response = reqwest::get(format!("http://{registry}/v2/"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("docker-distribution-api-version")
            .unwrap(),
        "registry/2.0"
    );
}

#[tokio::test]
async fn tokio_postgres_queries_a_database_of_the_tests_own() {
    let env = local_env();
    let url = env.database("smoke").await;
    let _cleanup = Cleanup::Database(url.rsplit_once('/').unwrap().1.to_owned());
    let db = connect_postgres(&url).await;
    db.batch_execute(
        "CREATE TABLE workflows (id int PRIMARY KEY); INSERT INTO workflows VALUES (1), (2)",
    )
    .await
    .unwrap();
    let row = db
        .query_one("SELECT count(*), version() FROM workflows", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert!(row.get::<_, String>(1).starts_with("PostgreSQL "));
}

#[test]
fn helm_renders_a_chart() {
    let env = local_env();
    let chart = std::env::temp_dir().join(unique_name("berth-chart"));
    let _cleanup = Cleanup::Dir(chart.clone());
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: smoke\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\ndata: {sha: {{ .Values.sha | quote }}}\n",
    )
    .unwrap();
    let output = env
        .command(env.var("BERTH_LOCAL_HELM"))
        .args(["template", "demo"])
        .arg(&chart)
        .args(["--set", "sha=1a2b3c4"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).unwrap();
    assert!(
        rendered.contains("name: demo") && rendered.contains("sha: \"1a2b3c4\""),
        "{rendered}"
    );
}

/// The PIDs `up` recorded, by component.
fn recorded_pids() -> Vec<(String, u32)> {
    let dir = repo_root().join(".berth/local/pids");
    let mut pids: Vec<(String, u32)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let pid = std::fs::read_to_string(&path)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            (name, pid)
        })
        .collect();
    pids.sort();
    pids
}

#[test]
fn a_second_up_reuses_every_running_server() {
    let env = local_env();
    let before = recorded_pids();
    assert!(
        before.len() >= 11,
        "every component has a PID file: {before:?}"
    );
    let output = env.command("cluster-setup/local/up").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(recorded_pids(), before, "no server was restarted");
}

/// Listening TCP sockets (local address, socket inode) from /proc/net/tcp{,6}.
fn listening_sockets() -> Vec<(String, String)> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|table| {
            std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(3) == Some(&"0A")).then(|| (fields[1].to_string(), fields[9].to_string()))
        })
        .collect()
}

/// Decode a /proc/net/tcp address (`0100007F:1F90`) to its IP part.
fn proc_ip(address: &str) -> String {
    let hex = address.split(':').next().unwrap();
    match hex.len() {
        8 => {
            let n = u32::from_str_radix(hex, 16).unwrap();
            std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
        }
        _ => {
            let mut bytes = [0u8; 16];
            for (word, chunk) in hex.as_bytes().chunks(8).enumerate() {
                let n = u32::from_str_radix(std::str::from_utf8(chunk).unwrap(), 16).unwrap();
                bytes[word * 4..word * 4 + 4].copy_from_slice(&n.to_le_bytes());
            }
            std::net::Ipv6Addr::from(bytes).to_string()
        }
    }
}

/// The real node's address on its bridge: a host-only address that PostgreSQL
/// and the kubelet also listen on, so pods can reach them.
const NODE_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 1);

#[test]
fn every_server_listens_on_loopback_or_the_node_bridge_only() {
    local_env();
    let sockets = listening_sockets();
    let mut checked = 0;
    for (component, pid) in recorded_pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            else {
                continue;
            };
            for (address, _) in sockets.iter().filter(|(_, i)| i == inode) {
                let ip: std::net::IpAddr = proc_ip(address).parse().unwrap();
                assert!(
                    ip.is_loopback() || ip == NODE_ADDRESS,
                    "{component} (pid {pid}) listens on {ip}"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 8,
        "found only {checked} listening sockets of our servers"
    );
}

/// Whether `ip` is in 198.18.0.0/15, the range pods and Services use.
fn in_benchmark_range(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.octets()[0] == 198 && ip.octets()[1] & 0xfe == 18)
}

#[tokio::test]
async fn the_real_node_is_ready_tainted_and_runs_a_pod_from_the_local_registry() {
    let env = local_env();
    let client = env.kube().await;
    let node: Node = Api::all(client.clone()).get("real-0").await.unwrap();
    let status = node.status.clone().unwrap();
    let info = status.node_info.unwrap();
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{info:?}"
    );
    let addresses = status.addresses.unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == NODE_ADDRESS.to_string()),
        "{addresses:?}"
    );
    let taints = node.spec.unwrap().taints.unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "berth.dev/real" && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    assert_eq!(node.metadata.labels.unwrap()["berth.dev/real"], "true");

    let ns = namespace(&client, "realpod").await;
    let _cleanup = Cleanup::Namespace(ns.clone());
    let _: Pod = create(
        &client,
        &ns,
        json!({
            "metadata": { "name": "pause", "labels": { "app": "pause" } },
            "spec": {
                "nodeSelector": { "berth.dev/real": "true" },
                "tolerations": [{ "key": "berth.dev/real", "operator": "Exists", "effect": "NoSchedule" }],
                "terminationGracePeriodSeconds": 0,
                "containers": [{ "name": "pause", "image": env.var("BERTH_LOCAL_PAUSE_IMAGE") }]
            }
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_for_pod(&pods, "app=pause", WAIT, "a Ready pod on real-0", is_ready).await;
    let spec = pod.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("real-0"));
    let ip = pod.status.unwrap().pod_ip.unwrap();
    assert!(
        ip.starts_with("198.18.0.") && in_benchmark_range(&ip),
        "{ip}"
    );
    // logs come from the real kubelet, which the apiserver reaches with its
    // client certificate (the pause container prints nothing)
    pods.logs("pause", &LogParams::default()).await.unwrap();
}

#[test]
fn the_kubelet_refuses_requests_without_a_client_certificate() {
    let output = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://{NODE_ADDRESS}:10250/pods"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "401");
}

#[tokio::test]
async fn services_get_addresses_in_the_benchmark_range() {
    let client = local_env().kube().await;
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    let ip = kubernetes.spec.unwrap().cluster_ip.unwrap();
    assert!(ip.starts_with("198.19.") && in_benchmark_range(&ip), "{ip}");
}

#[test]
fn leftovers_lists_what_the_running_environment_holds() {
    let env = local_env();
    let output = env
        .command("cluster-setup/local/leftovers")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&output.stderr);
    for trace in [
        "(kubelet)",
        "(containerd)",
        "(kube-proxy)",
        "(kube-apiserver)",
        "bridge berthbr0",
        "nftables table ip kube-proxy",
        "nftables table inet berth-node",
        "cgroup /sys/fs/cgroup/memory/kubepods",
        "mount ",
    ] {
        assert!(listed.contains(trace), "{trace} is not listed:\n{listed}");
    }
}
