//! `berth promote FROM TO` (and `update-production-to-staging`, which is
//! `promote staging production`): deploy to TO exactly the images FROM's
//! last successful release deployed, once FROM's live workloads show they
//! run them, healthy.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::cli::{GlobalArgs, PromoteOptions};
use crate::cluster::live::{Live, drifted, images_of};
use crate::cluster::lock::{self, LockState};
use crate::cluster::release::{self, PromotedFrom, Release, ReleaseStatus};
use crate::cluster::{client, environment_selector};
use crate::commands::deploy;
use crate::config::{Config, short_sha as short};
use crate::error::{BerthError, input_error};
use crate::image_ref::repository;
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::output::Output;
use crate::pipeline::{DeploySettings, Request, Source};
use crate::render::Pins;
use crate::rollout::{Thresholds, Verdict};

/// Promote what `from` runs to `to`. A signal from the start on (while
/// the source is checked too) stops it cleanly, exit 130.
pub async fn run(
    global: &GlobalArgs,
    from: &str,
    to: &str,
    options: &PromoteOptions,
    out: Arc<Output>,
) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen()?;
    let checking = check_source(global, from, to, options, &out);
    let (settings, request) = unless_interrupted(&mut interrupts, checking).await?;
    deploy::deploy(
        &settings,
        request,
        deploy::Extras::default(),
        interrupts,
        out,
    )
    .await
}

/// Check that `from` runs a release fit to promote to `to` (changes
/// nothing): the deploy of it, and its settings.
async fn check_source(
    global: &GlobalArgs,
    from: &str,
    to: &str,
    options: &PromoteOptions,
    out: &Arc<Output>,
) -> anyhow::Result<(DeploySettings, Request)> {
    let config = crate::commands::load_config(global, &[from, to], out)?;
    let source_env = config.environment(from)?;
    config.environment(to)?;
    if from == to {
        return Err(input_error(format!(
            "cannot promote {from} to itself; name two environments, e.g. `{} promote staging production`",
            crate::program::name()
        )));
    }
    out.step("check source");
    let client = client::connect(source_env.context.as_deref()).await?;
    let ns = &source_env.namespace;
    if let LockState::Held(holder) = lock::status(&client, ns).await? {
        return Err(refused(format!(
            "{from} is mid-deploy ({}); promote once it has finished",
            holder.describe(Timestamp::now())
        )));
    }
    // The lock is free: a release still in progress was abandoned.
    let releases = release::as_seen(release::list(&client, ns).await?, None);
    let source = last_good(&releases, from)?;
    let selector = environment_selector(&config.app, from);
    let live = Live::read(&client, ns, &selector).await?;
    let thresholds = Thresholds::from(&source_env.rollout);
    check_live(source, &live, thresholds, from)?;
    let healthy_for = age(source)?;
    if let Some(min_age) = options.min_age
        && healthy_for < min_age
    {
        return Err(refused(format!(
            "{from} has run {} for {}, less than --min-age {}; wait, or promote without --min-age",
            short(&source.sha),
            crate::duration::display(healthy_for),
            crate::duration::display(min_age)
        )));
    }
    out.info(&format!(
        "{from} runs release {} ({}), healthy, deployed {} ago; promoting it to {to}",
        source.number,
        short(&source.sha),
        crate::duration::display(healthy_for)
    ));
    let settings = DeploySettings {
        timeout: options.wait.timeout,
        lock_wait: options.wait.lock_wait,
        yes: options.confirm.yes,
        ..DeploySettings::new(&config.path, to, &source.sha)
    };
    let request = Request {
        source: Source::Overlay(Some(pins(&config, source))),
        promoted_from: Some(PromotedFrom {
            environment: from.to_string(),
            release: source.number,
        }),
        schema: None,
        planned: None,
    };
    Ok((settings, request))
}

/// The release to promote: the newest, which must have succeeded.
fn last_good<'a>(releases: &'a [Release], env: &str) -> anyhow::Result<&'a Release> {
    let Some(newest) = releases.first() else {
        return Err(refused(format!(
            "{env} has no releases; deploy it first (`{} advanced-deploy {env} SHA`)",
            crate::program::name()
        )));
    };
    match newest.status {
        ReleaseStatus::Succeeded => Ok(newest),
        ReleaseStatus::InProgress => Err(refused(format!(
            "{env} is mid-rollout: release {} ({}) has not finished",
            newest.number,
            short(&newest.sha)
        ))),
        status => {
            let why = newest
                .failure
                .as_ref()
                .map(|f| format!(": {} {}", f.workload, f.reason))
                .unwrap_or_default();
            Err(refused(format!(
                "{env}'s last release {} ({}) {}{why}; fix {env} before promoting it",
                newest.number,
                short(&newest.sha),
                status.as_str()
            )))
        }
    }
}

/// Every workload `release` deployed exists, runs the recorded images and
/// is healthy; otherwise why not.
fn check_live(
    release: &Release,
    live: &Live,
    thresholds: Thresholds,
    env: &str,
) -> anyhow::Result<()> {
    let mut objects: Vec<&str> = release.images.iter().map(|i| i.object.as_str()).collect();
    objects.dedup();
    let mut problems = Vec::new();
    for object in objects {
        let Some(workload) = live.find(object) else {
            // Jobs and CronJobs have no rollout to check.
            if object.starts_with("Deployment/")
                || object.starts_with("StatefulSet/")
                || object.starts_with("DaemonSet/")
            {
                problems.push(format!("{object} is gone"));
            }
            continue;
        };
        let drift = drifted(release, object, &images_of(workload));
        if !drift.is_empty() {
            problems.push(format!("drifted: {}", drift.join("; ")));
            continue;
        }
        match live.verdict(workload, thresholds) {
            Verdict::Succeeded => {}
            Verdict::Progressing(why) => problems.push(format!("{object} is mid-rollout: {why}")),
            Verdict::Failed(f) => {
                problems.push(format!("{object} is failing: {} ({})", f.reason, f.message))
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(refused(format!(
            "{env} does not run release {} ({}) healthy:\n  {}\nredeploy {env} \
             (`{berth} advanced-deploy {env} {}`) or wait for it, then promote",
            release.number,
            short(&release.sha),
            problems.join("\n  "),
            release.sha,
            berth = crate::program::name()
        )))
    }
}

/// Each repository the release deployed, at the reference it recorded (by
/// digest where it recorded one); the app's other images at `:SHA`.
fn pins(config: &Config, release: &Release) -> Pins {
    let mut pins = Pins::at_sha(&config.images, &release.sha);
    for image in &release.images {
        pins.set(repository(&image.image).to_string(), image.image.clone());
    }
    pins
}

/// How long ago the release finished.
fn age(release: &Release) -> anyhow::Result<Duration> {
    let finished = release
        .finished_at
        .as_deref()
        .unwrap_or(&release.started_at);
    let finished: Timestamp = finished.parse().map_err(|e| {
        input_error(format!(
            "release {} records an unreadable time {finished:?} ({e})",
            release.number
        ))
    })?;
    let seconds = Timestamp::now().as_second() - finished.as_second();
    Ok(Duration::from_secs(seconds.max(0) as u64))
}

fn refused(message: String) -> anyhow::Error {
    BerthError::Refused(message).into()
}
