//! Run the agent once in a Job and read its result: the Job created, its
//! log streamed with a prefix, its end watched, the agent's last stdout line
//! (one JSON object) returned.
//!
//! How it ends: the agent's exit 0 or 1 is an [`AgentOutcome`] (`succeeded`
//! says which, the JSON says why); its exit 2 (bad input) is
//! [`BerthError::Input`]; a pod that cannot start (image not pullable, a
//! Secret or key missing, the pod refused) is [`BerthError::Input`] naming
//! the fix; running past `backups.timeout` is [`BerthError::TimedOut`];
//! Ctrl-C, SIGTERM or SIGHUP deletes the Job and is [`BerthError::Interrupted`].
//! The Job is deleted when the agent succeeded or never ran, and kept a
//! day for inspection otherwise.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::manifest::ReleaseRef;
use super::pods::{self, AgentRun, Placement};
use crate::cluster::follow::{self, End};
use crate::cluster::release::{self, ReleaseStatus};
use crate::error::{BerthError, Cancelled, input_error};
use crate::identity::Deployer;
use crate::interrupt::Interrupts;
use crate::output::Output;
use crate::progress::{TaskEvent, TaskReporter};
use crate::rollout::{Failure, Thresholds, Verdict};

/// How long past `backups.timeout` berth waits for the Job controller to
/// report the deadline before it stops waiting itself.
const DEADLINE_GRACE: Duration = Duration::from_secs(60);

/// What one agent run ended with.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    /// Whether the agent's task succeeded (it exited 0).
    pub succeeded: bool,
    /// The agent's result: the last line of its output that is a JSON object.
    pub result: Value,
    /// The Job's name.
    pub job: String,
    /// The pod's name.
    pub pod: String,
}

/// Run `run` in a Job and wait for its result, its log lines shown as
/// task `prefix`'s output. It listens for Ctrl-C, SIGTERM and SIGHUP itself: do
/// not race it against another signal listener (`unless_interrupted`),
/// which would drop it before it deletes the Job; it returns
/// [`BerthError::Interrupted`] once the Job is gone.
pub async fn run(
    client: &Client,
    run: &AgentRun<'_>,
    out: &Arc<Output>,
    prefix: &str,
) -> anyhow::Result<AgentOutcome> {
    let placement = Placement::read(client, run.env).await?;
    run_placed(client, run, &placement, out, prefix).await
}

/// [`run`] with the pod placed by `placement` (a deploy's backup, before
/// `database.workload` exists, is placed like the migration).
pub async fn run_placed(
    client: &Client,
    run: &AgentRun<'_>,
    placement: &Placement,
    out: &Arc<Output>,
    prefix: &str,
) -> anyhow::Result<AgentOutcome> {
    // Listening from before the Job exists: a signal never leaves it behind.
    let mut interrupts = Interrupts::listen()?;
    let ns = &run.env.namespace;
    ensure_service_account(client, ns).await?;
    let job = pods::job(run, placement);
    let name = job.name_any();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(&PostParams::default(), &job)
        .await
        .with_context(|| format!("creating Job {name} in namespace {ns}"))?;
    out.task(prefix, TaskEvent::Started(&format!("running Job {name}")));
    let limit = run.backups.timeout + DEADLINE_GRACE;
    let thresholds = Thresholds::from(&run.env.rollout);
    let cancel = CancellationToken::new();
    let following = follow::follow(client, ns, &name, prefix, thresholds, limit, &cancel, out);
    tokio::pin!(following);
    let followed = tokio::select! {
        followed = &mut following => followed,
        _ = interrupts.recv() => {
            cancel.cancel();
            match crate::interrupt::wind_down(&mut interrupts, &mut following).await {
                Some(followed) => followed,
                None => {
                    out.warn(&format!(
                        "stopped before the cleanup finished: Job {name} may still run; \
                         `kubectl -n {ns} delete job {name}` stops it"
                    ));
                    return Err(BerthError::Interrupted.into());
                }
            }
        }
    };
    let followed = match followed {
        Ok(followed) => followed,
        Err(error) if error.downcast_ref::<Cancelled>().is_some() => {
            return Err(BerthError::Interrupted.into());
        }
        Err(error) => return Err(error),
    };
    let pod = followed.pods.last();
    let pod_name = pod.map(|p| p.name_any()).unwrap_or_default();
    let log = followed
        .logs
        .iter()
        .find(|(p, _)| *p == pod_name)
        .map_or("", |(_, log)| log.as_str());
    let result = last_json_object(log);
    let exit_code = pod.and_then(agent_exit_code);
    let outcome = |succeeded: bool, result: Value| AgentOutcome {
        succeeded,
        result,
        job: name.clone(),
        pod: pod_name.clone(),
    };
    match (followed.end, exit_code) {
        (End::Finished(Verdict::Succeeded), _) => {
            let result = result.with_context(|| {
                format!("the agent in pod {pod_name} succeeded but printed no JSON result")
            })?;
            out.task(
                prefix,
                TaskEvent::Succeeded(&format!("Job {name} succeeded")),
            );
            delete(&jobs, &name).await?;
            Ok(outcome(true, result))
        }
        (End::TimedOut, _) => {
            delete(&jobs, &name).await?;
            Err(timed_out(run, out, prefix, &name))
        }
        (End::Finished(Verdict::Failed(failure)), _) if failure.reason == "DeadlineExceeded" => {
            Err(timed_out(run, out, prefix, &name))
        }
        (End::Finished(_), Some(2)) => {
            delete(&jobs, &name).await?;
            let why = result
                .as_ref()
                .and_then(error_of)
                .unwrap_or_else(|| last_line(log));
            out.task(prefix, TaskEvent::Failed(&why));
            Err(BerthError::Input(why).into())
        }
        (End::Finished(_), Some(_)) if result.is_some() => {
            out.task(
                prefix,
                TaskEvent::Failed(&format!("Job {name} is kept a day for inspection")),
            );
            Ok(outcome(false, result.unwrap_or_default()))
        }
        (End::Finished(verdict), exit_code) => {
            let failure = match verdict {
                Verdict::Failed(failure) => failure,
                _ => Failure {
                    pod: Some(pod_name.clone()),
                    reason: "Failed".into(),
                    message: "the Job ended without a verdict".into(),
                },
            };
            if exit_code.is_none() {
                // The agent never ran: nothing to inspect, nothing changed.
                delete(&jobs, &name).await?;
                let message = never_ran(run, &failure);
                out.task(prefix, TaskEvent::Failed(&message));
                return Err(BerthError::Input(message).into());
            }
            let message = format!(
                "{} ({}); the agent printed no result; Job {name} is kept a day for inspection",
                failure.message, failure.reason
            );
            out.task(prefix, TaskEvent::Failed(&message));
            Err(BerthError::DeployFailed(message).into())
        }
    }
}

/// The error of a pod that never started, with the fix.
fn never_ran(run: &AgentRun<'_>, failure: &Failure) -> String {
    let fix = match failure.reason.as_str() {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => format!(
            "; set `backups.image` of {} to berth's image with the PostgreSQL client, pushed where the cluster pulls from",
            run.env_name
        ),
        "CreateContainerConfigError" => format!(
            "; create the Secrets `database.secret` and `backups.credentials_secret` name in namespace {}",
            run.env.namespace
        ),
        _ => String::new(),
    };
    format!(
        "the {} pod could not start: {} ({}){fix}",
        run.task.as_str(),
        failure.message,
        failure.reason
    )
}

fn timed_out(run: &AgentRun<'_>, out: &Output, prefix: &str, name: &str) -> anyhow::Error {
    let message = format!(
        "the {} did not finish within {} (`backups.timeout`); Job {name} was stopped",
        run.task.as_str(),
        crate::duration::display(run.backups.timeout)
    );
    out.task(prefix, TaskEvent::Failed(&message));
    BerthError::TimedOut(message).into()
}

/// The release the environment runs: its newest succeeded one, if any.
pub async fn running_release(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<Option<ReleaseRef>> {
    let releases = release::list(client, namespace).await?;
    Ok(releases
        .into_iter()
        .find(|r| r.status == ReleaseStatus::Succeeded)
        .map(|r| ReleaseRef {
            name: r.number.to_string(),
            sha: r.sha,
        }))
}

/// `BERTH_WHO` (who runs the command) and, when known, `BERTH_RELEASE` and
/// `BERTH_SHA`, for an [`AgentRun`]'s `vars`.
pub fn who_and_release(release: Option<&ReleaseRef>) -> Vec<(String, String)> {
    let mut vars = vec![("BERTH_WHO".to_string(), Deployer::current().describe())];
    if let Some(release) = release {
        vars.push(("BERTH_RELEASE".to_string(), release.name.clone()));
        vars.push(("BERTH_SHA".to_string(), release.sha.clone()));
    }
    vars
}

/// Whether Secret `name` exists in `namespace`; an input error naming
/// `key` (the berth.yaml key that names it) and the fix otherwise.
pub async fn require_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    holds: &str,
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match secrets.get_metadata_opt(name).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(input_error(format!(
            "the Secret {name} named by `{key}` does not exist in namespace {namespace}; \
             create it with {holds}"
        ))),
        Err(error) => Err(error).with_context(|| format!("reading Secret {namespace}/{name}")),
    }
}

/// Create the backup pods' ServiceAccount unless a deploy already applied it.
async fn ensure_service_account(client: &Client, ns: &str) -> anyhow::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    match accounts
        .create(&PostParams::default(), &pods::service_account())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
        Err(error) => Err(error).with_context(|| {
            format!(
                "creating ServiceAccount {} in namespace {ns}",
                pods::SERVICE_ACCOUNT
            )
        }),
    }
}

async fn delete(jobs: &Api<Job>, name: &str) -> anyhow::Result<()> {
    crate::cluster::delete_if_present(jobs, name, &DeleteParams::background())
        .await
        .with_context(|| format!("deleting Job {name}"))?;
    Ok(())
}

/// The exit code of the agent's container, once it terminated.
fn agent_exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| Some(c.state.as_ref()?.terminated.as_ref()?.exit_code))
}

/// The last line of `log` that parses as a JSON object (stderr and stdout
/// are merged in a pod's log; the agent's result is its last stdout line).
pub fn last_json_object(log: &str) -> Option<Value> {
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .find(Value::is_object)
}

/// The `error` of the result's one task object, e.g. `{"backup": {"error": ..}}`.
fn error_of(result: &Value) -> Option<String> {
    let inner = result.as_object()?.values().next()?;
    inner
        .get("error")
        .and_then(Value::as_str)
        .or_else(|| result.get("error").and_then(Value::as_str))
        .map(str::to_string)
}

fn last_line(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the agent refused its input")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_is_the_last_json_object_among_progress_lines() {
        let log =
            "dumping public.t\n{\"progress\": 1}\n[1,2]\n{\"backup\": {\"id\": \"x\"}}\nnot json\n";
        let result = last_json_object(log).unwrap();
        assert_eq!(result["backup"]["id"], "x");
        assert_eq!(last_json_object("no result\n[1]\n"), None);
    }

    #[test]
    fn the_error_comes_from_the_task_object() {
        let result = serde_json::json!({"backup": {"ok": false, "error": "pg_dump exited 1"}});
        assert_eq!(error_of(&result).as_deref(), Some("pg_dump exited 1"));
    }
}
