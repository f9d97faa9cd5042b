//! `berth advanced-deploy` against the local cluster: the happy path, doomed
//! releases that fail fast, migrations, locks, rollback, and bad input that
//! changes nothing.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use support::app::{Migration, TestApp};
use support::*;

/// Wait until a deploy holds the environment's lock; the Lease API for later checks.
async fn wait_for_lock(client: &Client, ns: &str) -> Api<Lease> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    poll(
        Duration::from_secs(30),
        "a deploy to take the lock",
        async || leases.get_opt("berth-deploy-lock").await.ok().flatten(),
    )
    .await;
    leases
}

/// Take the lock from whoever holds it, as another berth would once the
/// holder's renewals stopped: a new holder, acquired and renewed now.
async fn steal_lock(leases: &Api<Lease>, thief: &str) {
    loop {
        let mut lease = leases.get("berth-deploy-lock").await.unwrap();
        let now = MicroTime(Timestamp::now());
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(thief.into());
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(600);
        lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("berth.dev/purpose".into(), "deploy 9f8e7d6".into());
        match leases
            .replace("berth-deploy-lock", &PostParams::default(), &lease)
            .await
        {
            Ok(_) => return,
            // The holder renewed in between: take the renewed Lease.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => panic!("stealing the lock: {e}"),
        }
    }
}

async fn images(client: &Client, ns: &str) -> Vec<(String, String)> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut images: Vec<(String, String)> = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .flat_map(|d| {
            let name = d.metadata.name.clone().unwrap();
            d.spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .containers
                .into_iter()
                .map(move |c| (name.clone(), c.image.unwrap()))
        })
        .collect();
    images.sort();
    images
}

/// Every rolling-update Deployment has its replicas available. (A `Recreate`
/// Deployment, like the kwok-backed app's cron, stops its old pod by design.)
async fn all_available(client: &Client, ns: &str) -> bool {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let recreate = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            == Some("Recreate")
    };
    let list = deployments.list(&ListParams::default()).await.unwrap();
    let rolling: Vec<&Deployment> = list.items.iter().filter(|d| !recreate(d)).collect();
    assert!(!rolling.is_empty(), "no rolling-update Deployment to check");
    rolling.iter().all(|d| {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        d.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            >= want
    })
}

fn git_status() -> String {
    let out = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_deploy_runs_every_workload_at_the_sha_and_records_the_release() {
    let app = TestApp::new("deploy-happy", Migration::Kept);
    let client = local_env().kube().await;
    let before = git_status();
    let out = app.berth(&["advanced-deploy", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = report(&out);
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["sha"], "1a2b3c4");
    assert_eq!(report["release"], 1);
    assert!(report["failure"].is_null());
    let live = images(&client, &app.namespace).await;
    assert_eq!(live.len(), 4, "{live:?}");
    assert!(
        live.iter().all(|(_, image)| image.ends_with(":1a2b3c4")),
        "{live:?}"
    );
    assert!(all_available(&client, &app.namespace).await);
    // the successful migration Job was cleaned up
    let jobs: Api<Job> = Api::namespaced(client.clone(), &app.namespace);
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // the lock was released
    let leases: Api<Lease> = Api::namespaced(client.clone(), &app.namespace);
    assert!(leases.get_opt("berth-deploy-lock").await.unwrap().is_none());
    // the release is recorded and history shows it
    let history = app.berth(&["history", "test"]);
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(
        text.contains("1a2b3c4") && text.contains("succeeded"),
        "{text}"
    );
    assert_eq!(git_status(), before, "the deploy wrote into the repo");
    // status names each workload with its SHA and health
    let status = String::from_utf8_lossy(&app.berth(&["status", "test"]).stdout).into_owned();
    assert!(
        status.contains("Deployment/frontend")
            && status.contains("1a2b3c4")
            && status.contains("healthy"),
        "{status}"
    );
}

#[tokio::test]
async fn an_image_that_never_pulls_fails_fast_and_the_old_pods_keep_serving() {
    let app = TestApp::new("deploy-badbad", Migration::Deleted);
    let client = local_env().kube().await;
    assert_eq!(code(&app.berth(&["deploy", "test", "1a2b3c4"])), 0);
    // Under the 90 s rollout timeout, a doomed release that is not failed
    // fast ends `timed_out` (exit 4); only fail-fast ends it `failed` (exit 1)
    // with the pods' reason.
    let out = app.berth(&["deploy", "test", "badbad1", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = report(&out);
    assert_eq!(report["status"], "failed", "{report}");
    // kwok, like a kubelet, shows ErrImagePull for a moment, then ImagePullBackOff
    let reason = report["failure"]["reason"].as_str().unwrap();
    assert!(
        ["ImagePullBackOff", "ErrImagePull"].contains(&reason),
        "{report}"
    );
    assert!(
        report["failure"]["message"]
            .as_str()
            .unwrap()
            .contains(":badbad1"),
        "{report}"
    );
    assert!(
        report["failure"]["workload"]
            .as_str()
            .unwrap()
            .starts_with("Deployment/")
    );
    assert!(report["failure"]["pod"].is_string());
    assert!(
        all_available(&client, &app.namespace).await,
        "the previous release's pods stay Ready"
    );
}

#[tokio::test]
async fn a_crash_looping_release_fails_naming_crash_loop_back_off() {
    let app = TestApp::new("deploy-deadbeef", Migration::Deleted);
    let out = app.berth(&["deploy", "test", "deadbeef1", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = report(&out);
    assert_eq!(report["failure"]["reason"], "CrashLoopBackOff");
    // the failure names the pod and says how it crashes
    assert!(report["failure"]["pod"].is_string(), "{report}");
    let message = report["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("restart") && message.contains("exit code 1"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failed_migration_changes_no_workload_and_keeps_its_job() {
    let app = TestApp::new("deploy-fa11ed", Migration::Kept);
    let client = local_env().kube().await;
    assert_eq!(code(&app.berth(&["deploy", "test", "1a2b3c4"])), 0);
    let before = images(&client, &app.namespace).await;
    let out = app.berth(&["deploy", "test", "fa11ed1", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = report(&out);
    assert!(
        report["failure"]["workload"]
            .as_str()
            .unwrap()
            .starts_with("Job/"),
        "{report}"
    );
    assert_eq!(
        images(&client, &app.namespace).await,
        before,
        "no workload changed"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &app.namespace);
    let kept = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(kept.len(), 1, "the failed migration Job is kept");
    let name = kept[0].metadata.name.clone().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&name)
            || String::from_utf8_lossy(&out.stdout).contains(&name)
    );
}

#[tokio::test]
async fn only_the_newest_three_failed_migration_jobs_are_kept() {
    let app = TestApp::new("deploy-keep-failed", Migration::Kept);
    let client = local_env().kube().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &app.namespace);
    let releases_of_jobs = || async {
        let mut releases: Vec<u64> = jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|job| job.labels()["berth.dev/release"].parse().unwrap())
            .collect();
        releases.sort();
        releases
    };
    for sha in ["fa11ed1", "fa11ed2", "fa11ed3", "fa11ed4"] {
        let out = app.berth(&["deploy", "test", sha]);
        assert_eq!(code(&out), 1, "{sha}: {}", stderr(&out));
    }
    assert_eq!(
        releases_of_jobs().await,
        [1, 2, 3, 4],
        "each failed Job is kept until the next deploy"
    );
    let out = app.berth(&["deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deleted failed Job") && stderr(&out).contains("of release 1 "),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        releases_of_jobs().await,
        [2, 3, 4],
        "the oldest failed Job is deleted, the newest 3 kept; the good migration's Job is gone"
    );
}

#[tokio::test]
async fn of_two_concurrent_deploys_one_proceeds_and_the_other_exits_3_naming_the_holder() {
    let app = TestApp::new("deploy-race", Migration::Kept);
    let client = local_env().kube().await;
    let first = spawn_captured(&mut app.command(&["deploy", "test", "1a2b3c4"]));
    wait_for_lock(&client, &app.namespace).await;
    let second = app.berth(&["deploy", "test", "2b3c4d5", "--output", "json"]);
    assert_eq!(code(&second), 3, "{}", stderr(&second));
    assert_eq!(report(&second)["status"], "locked");
    assert!(
        stderr(&second).contains("locked by") && stderr(&second).contains("pid"),
        "{}",
        stderr(&second)
    );
    let first = first.wait_with_output().unwrap();
    assert_eq!(code(&first), 0, "{}", stderr(&first));
}

#[tokio::test]
async fn a_killed_deployers_lock_expires_and_the_next_deploy_succeeds() {
    let app = TestApp::new("deploy-killed", Migration::Kept);
    let client = local_env().kube().await;
    // killed as soon as it holds the lock, mid-deploy
    let mut first = app
        .command(&["deploy", "test", "1a2b3c4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let leases = wait_for_lock(&client, &app.namespace).await;
    let killed = format!("pid {}", first.id());
    first.kill().unwrap(); // SIGKILL: no chance to release anything
    first.wait().unwrap();
    // The stale hold lasts until its last renewal plus its duration.
    let stale = leases.get("berth-deploy-lock").await.unwrap().spec.unwrap();
    assert!(
        stale
            .holder_identity
            .as_ref()
            .is_some_and(|h| h.contains(&killed)),
        "{stale:?}"
    );
    let renewed = stale.renew_time.or(stale.acquire_time).unwrap().0;
    let expires = renewed
        .checked_add(SignedDuration::from_secs(i64::from(
            stale.lease_duration_seconds.unwrap(),
        )))
        .unwrap();
    let out = app.berth(&[
        "deploy",
        "test",
        "2b3c4d5",
        "--lock-wait",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report(&out)["status"], "succeeded");
    // it got the lock by waiting out the killed deployer's hold
    let waited = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|event| event["message"].as_str().map(str::to_string))
        .find(|message| message.starts_with("waiting for the lock held by"));
    assert!(
        waited.as_ref().is_some_and(|m| m.contains(&killed)),
        "no wait for the killed deployer ({killed}): {waited:?}"
    );
    // and its release began (under the lock) only once that hold had expired
    let history = app.history();
    let release = history
        .iter()
        .find(|r| r["sha"] == "2b3c4d5")
        .unwrap_or_else(|| panic!("no release of 2b3c4d5: {history:?}"));
    let started: Timestamp = release["started_at"].as_str().unwrap().parse().unwrap();
    assert!(
        started >= expires,
        "release started at {started}, before the killed deployer's hold expired at {expires}"
    );
}

#[tokio::test]
async fn a_deploy_whose_lock_is_taken_over_stops_before_applying_and_records_why() {
    let app = TestApp::new("deploy-lock-lost", Migration::Held);
    let client = local_env().kube().await;
    let first =
        spawn_captured(&mut app.command(&["deploy", "test", "1a2b3c4", "--output", "json"]));
    // the migration Job exists: the deploy holds the lock, in its migration
    let jobs: Api<Job> = Api::namespaced(client.clone(), &app.namespace);
    poll(
        Duration::from_secs(60),
        "the deploy's migration Job",
        async || {
            let listed = jobs.list(&ListParams::default()).await.ok()?;
            (!listed.items.is_empty()).then_some(())
        },
    )
    .await;
    let leases = wait_for_lock(&client, &app.namespace).await;
    steal_lock(&leases, "thief@elsewhere (pid 1)").await;

    // Held, the migration never ends: only the lost lock stops this deploy.
    let pid = first.id().to_string();
    let (exited, exit) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || exited.send(first.wait_with_output().unwrap()));
    let Ok(out) = tokio::time::timeout(Duration::from_secs(120), exit).await else {
        Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        panic!("the deploy went on after losing its lock");
    };
    let out = out.unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(report(&out)["status"], "lock_lost");
    assert!(
        stderr(&out).contains("lost the deploy lock")
            && stderr(&out).contains("thief@elsewhere (pid 1) (deploy 9f8e7d6)"),
        "{}",
        stderr(&out)
    );
    // it stopped in the migration: no workload was applied
    assert_eq!(deployment_count(&client, &app.namespace).await, 0);
    // the release says what happened
    let releases = app.history();
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(releases[0]["status"], "failed");
    assert_eq!(releases[0]["failure"]["reason"], "LockLost");
    assert_eq!(
        releases[0]["failure"]["message"],
        "lost the deploy lock to thief@elsewhere (pid 1) (deploy 9f8e7d6)"
    );
    // and the new holder's lock is left alone
    let lease = leases.get("berth-deploy-lock").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("thief@elsewhere (pid 1)")
    );
}

#[tokio::test]
async fn a_deploy_that_fails_after_taking_the_lock_releases_it() {
    let app = TestApp::new("deploy-fail-unlocks", Migration::Deleted);
    let client = local_env().kube().await;
    // A leftover Secret where release 1's record goes: recording it fails.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": app.namespace}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let _: Secret = create(
        &client,
        &app.namespace,
        serde_json::json!({"metadata": {"name": "berth-release-1"}}),
    )
    .await;
    let out = app.berth(&["deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("recording release 1"),
        "{}",
        stderr(&out)
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), &app.namespace);
    assert!(
        leases.get_opt("berth-deploy-lock").await.unwrap().is_none(),
        "the lock was released"
    );
}

#[tokio::test]
async fn rollback_on_failure_brings_the_previous_images_back() {
    let app = TestApp::new("deploy-rollback", Migration::Deleted);
    let client = local_env().kube().await;
    assert_eq!(code(&app.berth(&["deploy", "test", "1a2b3c4"])), 0);
    let good = images(&client, &app.namespace).await;
    let out = app.berth(&["deploy", "test", "badbad2", "--rollback-on-failure"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(images(&client, &app.namespace).await, good);
    assert!(all_available(&client, &app.namespace).await);
    let history = String::from_utf8_lossy(&app.berth(&["history", "test"]).stdout).into_owned();
    assert!(
        history.contains("automatic rollback of release 2"),
        "{history}"
    );
}

/// The namespace `ns` and every object in it of the kinds a deploy writes
/// (its workloads, Services, ConfigMaps, release-record Secrets, migration
/// Jobs, the lock), by `Kind/name`, with its resourceVersion: any write
/// changes it.
async fn snapshot(client: &Client, ns: &str) -> BTreeMap<String, String> {
    async fn versions<K>(client: &Client, ns: &str, kind: &str) -> Vec<(String, String)>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .into_iter()
            .map(|o| {
                (
                    format!("{kind}/{}", o.name_any()),
                    o.resource_version().unwrap(),
                )
            })
            .collect()
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = namespaces.get(ns).await.unwrap();
    let mut all = BTreeMap::from([(
        format!("Namespace/{ns}"),
        namespace.resource_version().unwrap(),
    )]);
    all.extend(versions::<Deployment>(client, ns, "Deployment").await);
    all.extend(versions::<Service>(client, ns, "Service").await);
    all.extend(versions::<ConfigMap>(client, ns, "ConfigMap").await);
    all.extend(versions::<Secret>(client, ns, "Secret").await);
    all.extend(versions::<Job>(client, ns, "Job").await);
    all.extend(versions::<Lease>(client, ns, "Lease").await);
    all
}

#[tokio::test]
async fn bad_input_exits_2_and_changes_nothing() {
    let app = TestApp::new("deploy-bad-input", Migration::Deleted);
    let client = local_env().kube().await;
    app.ok(&["deploy", "test", "1a2b3c4"]);
    let before = snapshot(&client, &app.namespace).await;
    assert!(before.contains_key("Deployment/frontend"), "{before:?}");

    let unknown = app.berth(&["deploy", "nowhere", "2b3c4d5"]);
    assert_eq!(code(&unknown), 2);
    assert!(
        stderr(&unknown).contains("test"),
        "names the known environments: {}",
        stderr(&unknown)
    );

    let malformed = app.berth(&["deploy", "test", "not-a-sha"]);
    assert_eq!(code(&malformed), 2);
    assert!(stderr(&malformed).contains("hex"), "{}", stderr(&malformed));

    // a broken overlay
    let broken = app.dir.join("broken-overlay");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("kustomization.yaml"), "resources: [app.yaml]\n").unwrap();
    std::fs::write(
        broken.join("app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n",
    )
    .unwrap();
    app.write_config(&app.base_config.replace(
        &app.overlay().display().to_string(),
        &broken.display().to_string(),
    ));
    let out = app.berth(&["deploy", "test", "2b3c4d5"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    app.configure("");

    // an unreachable cluster
    let kubeconfig = app.dir.join("unreachable-kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: berth-local, context: {cluster: c, user: u}}]\ncurrent-context: berth-local\n",
    )
    .unwrap();
    let out = app
        .command(&["deploy", "test", "2b3c4d5"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("127.0.0.1:9"), "{}", stderr(&out));

    assert_eq!(
        snapshot(&client, &app.namespace).await,
        before,
        "no object was written"
    );
    let releases = app.history();
    assert_eq!(releases.len(), 1, "no release was recorded: {releases:?}");
}

#[tokio::test]
async fn dry_run_and_diff_show_the_change_and_change_nothing() {
    let app = TestApp::new("deploy-diff", Migration::Kept);
    let client = local_env().kube().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let plan = app.berth(&["deploy", "test", "1a2b3c4", "--dry-run"]);
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        text.contains("Deployment/frontend") && text.contains("frontend:1a2b3c4"),
        "{text}"
    );
    assert!(
        namespaces.get_opt(&app.namespace).await.unwrap().is_none(),
        "--dry-run created nothing"
    );

    assert_eq!(code(&app.berth(&["deploy", "test", "1a2b3c4"])), 0);
    let before = images(&client, &app.namespace).await;
    // the live SHA: nothing would change, exit 0 (as `kubectl diff`)
    let same = app.berth(&["diff", "test", "1a2b3c4"]);
    assert_eq!(code(&same), 0, "no differences: {}", stderr(&same));
    let text = String::from_utf8_lossy(&same.stdout).into_owned();
    assert!(
        text.contains("0 to create, 0 to change, ") && text.contains(" unchanged"),
        "{text}"
    );
    // another SHA: differences, exit 1
    let diff = app.berth(&["diff", "test", "2b3c4d5"]);
    assert_eq!(code(&diff), 1, "differences: {}", stderr(&diff));
    let text = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(
        text.contains("-        image: 127.0.0.1:25000/workbench/frontend:1a2b3c4"),
        "{text}"
    );
    assert!(
        text.contains("+        image: 127.0.0.1:25000/workbench/frontend:2b3c4d5"),
        "{text}"
    );
    assert!(text.contains("0 to create, 4 to change"), "{text}");
    assert_eq!(
        images(&client, &app.namespace).await,
        before,
        "diff changed nothing"
    );
}

/// `diff`'s failures are never read as "differences": bad input (a SHA
/// that is no SHA, an unknown environment, an unreachable cluster) exits 2
/// and compares nothing; the server refusing the dry run (an object it
/// finds invalid) exits 6, naming the object and the server's reason, and
/// the JSON report says `failed` with `exit_code` 6.
#[tokio::test]
async fn a_diff_that_cannot_be_made_exits_6_and_bad_input_exits_2() {
    let app = TestApp::new("deploy-diff-fail", Migration::Deleted);
    assert_eq!(code(&app.berth(&["deploy", "test", "1a2b3c4"])), 0);

    let bad_sha = app.berth(&["diff", "test", "not-a-sha"]);
    assert_eq!(code(&bad_sha), 2, "{}", stderr(&bad_sha));
    assert!(
        stderr(&bad_sha).contains("not-a-sha"),
        "{}",
        stderr(&bad_sha)
    );
    let unknown = app.berth(&["diff", "nowhere", "1a2b3c4"]);
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("nowhere"), "{}", stderr(&unknown));
    let kubeconfig = app.dir.join("unreachable-kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: berth-local, context: {cluster: c, user: u}}]\ncurrent-context: berth-local\n",
    )
    .unwrap();
    let unreachable = app
        .command(&["diff", "test", "2b3c4d5"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(code(&unreachable), 2, "{}", stderr(&unreachable));
    assert!(
        stderr(&unreachable).contains("127.0.0.1:9"),
        "{}",
        stderr(&unreachable)
    );

    // a Service whose type the API server does not accept: its dry run is refused
    std::fs::write(
        app.overlay().join("refused.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: refused}\nspec:\n  type: Sideways\n  ports: [{port: 80}]\n",
    )
    .unwrap();
    let kustomization = app.overlay().join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    std::fs::write(&kustomization, text.replacen("]\n", ", refused.yaml]\n", 1)).unwrap();
    let failed = app.berth(&["diff", "test", "2b3c4d5"]);
    let said = stderr(&failed);
    assert_eq!(code(&failed), 6, "{said}");
    for part in ["the diff could not be made", "Service/refused", "Sideways"] {
        assert!(said.contains(part), "expected {part:?} in {said}");
    }
    let json = app.berth(&["diff", "test", "2b3c4d5", "--output", "json"]);
    assert_eq!(code(&json), 6, "{}", stderr(&json));
    let report = report(&json);
    assert_eq!(
        (&report["status"], &report["exit_code"]),
        (&"failed".into(), &6.into()),
        "{report}"
    );
}

#[tokio::test]
async fn status_shows_drift_when_a_live_image_differs_from_the_release() {
    let app = TestApp::new("deploy-drift", Migration::Deleted);
    assert_eq!(code(&app.berth(&["deploy", "test", "1a2b3c4"])), 0);
    let env = local_env();
    let set = env
        .command("kubectl")
        .args([
            "-n",
            &app.namespace,
            "set",
            "image",
            "deployment/frontend",
            "frontend=127.0.0.1:25000/workbench/frontend:hotfix1",
        ])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let status = String::from_utf8_lossy(&app.berth(&["status", "test"]).stdout).into_owned();
    assert!(
        status.contains("drift: Deployment/frontend container frontend runs 127.0.0.1:25000/workbench/frontend:hotfix1, release 1 deployed 127.0.0.1:25000/workbench/frontend:1a2b3c4"),
        "{status}"
    );
}

#[tokio::test]
async fn ctrl_c_exits_130_releases_the_lock_and_records_the_interruption() {
    let app = TestApp::new("deploy-interrupt", Migration::Deleted);
    let client = local_env().kube().await;
    // interrupted as soon as it holds the lock, mid-deploy
    let child =
        spawn_captured(&mut app.command(&["deploy", "test", "1a2b3c4", "--output", "json"]));
    let leases = wait_for_lock(&client, &app.namespace).await;
    let out = interrupt(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(report(&out)["status"], "interrupted");
    assert!(
        leases.get_opt("berth-deploy-lock").await.unwrap().is_none(),
        "the lock was released"
    );
    let history = String::from_utf8_lossy(&app.berth(&["history", "test"]).stdout).into_owned();
    assert!(history.contains("interrupted"), "{history}");
}

#[tokio::test]
async fn under_github_actions_steps_are_grouped_failures_annotated_and_summarised() {
    let app = TestApp::new("deploy-gha", Migration::Deleted);
    let summary = std::env::temp_dir().join(unique_name("step-summary"));
    let out = app
        .command(&["deploy", "test", "badbad4"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "acme/app")
        .env("GITHUB_RUN_ID", "42")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("::group::validate")
            && log.contains("::group::wait")
            && log.contains("::endgroup::"),
        "{log}"
    );
    assert!(
        log.contains("::error::rollout failed%0A"),
        "one annotation, newlines encoded: {log}"
    );
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(
        markdown.contains("### berth: failed to deploy `badbad4` to test"),
        "{markdown}"
    );
    assert!(markdown.contains("| failure | `Deployment/"), "{markdown}");
    // the lock names the CI run, not a person
    let history = String::from_utf8_lossy(&app.berth(&["history", "test"]).stdout).into_owned();
    assert!(
        history.contains("https://github.com/acme/app/actions/runs/42"),
        "{history}"
    );
}

#[tokio::test]
async fn a_migration_whose_pod_cannot_be_created_fails_fast_naming_the_cause() {
    let app = TestApp::new("deploy-failedcreate", Migration::Kept);
    let client = local_env().kube().await;
    // the overlay's migration Job names a ServiceAccount that does not exist
    let overlay = app.overlay();
    let staging = kwok_app().join("overlays/staging");
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "resources: [{}]\npatches:\n  - target: {{kind: Job, name: migrate}}\n    patch: |-\n      - op: add\n        path: /spec/template/spec/serviceAccountName\n        value: nobody-made-me\n",
            relative(&overlay, &staging).display()
        ),
    )
    .unwrap();
    // Failed fast: exit 1 and `failed`, where waiting the migration out
    // would end `timed_out` (exit 4).
    let out = app.berth(&["deploy", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = report(&out);
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(report["failure"]["reason"], "FailedCreate", "{report}");
    assert!(
        report["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody-made-me"),
        "{report}"
    );
    assert_eq!(
        deployment_count(&client, &app.namespace).await,
        0,
        "no workload applied"
    );
}

#[tokio::test]
async fn a_person_holds_the_lock_until_released_and_deploys_wait_for_it() {
    let app = TestApp::new("deploy-freeze", Migration::Deleted);
    assert_eq!(code(&app.berth(&["deploy", "test", "1a2b3c4"])), 0);
    let acquired = app.berth(&["lock", "test", "acquire", "--ttl", "10m"]);
    assert_eq!(code(&acquired), 0, "{}", stderr(&acquired));
    let status =
        String::from_utf8_lossy(&app.berth(&["lock", "test", "status"]).stdout).into_owned();
    assert!(
        status.contains("locked by") && status.contains("by hand"),
        "{status}"
    );
    let refused = app.berth(&["deploy", "test", "2b3c4d5"]);
    assert_eq!(code(&refused), 3, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("by hand"),
        "names the holder: {}",
        stderr(&refused)
    );
    let released = app.berth(&["lock", "test", "release"]);
    assert_eq!(code(&released), 0, "{}", stderr(&released));
    assert_eq!(code(&app.berth(&["deploy", "test", "2b3c4d5"])), 0);
}

#[tokio::test]
async fn prune_deletes_what_the_overlay_no_longer_renders_and_nothing_else() {
    let app = TestApp::new("deploy-prune", Migration::Deleted);
    let client = local_env().kube().await;
    assert_eq!(code(&app.berth(&["deploy", "test", "1a2b3c4"])), 0);
    // an object berth does not manage must survive the prune
    let env = local_env();
    let other = env
        .command("kubectl")
        .args([
            "-n",
            &app.namespace,
            "create",
            "deployment",
            "not-ours",
            "--image=registry.example/other:1",
        ])
        .output()
        .unwrap();
    assert!(other.status.success());
    // the overlay drops fetcher
    let overlay = app.overlay();
    let kustomization = std::fs::read_to_string(overlay.join("kustomization.yaml")).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!("{kustomization}  - patch: |-\n      $patch: delete\n      apiVersion: apps/v1\n      kind: Deployment\n      metadata: {{name: fetcher}}\n"),
    )
    .unwrap();
    let out = app.berth(&["deploy", "test", "2b3c4d5", "--prune"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stderr(&out);
    let pruned: Vec<&str> = said
        .lines()
        .filter_map(|line| line.split_once("pruned ").map(|(_, what)| what.trim()))
        .collect();
    // The overlay renders Secrets (the canaries), so Secrets are a pruned
    // kind: berth's release records, Secrets too, must survive.
    assert_eq!(pruned, ["Deployment/fetcher"], "{}", stderr(&out));
    let history = app.history();
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(
        history.iter().all(|r| r["status"] == "succeeded"),
        "{history:?}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app.namespace);
    let mut names: Vec<String> = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.metadata.name.unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cron", "frontend", "not-ours", "renderer"]);
}
