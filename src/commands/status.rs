//! `berth status [ENV]`: per workload the SHA, ready/desired and health; the
//! lock holder; the last release; drift from what the release recorded. A
//! table per environment, or with `--output json` one `environment` event each.

use futures::future::join_all;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use serde::Serialize;
use serde_json::json;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::cluster::live::{Live, drifted, images_of, object_ref};
use crate::cluster::lock::{self, LockState};
use crate::cluster::release;
use crate::cluster::{client, environment_selector};
use crate::config::{self, Config, Environment};
use crate::image_ref::{repository, tag};
use crate::maintenance::{Scope, Status};
use crate::output::{Mode, Output};
use crate::rollout::{Thresholds, Verdict};
use crate::stdout;
use crate::style::{Painter, Tone};

/// Print the status of one environment, or of all of them.
pub async fn run(global: &GlobalArgs, args: &StatusArgs, out: &Output) -> anyhow::Result<()> {
    // Without an environment, every sound one: one with problems is a
    // warning, not a reason to show none.
    let touched: Vec<&str> = args.env.as_deref().into_iter().collect();
    let config = crate::commands::load_config(global, &touched, out)?;
    let names: Vec<String> = match &args.env {
        Some(name) => {
            config.environment(name)?;
            vec![name.clone()]
        }
        None => config.environments.keys().cloned().collect(),
    };
    // Every environment is read at once; they are printed in order, up to
    // the first that could not be read.
    let statuses = join_all(names.iter().map(|name| async {
        let env = config.environment(name)?;
        let client = client::connect_multiplexed(env.context.as_deref()).await?;
        read_environment(&client, &config, name, env).await
    }))
    .await;
    // --notes (one environment): its chart's NOTES.txt, rendered as helm would
    let notes = match (&args.env, args.notes) {
        (Some(name), true) => {
            Some(crate::render::notes::render(&config, name, config.environment(name)?).await?)
        }
        _ => None,
    };
    for status in statuses {
        let status = status?;
        if out.mode() == Mode::Json {
            let mut event = serde_json::to_value(&status)?;
            event["event"] = json!("environment");
            if let Some(notes) = &notes {
                event["notes"] = json!(notes);
            }
            stdout::line(event)?;
        } else {
            print_environment(&status, Timestamp::now(), Painter::stdout())?;
            match &notes {
                Some(Some(notes)) => super::deploy::print_notes(notes, out)?,
                Some(None) => stdout::line("  notes: none (no chart NOTES.txt)")?,
                None => {}
            }
        }
    }
    out.json_report(&json!({ "environments": names }));
    Ok(())
}

/// Where one environment stands.
#[derive(Debug, Serialize)]
struct EnvironmentStatus {
    environment: String,
    namespace: String,
    /// Who holds the deploy lock, if anybody.
    lock: LockView,
    /// The newest release, if there is one.
    last_release: Option<ReleaseView>,
    maintenance: Status,
    /// berth's workloads, live.
    workloads: Vec<WorkloadView>,
    /// Live images that differ from what the release the environment runs
    /// deployed: the last successful one, or a newer one interrupted after
    /// its apply.
    drift: Vec<String>,
}

/// The deploy lock, for people and for JSON.
#[derive(Debug, Serialize)]
struct LockView {
    /// `free` or `held`.
    state: &'static str,
    /// Who holds it, doing what, since when, for how long yet.
    holder: Option<String>,
}

/// A release, as status shows it.
#[derive(Debug, Serialize)]
struct ReleaseView {
    number: u64,
    sha: String,
    status: &'static str,
    /// Every object was applied: `interrupted` or `abandoned` then reads
    /// `interrupted after apply` or `abandoned after apply`.
    applied: bool,
    /// The status as people read it ([`release::Release::shown_status`]).
    #[serde(skip)]
    shown_status: &'static str,
    /// The step an interrupted or abandoned release stopped at.
    stopped_at: Option<String>,
    /// What to do about a release stopped after its apply (for people;
    /// JSON has `status`, `applied` and `stopped_at`).
    #[serde(skip)]
    next: Option<String>,
    by: String,
    /// RFC 3339.
    started_at: String,
    /// The helm chart it rendered, with its digests; null for an overlay.
    chart: Option<release::ChartRecord>,
    /// The release's status, for its colour (not in JSON: `status` says it).
    #[serde(skip)]
    tone: Tone,
}

/// One live workload.
#[derive(Debug, Serialize)]
struct WorkloadView {
    /// `Kind/name`.
    object: String,
    ready: i32,
    desired: i32,
    /// The SHAs (tags, at most 12 characters) of the app's images it runs,
    /// each once.
    shas: Vec<String>,
    /// The images of its containers that berth does not pin (their
    /// repository is not under `images:`), as `name:tag`, each once: a
    /// sidecar such as `cloud-sql-proxy:2.8.0`.
    other_images: Vec<String>,
    health: Health,
    /// What it waits for, or why it fails.
    detail: Option<String>,
    /// The pod that shows the failure.
    pod: Option<String>,
}

/// A workload's health, from its rollout verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Health {
    Healthy,
    Progressing,
    Failing,
}

/// Read where the environment `name` stands; changes nothing.
async fn read_environment(
    client: &Client,
    config: &Config,
    name: &str,
    env: &Environment,
) -> anyhow::Result<EnvironmentStatus> {
    let ns = &env.namespace;
    let selector = environment_selector(&config.app, name);
    let scope = Scope::new(client.clone(), &config.app, name, env);
    let (lock, releases, maintenance, live) = tokio::try_join!(
        lock::status(client, ns),
        release::list(client, ns),
        scope.status(),
        Live::read(client, ns, &selector),
    )?;
    // Read-only: a dead deploy's release is shown abandoned, not written so.
    let releases = release::as_seen(releases, lock.identity());
    let lock = match lock {
        LockState::Free => LockView {
            state: "free",
            holder: None,
        },
        LockState::Held(holder) => LockView {
            state: "held",
            holder: Some(holder.describe(Timestamp::now())),
        },
    };
    let last_release = releases.first().map(|r| ReleaseView {
        number: r.number,
        sha: r.sha.clone(),
        status: r.status.as_str(),
        applied: r.applied || r.stopped_after_apply(),
        shown_status: r.shown_status(),
        stopped_at: r.step.clone().filter(|_| r.status.stopped()),
        next: r.stopped_after_apply().then(|| after_apply(r)),
        by: r.deployer.describe(),
        started_at: r.started_at.clone(),
        chart: r.chart.clone(),
        tone: super::history::tone(r.status),
    });
    let thresholds = Thresholds::from(&env.rollout);
    // What runs: the last successful release, or a newer one interrupted
    // or abandoned once its objects were applied (its rollout not waited
    // for to its end).
    let last_good = releases.iter().find(|r| r.is_live());
    let mut workloads = Vec::new();
    let mut drift = Vec::new();
    for w in &live.workloads {
        let (ready, desired) = w.progress();
        let (health, detail, pod) = match live.verdict(w, thresholds) {
            Verdict::Succeeded => (Health::Healthy, None, None),
            Verdict::Progressing(why) => (Health::Progressing, Some(why), None),
            Verdict::Failed(f) => (Health::Failing, Some(f.reason), f.pod),
        };
        let object = object_ref(w);
        let images = images_of(w);
        let (shas, other_images) = versions(&config.images, &images);
        if let Some(release) = last_good {
            drift.extend(drifted(release, &object, &images));
        }
        workloads.push(WorkloadView {
            object,
            ready,
            desired,
            shas,
            other_images,
            health,
            detail,
            pod,
        });
    }
    Ok(EnvironmentStatus {
        environment: name.to_string(),
        namespace: ns.clone(),
        lock,
        last_release,
        maintenance,
        workloads,
        drift,
    })
}

/// The environment as a table for people, times local with their age at
/// `now`, statuses coloured by `painter`.
fn print_environment(
    status: &EnvironmentStatus,
    now: Timestamp,
    painter: Painter,
) -> anyhow::Result<()> {
    stdout::line(format!(
        "{} (namespace {})",
        status.environment, status.namespace
    ))?;
    match &status.lock.holder {
        None => stdout::line("  lock: free")?,
        Some(holder) => stdout::line(format!("  lock: held by {holder}"))?,
    }
    match &status.last_release {
        None => stdout::line("  last release: none")?,
        Some(r) => {
            let stopped = r
                .stopped_at
                .as_ref()
                .map_or_else(String::new, |step| format!(" at step {step}"));
            stdout::line(format!(
                "  last release: {} {} {} by {}, started {}",
                r.number,
                config::short_sha(&r.sha),
                painter.paint(r.tone, &format!("{}{stopped}", r.shown_status)),
                r.by,
                crate::local_time::with_age(&r.started_at, now)
            ))?;
            if let Some(next) = &r.next {
                stdout::line(painter.paint(Tone::Warning, &format!("  {next}")))?;
            }
        }
    }
    stdout::line(format!("  maintenance: {}", status.maintenance.summary()))?;
    if status.workloads.is_empty() {
        stdout::line("  no workloads deployed by berth")?;
        return Ok(());
    }
    for line in table(&status.workloads, painter) {
        stdout::line(format!("  {}", line.trim_end()))?;
    }
    for line in &status.drift {
        stdout::line(painter.paint(Tone::Warning, &format!("  drift: {line}")))?;
    }
    Ok(())
}

/// What a release stopped after its apply left, and what to do next:
/// deploy it again to finish (the rollback again, for one returning to an
/// earlier release), or roll back.
fn after_apply(r: &release::Release) -> String {
    let berth = crate::program::name();
    let env = &r.environment;
    let again = match r.rolled_back_to {
        Some(number) => format!("{berth} rollback {env} --to {number}"),
        None => format!("{berth} deploy {env} {}", r.sha),
    };
    format!(
        "release {} stopped after apply: its objects are in the cluster, but their rollout \
         was not waited for to its end (the workloads below show how far it got); run \
         `{again}` again to finish, or `{berth} rollback {env}` to go back",
        r.number
    )
}

/// What `images` (container, image) run, for the SHA column: the tags of
/// the app's images (`pinned`, berth.yaml's `images:`), cut to 12 characters, and every other
/// image as `name:tag` (its repository's last part), each once, in order.
fn versions(pinned: &[String], images: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let (mut shas, mut others) = (Vec::new(), Vec::new());
    for (_, image) in images {
        let repo = repository(image);
        let (list, version) = if pinned.iter().any(|r| r == repo) {
            let Some(sha) = tag(image) else { continue };
            (&mut shas, config::short_sha(sha).to_string())
        } else {
            let name = repo.rsplit('/').next().unwrap_or(repo);
            (
                &mut others,
                format!("{name}:{}", tag(image).unwrap_or("latest")),
            )
        };
        if !list.contains(&version) {
            list.push(version);
        }
    }
    (shas, others)
}

/// The workloads as rows of a table whose columns are as wide as their
/// widest cell: WORKLOAD, READY, SHA (the app's SHAs, then other images),
/// HEALTH (coloured by `painter`: healthy green, progressing yellow,
/// failing red).
fn table(workloads: &[WorkloadView], painter: Painter) -> Vec<String> {
    let rows: Vec<[String; 4]> = workloads
        .iter()
        .map(|w| {
            let why = w.detail.as_deref().unwrap_or_default();
            let health = match w.health {
                Health::Healthy => "healthy".to_string(),
                Health::Progressing => format!("progressing: {why}"),
                Health::Failing => {
                    format!("failing: {why} ({})", w.pod.as_deref().unwrap_or_default())
                }
            };
            let versions: Vec<&str> = w
                .shas
                .iter()
                .chain(&w.other_images)
                .map(String::as_str)
                .collect();
            let sha = if versions.is_empty() {
                "-".to_string()
            } else {
                versions.join(",")
            };
            [
                w.object.clone(),
                format!("{}/{}", w.ready, w.desired),
                sha,
                health,
            ]
        })
        .collect();
    let header = ["WORKLOAD", "READY", "SHA", "HEALTH"].map(String::from);
    let [object, ready, sha, _] = crate::style::column_widths(&header, &rows);
    let tones = workloads.iter().map(|w| match w.health {
        Health::Healthy => Some(Tone::Success),
        Health::Progressing => Some(Tone::Warning),
        Health::Failing => Some(Tone::Error),
    });
    std::iter::once(&header)
        .zip(std::iter::once(None))
        .chain(rows.iter().zip(tones))
        .map(|([o, r, s, h], tone)| {
            let h = tone.map_or_else(|| h.clone(), |tone| painter.paint(tone, h));
            format!("{o:<object$}  {r:>ready$}  {s:<sha$}  {h}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(object: &str, shas: &[&str], others: &[&str]) -> WorkloadView {
        WorkloadView {
            object: object.into(),
            ready: 1,
            desired: 1,
            shas: shas.iter().map(|s| s.to_string()).collect(),
            other_images: others.iter().map(|s| s.to_string()).collect(),
            health: Health::Healthy,
            detail: None,
            pod: None,
        }
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let long = "Deployment/frontend-europe-west1-cloud-sql-proxy-worker";
        let lines = table(
            &[
                workload(long, &["1a2b3c4"], &["cloud-sql-proxy:2.8.0"]),
                workload("Deployment/web", &["1a2b3c4"], &[]),
            ],
            Painter::plain(),
        );
        assert_eq!(
            lines,
            [
                format!(
                    "{:<55}  READY  SHA                            HEALTH",
                    "WORKLOAD"
                ),
                format!("{long}    1/1  1a2b3c4,cloud-sql-proxy:2.8.0  healthy"),
                format!(
                    "{:<55}    1/1  1a2b3c4                        healthy",
                    "Deployment/web"
                ),
            ]
        );
    }

    #[test]
    fn one_sha_per_workload_and_other_images_with_their_own_tag() {
        let pinned = ["reg/app/web".to_string(), "reg/app/migrate".to_string()];
        let images = [
            ("web", "reg/app/web:1a2b3c4d5e6f7a8b"),
            ("migrate", "reg/app/migrate:1a2b3c4d5e6f7a8b@sha256:00"),
            ("proxy", "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"),
            (
                "proxy-2",
                "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0",
            ),
            ("log", "busybox"),
        ]
        .map(|(c, i)| (c.to_string(), i.to_string()));
        assert_eq!(
            versions(&pinned, &images),
            (
                vec!["1a2b3c4d5e6f".to_string()],
                vec![
                    "cloud-sql-proxy:2.8.0".to_string(),
                    "busybox:latest".to_string()
                ]
            )
        );
    }
}
