//! Permanent faults fail fast and clearly, and one deploy runs at a time.
//!
//! Each scenario breaks something for good in the real local environment
//! while berth works (the deployer's credentials revoked, the namespace
//! deleted, the bucket deleted, the hash cache's disk full) and checks that
//! berth ends within a bound, naming the step, the cause and what it left in
//! which state. The concurrency scenarios start ten deploys of one
//! environment from separate processes at once. Every scenario reports
//! through `support::faults` (docs/reliability.md).

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use support::app::{Migration, TestApp};
use support::faults::{Scenario, Trial};
use support::*;

/// How many deploys race for one environment.
const RACERS: usize = 10;

/// A distinct 7-hex-digit SHA per racer.
fn racer_sha(i: usize) -> String {
    format!("{:07x}", 0xa1b2c00 + i)
}

/// Wait for `child` up to `limit`; killed and `None` when it runs longer.
fn wait_bounded(mut child: Child, limit: Duration) -> Option<Output> {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

/// Start `RACERS` deploys of `app` at once (`extra` added to each), each a
/// process of its own; returns them with their SHAs.
fn start_racers(app: &TestApp, extra: &[&str]) -> Vec<(String, Child)> {
    (0..RACERS)
        .map(|i| {
            let sha = racer_sha(i);
            let mut args = vec!["deploy", "test", sha.as_str(), "--output", "json"];
            args.extend_from_slice(extra);
            let child = spawn_captured(&mut app.command(&args));
            (sha, child)
        })
        .collect()
}

/// The release numbers in `history`, and what is wrong with them: not
/// `1..=expected` each exactly once.
fn numbering_faults(history: &[serde_json::Value], expected: usize) -> Vec<String> {
    let numbers: Vec<u64> = history
        .iter()
        .filter_map(|r| r["number"].as_u64())
        .collect();
    let distinct: BTreeSet<u64> = numbers.iter().copied().collect();
    let wanted: BTreeSet<u64> = (1..=expected as u64).collect();
    let mut faults = Vec::new();
    if distinct.len() != numbers.len() {
        faults.push(format!("duplicated release numbers: {numbers:?}"));
    }
    if distinct != wanted {
        faults.push(format!(
            "release numbers {distinct:?}, expected 1..={expected}"
        ));
    }
    faults
}

/// 1 when the environment's deploy lock is still held, else 0.
async fn lock_held(app: &TestApp) -> usize {
    let client = local_env().kube().await;
    let leases: Api<Lease> = Api::namespaced(client, &app.namespace);
    let lease = leases.get_opt("berth-deploy-lock").await.unwrap();
    let holder = lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty());
    usize::from(holder.is_some())
}

/// Ten deploys of one environment at once, without `--lock-wait`: exactly
/// one proceeds; the other nine exit 3 naming it (its pid) as the holder,
/// and change nothing (one release record only). The proceeding deploy's
/// migration is held, so it holds the lock until all nine have answered;
/// Ctrl-C then ends it.
#[tokio::test]
async fn ten_concurrent_deploys_one_proceeds_nine_exit_3_naming_the_holder() {
    let mut scenario = Scenario::new("10 concurrent deploys, no wait");
    for _ in 0..faults::trials(1, 3) {
        let app = TestApp::new("perm-race", Migration::Held);
        let started = Instant::now();
        let mut notes = Vec::new();
        let mut racers = start_racers(&app, &[]);
        // Nine answer (exit 3) while the tenth holds the lock in its migration.
        let mut answered = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while answered.len() < RACERS - 1 && Instant::now() < deadline {
            let mut i = 0;
            while i < racers.len() {
                if racers[i].1.try_wait().unwrap().is_some() {
                    let (sha, child) = racers.remove(i);
                    answered.push((sha, child.wait_with_output().unwrap()));
                } else {
                    i += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let answered_in = started.elapsed();
        let running: Vec<u32> = racers.iter().map(|(_, c)| c.id()).collect();
        if running.len() != 1 {
            notes.push(format!(
                "{} deploys still running after the others answered, expected 1",
                running.len()
            ));
        }
        let holder = running.first().map(|pid| format!("(pid {pid})"));
        for (sha, out) in &answered {
            let text = stderr(out);
            if code(out) != 3 {
                notes.push(format!("deploy {sha} exited {}: {text}", code(out)));
            } else if !holder.as_ref().is_some_and(|h| text.contains(h)) {
                notes.push(format!(
                    "deploy {sha} does not name the holder {holder:?}: {text}"
                ));
            } else if !text.contains("locked by") {
                notes.push(format!("deploy {sha}: no `locked by`: {text}"));
            }
        }
        // The one proceeding is stopped (Ctrl-C): its lock goes with it.
        for (_, child) in racers {
            let out = interrupt(child);
            if code(&out) != 130 {
                notes.push(format!(
                    "the holder exited {} on Ctrl-C: {}",
                    code(&out),
                    stderr(&out)
                ));
            }
        }
        let history = app.history();
        let leftovers = history
            .iter()
            .filter(|r| r["status"] == "in_progress")
            .count();
        let lost = numbering_faults(&history, 1);
        notes.extend(lost.iter().cloned());
        // The holder released the lock as it stopped.
        let locks = lock_held(&app).await;
        scenario.record(Trial {
            survived: notes.is_empty(),
            data_lost: lost.len(),
            leftovers: leftovers + locks,
            recovered_in: answered_in,
            notes,
        });
    }
    scenario.finish();
}

/// Ten deploys of one environment at once, each with `--lock-wait`: they run
/// one after another and all succeed; the history holds releases 1 to 10,
/// each exactly once, one per SHA, none left in progress.
#[tokio::test]
async fn ten_concurrent_deploys_with_lock_wait_run_one_after_another() {
    let mut scenario = Scenario::new("10 concurrent deploys, --lock-wait");
    for _ in 0..faults::trials(1, 2) {
        let app = TestApp::new("perm-queue", Migration::Kept);
        let started = Instant::now();
        let mut notes = Vec::new();
        let racers = start_racers(&app, &["--lock-wait", "10m"]);
        for (sha, child) in racers {
            match wait_bounded(child, Duration::from_secs(600)) {
                None => notes.push(format!("deploy {sha} still ran after 10 minutes")),
                Some(out) if code(&out) != 0 => {
                    notes.push(format!(
                        "deploy {sha} exited {}: {}",
                        code(&out),
                        stderr(&out)
                    ));
                }
                Some(_) => {}
            }
        }
        let all_done = started.elapsed();
        let history = app.history();
        let lost = numbering_faults(&history, RACERS);
        notes.extend(lost.iter().cloned());
        let shas: BTreeSet<&str> = history.iter().filter_map(|r| r["sha"].as_str()).collect();
        if shas.len() != RACERS {
            notes.push(format!(
                "releases of {} SHAs, expected {RACERS}: {shas:?}",
                shas.len()
            ));
        }
        let unfinished: Vec<&serde_json::Value> = history
            .iter()
            .filter(|r| r["status"] != "succeeded")
            .collect();
        if !unfinished.is_empty() {
            notes.push(format!("releases not succeeded: {unfinished:?}"));
        }
        // one after another: each started after the one before it finished
        let mut by_number: Vec<&serde_json::Value> = history.iter().collect();
        by_number.sort_by_key(|r| r["number"].as_u64());
        for pair in by_number.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            let finished = before["finished_at"].as_str().unwrap_or_default();
            let began = after["started_at"].as_str().unwrap_or_default();
            let (Ok(finished), Ok(began)) = (
                finished.parse::<k8s_openapi::jiff::Timestamp>(),
                began.parse::<k8s_openapi::jiff::Timestamp>(),
            ) else {
                notes.push(format!("unreadable times: {before} / {after}"));
                continue;
            };
            if began < finished {
                notes.push(format!(
                    "release {} started at {began}, before release {} finished at {finished}",
                    after["number"], before["number"]
                ));
            }
        }
        let leftovers = unfinished.len() + lock_held(&app).await;
        scenario.record(Trial {
            survived: notes.is_empty(),
            data_lost: lost.len(),
            leftovers,
            recovered_in: all_done,
            notes,
        });
    }
    scenario.finish();
}

/// How the deployer's credentials are taken away.
#[derive(Clone, Copy, Debug)]
enum Revoke {
    /// Its RoleBinding deleted: every request is refused, 403.
    RoleBinding,
    /// Its ServiceAccount deleted: its token is no longer valid, 401.
    ServiceAccount,
}

/// Where the deploy is when its credentials go.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Waiting for the migration Job (held: it never ends by itself).
    Migration,
    /// Waiting for the rollout (a Deployment whose pods never become ready).
    Rollout,
}

/// A deploy by the least-privilege deployer whose credentials are revoked
/// while it waits; returns berth's output, how long it took to end after the
/// revocation, and the app (its namespace is still there).
async fn revoked_mid_deploy(revoke: Revoke, step: Step) -> (Output, Duration, TestApp) {
    let admin = local_env().kube().await;
    let migration = match step {
        Step::Migration => Migration::Held,
        Step::Rollout => Migration::Deleted,
    };
    let app = TestApp::new("perm-revoke", migration);
    create_namespace(&admin, &app.namespace).await;
    let kubeconfig = support::deployer::deployer(&admin, &app.namespace).await;
    if let Step::Rollout = step {
        app.strand_pods();
    }
    let mut child = spawn_captured(
        app.command(&["deploy", "test", "1a2b3c4"])
            .env("KUBECONFIG", &kubeconfig),
    );
    wait_for_step(&admin, &app, step, &mut child).await;
    let revoked = Instant::now();
    match revoke {
        Revoke::RoleBinding => {
            let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &app.namespace);
            bindings
                .delete("berth-deployer", &DeleteParams::default())
                .await
                .unwrap();
        }
        Revoke::ServiceAccount => {
            let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &app.namespace);
            accounts
                .delete("berth-deployer", &DeleteParams::default())
                .await
                .unwrap();
        }
    }
    let out = wait_bounded(child, Duration::from_secs(180)).unwrap_or_else(|| {
        panic!("berth still ran 180 s after its credentials were revoked ({revoke:?})")
    });
    (out, revoked.elapsed(), app)
}

/// Wait until `app`'s deploy is in `step`: its migration Job exists, or
/// its release record says it waits for the rollout. Fails the test with
/// berth's output if `deploy` ends first.
async fn wait_for_step(client: &Client, app: &TestApp, step: Step, deploy: &mut Child) {
    let namespace = &app.namespace;
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    poll(
        Duration::from_secs(90),
        &format!("the deploy's {step:?} step"),
        async || {
            if deploy.try_wait().unwrap().is_some() {
                let mut text = String::new();
                let pipe = deploy.stderr.as_mut().unwrap();
                std::io::Read::read_to_string(pipe, &mut text).unwrap();
                panic!("the deploy ended before its {step:?} step: {text}");
            }
            let found = match step {
                Step::Migration => !jobs
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .is_empty(),
                Step::Rollout => app
                    .history()
                    .first()
                    .is_some_and(|release| release["step"] == "wait"),
            };
            found.then_some(())
        },
    )
    .await;
}

/// Rewrite `app`'s overlay as the staging overlay without a migration:
/// what an operator deploys to recover once the fault is understood.
fn unhold(app: &TestApp) {
    let staging = kwok_app().join("overlays/staging");
    let overlay = app.overlay();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "resources: [{}]\npatches:\n  - patch: |-\n      $patch: delete\n      apiVersion: batch/v1\n      kind: Job\n      metadata: {{name: migrate}}\n",
            relative(&overlay, &staging).display()
        ),
    )
    .unwrap();
}

/// The notes on a failed run's stderr: every one of `parts` it lacks.
fn lacks(text: &str, parts: &[&str]) -> Vec<String> {
    parts
        .iter()
        .filter(|part| !text.contains(*part))
        .map(|part| format!("stderr lacks {part:?}: {text}"))
        .collect()
}

/// Recover `app` as an operator would: its migration taken out, a deploy
/// with the admin's credentials that waits out the stale lock. Notes what
/// fails; counts the releases left `in_progress` afterwards.
fn recover(app: &TestApp, notes: &mut Vec<String>) -> usize {
    unhold(app);
    let out = app.berth(&["deploy", "test", "2b3c4d5", "--lock-wait", "2m"]);
    if code(&out) != 0 {
        notes.push(format!(
            "the recovering deploy exited {}: {}",
            code(&out),
            stderr(&out)
        ));
    }
    let history = app.history();
    let stale: Vec<String> = history
        .iter()
        .filter(|r| r["status"] == "in_progress")
        .map(|r| format!("release {} ({})", r["number"], r["sha"]))
        .collect();
    if !stale.is_empty() {
        notes.push(format!(
            "releases still in_progress after recovery: {stale:?}"
        ));
    }
    stale.len()
}

/// The deployer's credentials revoked while a deploy waits (in the
/// migration or the rollout): berth stops within a bound (not retrying a 403
/// or 401 forever), exit 1, naming the step, the refusal and what it leaves:
/// the lock expiring by itself, the release record it could not write, the
/// migration Job it could not delete. A deploy with working credentials then
/// succeeds.
#[tokio::test]
async fn revoked_credentials_mid_deploy_fail_fast_naming_the_step_and_what_is_left() {
    let mut scenario = Scenario::new("credentials revoked mid-deploy");
    let cases = [
        (Revoke::RoleBinding, Step::Migration),
        (Revoke::ServiceAccount, Step::Rollout),
        (Revoke::RoleBinding, Step::Rollout),
        (Revoke::ServiceAccount, Step::Migration),
    ];
    for (revoke, step) in cases.into_iter().take(faults::trials(2, 4)) {
        let (out, took, app) = revoked_mid_deploy(revoke, step).await;
        let text = stderr(&out);
        let mut notes = Vec::new();
        if code(&out) != 1 {
            notes.push(format!(
                "{revoke:?} in {step:?}: exit {}: {text}",
                code(&out)
            ));
        }
        if took > Duration::from_secs(60) {
            notes.push(format!("ended {took:?} after the revocation"));
        }
        // Whichever request is refused first stops the deploy: the lock's
        // renewal (`refused berth's credentials`), or, in the migration, the
        // start of its pod watch (a refused watch: the Job kept).
        let refusal = match revoke {
            Revoke::RoleBinding => ["403 Forbidden", "is forbidden"],
            Revoke::ServiceAccount => ["401 Unauthorized", "401 Unauthorized"],
        };
        let stopped = match step {
            Step::Migration => [
                "stopped in the pre-deploy step: the cluster refused berth's credentials",
                "migration failed; no workload was changed; Job",
            ],
            // refused at the lock renewal, or first at the rollout's watches
            Step::Rollout => [
                "stopped in the wait step: the cluster refused berth's credentials",
                "so the rollout cannot be followed",
            ],
        };
        for either in [refusal, stopped] {
            if !either.iter().any(|part| text.contains(part)) {
                notes.push(format!("stderr has none of {either:?}: {text}"));
            }
        }
        notes.extend(lacks(
            &text,
            &[
                "lock expires by itself within 15s",
                "release 1 could not be recorded as failed",
                "its record still says in_progress",
            ],
        ));
        if let Step::Migration = step {
            let job_said = [
                "stopping left something behind: deleting the cancelled Job",
                "is kept for inspection",
            ];
            if !job_said.iter().any(|part| text.contains(part)) {
                notes.push(format!("the migration Job left is not named: {text}"));
            }
            // as stated: the Job is left for the operator
            let admin = local_env().kube().await;
            let jobs: Api<Job> = Api::namespaced(admin, &app.namespace);
            for job in jobs.list(&ListParams::default()).await.unwrap() {
                let name = job.metadata.name.unwrap();
                jobs.delete(&name, &DeleteParams::background())
                    .await
                    .unwrap();
            }
        }
        let leftovers = recover(&app, &mut notes);
        scenario.record(Trial {
            survived: notes.is_empty(),
            data_lost: 0,
            leftovers,
            recovered_in: took,
            notes,
        });
    }
    scenario.finish();
}

/// The environment's namespace deleted while a deploy waits (in the
/// migration or the rollout): berth stops within a bound, exit 1, saying the
/// namespace was deleted and in which step, not a watch error or a hang; a
/// deploy once it is gone creates it anew and succeeds.
#[tokio::test]
async fn a_namespace_deleted_mid_deploy_fails_clearly_naming_the_deletion() {
    let mut scenario = Scenario::new("namespace deleted mid-deploy");
    let steps = [Step::Migration, Step::Rollout];
    for step in steps.into_iter().take(faults::trials(2, 2)) {
        let admin = local_env().kube().await;
        let migration = match step {
            Step::Migration => Migration::Held,
            Step::Rollout => Migration::Deleted,
        };
        let app = TestApp::new("perm-nsgone", migration);
        if let Step::Rollout = step {
            app.strand_pods();
        }
        let mut child = spawn_captured(&mut app.command(&["deploy", "test", "1a2b3c4"]));
        wait_for_step(&admin, &app, step, &mut child).await;
        let deleted = Instant::now();
        delete_namespace(&admin, &app.namespace).await;
        let mut notes = Vec::new();
        let Some(out) = wait_bounded(child, Duration::from_secs(120)) else {
            panic!("berth still ran 120 s after its namespace was deleted ({step:?})");
        };
        let took = deleted.elapsed();
        let text = stderr(&out);
        if code(&out) != 1 {
            notes.push(format!("exit {}: {text}", code(&out)));
        }
        if took > Duration::from_secs(60) {
            notes.push(format!("ended {took:?} after the deletion"));
        }
        let step_name = match step {
            Step::Migration => "during the pre-deploy step",
            Step::Rollout => "during the wait step",
        };
        notes.extend(lacks(
            &text,
            &[
                &format!("namespace {}", app.namespace),
                step_name,
                "release records and deploy lock go with it",
            ],
        ));
        // once it is gone, a deploy creates it anew
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        poll(
            Duration::from_secs(180),
            "the namespace to go",
            async || {
                namespaces
                    .get_opt(&app.namespace)
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(())
            },
        )
        .await;
        let leftovers = recover(&app, &mut notes);
        if app.history().len() != 1 {
            notes.push(format!("history of the new namespace: {:?}", app.history()));
        }
        scenario.record(Trial {
            survived: notes.is_empty(),
            data_lost: 0,
            leftovers,
            recovered_in: took,
            notes,
        });
    }
    scenario.finish();
}

/// A MinIO bucket of the test's own, removed at the end, and berth.yaml in
/// `dir` pushing `dir/build` to it (prefix `static/`) with `extra` keys of
/// `assets:` (indented by 6).
async fn assets_project(prefix: &str, extra: &str) -> (TestApp, String, Cleanup) {
    let app = TestApp::new(prefix, Migration::Deleted);
    let bucket = app.namespace.clone();
    let cleanup = support::backups::bucket_named(&bucket).await;
    app.configure_assets(&bucket, extra);
    (app, bucket, cleanup)
}

/// `n` small files under `dir/build`, old enough (their change time more
/// than the hash cache's one second ago) to be remembered.
async fn settled_tree(app: &TestApp, n: usize) {
    let build = app.dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    for i in 0..n {
        std::fs::write(
            build.join(format!("f{i}.txt")),
            format!("file {i}\n").repeat(50),
        )
        .unwrap();
    }
    let written = std::time::SystemTime::now();
    poll(Duration::from_secs(10), "the files to settle", async || {
        (written.elapsed().unwrap_or_default() > Duration::from_millis(1500)).then_some(())
    })
    .await;
}

/// The hash cache on a full disk (a 4 KiB tmpfs, filled, mounted in a
/// user namespace of berth's own: no root needed): `assets push` warns that
/// the cache could not be written, why, and what it costs, and uploads
/// everything (exit 0). A cache is an optimisation: it never fails a push.
#[tokio::test]
async fn a_full_disk_for_the_hash_cache_only_warns() {
    let mut scenario = Scenario::new("hash cache disk full");
    let (app, bucket, _bucket_cleanup) = assets_project("perm-fullcache", "").await;
    settled_tree(&app, 20).await;
    let cache = app.dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let started = Instant::now();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=4k tmpfs \"$BERTH_CACHE\" \
             && dd if=/dev/zero of=\"$BERTH_CACHE/fill\" bs=4k 2>/dev/null; exec \"$@\"",
        )
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_berth"))
        .arg("--config")
        .arg(app.config())
        .args(["assets", "push", "test", "1a2b3c4"])
        .envs(local_env().vars())
        .env("BERTH_SHA_AS_GIVEN", "1")
        .env("BERTH_CACHE", &cache)
        .env_remove("GITHUB_ACTIONS")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = stderr(&out);
    let mut notes = Vec::new();
    if code(&out) != 0 {
        notes.push(format!("exit {}: {text}", code(&out)));
    }
    notes.extend(lacks(
        &text,
        &[
            "hash cache",
            "could not be written",
            "No space left on device",
            "next push hashes every file again",
        ],
    ));
    let s3 = local_env().s3().await;
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    let uploaded = listed.contents().len();
    if uploaded != 21 {
        notes.push(format!(
            "{uploaded} objects uploaded, expected 20 files and the manifest"
        ));
    }
    scenario.record(Trial {
        survived: notes.is_empty(),
        data_lost: 21usize.saturating_sub(uploaded),
        leftovers: 0,
        recovered_in: started.elapsed(),
        notes,
    });
    scenario.finish();
}

/// The bucket deleted (forced, with what is in it, as `mc rb --force` does)
/// while `assets push` uploads a large file in parts: berth fails fast, exit
/// non-zero, saying the bucket does not exist (NoSuchBucket) and naming it,
/// instead of retrying or hanging.
#[tokio::test]
async fn a_bucket_deleted_mid_upload_fails_fast_naming_it() {
    let mut scenario = Scenario::new("bucket deleted mid-upload");
    let (app, bucket, _bucket_cleanup) =
        assets_project("perm-nobucket", "      concurrency: 1\n").await;
    let build = app.dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("huge.bin"), images::noise(200 * 1024 * 1024, 7)).unwrap();
    let child = spawn_captured(&mut app.command(&["assets", "push", "test", "1a2b3c4"]));
    let s3 = local_env().s3().await;
    poll(
        Duration::from_secs(60),
        "a multipart upload to start",
        async || {
            let uploads = s3
                .list_multipart_uploads()
                .bucket(&bucket)
                .send()
                .await
                .ok()?;
            (!uploads.uploads().is_empty()).then_some(())
        },
    )
    .await;
    let deleted = Instant::now();
    s3.delete_bucket()
        .bucket(&bucket)
        .customize()
        .mutate_request(|request| {
            request.headers_mut().insert("x-minio-force-delete", "true");
        })
        .send()
        .await
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("berth still ran 120 s after its bucket was deleted"));
    let took = deleted.elapsed();
    let text = stderr(&out);
    eprintln!("berth said, exit {}:\n{text}", code(&out));
    let mut notes = Vec::new();
    if code(&out) == 0 {
        notes.push(format!("exit 0 with the bucket deleted: {text}"));
    }
    if took > Duration::from_secs(30) {
        notes.push(format!("ended {took:?} after the deletion"));
    }
    notes.extend(lacks(
        &text,
        &[&format!("bucket {bucket}"), "does not exist"],
    ));
    scenario.record(Trial {
        survived: notes.is_empty(),
        data_lost: 0,
        leftovers: 0,
        recovered_in: took,
        notes,
    });
    std::fs::remove_file(build.join("huge.bin")).unwrap();
    scenario.finish();
}

/// `deploy test 1a2b3c4` of `app` started and frozen (SIGSTOP) once its
/// migration runs, so its lock expires; with a way to signal it again
/// (`signal("-CONT")`).
async fn frozen_in_migration(admin: &Client, app: &TestApp) -> (Child, impl Fn(&str) + use<>) {
    let mut frozen = spawn_captured(&mut app.command(&["deploy", "test", "1a2b3c4"]));
    wait_for_step(admin, app, Step::Migration, &mut frozen).await;
    let pid = frozen.id().to_string();
    let signal = move |name: &str| {
        let sent = Command::new("kill").args([name, &pid]).status().unwrap();
        assert!(sent.success(), "kill {name} {pid}");
    };
    signal("-STOP");
    (frozen, signal)
}

/// A deployer frozen (SIGSTOP) in its migration until its lock expires;
/// another deploy takes the lock over and succeeds; the frozen one then
/// resumes (SIGCONT) and still writes: it must find the lock lost and stop
/// (exit 3) without touching the new holder's release. The numbering stays
/// 1 (the frozen deploy's) and 2 (the new holder's), each once.
#[tokio::test]
async fn a_holder_resuming_after_a_takeover_stops_and_no_release_is_lost_or_duplicated() {
    let mut scenario = Scenario::new("lock taken over from a frozen holder");
    let admin = local_env().kube().await;
    let app = TestApp::new("perm-takeover", Migration::Held);
    let (frozen, signal) = frozen_in_migration(&admin, &app).await;
    let started = Instant::now();
    unhold(&app);
    let taker = app.berth(&["deploy", "test", "2b3c4d5", "--lock-wait", "2m"]);
    let mut notes = Vec::new();
    if code(&taker) != 0 {
        notes.push(format!(
            "the taking deploy exited {}: {}",
            code(&taker),
            stderr(&taker)
        ));
    }
    signal("-CONT");
    let resumed = wait_bounded(frozen, Duration::from_secs(60));
    match &resumed {
        None => notes.push("the resumed deploy still ran 60 s later".into()),
        Some(out) if code(out) != 3 || !stderr(out).contains("lock_lost") => {
            notes.push(format!(
                "the resumed deploy exited {}: {}",
                code(out),
                stderr(out)
            ));
        }
        Some(_) => {}
    }
    let history = app.history();
    let lost = numbering_faults(&history, 2);
    notes.extend(lost.iter().cloned());
    let status = |number: u64| {
        history
            .iter()
            .find(|r| r["number"] == number)
            .map(|r| r["status"].as_str().unwrap_or_default().to_string())
    };
    if status(2).as_deref() != Some("succeeded") {
        notes.push(format!("the new holder's release 2: {:?}", status(2)));
    }
    let stale = usize::from(status(1).as_deref() == Some("in_progress"));
    if !matches!(status(1).as_deref(), Some("failed" | "abandoned")) {
        notes.push(format!("the frozen deploy's release 1: {:?}", status(1)));
    }
    // The new holder settled release 1 abandoned; the resumed deploy's own
    // final write keeps that marking beside how it ended.
    let release_1 = history.iter().find(|r| r["number"] == 1);
    if release_1.is_some_and(|r| r["abandoned"]["found_by"].as_str().is_none()) {
        notes.push(format!(
            "release 1 lost the new holder's abandoned marking: {:?}",
            release_1.map(|r| &r["abandoned"])
        ));
    }
    scenario.record(Trial {
        survived: notes.is_empty(),
        data_lost: lost.len(),
        leftovers: stale + lock_held(&app).await,
        recovered_in: started.elapsed(),
        notes,
    });
    scenario.finish();
}

/// A deploy frozen (SIGSTOP) in its migration past its lock's expiry; the
/// lock is then taken by hand and the deploy resumed (SIGCONT): it stops
/// with exit 3, and its last line (plain output, as people read it) names
/// the new holder, since when it holds the lock, and the release it left
/// unfinished, as the JSON report's `error` does.
#[tokio::test]
async fn a_deploy_that_lost_its_lock_names_the_new_holder_in_its_last_line() {
    let admin = local_env().kube().await;
    let app = TestApp::new("perm-lost-line", Migration::Held);
    let (frozen, signal) = frozen_in_migration(&admin, &app).await;
    let taken = poll(
        Duration::from_secs(40),
        "the frozen deploy's lock to expire and be taken by hand",
        async || {
            let out = app.berth(&[
                "lock", "test", "acquire", "--ttl", "10m", "--output", "json",
            ]);
            (code(&out) == 0).then(|| report(&out))
        },
    )
    .await;
    let holder = taken["holder"].as_str().unwrap().to_string();
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &app.namespace);
    let since = leases.get("berth-deploy-lock").await.unwrap().spec.unwrap();
    let since = since
        .acquire_time
        .unwrap()
        .0
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    signal("-CONT");
    let out =
        wait_bounded(frozen, Duration::from_secs(60)).expect("the resumed deploy ends within 60 s");
    let said = stderr(&out);
    assert_eq!(code(&out), 3, "{said}");
    let last = said.lines().last().unwrap_or_default();
    for part in [
        "lock_lost deploying 1a2b3c4 to test, release 1 left unfinished",
        &format!(
            "lost the deploy lock of namespace {} to {holder} (held by hand with `berth lock test acquire`)",
            app.namespace
        ),
        &format!(", holding it since {since} ("),
        "berth stopped before its next change",
    ] {
        assert!(
            last.contains(part),
            "expected {part:?} in the last line: {said}"
        );
    }
}
