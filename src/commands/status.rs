//! `berth status [ENV]`: per workload the SHA, ready/desired and health; the
//! lock holder; the last release; drift from what the release recorded.

use k8s_openapi::jiff::Timestamp;
use kube::Client;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::cluster::live::{Live, drifted, images_of, object_ref};
use crate::cluster::lock::{self, LockState};
use crate::cluster::release;
use crate::cluster::{client, environment_selector};
use crate::config::{self, Config, Environment};
use crate::image_ref::{repository, tag};
use crate::maintenance::Scope;
use crate::rollout::{Thresholds, Verdict};
use crate::stdout;

/// Print the status of one environment, or of all of them.
pub async fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let config = Config::load(&global.config)?;
    let names: Vec<String> = match &args.env {
        Some(name) => {
            config.environment(name)?;
            vec![name.clone()]
        }
        None => config.environments.keys().cloned().collect(),
    };
    for name in names {
        let env = config.environment(&name)?;
        let client = client::connect(env.context.as_deref()).await?;
        print_environment(&client, &config, &name, env).await?;
    }
    Ok(())
}

async fn print_environment(
    client: &Client,
    config: &Config,
    name: &str,
    env: &Environment,
) -> anyhow::Result<()> {
    let ns = &env.namespace;
    stdout::line(format!("{name} (namespace {ns})"))?;
    match lock::status(client, ns).await? {
        LockState::Free => stdout::line("  lock: free")?,
        LockState::Held(holder) => stdout::line(format!(
            "  lock: held by {}",
            holder.describe(Timestamp::now())
        ))?,
    }
    let releases = release::list(client, ns).await?;
    match releases.first() {
        None => stdout::line("  last release: none")?,
        Some(r) => stdout::line(format!(
            "  last release: {} {} {} by {} at {}",
            r.number,
            r.sha,
            r.status.as_str(),
            r.deployer.describe(),
            r.started_at
        ))?,
    }
    let maintenance = Scope::new(client.clone(), &config.app, name, env)
        .status()
        .await?;
    stdout::line(format!("  maintenance: {}", maintenance.summary()))?;
    let selector = environment_selector(&config.app, name);
    let live = Live::read(client, ns, &selector).await?;
    let workloads = &live.workloads;
    if workloads.is_empty() {
        stdout::line("  no workloads deployed by berth")?;
        return Ok(());
    }
    let thresholds = Thresholds {
        unschedulable_after: env.rollout.unschedulable_after,
    };
    let last_good = releases
        .iter()
        .find(|r| r.status == release::ReleaseStatus::Succeeded);
    stdout::line(format!(
        "  {:<34} {:>7}  {:<14} HEALTH",
        "WORKLOAD", "READY", "SHA"
    ))?;
    let mut drift = Vec::new();
    for w in workloads {
        let (ready, desired) = w.progress();
        let health = match live.verdict(w, thresholds) {
            Verdict::Succeeded => "healthy".to_string(),
            Verdict::Progressing(why) => format!("progressing: {why}"),
            Verdict::Failed(f) => format!("failing: {} ({})", f.reason, f.pod.unwrap_or_default()),
        };
        let object = object_ref(w);
        let images = images_of(w);
        let shas: Vec<&str> = images
            .iter()
            .filter(|(_, image)| config.images.iter().any(|r| r == repository(image)))
            .filter_map(|(_, image)| tag(image))
            .map(|sha| config::sha_prefix(sha, 12))
            .collect();
        let sha = if shas.is_empty() {
            "-".to_string()
        } else {
            shas.join(",")
        };
        stdout::line(format!(
            "  {object:<34} {:>7}  {sha:<14} {health}",
            format!("{ready}/{desired}")
        ))?;
        if let Some(release) = last_good {
            drift.extend(drifted(release, &object, &images));
        }
    }
    for line in &drift {
        stdout::line(format!("  drift: {line}"))?;
    }
    Ok(())
}
