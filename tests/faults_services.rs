//! The fault suite's services part: S3 (MinIO), the registry and the fake
//! GitHub, each reached through the fault proxy (tests/support/fault_proxy.rs)
//! while berth runs. A fault that passes (503 for a time, connections reset
//! mid-upload, refused for a few seconds) is retried and the command
//! succeeds; a service that stays down ends the command with exit 1 and a
//! message naming it, nothing changed, no partial object under its key and,
//! once S3 is back, no multipart upload left behind.
//!
//! Each scenario reports through `faults::Scenario` (`make faults` prints the
//! table); `BERTH_FAULTS=full` runs the full trial counts.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::fault_proxy::{FaultProxy, Mode};
use support::faults::{self, Draws, Scenario, Trial};
use support::github::{FakeGitHub, TOKEN, commit, new_sha, push_app_images};
use support::*;

/// The large file's size: three 8 MiB parts of a multipart upload.
const LARGE: usize = 20 * 1024 * 1024;
/// The large file's path in the tree (and key under `static/`): first in
/// the walk, so the small files are in flight beside its parts.
const LARGE_PATH: &str = "a/video.bin";
/// How many small files go with it: enough that a fault fails hundreds of
/// requests at once (the SDK's retry quota once ran out on far fewer).
const SMALL_FILES: usize = 300;
/// What one trial may take at most, berth's retries included.
const TRIAL_LIMIT: Duration = Duration::from_secs(120);

/// A bucket of its own, a build tree (one file uploaded in parts, a few
/// small ones) and berth.yaml whose `assets.endpoint` is a fault proxy in
/// front of MinIO.
struct Bucket {
    dir: PathBuf,
    bucket: String,
    namespace: String,
    proxy: FaultProxy,
    _cleanup: [Cleanup; 3],
}

impl Bucket {
    async fn new(prefix: &str) -> Bucket {
        let env = local_env();
        let name = unique_name(prefix);
        let dir = std::env::temp_dir().join(&name);
        let cleanup = [
            Cleanup::Namespace(name.clone()),
            Cleanup::Bucket(name.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        env.s3()
            .await
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap();
        let proxy = FaultProxy::start(host_port(env.var("AWS_ENDPOINT_URL")));
        let mut config = example_config(&name, &kwok_app().join("overlays/staging"));
        config.push_str(&format!(
            "    assets:\n      from: {{ dir: build }}\n      bucket: {name}\n      \
             prefix: static/\n      endpoint: {}\n",
            proxy.url("http")
        ));
        std::fs::create_dir_all(dir.join("build/a")).unwrap();
        std::fs::write(dir.join("berth.yaml"), config).unwrap();
        std::fs::write(dir.join("build").join(LARGE_PATH), large_content()).unwrap();
        for i in 0..SMALL_FILES {
            std::fs::write(
                dir.join(format!("build/file-{i}.txt")),
                format!("small file {i}\n").repeat(100 + i),
            )
            .unwrap();
        }
        Bucket {
            dir,
            bucket: name.clone(),
            namespace: name,
            proxy,
            _cleanup: cleanup,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        berth_command(&self.dir.join("berth.yaml"), &self.dir, args)
    }

    /// `berth assets push test SHA`, started.
    fn push(&self, sha: &str) -> std::process::Child {
        spawn_captured(&mut self.command(&["assets", "push", "test", sha, "--output", "json"]))
    }

    /// Every key in the bucket.
    async fn keys(&self) -> Vec<String> {
        support::backups::keys(&self.bucket).await
    }

    /// Multipart uploads in progress in the bucket.
    async fn multipart_uploads(&self) -> usize {
        support::backups::multipart_uploads(&self.bucket).await
    }

    /// Files the bucket lacks or holds with other content than the tree
    /// (the manifest of `sha` included).
    async fn lost(&self, sha: &str) -> Vec<String> {
        let s3 = local_env().s3().await;
        let mut expected: Vec<(String, Vec<u8>)> = (0..SMALL_FILES)
            .map(|i| {
                (
                    format!("static/file-{i}.txt"),
                    format!("small file {i}\n").repeat(100 + i).into_bytes(),
                )
            })
            .collect();
        expected.push((format!("static/{LARGE_PATH}"), large_content()));
        let mut lost = Vec::new();
        for (key, content) in expected {
            let got = match s3.get_object().bucket(&self.bucket).key(&key).send().await {
                Ok(object) => object.body.collect().await.unwrap().into_bytes().to_vec(),
                Err(_) => Vec::new(),
            };
            if got != content {
                lost.push(format!(
                    "{key} ({} bytes, not {})",
                    got.len(),
                    content.len()
                ));
            }
        }
        if !self
            .keys()
            .await
            .iter()
            .any(|k| k.contains(".berth/manifests/"))
        {
            lost.push(format!("the manifest of {sha}"));
        }
        lost
    }
}

/// `host:port` of `http://host:port`.
fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// The large file's content: not all one byte, so a part out of place shows.
fn large_content() -> Vec<u8> {
    (0..LARGE).map(|i| (i / 4096 % 251) as u8).collect()
}

/// Watches the large file's key until stopped, keeping every size it was
/// seen at other than the whole: a partial object ever visible.
struct KeyWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<i64>>,
}

impl KeyWatch {
    fn start(bucket: &Bucket) -> KeyWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (bucket_name, stopped) = (bucket.bucket.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let s3 = local_env().s3().await;
            let mut partial = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let head = s3
                    .head_object()
                    .bucket(&bucket_name)
                    .key(format!("static/{LARGE_PATH}"))
                    .send()
                    .await;
                if let Some(size) = head.ok().and_then(|h| h.content_length)
                    && size != LARGE as i64
                {
                    partial.push(size);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            partial
        });
        KeyWatch { stop, task }
    }

    /// Stop, and the partial sizes seen.
    async fn finish(self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Wait for `child` to exit (at most [`TRIAL_LIMIT`]) without blocking the runtime.
async fn finished(child: std::process::Child) -> Output {
    within(
        TRIAL_LIMIT,
        "berth to finish",
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await
    .unwrap()
}

/// A fault that passes, applied to `proxy` once an upload is under way.
#[derive(Debug, Clone, Copy)]
enum Passing {
    /// 503 to every new request (live connections cut) for a while.
    Unavailable(Duration),
    /// Every live connection reset, this many times, this far apart.
    Resets(usize, Duration),
    /// New connections refused (live ones cut) for a while.
    Refused(Duration),
}

impl Passing {
    fn draw(draws: &mut Draws) -> Passing {
        let outage = draws.between(Duration::from_millis(800), Duration::from_millis(2500));
        match draws.below(3) {
            0 => Passing::Unavailable(outage),
            1 => Passing::Resets(
                2 + draws.below(3),
                draws.between(Duration::from_millis(150), Duration::from_millis(600)),
            ),
            _ => Passing::Refused(outage),
        }
    }

    async fn apply(self, proxy: &FaultProxy) {
        match self {
            Passing::Unavailable(outage) | Passing::Refused(outage) => {
                proxy.set(if matches!(self, Passing::Unavailable(_)) {
                    Mode::Unavailable
                } else {
                    Mode::Refuse
                });
                proxy.cut();
                tokio::time::sleep(outage).await;
                proxy.set(Mode::Pass);
            }
            Passing::Resets(times, apart) => {
                for _ in 0..times {
                    proxy.cut();
                    tokio::time::sleep(apart).await;
                }
            }
        }
    }
}

/// Wait until berth has a multipart upload in progress in `bucket`.
async fn upload_under_way(bucket: &Bucket) {
    poll(
        Duration::from_secs(60),
        "a multipart upload to start",
        async || (bucket.multipart_uploads().await > 0).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_faults_that_pass_are_retried_per_part_and_the_push_completes() {
    let mut draws = Draws::for_scenario("s3 503/reset/refuse mid-upload");
    let mut scenario = Scenario::new("s3 503/reset/refuse mid-upload");
    for _ in 0..faults::trials(3, 12) {
        let fault = Passing::draw(&mut draws);
        let bucket = Bucket::new("faults-s3").await;
        let sha = new_sha();
        // Slowed, so the fault lands while the parts are in flight.
        bucket.proxy.set(Mode::Delay(Duration::from_millis(2)));
        let watch = KeyWatch::start(&bucket);
        let child = bucket.push(&sha);
        upload_under_way(&bucket).await;
        let faulted = Instant::now();
        fault.apply(&bucket.proxy).await;
        bucket.proxy.set(Mode::Pass);
        let out = finished(child).await;
        let recovered_in = faulted.elapsed();
        let partial = watch.finish().await;
        let lost = bucket.lost(&sha).await;
        let uploads = bucket.multipart_uploads().await;
        let mut notes = vec![format!("{fault:?}")];
        if code(&out) != 0 {
            notes.push(format!("exit {}: {}", code(&out), stderr(&out)));
        }
        if !partial.is_empty() {
            notes.push(format!("partial object seen at sizes {partial:?}"));
        }
        if !lost.is_empty() {
            notes.push(format!("lost: {lost:?}"));
        }
        if uploads > 0 {
            notes.push(format!("{uploads} multipart uploads left"));
        }
        scenario.record(Trial {
            survived: code(&out) == 0,
            data_lost: lost.len() + partial.len(),
            leftovers: uploads,
            recovered_in,
            notes,
        });
    }
    scenario.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_down_for_good_mid_upload_exits_1_naming_it_and_leaves_no_partial_object() {
    let mut draws = Draws::for_scenario("s3 down for good mid-upload");
    let mut scenario = Scenario::new("s3 down for good mid-upload");
    for _ in 0..faults::trials(1, 4) {
        let bucket = Bucket::new("faults-s3-down").await;
        let sha = new_sha();
        let mode = [Mode::Unavailable, Mode::Refuse][draws.below(2)];
        bucket.proxy.set(Mode::Delay(Duration::from_millis(2)));
        let watch = KeyWatch::start(&bucket);
        let child = bucket.push(&sha);
        upload_under_way(&bucket).await;
        let faulted = Instant::now();
        bucket.proxy.set(mode);
        bucket.proxy.cut();
        let out = finished(child).await;
        let partial = watch.finish().await;
        let mut notes = vec![format!("{mode:?}")];
        let err = stderr(&out);
        let endpoint = bucket.proxy.url("http");
        let named = err.contains(&bucket.bucket) && err.contains(&endpoint);
        if code(&out) != 1 || !named {
            notes.push(format!(
                "exit {} (want 1, naming {} and {endpoint}): {err}",
                code(&out),
                bucket.bucket
            ));
        }
        let mut lost = partial.len();
        if !partial.is_empty() {
            notes.push(format!("partial object seen at sizes {partial:?}"));
        }
        if bucket
            .keys()
            .await
            .iter()
            .any(|k| k.contains(".berth/manifests/"))
        {
            notes.push("a manifest was written for a failed push".into());
            lost += 1;
        }
        // Back up: the same push again finishes the job, and aborts what
        // the failed one could not abort while S3 was down.
        bucket.proxy.set(Mode::Pass);
        let again = finished(bucket.push(&sha)).await;
        let recovered_in = faulted.elapsed();
        if code(&again) != 0 {
            notes.push(format!(
                "the next push: exit {}: {}",
                code(&again),
                stderr(&again)
            ));
        }
        let missing = bucket.lost(&sha).await;
        if !missing.is_empty() {
            notes.push(format!("after the next push, lost: {missing:?}"));
        }
        let uploads = bucket.multipart_uploads().await;
        if uploads > 0 {
            notes.push(format!("{uploads} multipart uploads left"));
        }
        scenario.record(Trial {
            survived: notes.len() == 1,
            data_lost: lost + missing.len(),
            leftovers: uploads,
            recovered_in,
            notes,
        });
    }
    scenario.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_down_for_good_during_a_deploy_changes_no_workload_and_records_the_failure() {
    let mut scenario = Scenario::new("s3 down for good during deploy");
    let bucket = Bucket::new("faults-s3-deploy").await;
    let sha = new_sha();
    bucket.proxy.set(Mode::Delay(Duration::from_millis(2)));
    let child =
        spawn_captured(&mut bucket.command(&["deploy", "test", &sha[..7], "--output", "json"]));
    upload_under_way(&bucket).await;
    let faulted = Instant::now();
    bucket.proxy.set(Mode::Unavailable);
    bucket.proxy.cut();
    let out = finished(child).await;
    let mut notes = Vec::new();
    let err = stderr(&out);
    if code(&out) != 1 || !err.contains("the asset upload failed") || !err.contains(&bucket.bucket)
    {
        notes.push(format!(
            "exit {} (want 1, the upload named): {err}",
            code(&out)
        ));
    }
    let client = local_env().kube().await;
    let mut leftovers = 0;
    if deployment_count(&client, &bucket.namespace).await > 0 {
        notes.push("a workload was applied".into());
        leftovers += 1;
    }
    let releases = berth::cluster::release::list(&client, &bucket.namespace)
        .await
        .unwrap();
    match releases.first() {
        Some(release)
            if release.status == berth::cluster::release::ReleaseStatus::Failed
                && release
                    .failure
                    .as_ref()
                    .is_some_and(|f| f.workload == "assets") => {}
        other => {
            notes.push(format!("the release record: {other:?}"));
            leftovers += 1;
        }
    }
    // The migration was stopped (its Job deleted) or had finished: none runs on.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &bucket.namespace);
    let running = poll(
        Duration::from_secs(30),
        "the migration to stop",
        async || {
            let listed = jobs.list(&ListParams::default()).await.unwrap();
            let running = listed
                .items
                .iter()
                .filter(|job| {
                    job.metadata.deletion_timestamp.is_none()
                        && job
                            .status
                            .as_ref()
                            .is_none_or(|s| s.active.unwrap_or(0) > 0)
                })
                .count();
            (running == 0).then_some(running)
        },
    )
    .await;
    leftovers += running;
    bucket.proxy.set(Mode::Pass);
    let uploads = bucket.multipart_uploads().await;
    // The failed deploy could not abort its upload while S3 answered 503;
    // the next push of the key does.
    let again = finished(bucket.push(&sha)).await;
    if code(&again) != 0 {
        notes.push(format!(
            "the next push: exit {}: {}",
            code(&again),
            stderr(&again)
        ));
    }
    let left = bucket.multipart_uploads().await;
    if left > 0 {
        notes.push(format!(
            "{left} multipart uploads left (before the next push: {uploads})"
        ));
    }
    let deployments: Api<Deployment> = Api::namespaced(client, &bucket.namespace);
    let applied = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    scenario.record(Trial {
        survived: notes.is_empty(),
        data_lost: 0,
        leftovers: leftovers + left + applied,
        recovered_in: faulted.elapsed(),
        notes,
    });
    scenario.finish();
}

/// The kwok app with `staging`, its images read through a fault proxy in
/// front of the registry and its checks from the fake GitHub behind
/// another: `update-staging-to-latest-passing-master` needs both.
struct Staging {
    dir: PathBuf,
    namespace: String,
    sha: String,
    github: FakeGitHub,
    github_proxy: FaultProxy,
    registry_proxy: FaultProxy,
    _cleanup: [Cleanup; 2],
}

impl Staging {
    fn new(prefix: &str, rate_limit: Option<Value>) -> Staging {
        let env = local_env();
        let name = unique_name(prefix);
        let dir = std::env::temp_dir().join(&name);
        let cleanup = [Cleanup::Namespace(name.clone()), Cleanup::Dir(dir.clone())];
        std::fs::create_dir_all(&dir).unwrap();
        let sha = new_sha();
        push_app_images(env, &sha);
        let mut scenario = json!({
            "token": TOKEN,
            "repos": {"example/workbench": {
                "branches": {"master": [sha]},
                "commits": {sha.clone(): commit(
                    "green",
                    json!([{"name": "ci", "conclusion": "success"}]),
                    json!([]),
                )},
            }},
        });
        if let Some(limit) = rate_limit {
            scenario["rate_limit"] = limit;
        }
        let github = FakeGitHub::start(&scenario);
        let github_proxy = FaultProxy::start(host_port(&github.url));
        let registry_proxy = FaultProxy::start(env.var("BERTH_LOCAL_REGISTRY"));
        let images = support::github::APP_IMAGES
            .iter()
            .map(|i| format!("{}/workbench/{i}", registry_proxy.address()))
            .collect::<Vec<_>>()
            .join(", ");
        // The overlay's images renamed to the registry proxy's, as listed:
        // a listed repository no container uses is refused.
        let overlay = dir.join("overlay");
        std::fs::create_dir_all(&overlay).unwrap();
        let renames: String = support::github::APP_IMAGES
            .iter()
            .map(|i| {
                format!(
                    "  - {{ name: 127.0.0.1:25000/workbench/{i}, newName: {}/workbench/{i} }}\n",
                    registry_proxy.address()
                )
            })
            .collect();
        std::fs::write(
            overlay.join("kustomization.yaml"),
            format!(
                "resources: [{}]\nimages:\n{renames}",
                relative(&overlay, &kwok_app().join("overlays/staging")).display()
            ),
        )
        .unwrap();
        let config = format!(
            "app: wb\nimages: [{images}]\ngithub: {{ repo: example/workbench, branch: master }}\n\
             environments:\n  staging:\n    context: berth-local\n    namespace: {name}\n    \
             overlay: {}\n    rollout: {{ timeout: 90s }}\n",
            overlay.display()
        );
        std::fs::write(dir.join("berth.yaml"), config).unwrap();
        Staging {
            dir,
            namespace: name,
            sha,
            github,
            github_proxy,
            registry_proxy,
            _cleanup: cleanup,
        }
    }

    /// `update-staging-to-latest-passing-master` (with `extra` flags), started.
    fn update(&self, extra: &[&str]) -> std::process::Child {
        let mut args = vec![
            "update-staging-to-latest-passing-master",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        let mut command = berth_command(&self.dir.join("berth.yaml"), &self.dir, &args);
        command.envs(self.github.vars(TOKEN));
        command.env("GITHUB_API_URL", self.github_proxy.url("http"));
        spawn_captured(&mut command)
    }

    /// Whether anything of staging exists in the cluster.
    async fn changed(&self) -> bool {
        let client = local_env().kube().await;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
        namespaces.get_opt(&self.namespace).await.unwrap().is_some()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_and_github_outages_that_pass_are_retried_and_the_choice_made() {
    let mut draws = Draws::for_scenario("registry/github 503 or refused for a time");
    let mut scenario = Scenario::new("registry/github 503 or refused for a time");
    for _ in 0..faults::trials(4, 12) {
        let staging = Staging::new("faults-svc", None);
        let github = draws.below(2) == 0;
        let proxy = if github {
            &staging.github_proxy
        } else {
            &staging.registry_proxy
        };
        let mode = [Mode::Unavailable, Mode::Refuse][draws.below(2)];
        let outage = draws.between(Duration::from_millis(800), Duration::from_millis(3000));
        // Down from the start, back after `outage`, berth retrying meanwhile.
        proxy.set(mode);
        let faulted = Instant::now();
        let child = staging.update(&["--dry-run"]);
        tokio::time::sleep(outage).await;
        proxy.set(Mode::Pass);
        let out = finished(child).await;
        let what = format!(
            "{} {mode:?} for {:.1}s",
            if github { "github" } else { "registry" },
            outage.as_secs_f64()
        );
        let chose = code(&out) == 0 && report(&out)["sha"] == staging.sha.as_str();
        let mut notes = vec![what];
        if !chose {
            notes.push(format!("exit {}: {}", code(&out), stderr(&out)));
        }
        scenario.record(Trial {
            survived: chose,
            data_lost: 0,
            leftovers: usize::from(staging.changed().await),
            recovered_in: faulted.elapsed(),
            notes,
        });
    }
    scenario.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_or_github_down_for_good_exits_1_naming_it_and_changes_nothing() {
    let mut scenario = Scenario::new("registry/github down for good");
    for (service, expected) in [
        ("github", "GitHub at http://127.0.0.1:"),
        ("registry", "registry 127.0.0.1:"),
    ] {
        let staging = Staging::new("faults-svc-down", None);
        let proxy = if service == "github" {
            &staging.github_proxy
        } else {
            &staging.registry_proxy
        };
        proxy.set(Mode::Unavailable);
        let started = Instant::now();
        let out = finished(staging.update(&[])).await;
        let err = stderr(&out);
        let mut notes = vec![service.to_string()];
        let named = err.contains(expected) && err.contains("kept failing");
        if code(&out) != 1 || !named {
            notes.push(format!(
                "exit {} (want 1, naming {expected}): {err}",
                code(&out)
            ));
        }
        let changed = staging.changed().await;
        if changed {
            notes.push("staging's namespace was created".into());
        }
        scenario.record(Trial {
            survived: notes.len() == 1,
            data_lost: 0,
            leftovers: usize::from(changed),
            recovered_in: started.elapsed(),
            notes,
        });
    }
    scenario.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_github_rate_limit_longer_than_berth_waits_fails_at_once_saying_when_it_lifts() {
    let staging = Staging::new(
        "faults-ratelimit",
        Some(json!({"requests": 100, "mode": "retry-after", "retry_after": 3600})),
    );
    // Within `finished`'s bound: no hour-long wait.
    let out = finished(staging.update(&[])).await;
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("rate-limits the token") && err.contains("60 more minutes"),
        "{err}"
    );
    assert!(!staging.changed().await, "nothing was deployed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_github_rate_limit_that_outlasts_the_waits_exits_1_as_a_rate_limit_not_a_permission() {
    // 403 with x-ratelimit-remaining: 0, lifting in a second, again and again.
    let staging = Staging::new(
        "faults-ratelimit-403",
        Some(json!({"requests": 100, "mode": "reset", "reset_in": 1})),
    );
    let out = finished(staging.update(&[])).await;
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    // The waits are said as JSON warnings (`--output json`), the end on stderr.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("GitHub rate limit reached (403 Forbidden)")
            && err.contains("still rate-limits the token"),
        "{said}\n{err}"
    );
    assert!(!err.contains("give the token read access"), "{err}");
    assert!(!staging.changed().await, "nothing was deployed");
}
