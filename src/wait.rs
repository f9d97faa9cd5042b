//! Waiting on every workload of a deploy at once, from watches, until all are
//! healthy or one can never be: the driver of the per-kind verdicts in
//! [`crate::rollout`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use futures::stream::{BoxStream, select_all};
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, LogParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::cluster::retry::{self, GaveUp};
use crate::cluster::watched::{self, WatchRefused, Watched};
use crate::progress::{Progress, RolloutReporter, WorkloadState};
use crate::rollout::pod::UNSCHEDULABLE;
use crate::rollout::{Failure, Thresholds, Verdict, Workload};

/// A workload the deploy applied and now waits on.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// Deployment, StatefulSet, DaemonSet or Job.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// The generation the apply produced; older observations are stale.
    pub generation: i64,
}

impl Tracked {
    /// `Kind/name`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// Why waiting ended without success.
#[derive(Debug, Clone)]
pub enum WaitFailure {
    /// A workload can never become healthy.
    Doomed {
        /// `Kind/name`.
        workload: String,
        /// What the verdict said.
        failure: Failure,
    },
    /// The timeout ran out; these were still progressing.
    TimedOut {
        /// `Kind/name: what it waits for`, per unfinished workload.
        pending: Vec<String>,
    },
    /// The API server refuses a watch the verdicts need (a missing `list`
    /// or `watch` permission): waiting longer cannot help.
    Unwatchable(WatchRefused),
    /// The watches' requests kept giving up ([`retry::Silence`]): the API
    /// server does not answer, and waiting longer would wait on nothing.
    Unreachable(GaveUp),
}

/// Kinds whose verdict `wait_all` can give.
pub fn is_workload(kind: &str) -> bool {
    watched::WORKLOADS.iter().any(|w| w.kind == kind)
}

/// The events of one reflector; an error names the kind whose watch failed.
type Events = BoxStream<'static, Result<(), (Watched, watcher::Error)>>;

/// A reflector of kind `K` in `namespace`, restricted by `config`'s
/// selectors, if `needed` lists `K`; otherwise an empty store. `K` must be one of
/// [`watched::WORKLOADS`] or [`watched::WORKLOAD_PARTS`] (checked when
/// compiling), so the permission check covers every watch started here.
fn reflect<K>(
    client: &Client,
    needed: &[Watched],
    namespace: &str,
    config: watcher::Config,
    events: &mut Vec<Events>,
) -> Store<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    <K as Resource>::DynamicType: Default + Eq + Hash + Clone,
{
    const {
        assert!(
            Watched::listed::<K>(&watched::WORKLOADS)
                || Watched::listed::<K>(&watched::WORKLOAD_PARTS)
        )
    };
    let (reader, writer) = reflector::store::<K>();
    let kind = Watched::of::<K>();
    if needed.contains(&kind) {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let stream = watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .touched_objects()
            .map_ok(|_| ())
            .map_err(move |e| (kind, e))
            .boxed();
        events.push(stream);
    }
    reader
}

fn snapshot<K: Clone + Resource>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|k| (**k).clone()).collect()
}

/// The object named `name` in `namespace`, by key rather than by scanning.
fn find<K: Clone + Resource>(store: &Store<K>, namespace: &str, name: &str) -> Option<K>
where
    K::DynamicType: Default + Eq + Hash + Clone,
{
    store
        .get(&ObjectRef::new(name).within(namespace))
        .map(|k| (*k).clone())
}

/// Where [`wait_all`] looks: a namespace, the label selector of the
/// workloads, and that of their ReplicaSets and pods (for berth's own
/// workloads [`crate::cluster::pods_selector`], since a workload's template
/// may not carry the environment's instance label).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// The label selector of the workloads.
    pub workloads: &'a str,
    /// The label selector of their ReplicaSets and pods.
    pub pods: &'a str,
}

/// Watch every tracked workload in `scope`, and the ReplicaSets and pods
/// their verdicts need, until all succeed, one is doomed, a watch is
/// refused, or `timeout` runs out. Each change is sent to `reporter`.
pub async fn wait_all(
    client: &Client,
    scope: Scope<'_>,
    tracked: &[Tracked],
    thresholds: Thresholds,
    timeout: Duration,
    reporter: &dyn RolloutReporter,
) -> Result<(), WaitFailure> {
    let Scope {
        namespace,
        workloads: selector,
        pods: pods_selector,
    } = scope;
    let needed = watched::rollout(tracked.iter().map(|t| t.kind.as_str()));
    let mut streams = Vec::new();
    let (own, parts) = (
        watcher::Config::default().labels(selector),
        watcher::Config::default().labels(pods_selector),
    );
    let deployments = reflect::<Deployment>(client, &needed, namespace, own.clone(), &mut streams);
    let statefulsets =
        reflect::<StatefulSet>(client, &needed, namespace, own.clone(), &mut streams);
    let daemonsets = reflect::<DaemonSet>(client, &needed, namespace, own.clone(), &mut streams);
    let jobs = reflect::<Job>(client, &needed, namespace, own, &mut streams);
    let replicasets =
        reflect::<ReplicaSet>(client, &needed, namespace, parts.clone(), &mut streams);
    let pods = reflect::<Pod>(client, &needed, namespace, parts, &mut streams);
    let probe_failures = watcher::Config::default().fields(watched::PROBE_FAILURES);
    let probe_events = reflect::<Event>(client, &needed, namespace, probe_failures, &mut streams);
    let mut events = select_all(streams);
    // Time-based verdicts (unschedulable for too long) need a clock, not an event.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut assessment = Assessment::new(tracked, thresholds);
    let mut silence = retry::Silence::default();
    let mut unanswered: Option<GaveUp> = None;
    loop {
        tokio::select! {
            _ = &mut deadline => {
                // a timeout while the API server does not answer is its silence
                if let Some(gave_up) = unanswered.take() {
                    return Err(WaitFailure::Unreachable(gave_up));
                }
                return Err(WaitFailure::TimedOut { pending: assessment.pending() });
            }
            // No watches (nothing to wait for): the stream ends at once, and
            // the branch is off; the tick assesses.
            Some(event) = events.next() => {
                // Take every event already queued, then assess once: a burst
                // of 50 rollouts' updates costs one evaluation, not hundreds.
                let mut queued = vec![event];
                while let Some(Some(event)) = events.next().now_or_never() {
                    queued.push(event);
                }
                if queued.iter().any(Result::is_ok) {
                    silence.answered();
                    unanswered = None;
                }
                for (kind, error) in queued.into_iter().filter_map(Result::err) {
                    if let Some(refusal) = watched::refused(kind, namespace, &error) {
                        return Err(WaitFailure::Unwatchable(refusal));
                    }
                    if let Some(gave_up) = retry::watch_gave_up(&error) {
                        if silence.gave_up() {
                            return Err(WaitFailure::Unreachable(gave_up.clone()));
                        }
                        unanswered = Some(gave_up.clone());
                    }
                    tracing::debug!("watch error (retrying): {error}");
                }
            }
            _ = tick.tick() => {}
        }
        let workloads = tracked
            .iter()
            .filter_map(|t| match t.kind.as_str() {
                "Deployment" => find(&deployments, namespace, &t.name).map(Workload::Deployment),
                "StatefulSet" => find(&statefulsets, namespace, &t.name).map(Workload::StatefulSet),
                "DaemonSet" => find(&daemonsets, namespace, &t.name).map(Workload::DaemonSet),
                "Job" => find(&jobs, namespace, &t.name).map(Workload::Job),
                _ => None,
            })
            .collect();
        let look = Snapshot {
            workloads,
            replicasets: snapshot(&replicasets),
            pods: snapshot(&pods),
            events: snapshot(&probe_events),
            now: Timestamp::now(),
        };
        match assessment.look(&look, reporter) {
            Decision::Waiting => {}
            Decision::Done => return Ok(()),
            Decision::Doomed { workload, failure } => {
                return Err(WaitFailure::Doomed { workload, failure });
            }
        }
    }
}

/// One look at the namespace: the tracked workloads that exist, every
/// ReplicaSet and pod the verdicts may need, and the time of the look.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The tracked workloads found (a missing one is not created yet).
    pub workloads: Vec<Workload>,
    /// ReplicaSets of the workloads.
    pub replicasets: Vec<ReplicaSet>,
    /// Pods of the workloads.
    pub pods: Vec<Pod>,
    /// The pods' probe failures ([`watched::PROBE_FAILURES`]).
    pub events: Vec<Event>,
    /// When the look was taken.
    pub now: Timestamp,
}

/// What one look decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some workload is still progressing.
    Waiting,
    /// Every tracked workload is healthy.
    Done,
    /// This workload can never become healthy.
    Doomed {
        /// `Kind/name`.
        workload: String,
        /// What the verdict said.
        failure: Failure,
    },
}

/// The decisions of a wait, from successive snapshots: the verdict on each
/// tracked workload, reported when it changes, and whether the wait is over.
/// Pure: the watching is [`wait_all`]'s.
pub struct Assessment<'a> {
    tracked: &'a [Tracked],
    thresholds: Thresholds,
    /// The state last reported, per `Kind/name`.
    shown: HashMap<String, WorkloadState>,
}

impl<'a> Assessment<'a> {
    /// An assessment of `tracked` with nothing reported yet.
    pub fn new(tracked: &'a [Tracked], thresholds: Thresholds) -> Assessment<'a> {
        Assessment {
            tracked,
            thresholds,
            shown: HashMap::new(),
        }
    }

    /// Assess every tracked workload in `snapshot`, in order; report each whose
    /// state changed; stop at the first that is doomed.
    pub fn look(&mut self, snapshot: &Snapshot, reporter: &dyn RolloutReporter) -> Decision {
        let mut done = 0;
        for t in self.tracked {
            let (verdict, (ready, desired)) = match find_tracked(snapshot, t) {
                None => (Verdict::Progressing("waiting to see it".into()), (0, 0)),
                Some(w) if w.metadata().generation.unwrap_or(0) < t.generation => (
                    Verdict::Progressing("waiting for the applied generation".into()),
                    w.progress(),
                ),
                Some(w) => (
                    w.assess(
                        &snapshot.replicasets,
                        &snapshot.pods,
                        &snapshot.events,
                        snapshot.now,
                        self.thresholds,
                    ),
                    w.progress(),
                ),
            };
            let state = match &verdict {
                Verdict::Succeeded => WorkloadState::Healthy,
                Verdict::Progressing(why) => WorkloadState::Progressing(why.clone()),
                Verdict::Failed(f) => WorkloadState::Failed(f.reason.clone()),
            };
            let name = t.describe();
            if self.shown.get(&name) != Some(&state) {
                reporter.workload(&name, Progress { ready, desired }, &state);
                self.shown.insert(name.clone(), state);
            }
            match verdict {
                Verdict::Succeeded => done += 1,
                Verdict::Progressing(_) => {}
                Verdict::Failed(mut failure) => {
                    if failure.reason == UNSCHEDULABLE {
                        for (other, why) in self.also_unschedulable(snapshot, &name) {
                            failure.message.push_str(&format!(
                                "\n  also unschedulable: {other}{}: {}",
                                why.pod.map(|p| format!(" (pod {p})")).unwrap_or_default(),
                                why.message
                            ));
                        }
                    }
                    return Decision::Doomed {
                        workload: name,
                        failure,
                    };
                }
            }
        }
        if done == self.tracked.len() {
            Decision::Done
        } else {
            Decision::Waiting
        }
    }

    /// The tracked workloads but `except` whose new pods the scheduler
    /// finds no node for, however briefly (`Kind/name`, why): a pod
    /// stuck on a node selector fails the deploy, and an operator fixes
    /// every workload that shares the fault at once.
    fn also_unschedulable(&self, snapshot: &Snapshot, except: &str) -> Vec<(String, Failure)> {
        let now = Thresholds {
            unschedulable_after: Duration::ZERO,
            ..self.thresholds
        };
        self.tracked
            .iter()
            .filter(|t| t.describe() != except)
            .filter_map(|t| {
                let w = find_tracked(snapshot, t)?;
                if w.metadata().generation.unwrap_or(0) < t.generation {
                    return None;
                }
                let verdict = w.assess(
                    &snapshot.replicasets,
                    &snapshot.pods,
                    &snapshot.events,
                    snapshot.now,
                    now,
                );
                match verdict {
                    Verdict::Failed(f) if f.reason == UNSCHEDULABLE => Some((t.describe(), f)),
                    _ => None,
                }
            })
            .collect()
    }

    /// `Kind/name: what it waits for`, per tracked workload not healthy at the last look.
    pub fn pending(&self) -> Vec<String> {
        self.tracked
            .iter()
            .filter_map(|t| {
                let name = t.describe();
                match self.shown.get(&name) {
                    Some(WorkloadState::Healthy) => None,
                    Some(WorkloadState::Progressing(why)) => Some(format!("{name}: {why}")),
                    Some(WorkloadState::Failed(reason)) => Some(format!("{name}: {reason}")),
                    None => Some(format!("{name}: not looked at yet")),
                }
            })
            .collect()
    }
}

/// The tracked workload `t` in `snapshot`, once it exists.
fn find_tracked<'s>(snapshot: &'s Snapshot, t: &Tracked) -> Option<&'s Workload> {
    snapshot
        .workloads
        .iter()
        .find(|w| w.kind() == t.kind && w.metadata().name.as_deref() == Some(&t.name))
}

/// Where a failing pod's last log lines are: which container, and whether
/// from its previous run.
#[derive(Debug, PartialEq, Eq)]
struct LogSource {
    container: String,
    previous: bool,
}

impl LogSource {
    /// The request for its last 10 lines.
    fn params(self) -> LogParams {
        LogParams {
            container: Some(self.container),
            previous: self.previous,
            tail_lines: Some(10),
            ..Default::default()
        }
    }
}

/// The container whose log explains `pod`'s failure: a migration's main
/// container, else the first (init
/// containers first) that crashed (restarted, or exited non-zero), else the
/// first not ready, else the first. Its previous run when it restarted and
/// is not itself the run that ended: a crash-looping container's last crash,
/// not the fresh run the kubelet may have started since.
fn log_source(pod: &Pod) -> Option<LogSource> {
    if let Some(main) = crate::migrate::sidecars::marked_main(pod) {
        // A migration's main container decides, not its sidecars.
        return Some(LogSource {
            container: main.to_owned(),
            previous: false,
        });
    }
    let status = pod.status.as_ref()?;
    let init = status.init_container_statuses.iter().flatten();
    let main: Vec<&ContainerStatus> = status.container_statuses.iter().flatten().collect();
    let exit_code = |c: &ContainerStatus| {
        let terminated = c.state.as_ref()?.terminated.as_ref()?;
        Some(terminated.exit_code)
    };
    let crashed =
        |c: &&ContainerStatus| c.restart_count > 0 || exit_code(c).is_some_and(|e| e != 0);
    let container = init
        .chain(main.iter().copied())
        .find(crashed)
        .or_else(|| main.iter().copied().find(|c| !c.ready))
        .or_else(|| main.first().copied())?;
    Some(LogSource {
        container: container.name.clone(),
        previous: container.restart_count > 0 && exit_code(container).is_none(),
    })
}

/// A failure at length: the reason, the pod's recent events and last log lines.
pub async fn explain(
    client: &Client,
    namespace: &str,
    workload: &str,
    failure: &Failure,
) -> String {
    let mut text = format!(
        "{workload}{}: {}\n  {}",
        failure
            .pod
            .as_ref()
            .map_or(String::new(), |p| format!(" (pod {p})")),
        failure.reason,
        failure.message
    );
    let Some(pod) = &failure.pod else {
        return text;
    };
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    if let Ok(list) = events.list(&params).await {
        let mut items = list.items;
        items.sort_by_key(crate::rollout::pod::last_seen);
        let recent: Vec<String> = items
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(|e| {
                format!(
                    "    {} {}: {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("").trim()
                )
            })
            .collect();
        if !recent.is_empty() {
            text.push_str("\n  recent events:\n");
            text.push_str(&recent.join("\n"));
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let logs = match pods.get(pod).await.ok().as_ref().and_then(log_source) {
        Some(source) => pods.logs(pod, &source.params()).await.ok(),
        None => None,
    };
    match logs.filter(|logs| !logs.trim().is_empty()) {
        Some(logs) => {
            text.push_str("\n  last log lines:\n");
            for line in logs.lines() {
                text.push_str(&format!("    {line}\n"));
            }
            text.truncate(text.trim_end().len());
        }
        _ => text.push_str("\n  (no logs: the container has not run)"),
    }
    text
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::rollout::testing::{Objects, at};

    /// What a reporter was told, in order.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<(String, Progress, WorkloadState)>>);

    impl RolloutReporter for Recorder {
        fn workload(&self, name: &str, progress: Progress, state: &WorkloadState) {
            self.0
                .borrow_mut()
                .push((name.to_string(), progress, state.clone()));
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<(String, Progress, WorkloadState)> {
            std::mem::take(&mut self.0.borrow_mut())
        }
    }

    fn tracked(kind: &str, name: &str, generation: i64) -> Tracked {
        Tracked {
            kind: kind.into(),
            name: name.into(),
            generation,
        }
    }

    fn snapshot(objects: Objects) -> Snapshot {
        let workloads = (objects.deployments.into_iter().map(Workload::Deployment))
            .chain(objects.statefulsets.into_iter().map(Workload::StatefulSet))
            .chain(objects.jobs.into_iter().map(Workload::Job))
            .collect();
        Snapshot {
            workloads,
            replicasets: objects.replicasets,
            pods: objects.pods,
            events: objects.events,
            now: at("2026-11-21T22:55:00Z"),
        }
    }

    fn progress(ready: i32, desired: i32) -> Progress {
        Progress { ready, desired }
    }

    fn healthy_web_and_db() -> Objects {
        Objects::load(include_str!("rollout/fixtures/deployment-healthy.json")).and(Objects::load(
            include_str!("rollout/fixtures/statefulset-healthy.json"),
        ))
    }

    #[test]
    fn all_healthy_is_done_and_each_is_reported_once() {
        let tracked = [
            tracked("Deployment", "web", 1),
            tracked("StatefulSet", "db", 1),
        ];
        let mut assessment = Assessment::new(&tracked, Thresholds::default());
        let recorder = Recorder::default();
        let look = snapshot(healthy_web_and_db());
        assert_eq!(assessment.look(&look, &recorder), Decision::Done);
        assert_eq!(
            recorder.take(),
            [
                (
                    "Deployment/web".into(),
                    progress(2, 2),
                    WorkloadState::Healthy
                ),
                (
                    "StatefulSet/db".into(),
                    progress(2, 2),
                    WorkloadState::Healthy
                ),
            ]
        );
        assert_eq!(assessment.look(&look, &recorder), Decision::Done);
        assert!(recorder.take().is_empty(), "no change, nothing reported");
        assert!(assessment.pending().is_empty());
    }

    #[test]
    fn the_first_doomed_workload_ends_the_wait_naming_its_pod() {
        let tracked = [
            tracked("Deployment", "web", 2),
            tracked("Deployment", "legacy", 1),
        ];
        let mut assessment = Assessment::new(&tracked, Thresholds::default());
        let recorder = Recorder::default();
        let look = snapshot(
            Objects::load(include_str!(
                "rollout/fixtures/deployment-new-rs-image-pull.json"
            ))
            .and(Objects::load(include_str!(
                "rollout/fixtures/deployment-crashloop.json"
            ))),
        );
        match assessment.look(&look, &recorder) {
            Decision::Doomed { workload, failure } => {
                assert_eq!(workload, "Deployment/web");
                assert_eq!(failure.reason, "ImagePullBackOff");
                assert_eq!(failure.pod.as_deref(), Some("web-5b68d646c8-whksg"));
            }
            other => panic!("expected Doomed, got {other:?}"),
        }
        assert_eq!(
            recorder.take(),
            [(
                "Deployment/web".into(),
                progress(1, 2),
                WorkloadState::Failed("ImagePullBackOff".into())
            )],
            "the wait stops at the first failure"
        );
    }

    #[test]
    fn an_unschedulable_workload_ends_the_wait_naming_every_other_one() {
        let fixture = include_str!("rollout/fixtures/deployment-unschedulable.json");
        // A second Deployment like the first, whose pod became unschedulable
        // later: not past the threshold yet, and named all the same.
        let other = fixture
            .replace("stuck", "other")
            .replace("03ef57a3", "13ef57a3")
            .replace("a235b513", "b235b513")
            .replace("f4a72660", "04a72660")
            .replace("22:54:44Z", "22:55:40Z");
        let tracked = [
            tracked("Deployment", "stuck", 1),
            tracked("Deployment", "other", 1),
            tracked("Deployment", "web", 1),
        ];
        let mut assessment = Assessment::new(&tracked, Thresholds::default());
        let mut look = snapshot(Objects::load(fixture).and(Objects::load(&other)).and(
            Objects::load(include_str!("rollout/fixtures/deployment-healthy.json")),
        ));
        look.now = crate::rollout::testing::at("2026-11-21T22:56:10Z");
        match assessment.look(&look, &Recorder::default()) {
            Decision::Doomed { workload, failure } => {
                assert_eq!(workload, "Deployment/stuck");
                assert_eq!(failure.reason, "Unschedulable");
                let lines: Vec<&str> = failure.message.lines().collect();
                assert_eq!(lines.len(), 2, "{}", failure.message);
                assert!(
                    lines[0].contains("no node matches its nodeSelector nope=nope"),
                    "{}",
                    failure.message
                );
                assert!(
                    lines[1].starts_with(
                        "  also unschedulable: Deployment/other (pod other-976c9ffd4-9lngl): \
                         pod has been unschedulable for "
                    ) && lines[1].contains("nodeSelector nope=nope"),
                    "{}",
                    failure.message
                );
            }
            other => panic!("expected Doomed, got {other:?}"),
        }
    }

    #[test]
    fn a_status_older_than_the_applied_generation_is_never_done() {
        let tracked = [tracked("Deployment", "web", 2)];
        let mut assessment = Assessment::new(&tracked, Thresholds::default());
        let recorder = Recorder::default();
        // The apply made generation 2; the watch still shows generation 1, healthy.
        let before = snapshot(Objects::load(include_str!(
            "rollout/fixtures/deployment-healthy.json"
        )));
        assert_eq!(assessment.look(&before, &recorder), Decision::Waiting);
        // Generation 2 is seen, but its controller has not observed it yet.
        let mut objects = Objects::load(include_str!("rollout/fixtures/deployment-healthy.json"));
        objects.deployments[0].metadata.generation = Some(2);
        assert_eq!(
            assessment.look(&snapshot(objects), &recorder),
            Decision::Waiting
        );
        assert_eq!(
            recorder.take(),
            [
                (
                    "Deployment/web".into(),
                    progress(2, 2),
                    WorkloadState::Progressing("waiting for the applied generation".into())
                ),
                (
                    "Deployment/web".into(),
                    progress(2, 2),
                    WorkloadState::Progressing(
                        "waiting for the controller to observe generation 2".into()
                    )
                ),
            ]
        );
    }

    #[test]
    fn logs_come_from_the_container_that_failed_and_its_last_crash() {
        let source = |json: &str, pod: &str| log_source(Objects::load(json).pod(pod));
        let expect = |container: &str, previous: bool| {
            Some(LogSource {
                container: container.into(),
                previous,
            })
        };
        // Crash-looping: the run that crashed, not the waiting (or fresh) one.
        let crashloop = include_str!("rollout/fixtures/deployment-crashloop.json");
        assert_eq!(
            source(crashloop, "legacy-7fb6fbf86f-lf57z"),
            expect("web", true)
        );
        // A Job's pod that exited: that run.
        let job = include_str!("rollout/fixtures/job-backoff-limit.json");
        assert_eq!(source(job, "migrate-fail-k2ghs"), expect("migrate", false));
        // A failed init container before the app's.
        let init = include_str!("rollout/fixtures/pod-init-container-failed.json");
        assert_eq!(source(init, "web-init"), expect("wait-for-db", false));
        // Running but unready: the running one.
        let unready = include_str!("rollout/fixtures/pod-readiness-failing.json");
        assert_eq!(source(unready, "web-7c9d5f6b8-x2v4q"), expect("web", false));
    }

    #[test]
    fn on_timeout_the_pending_list_says_what_each_unfinished_workload_waits_for() {
        let tracked = [
            tracked("Deployment", "web", 1),
            tracked("Deployment", "api", 1),
            tracked("StatefulSet", "db", 2),
        ];
        let mut assessment = Assessment::new(&tracked, Thresholds::default());
        let recorder = Recorder::default();
        let look = snapshot(healthy_web_and_db());
        assert_eq!(assessment.look(&look, &recorder), Decision::Waiting);
        assert_eq!(
            assessment.pending(),
            [
                "Deployment/api: waiting to see it",
                "StatefulSet/db: waiting for the applied generation"
            ]
        );
    }
}
