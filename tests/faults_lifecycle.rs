//! No orphans and interrupts (docs/reliability.md): berth SIGKILLed or
//! sent SIGHUP (drawn per trial, as many of each) at random points of
//! `advanced-deploy`, `promote`, `rollback`, `assets push` and `maintenance
//! on`, then one ordinary command, after which the environment must be
//! consistent: no `in_progress` release (after a SIGKILL, once the killed
//! one's lock expired `history` says `abandoned` before any new deploy, and
//! the next deploy records it so, with its step; after a SIGHUP berth
//! exited 130 at once with the lock free, the release `interrupted` with
//! its step, no Job of its own running), no Job or run pod left,
//! maintenance fully on or fully off, no partial object in the bucket, the
//! lock free, and the ordinary command succeeded. Each signal of each
//! command reports as a [`faults::Scenario`] of its own (`sigkill rollback`,
//! `sighup rollback`); `recovered_in` runs from the signal to consistency.
//!
//! Also: a dead deploy's migration Job still running is reported and left,
//! and no second migration starts beside it (exit 3), until it finishes.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};
use support::app::{Migration, TestApp};
use support::faults::{self, Draws, Scenario, Trial};
use support::github::{new_sha, push_app_images};
use support::*;

/// The kwok-backed app's SHAs the deploy trials alternate between (kwok
/// runs any image).
const SHAS: [&str; 2] = ["1a2b3c4", "2b3c4d5"];

/// One environment of a test app: its name in berth.yaml and namespace.
struct Env<'a> {
    app: &'a TestApp,
    name: &'a str,
    ns: &'a str,
}

impl Env<'_> {
    /// The releases `history --output json` lists, newest first.
    fn history(&self) -> Vec<Value> {
        json_lines(&self.app.ok(&["history", self.name, "--output", "json"]))
            .into_iter()
            .filter(|e| e["event"] == "release")
            .collect()
    }

    /// The newest release's number (0: none).
    fn newest(&self) -> u64 {
        self.history()
            .first()
            .and_then(|r| r["number"].as_u64())
            .unwrap_or(0)
    }
}

fn json_lines(output: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// What a trial found wrong.
#[derive(Default)]
struct Findings {
    leftovers: usize,
    data_lost: usize,
    /// Promises broken other than by a leftover or a loss (a SIGHUP that
    /// did not end berth with exit 130): the trial did not survive.
    broken: usize,
    notes: Vec<String>,
}

impl Findings {
    fn leftover(&mut self, note: String) {
        self.leftovers += 1;
        self.notes.push(note);
    }

    fn lost(&mut self, note: String) {
        self.data_lost += 1;
        self.notes.push(note);
    }

    fn broke(&mut self, note: String) {
        self.broken += 1;
        self.notes.push(note);
    }

    fn trial(self, survived: bool, killed_at: Instant, mut notes: Vec<String>) -> Trial {
        notes.extend(self.notes);
        eprintln!("trial: {}", notes.join("; "));
        Trial {
            survived: survived && self.broken == 0,
            data_lost: self.data_lost,
            leftovers: self.leftovers,
            recovered_in: killed_at.elapsed(),
            notes,
        }
    }
}

/// Run `args` to success; the window of points a kill of the same
/// command lands in: from a tenth to nine tenths of the time it took.
fn window_of(app: &TestApp, args: &[&str]) -> (Duration, Duration) {
    let started = Instant::now();
    app.ok(args);
    let took = started.elapsed();
    (took / 10, took * 9 / 10)
}

/// Run `args` to success with `--output json`; how long each of its steps
/// took (the last: 50 ms), in order: the points a kill of the same
/// command is drawn among.
fn steps_of(app: &TestApp, args: &[&str]) -> Vec<Duration> {
    let args: Vec<&str> = args.iter().copied().chain(["--output", "json"]).collect();
    let times: Vec<Timestamp> = json_lines(&app.ok(&args))
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["time"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut lengths: Vec<Duration> = times
        .windows(2)
        .map(|w| Duration::try_from(w[1].duration_since(w[0])).unwrap_or_default())
        .collect();
    lengths.push(Duration::from_millis(50));
    lengths
}

/// The signal a trial sends: SIGKILL (nothing cleans up after berth) or
/// SIGHUP (the terminal went away: berth stops cleanly).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Sig {
    Kill,
    Hup,
}

impl Sig {
    /// How scenario names and notes call it.
    fn name(self) -> &'static str {
        match self {
            Sig::Kill => "sigkill",
            Sig::Hup => "sighup",
        }
    }
}

/// The signals of a scenario's `n` trials, drawn: each pair of trials
/// sends one of each, in a drawn order, so both are tried as often.
fn signals(draws: &mut Draws, n: usize) -> Vec<Sig> {
    let mut first = 0;
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                first = draws.below(2);
            }
            [Sig::Kill, Sig::Hup][(first + i) % 2]
        })
        .collect()
}

/// How a signalled command ended.
struct Stopped {
    /// When the signal was sent (SIGHUP), or when berth was dead (SIGKILL).
    at: Instant,
    /// Where the signal landed, and how berth exited.
    note: String,
    /// berth's exit code (`None`: a signal ended it).
    code: Option<i32>,
    /// berth had ended by itself before the signal was due: none was sent.
    ended_first: bool,
    /// What berth said on stderr.
    said: String,
}

/// Spawn `command` with stdout and stderr piped, each read to its end in
/// a thread of its own (so berth never meets a closed pipe): the child,
/// the step names stdout announces (`--output json`), and stderr.
fn spawn_read(
    mut command: Command,
) -> (
    Child,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (steps, announced) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if event["event"] == "step" {
                let _ = steps.send(event["name"].as_str().unwrap_or("?").to_string());
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut said = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
        said
    });
    (child, announced, said)
}

/// Send `sig` to `child` (at `point`) unless it already ended, and wait
/// for its end.
fn stop(mut child: Child, sig: Sig, point: &str, said: std::thread::JoinHandle<String>) -> Stopped {
    let ended_first = child.try_wait().unwrap().is_some();
    let sent = Instant::now();
    if !ended_first {
        match sig {
            Sig::Kill => child.kill().unwrap(), // nothing released, nothing recorded
            Sig::Hup => kill_process(Pid::from_child(&child), Signal::HUP).unwrap(),
        }
    }
    let status = child.wait().unwrap();
    let at = match sig {
        Sig::Kill => Instant::now(),
        Sig::Hup => sent,
    };
    let note = if ended_first {
        format!("ended ({status}) before the {} {point}", sig.name())
    } else {
        format!("{} {point}: {status}", sig.name())
    };
    Stopped {
        at,
        note,
        code: status.code(),
        ended_first,
        said: said.join().unwrap(),
    }
}

/// Start `command` (with `--output json`), send it `sig` `jitter` after
/// it announced its step number `step` (from 0), and wait for its end.
async fn signal_at_step(mut command: Command, step: usize, jitter: Duration, sig: Sig) -> Stopped {
    command.args(["--output", "json"]);
    let (child, announced, said) = spawn_read(command);
    tokio::task::spawn_blocking(move || {
        // Ends early (no more steps) when the command ended first.
        let reached = announced.iter().nth(step);
        std::thread::sleep(jitter);
        let point = format!("{:.2}s into step {reached:?}", jitter.as_secs_f64());
        stop(child, sig, &point, said)
    })
    .await
    .unwrap()
}

/// Start `command`, send it `sig` `after` later, and wait for its end.
async fn signal_after(command: Command, after: Duration, sig: Sig) -> Stopped {
    let (child, _, said) = spawn_read(command);
    tokio::time::sleep(after).await;
    let point = format!("at {:.2}s", after.as_secs_f64());
    tokio::task::spawn_blocking(move || stop(child, sig, &point, said))
        .await
        .unwrap()
}

/// After a SIGHUP: berth exited 130, or 0 when it had finished first
/// (sent or not, the signal found nothing left to stop).
fn exited_as_interrupted(stopped: &Stopped, found: &mut Findings) {
    match stopped.code {
        Some(130) => {}
        Some(0) => eprintln!(
            "the command finished (exit 0) before its SIGHUP took effect: {}",
            stopped.note
        ),
        other => found.broke(format!(
            "SIGHUP ended berth with {other:?}, not 130: {}",
            stopped.said.trim_end()
        )),
    }
}

/// Wait until nobody holds the lock in `ns` (a killed holder's hold
/// expires within its 15 s).
async fn lock_expired(client: &Client, ns: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    poll(Duration::from_secs(40), "the lock to expire", async || {
        let lease = leases.get_opt("berth-deploy-lock").await.unwrap();
        (!lock_held(lease.as_ref())).then_some(())
    })
    .await;
}

/// Whether `lease` is held now.
fn lock_held(lease: Option<&Lease>) -> bool {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return false;
    };
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
    match (spec.holder_identity.as_deref(), renewed) {
        (Some(holder), Some(at)) if !holder.is_empty() => {
            let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
            at.0.checked_add(SignedDuration::from_secs(seconds))
                .unwrap()
                > Timestamp::now()
        }
        _ => false,
    }
}

/// Once the killed command's lock expired, before any new deploy: no
/// release shows `in_progress`, and the killed one (newer than `before`,
/// if it got as far as recording one) shows `abandoned` with its step.
/// Its number.
fn seen_abandoned(env: &Env, before: u64, found: &mut Findings) -> Option<u64> {
    let history = env.history();
    for r in &history {
        if r["status"] == "in_progress" {
            found.leftover(format!(
                "history shows release {} in_progress after the lock expired",
                r["number"]
            ));
        }
    }
    let killed: Vec<&Value> = history
        .iter()
        .filter(|r| r["number"].as_u64() > Some(before))
        .collect();
    match killed[..] {
        [] => None,
        [r] => {
            if r["status"] != "abandoned" && r["status"] != "succeeded" {
                found.leftover(format!("the killed release shows {}", r["status"]));
            }
            if r["status"] == "abandoned" && r["step"].is_null() {
                found.leftover("the abandoned release has no step".into());
            }
            r["number"].as_u64()
        }
        _ => {
            found.leftover(format!(
                "{} releases after one killed command",
                killed.len()
            ));
            None
        }
    }
}

/// Right after a SIGHUP, before anything else runs: berth exited 130 (or
/// 0, having finished), the lock is free at once, the release it recorded
/// (newer than `before`, if it got as far) is `interrupted` with its step
/// (`succeeded` if it finished), never `in_progress` or `abandoned`, no
/// Job of berth's is left running (a failed one may be kept) nor a pod of
/// one, and maintenance is fully on or fully off. The release's number.
async fn stopped_cleanly(
    env: &Env<'_>,
    client: &Client,
    before: u64,
    stopped: &Stopped,
    found: &mut Findings,
) -> Option<u64> {
    exited_as_interrupted(stopped, found);
    let leases: Api<Lease> = Api::namespaced(client.clone(), env.ns);
    if lock_held(leases.get_opt("berth-deploy-lock").await.unwrap().as_ref()) {
        found.leftover("the lock is still held after berth exited".into());
    }
    let expected = if stopped.code == Some(0) {
        "succeeded"
    } else {
        "interrupted"
    };
    let history = env.history();
    let signalled: Vec<&Value> = history
        .iter()
        .filter(|r| r["number"].as_u64() > Some(before))
        .collect();
    let number = match signalled[..] {
        [] => None,
        [r] => {
            if r["status"] != expected {
                found.leftover(format!(
                    "release {} recorded {} after exit {:?}",
                    r["number"], r["status"], stopped.code
                ));
            }
            if r["step"].as_str().is_none_or(str::is_empty) {
                found.leftover(format!("release {} recorded no step", r["number"]));
            }
            r["number"].as_u64()
        }
        _ => {
            found.lost(format!(
                "{} releases after one signalled command",
                signalled.len()
            ));
            None
        }
    };
    no_job_running(client, env.ns, found).await;
    let out = env
        .app
        .ok(&["maintenance", env.name, "status", "--output", "json"]);
    let state = report(&out)["state"].clone();
    if state != "on" && state != "off" {
        found.leftover(format!("maintenance is {state} after the SIGHUP"));
    }
    number
}

/// No Job of berth's in `ns` still running (deleted, or failed and kept),
/// and no pod of one neither deleted nor ended within 30 s (the garbage
/// collector deletes a deleted Job's pods).
async fn no_job_running(client: &Client, ns: &str, found: &mut Findings) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let by_berth = ListParams::default().labels("app.kubernetes.io/managed-by=berth");
    for job in jobs.list(&by_berth).await.unwrap() {
        if !job_failed(&job) && job.metadata.deletion_timestamp.is_none() {
            found.leftover(format!("Job {} left running", job.name_any()));
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = loop {
        let mut running = Vec::new();
        for selector in ["berth.dev/migration-of", "berth.dev/run"] {
            let listed = pods
                .list(&ListParams::default().labels(selector))
                .await
                .unwrap();
            running.extend(
                listed
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| {
                        !matches!(
                            p.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Failed" | "Succeeded")
                        )
                    })
                    .map(|p| p.name_any()),
            );
        }
        if running.is_empty() || Instant::now() >= deadline {
            break running;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for pod in running {
        found.leftover(format!("pod {pod} still running 30 s after berth exited"));
    }
}

/// After the ordinary command: the signalled release `signalled` recorded
/// abandoned (found by whom, at its step) after a SIGKILL, still
/// `interrupted` with its step after a SIGHUP, unless it had finished; no
/// release in progress, none of `before` lost or duplicated.
fn records_settled(env: &Env, before: &[u64], signalled: Option<(u64, Sig)>, found: &mut Findings) {
    let history = env.history();
    let numbers: Vec<u64> = history
        .iter()
        .filter_map(|r| r["number"].as_u64())
        .collect();
    for number in before {
        if !numbers.contains(number) {
            found.lost(format!("release {number} is gone"));
        }
    }
    let mut unique = numbers.clone();
    unique.dedup();
    if unique.len() != numbers.len() {
        found.lost(format!("release numbers repeat: {numbers:?}"));
    }
    for r in &history {
        if r["status"] == "in_progress" {
            found.leftover(format!("release {} still in_progress", r["number"]));
        }
    }
    let Some((number, sig)) = signalled else {
        return;
    };
    let Some(r) = history.iter().find(|r| r["number"] == number) else {
        return;
    };
    if sig == Sig::Hup {
        if r["status"] != "interrupted" && r["status"] != "succeeded" {
            found.leftover(format!("the interrupted release ended {}", r["status"]));
        }
    } else if r["status"] == "abandoned" {
        let abandoned = &r["abandoned"];
        let by = abandoned["found_by"].as_str().unwrap_or_default();
        if !by.contains("pid") || abandoned["found_at"].is_null() || abandoned["step"] != r["step"]
        {
            found.leftover(format!(
                "abandoned release {} not settled: {r}",
                r["number"]
            ));
        }
    } else if r["status"] != "succeeded" {
        found.leftover(format!("the killed release ended {}", r["status"]));
    }
}

/// No Job of berth's, no migration or run pod left in `ns`, and the lock
/// free (deleted Jobs' pods go within 30 s: the garbage collector).
async fn nothing_left(client: &Client, ns: &str, found: &mut Findings) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let mut left: Vec<String> = Vec::new();
        let by_berth = ListParams::default().labels("app.kubernetes.io/managed-by=berth");
        for job in jobs.list(&by_berth).await.unwrap() {
            left.push(format!("Job {}", job.name_any()));
        }
        for selector in ["berth.dev/migration-of", "berth.dev/run"] {
            let listed = pods
                .list(&ListParams::default().labels(selector))
                .await
                .unwrap();
            left.extend(listed.into_iter().map(|p| format!("pod {}", p.name_any())));
        }
        if left.is_empty() || Instant::now() >= deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for what in left {
        found.leftover(format!("{what} left in {ns}"));
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    if lock_held(leases.get_opt("berth-deploy-lock").await.unwrap().as_ref()) {
        found.leftover("the lock is still held".into());
    }
}

/// Maintenance in `env` is fully `expected` (`on` or `off`), never partial.
fn maintenance_is(env: &Env, expected: &str, found: &mut Findings) {
    let out = env
        .app
        .ok(&["maintenance", env.name, "status", "--output", "json"]);
    let state = report(&out)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if state != expected {
        found.leftover(format!("maintenance is {state}, not {expected}"));
    }
}

/// One trial in `env`: `round.killed` sent `sig` at a point drawn among
/// its `steps` (within the step, as long as it took), then `round.next`
/// (the ordinary command), then every check.
async fn trial(
    env: &Env<'_>,
    client: &Client,
    draws: &mut Draws,
    steps: &[Duration],
    round: &Round,
    sig: Sig,
) -> Trial {
    let args: Vec<&str> = round.killed.iter().map(String::as_str).collect();
    let next: Vec<&str> = round.next.iter().map(String::as_str).collect();
    let mut found = Findings::default();
    let history: Vec<u64> = env
        .history()
        .iter()
        .filter_map(|r| r["number"].as_u64())
        .collect();
    let before = history.first().copied().unwrap_or(0);
    let step = draws.below(steps.len());
    let jitter = draws.between(Duration::ZERO, steps[step].max(Duration::from_millis(2)));
    let stopped = signal_at_step(env.app.command(&args), step, jitter, sig).await;
    let signalled = match sig {
        Sig::Kill => {
            lock_expired(client, env.ns).await;
            seen_abandoned(env, before, &mut found)
        }
        Sig::Hup => stopped_cleanly(env, client, before, &stopped, &mut found).await,
    };
    let settled = stopped.at.elapsed();
    let started = Instant::now();
    let out = env.app.berth(&next);
    let survived = code(&out) == 0;
    let settled = match sig {
        Sig::Kill => format!("lock free after {:.1}s", settled.as_secs_f64()),
        Sig::Hup => format!("checked {:.1}s after the signal", settled.as_secs_f64()),
    };
    let mut notes = vec![format!(
        "{args:?}: {}; {settled}; {next:?} took {:.1}s",
        stopped.note,
        started.elapsed().as_secs_f64()
    )];
    if stopped.ended_first {
        notes.push("the command ended before the signal: none sent".into());
    }
    if !survived {
        notes.push(format!("{next:?} exited {}: {}", code(&out), stderr(&out)));
    }
    if let Some(number) = signalled {
        let r = env.history().into_iter().find(|r| r["number"] == number);
        let r = r.unwrap_or_default();
        notes.push(format!(
            "release {number} {} at step {}",
            r["status"], r["step"]
        ));
    }
    records_settled(env, &history, signalled.map(|n| (n, sig)), &mut found);
    nothing_left(client, env.ns, &mut found).await;
    maintenance_is(env, round.maintenance, &mut found);
    found.trial(survived, stopped.at, notes)
}

/// A killed command, the ordinary one after it, and the maintenance
/// state they must leave.
struct Round {
    killed: Vec<String>,
    next: Vec<String>,
    maintenance: &'static str,
}

/// `line` split into arguments.
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// The trials of `command` in `env`, each a SIGKILL or a SIGHUP (drawn,
/// one of each per pair): `round` says trial i's commands; each signal
/// lands in one of the command's `steps`. The SIGKILL trials report as
/// scenario `sigkill COMMAND`, the SIGHUP ones as `sighup COMMAND`.
async fn signal_scenarios(
    command: &str,
    env: &Env<'_>,
    steps: Vec<Duration>,
    mut round: impl FnMut(usize, &mut Draws) -> Round,
) {
    let client = local_env().kube().await;
    let mut draws = Draws::for_scenario(&format!("sigkill or sighup {command}"));
    let mut killed = Scenario::new(&format!("sigkill {command}"));
    let mut hung_up = Scenario::new(&format!("sighup {command}"));
    for (i, sig) in signals(&mut draws, faults::trials(2, 8))
        .into_iter()
        .enumerate()
    {
        let r = round(i, &mut draws);
        let t = trial(env, &client, &mut draws, &steps, &r, sig).await;
        match sig {
            Sig::Kill => killed.record(t),
            Sig::Hup => hung_up.record(t),
        }
    }
    faults::finish_all(vec![killed, hung_up]);
}

#[tokio::test]
async fn sigkill_or_sighup_during_advanced_deploy_leaves_nothing_half_done() {
    let app = TestApp::new("faults-kill-deploy", Migration::Kept);
    let steps = steps_of(&app, &["advanced-deploy", "test", SHAS[1]]);
    let env = Env {
        app: &app,
        name: "test",
        ns: &app.namespace,
    };
    signal_scenarios("advanced-deploy", &env, steps, |i, _| Round {
        killed: words(&format!("advanced-deploy test {}", SHAS[i % 2])),
        next: words(&format!(
            "advanced-deploy test {} --lock-wait 60s",
            SHAS[(i + 1) % 2]
        )),
        maintenance: "off",
    })
    .await;
}

#[tokio::test]
async fn sigkill_or_sighup_during_rollback_leaves_nothing_half_done() {
    let app = TestApp::new("faults-kill-rollback", Migration::Kept);
    for sha in SHAS {
        app.ok(&["advanced-deploy", "test", sha]);
    }
    let steps = steps_of(&app, &["rollback", "test"]);
    let env = Env {
        app: &app,
        name: "test",
        ns: &app.namespace,
    };
    signal_scenarios("rollback", &env, steps, |_, _| Round {
        killed: words("rollback test"),
        next: words("rollback test --lock-wait 60s"),
        maintenance: "off",
    })
    .await;
}

/// Add environment `prod` (a namespace of its own, removed when the guard
/// goes) to `app`, and deploy `test` a SHA whose images exist, so `promote
/// test prod` has a source: prod's namespace.
fn with_prod(app: &TestApp) -> (String, Cleanup) {
    let production = format!("{}-prod", app.namespace);
    let cleanup = Cleanup::Namespace(production.clone());
    // `test` is the source, `prod` (a namespace of its own) the target.
    let base = app.base_config.clone();
    let target = base
        .split_once("  test:\n")
        .map(|(_, env)| {
            let ns = |name: &str| format!("namespace: {name}\n");
            env.replace(&ns(&app.namespace), &ns(&production))
        })
        .unwrap();
    app.write_config(&format!("{base}  prod:\n{target}"));
    let sha = new_sha();
    push_app_images(local_env(), &sha);
    app.ok(&["advanced-deploy", "test", &sha]);
    (production, cleanup)
}

#[tokio::test]
async fn sigkill_or_sighup_during_promote_leaves_nothing_half_done() {
    let app = TestApp::new("faults-kill-promote", Migration::Kept);
    let (production, _production) = with_prod(&app);
    let steps = steps_of(&app, &["promote", "test", "prod"]);
    let env = Env {
        app: &app,
        name: "prod",
        ns: &production,
    };
    signal_scenarios("promote", &env, steps, |_, _| Round {
        killed: words("promote test prod"),
        next: words("promote test prod --lock-wait 60s"),
        maintenance: "off",
    })
    .await;
}

/// A SIGHUP in the first step of a promotion (`check source`) or a
/// rollback (`validate`, its plan), before either takes the lock, stops
/// it cleanly: exit 130, nothing recorded, the lock free; the same
/// command then succeeds. (berth listened only from the deploy pipeline
/// on, so a signal there ended it by the signal's default action.)
#[tokio::test]
async fn a_sighup_while_promote_or_rollback_prepares_exits_130() {
    let client = local_env().kube().await;
    let app = TestApp::new("faults-hup-early", Migration::Deleted);
    let (production, _production) = with_prod(&app);
    app.ok(&["advanced-deploy", "test", SHAS[0]]);
    let mut notes = Vec::new();
    for (env_name, ns, args) in [
        ("prod", production.as_str(), "promote test prod"),
        ("test", app.namespace.as_str(), "rollback test"),
    ] {
        let env = Env {
            app: &app,
            name: env_name,
            ns,
        };
        let args = words(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = env.newest();
        let stopped = signal_at_step(app.command(&args), 0, Duration::ZERO, Sig::Hup).await;
        eprintln!("{args:?}: {}", stopped.note);
        let mut found = Findings::default();
        if stopped.code != Some(130) {
            found.broke(format!(
                "{args:?}: {}: {}",
                stopped.note,
                stopped.said.trim_end()
            ));
        }
        stopped_cleanly(&env, &client, before, &stopped, &mut found).await;
        let again = app.berth(&args);
        if code(&again) != 0 {
            found.broke(format!("{args:?} again: {}", stderr(&again)));
        }
        notes.extend(found.notes);
    }
    assert!(notes.is_empty(), "{notes:#?}");
}

#[tokio::test]
async fn sigkill_or_sighup_during_maintenance_on_leaves_it_fully_on_or_fully_off() {
    let app = TestApp::new("faults-kill-maint", Migration::Deleted);
    app.ok(&["advanced-deploy", "test", SHAS[0]]);
    let steps = steps_of(&app, &["maintenance", "test", "on"]);
    app.ok(&["maintenance", "test", "off"]);
    let env = Env {
        app: &app,
        name: "test",
        ns: &app.namespace,
    };
    signal_scenarios("maintenance on", &env, steps, |_, draws| {
        // The ordinary command: `on` again, or `off`, drawn.
        let then = ["on", "off"][draws.below(2)];
        Round {
            killed: words("maintenance test on"),
            next: words(&format!("maintenance test {then} --lock-wait 60s")),
            maintenance: then,
        }
    })
    .await;
}

/// The files of `set` (a directory of their own under `css/`), each
/// distinct, written into the app's `build/`.
fn assets(app: &TestApp, set: &str) -> Vec<(String, Vec<u8>)> {
    (0..200)
        .map(|i| {
            let body = format!("/* {set} {i} */ body {{ order: {i}; }}\n").repeat(60 + i % 200);
            let path = format!("css/{set}/part-{i:04}.css");
            let file: PathBuf = app.dir.join("build").join(&path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, &body).unwrap();
            (path, body.into_bytes())
        })
        .collect()
}

#[tokio::test]
async fn sigkill_or_sighup_during_assets_push_leaves_no_partial_object() {
    let app = TestApp::new("faults-kill-assets", Migration::Deleted);
    let bucket = app.namespace.clone();
    let _bucket = Cleanup::Bucket(bucket.clone());
    let s3 = local_env().s3().await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    app.configure(&format!(
        "    assets:\n      from: {{ dir: build }}\n      bucket: {bucket}\n      prefix: static/\n"
    ));
    assets(&app, "warm");
    let window = window_of(&app, &["assets", "push", "test", SHAS[1]]);
    let mut draws = Draws::for_scenario("sigkill or sighup assets push");
    let mut killed = Scenario::new("sigkill assets push");
    let mut hung_up = Scenario::new("sighup assets push");
    for (i, sig) in signals(&mut draws, faults::trials(2, 8))
        .into_iter()
        .enumerate()
    {
        // Each trial's files are new: the signalled push has them to upload.
        let files = assets(&app, &format!("t{i}"));
        let sha = SHAS[i % 2];
        let push = ["assets", "push", "test", sha];
        let at = draws.between(window.0, window.1);
        let stopped = signal_after(app.command(&push), at, sig).await;
        let mut found = Findings::default();
        if sig == Sig::Hup {
            exited_as_interrupted(&stopped, &mut found);
        }
        // Signalled: every object already under its final key is whole.
        bucket_whole(&bucket, &files, false, &mut found).await;
        let out = app.berth(&push);
        let survived = code(&out) == 0;
        let mut notes = vec![stopped.note.clone()];
        if !survived {
            notes.push(format!(
                "assets push exited {}: {}",
                code(&out),
                stderr(&out)
            ));
        }
        bucket_whole(&bucket, &files, true, &mut found).await;
        let manifest = format!("static/.berth/manifests/{sha}.json");
        if local_env().get_object(&bucket, &manifest).await.is_err() {
            found.lost(format!("no {manifest}"));
        }
        let trial = found.trial(survived, stopped.at, notes);
        match sig {
            Sig::Kill => killed.record(trial),
            Sig::Hup => hung_up.record(trial),
        }
    }
    faults::finish_all(vec![killed, hung_up]);
}

/// Every object in `bucket` under the directory of `files` holds exactly
/// its file; `all`: and every file is there. No multipart upload is left.
async fn bucket_whole(bucket: &str, files: &[(String, Vec<u8>)], all: bool, found: &mut Findings) {
    let s3 = local_env().s3().await;
    let dir = files[0].0.rsplit_once('/').unwrap().0;
    // One page: a set has 200 files, a page holds 1,000 keys.
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("static/{dir}/"))
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    let mut present = 0;
    for (path, body) in files {
        let key = format!("static/{path}");
        if !keys.contains(&key.as_str()) {
            if all {
                found.lost(format!("{key} is missing"));
            }
            continue;
        }
        present += 1;
        let object = local_env().get_object(bucket, &key).await.unwrap();
        let served = object.body.collect().await.unwrap().into_bytes();
        if served.as_ref() != body.as_slice() {
            found.leftover(format!(
                "{key} is partial ({} of {} bytes)",
                served.len(),
                body.len()
            ));
        }
    }
    if !all {
        eprintln!(
            "after the kill: {present} of {} objects there, each whole",
            files.len()
        );
    }
    let uploads = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    if !uploads.uploads().is_empty() {
        found.leftover(format!(
            "{} multipart uploads left",
            uploads.uploads().len()
        ));
    }
}

/// Start a deploy of `app` (whose migration is held: its Job suspended,
/// it never finishes by itself) and SIGKILL it once its migration Job
/// exists; the Job's name.
async fn killed_in_migration(app: &TestApp, jobs: &Api<Job>) -> String {
    let mut first = app
        .command(&["advanced-deploy", "test", SHAS[0]])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job = poll(Duration::from_secs(60), "the migration Job", async || {
        jobs.list(&ListParams::default()).await.unwrap().items.pop()
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    job.name_any()
}

/// A dead deploy's migration that still runs is reported and left; the
/// next deploy waits for it within --lock-wait, then refuses (exit 3)
/// rather than run a second migration beside it; once it finished, the
/// next deploy deletes it and succeeds.
#[tokio::test]
async fn a_dead_deploys_running_migration_is_left_and_no_second_one_starts() {
    let client = local_env().kube().await;
    let app = TestApp::new("faults-running-migration", Migration::Held);
    let ns = &app.namespace;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = killed_in_migration(&app, &jobs).await;
    // The next deploy migrates too (the overlay no longer holds it).
    let kustomization = app.overlay().join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    std::fs::write(&kustomization, text.split("patches:").next().unwrap()).unwrap();

    let refused = app.berth(&[
        "advanced-deploy",
        "test",
        SHAS[1],
        "--lock-wait",
        "20s",
        "--output",
        "json",
    ]);
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        stderr(&refused)
    );
    assert_eq!(code(&refused), 3, "{err}");
    assert!(
        err.contains(&format!(
            "Job {job} of abandoned release 1 is still running"
        )) && err.contains(&format!("kubectl -n {ns} logs job/{job}")),
        "{err}"
    );
    assert!(err.contains("never runs beside it"), "{err}");
    assert!(
        jobs.get_opt(&job).await.unwrap().is_some(),
        "left as it was"
    );
    let history = Env {
        app: &app,
        name: "test",
        ns,
    }
    .history();
    assert_eq!(history.len(), 1, "the refused deploy recorded nothing");
    assert_eq!(history[0]["status"], "abandoned");
    assert_eq!(history[0]["abandoned"]["step"], "pre-deploy");
    assert_eq!(history[0]["step"], "pre-deploy");

    // It finishes (kwok completes it once it may start): the next deploy
    // deletes it and migrates.
    jobs.patch(
        &job,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let out = app.berth(&["advanced-deploy", "test", SHAS[1], "--lock-wait", "60s"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("Job {job} of abandoned release 1")),
        "says what it settled: {err}"
    );
    let mut found = Findings::default();
    nothing_left(&client, ns, &mut found).await;
    assert!(found.notes.is_empty(), "{:?}", found.notes);
}

/// `status` shows a dead deploy's release abandoned, with its step, once
/// its lock expired, before any deploy settles it, and writes nothing.
#[tokio::test]
async fn status_shows_a_dead_deploys_release_abandoned_before_any_deploy() {
    let client = local_env().kube().await;
    let app = TestApp::new("faults-status", Migration::Held);
    let ns = &app.namespace;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    killed_in_migration(&app, &jobs).await;
    let env = Env {
        app: &app,
        name: "test",
        ns,
    };
    assert_eq!(
        env.history()[0]["status"],
        "in_progress",
        "the lock still holds"
    );
    lock_expired(&client, ns).await;
    let status = app.ok(&["status", "test", "--output", "json"]);
    let last = json_lines(&status)
        .into_iter()
        .find(|e| e["event"] == "environment")
        .unwrap()["last_release"]
        .clone();
    assert_eq!(
        (&last["status"], &last["stopped_at"]),
        (&json!("abandoned"), &json!("pre-deploy")),
        "{last}"
    );
    let table = String::from_utf8_lossy(&app.ok(&["status", "test"]).stdout).into_owned();
    assert!(table.contains("abandoned at step pre-deploy"), "{table}");
    let history = String::from_utf8_lossy(&app.ok(&["history", "test"]).stdout).into_owned();
    assert!(
        history.contains("abandoned") && history.contains("stopped at pre-deploy"),
        "{history}"
    );
    // Read-only: the record itself still says in_progress until a deploy.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let record = secrets.get("berth-release-1").await.unwrap();
    assert_eq!(record.labels()["berth.dev/status"], "in_progress");
    assert_eq!(env.newest(), 1);
}

/// A deploy SIGKILLed while it waited for its rollout, its objects
/// applied: once its lock expired, `history` and `status` show its release
/// `abandoned after apply` (not as one abandoned before its apply),
/// `status` reports no drift (the environment runs what it applied) and
/// says what to do next; JSON keeps `abandoned` with the step.
#[tokio::test]
async fn a_deploy_killed_while_waiting_is_abandoned_after_apply_with_no_drift() {
    let client = local_env().kube().await;
    let app = TestApp::new("faults-abandoned-wait", Migration::Deleted);
    let ns = &app.namespace;
    app.ok(&["advanced-deploy", "test", SHAS[0]]);
    // its new pods never become ready: the deploy stays in its wait step
    app.strand_pods();
    let mut deploy = app
        .command(&["advanced-deploy", "test", SHAS[1]])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    app.until_release_step(&mut deploy, 2, "wait").await;
    deploy.kill().unwrap();
    deploy.wait().unwrap();
    lock_expired(&client, ns).await;

    let table = String::from_utf8_lossy(&app.ok(&["history", "test"]).stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("2 "))
        .unwrap_or_else(|| panic!("no release 2: {table}"));
    assert!(
        row.contains("abandoned after apply") && row.contains("stopped at wait"),
        "{table}"
    );
    let shown = String::from_utf8_lossy(&app.ok(&["status", "test"]).stdout).into_owned();
    for part in [
        &format!(
            "last release: 2 {} abandoned after apply at step wait",
            SHAS[1]
        ),
        "release 2 stopped after apply: its objects are in the cluster",
        &format!("run `berth deploy test {}` again to finish", SHAS[1]),
        "or `berth rollback test` to go back",
    ] {
        assert!(shown.contains(part), "expected {part:?} in {shown}");
    }
    assert!(!shown.contains("drift"), "{shown}");
    let status = app.ok(&["status", "test", "--output", "json"]);
    let event = json_lines(&status)
        .into_iter()
        .find(|e| e["event"] == "environment")
        .unwrap();
    let last = &event["last_release"];
    assert_eq!(
        (&last["status"], &last["stopped_at"], &last["applied"]),
        (&json!("abandoned"), &json!("wait"), &json!(true)),
        "{last}"
    );
    assert_eq!(event["drift"], json!([]), "{event}");
}
