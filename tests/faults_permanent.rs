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
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
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
