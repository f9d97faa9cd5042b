//! Follow a Job berth created (the migration, a backup agent) to its end:
//! its pods' logs streamed as task output, its verdict from watches of the
//! Job and its pods, a time limit, and cancellation that deletes the Job.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::retry;
use super::watched::{self, Watched};
use crate::error::Cancelled;
use crate::migrate::sidecars;
use crate::progress::{TaskEvent, TaskReporter};
use crate::rollout::{Failure, Thresholds, Verdict, Workload};

/// How a followed Job ended.
#[derive(Debug, Clone)]
pub enum End {
    /// The Job succeeded ([`Verdict::Succeeded`]) or can never succeed
    /// ([`Verdict::Failed`]: it failed, its pod cannot start or cannot be
    /// created, or berth may not watch it).
    Finished(Verdict),
    /// It had not finished when the time limit passed.
    TimedOut,
}

/// What following a Job saw.
#[derive(Debug, Clone)]
pub struct Followed {
    /// How it ended.
    pub end: End,
    /// The Job's pods as last seen.
    pub pods: Vec<Pod>,
    /// The whole log of each pod whose container started, by pod name, read
    /// after the end.
    pub logs: Vec<(String, String)>,
    /// The sidecars berth ended, deleting the Job, after its main container
    /// exited (a cluster without native sidecars); empty otherwise.
    pub ended_sidecars: Vec<String>,
}

/// How long the Job controller may fail to create the pod (FailedCreate)
/// before the Job counts as failed.
const POD_CREATE_GRACE: Duration = Duration::from_secs(10);

/// A watch of `K`, one of [`watched::MIGRATION`] (checked when compiling),
/// so the permission check covers it; an error names the kind.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<K, (Watched, watcher::Error)>>
where
    K: kube::Resource
        + k8s_openapi::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    const { assert!(Watched::listed::<K>(&watched::MIGRATION)) };
    let kind = Watched::of::<K>();
    watcher(api, config)
        .default_backoff()
        .applied_objects()
        .map_err(move |e| (kind, e))
}

/// Follow Job `name` (already created) until it ends or `limit` passes,
/// streaming each pod's log lines to `reporter` as task `task`'s output.
/// `cancel` deletes the Job and its pod, reports it, and returns
/// [`Cancelled`]. The Job itself is left to the caller otherwise.
#[allow(clippy::too_many_arguments)]
pub async fn follow<R: TaskReporter + ?Sized + 'static>(
    client: &Client,
    namespace: &str,
    name: &str,
    task: &str,
    thresholds: Thresholds,
    limit: Duration,
    cancel: &CancellationToken,
    reporter: &Arc<R>,
) -> anyhow::Result<Followed> {
    let started = Instant::now();
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod_events = watch(
        pods.clone(),
        watcher::Config::default().labels(&format!("job-name={name}")),
    )
    .map_ok(|p| Seen::Pod(Box::new(p)));
    let job_events = watch(
        jobs.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .map_ok(|j| Seen::Job(Box::new(j)));
    let mut events = futures::stream::select(pod_events.boxed(), job_events.boxed());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let mut latest_job: Option<Job> = None;
    let mut seen_pods: Vec<Pod> = Vec::new();
    let mut log_tasks = HashMap::new();
    let mut silence = retry::Silence::default();
    // the last give-up of a watch since the server last answered; set in
    // `silenced` when that ends the follow
    let mut unanswered: Option<retry::GaveUp> = None;
    let mut silenced: Option<retry::GaveUp> = None;
    let end = loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Seen::Job(j))) => {
                    silence.answered();
                    unanswered = None;
                    latest_job = Some(*j)
                }
                Some(Ok(Seen::Pod(p))) => {
                    silence.answered();
                    unanswered = None;
                    let p = *p;
                    let pod_name = p.name_any();
                    if started_container(&p) && !log_tasks.contains_key(&pod_name) {
                        let printed = Arc::new(AtomicUsize::new(0));
                        let params = LogParams { follow: true, ..log_params(&p) };
                        let stream = stream_logs(pods.clone(), pod_name.clone(), params, task.to_string(), reporter.clone(), printed.clone());
                        log_tasks.insert(pod_name.clone(), (tokio::spawn(stream), printed));
                    }
                    match seen_pods.iter_mut().find(|s| s.name_any() == pod_name) {
                        Some(slot) => *slot = p,
                        None => seen_pods.push(p),
                    }
                }
                Some(Err((kind, e))) => match watched::refused(kind, namespace, &e) {
                    Some(refusal) => break End::Finished(Verdict::Failed(Failure {
                        pod: None,
                        reason: "Forbidden".into(),
                        message: refusal.to_string(),
                    })),
                    None => {
                        if let Some(gave_up) = retry::watch_gave_up(&e) {
                            unanswered = Some(gave_up.clone());
                            if silence.gave_up() {
                                silenced = unanswered.take();
                                break End::TimedOut;
                            }
                        }
                        tracing::debug!("Job watch error (retrying): {e}")
                    }
                },
                None => {}
            },
            _ = tick.tick() => {}
            // a time limit passed while the API server does not answer is its silence
            _ = &mut deadline => {
                silenced = unanswered.take();
                break End::TimedOut;
            }
            _ = cancel.cancelled() => {
                for (handle, _) in log_tasks.values() {
                    handle.abort();
                }
                jobs.delete(name, &DeleteParams::background())
                    .await
                    .with_context(|| format!("deleting the cancelled Job {name}"))?;
                reporter.task(task, TaskEvent::Cancelled(&format!("cancelled; Job {name} and its pod deleted")));
                return Err(Cancelled.into());
            }
        }
        if seen_pods.is_empty()
            && started.elapsed() > POD_CREATE_GRACE
            && let Some(failure) = refused_pods(client, namespace, name).await
        {
            break End::Finished(Verdict::Failed(failure));
        }
        // A Job whose main container berth marked ends with it, whatever
        // its sidecars do.
        if let Some(verdict) = seen_pods.iter().find_map(main_ended) {
            break End::Finished(verdict);
        }
        if let Some(j) = &latest_job {
            // No events: a Job's verdict does not depend on readiness.
            match Workload::Job(j.clone()).assess(
                &[],
                &seen_pods,
                &[],
                Timestamp::now(),
                thresholds,
            ) {
                Verdict::Progressing(_) => continue,
                done => break End::Finished(done),
            }
        }
    };
    if let Some(gave_up) = silenced {
        for (handle, _) in log_tasks.values() {
            handle.abort();
        }
        return Err(anyhow::Error::new(gave_up).context(format!(
            "following Job {name} (left as it is: `kubectl -n {namespace} get job {name}` shows it)"
        )));
    }
    // The Job's verdict can arrive before the watch shows its pod finished
    // (a quick pod): read the pods as they are now, so their status and
    // logs are final.
    let listed = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await;
    for pod in listed.map(|l| l.items).unwrap_or_default() {
        match seen_pods
            .iter_mut()
            .find(|s| s.name_any() == pod.name_any())
        {
            Some(slot) => *slot = pod,
            None => seen_pods.push(pod),
        }
    }
    // A kubelet ends a finished container's log stream itself; to not depend
    // on that, stop following and print whatever the streams had not yet.
    let mut logs = Vec::new();
    for pod in seen_pods.iter().filter(|p| started_container(p)) {
        let printed = match log_tasks.remove(&pod.name_any()) {
            Some((handle, printed)) => {
                handle.abort();
                printed.load(Ordering::SeqCst)
            }
            None => 0,
        };
        if let Ok(all) = pods.logs(&pod.name_any(), &log_params(pod)).await {
            for line in all.lines().skip(printed) {
                reporter.task(task, TaskEvent::Output(line));
            }
            logs.push((pod.name_any(), all));
        }
    }
    for (handle, _) in log_tasks.values() {
        handle.abort();
    }
    let ended_sidecars = end_sidecars(&jobs, name, &end, &seen_pods).await?;
    if !ended_sidecars.is_empty() {
        reporter.task(
            task,
            TaskEvent::Output(&format!(
                "ended sidecar {} after the migration exited (Job {name} deleted)",
                ended_sidecars.join(", ")
            )),
        );
    }
    Ok(Followed {
        end,
        pods: seen_pods,
        logs,
        ended_sidecars,
    })
}

/// The verdict on a pod whose main container (marked by berth) has
/// exited: its exit code decides.
fn main_ended(pod: &Pod) -> Option<Verdict> {
    let main = sidecars::marked_main(pod)?;
    let (code, detail) = sidecars::main_exit(pod, main)?;
    if code == 0 {
        return Some(Verdict::Succeeded);
    }
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    Some(Verdict::Failed(Failure {
        pod: pod.metadata.name.clone(),
        reason: "ContainerFailed".into(),
        message: format!("container {main:?} exited with code {code}{detail}"),
    }))
}

/// When the main container decided (`end`) and sidecars berth must end
/// are still running, delete the Job and its pod; the sidecars ended.
async fn end_sidecars(
    jobs: &Api<Job>,
    name: &str,
    end: &End,
    pods: &[Pod],
) -> anyhow::Result<Vec<String>> {
    if !matches!(end, End::Finished(_)) {
        return Ok(Vec::new());
    }
    let Some(pod) = pods.iter().find(|p| main_ended(p).is_some()) else {
        return Ok(Vec::new());
    };
    let running = sidecars::running_sidecars(pod);
    if !running.is_empty() {
        jobs.delete(name, &DeleteParams::background())
            .await
            .with_context(|| format!("deleting Job {name} to end its sidecars"))?;
    }
    Ok(running)
}

/// The log request for `pod`'s Job log: its main container's (see
/// [`sidecars::log_container`]).
fn log_params(pod: &Pod) -> LogParams {
    LogParams {
        container: sidecars::log_container(pod),
        ..Default::default()
    }
}

/// Whether one of `pod`'s containers is running or has run.
fn started_container(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            })
        })
}

/// Why the Job controller cannot create the Job's pod, from its events
/// (e.g. a ServiceAccount or Secret volume that does not exist yet).
async fn refused_pods(client: &Client, namespace: &str, job: &str) -> Option<Failure> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params =
        ListParams::default().fields(&format!("involvedObject.name={job},reason=FailedCreate"));
    let list = events.list(&params).await.ok()?;
    let latest = list
        .items
        .into_iter()
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))?;
    Some(Failure {
        pod: None,
        reason: "FailedCreate".into(),
        message: format!(
            "the Job controller cannot create Job {job}'s pod: {}",
            latest.message.as_deref().unwrap_or("no reason given")
        ),
    })
}

/// What the Job's watches deliver.
enum Seen {
    Job(Box<Job>),
    Pod(Box<Pod>),
}

/// Follow a pod's log, printing each line and counting them in `printed`.
/// A stream cut short (the API server restarting, a connection reset) is
/// opened again from the start and its first `printed` lines skipped, so
/// no line is lost or printed twice; it ends when a stream ends without a
/// new line (the container exited) or the server refuses the request.
async fn stream_logs<R: TaskReporter + ?Sized>(
    pods: Api<Pod>,
    pod: String,
    params: LogParams,
    task: String,
    reporter: Arc<R>,
    printed: Arc<AtomicUsize>,
) {
    loop {
        let before = printed.load(Ordering::SeqCst);
        let ended = match pods.log_stream(&pod, &params).await {
            Ok(stream) => {
                let mut lines = stream.lines();
                let mut seen = 0;
                loop {
                    match lines.try_next().await {
                        Ok(Some(line)) => {
                            seen += 1;
                            if seen > printed.load(Ordering::SeqCst) {
                                reporter.task(&task, TaskEvent::Output(&line));
                                printed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(None) => break true,
                        Err(e) => {
                            tracing::debug!("the log stream of {pod} broke (reopening): {e}");
                            break false;
                        }
                    }
                }
            }
            Err(e @ kube::Error::Api(_)) => {
                tracing::debug!("no logs from {pod}: {e}");
                return;
            }
            Err(e) => {
                tracing::debug!("no logs from {pod} yet (retrying): {e}");
                false
            }
        };
        if ended && printed.load(Ordering::SeqCst) == before {
            return;
        }
        tokio::time::sleep(LOG_REOPEN_DELAY).await;
    }
}

/// How long to wait before opening a pod's log stream again.
const LOG_REOPEN_DELAY: Duration = Duration::from_secs(1);
