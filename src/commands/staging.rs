//! `berth update-staging-to-latest-passing-master`: find the newest commit
//! of the configured branch whose required checks all passed and whose
//! images are in the registry, and deploy it to `staging`, its images
//! pinned by digest.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use crate::cli::{GlobalArgs, UpdateStagingArgs};
use crate::cluster::client;
use crate::cluster::release::{self, ReleaseStatus};
use crate::commands::deploy;
use crate::config::{Config, GitHub};
use crate::error::{BerthError, input_error};
use crate::github::{self, Commit, Repository};
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::output::Output;
use crate::pipeline::{DeploySettings, Request, Source};
use crate::registry;
use crate::render::Pins;

/// The environment this command deploys to.
const STAGING: &str = "staging";
/// How many commits' checks are read at once, ahead of the one judged.
const LOOKAHEAD: usize = 4;
/// The berth.yaml key naming the app's image repositories.
const IMAGES_KEY: &str = "`images:`";

/// Deploy the newest passing commit to staging.
pub async fn run(
    global: &GlobalArgs,
    args: &UpdateStagingArgs,
    out: Arc<Output>,
) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen()?;
    let config = crate::commands::load_config(global, &[STAGING], &out)?;
    let Some(github) = &config.github else {
        return Err(input_error(
            "berth.yaml has no `github:` block, so berth cannot tell which commits passed CI; \
             add one, e.g. `github: { repo: owner/app, branch: master, required_checks: [ci] }`",
        ));
    };
    let env = config.environment(STAGING)?;
    out.step("choose");
    let repo = Repository::from_env(github, out.clone())?;
    let (commit, pins) =
        unless_interrupted(&mut interrupts, choose(&repo, github, &config, &out)).await?;
    out.info(&format!(
        "chose {} ({}): its checks passed and its {} images are in the registry",
        commit.short(),
        commit.title,
        config.images.len()
    ));
    if args.dry_run {
        out.json_report(&json!({"status": "chosen", "environment": STAGING, "sha": commit.sha}));
        return Ok(());
    }
    if !args.force {
        let client = client::connect(env.context.as_deref()).await?;
        let releases = release::list(&client, &env.namespace).await?;
        if let Some(current) = releases
            .first()
            .filter(|r| r.status == ReleaseStatus::Succeeded && r.sha == commit.sha)
        {
            let message = format!(
                "staging already runs {} (release {}); nothing to deploy (--force redeploys)",
                commit.short(),
                current.number
            );
            out.info(&message);
            out.summary(&format!("### berth: {message}\n"));
            out.json_report(&json!({
                "status": "up_to_date",
                "environment": STAGING,
                "sha": commit.sha,
                "release": current.number,
                "exit_code": 0,
            }));
            return Ok(());
        }
    }
    let settings = DeploySettings {
        timeout: args.wait.timeout,
        lock_wait: args.wait.lock_wait,
        yes: args.confirm.yes,
        ..DeploySettings::new(&config.path, STAGING, &commit.sha)
    };
    let request = Request {
        source: Source::Overlay(Some(pins)),
        promoted_from: None,
        schema: None,
        planned: None,
    };
    deploy::deploy(
        &settings,
        request,
        deploy::Extras::default(),
        interrupts,
        out,
    )
    .await
}

/// The newest qualifying commit, its images pinned by digest; each newer
/// commit passed over is reported with the reason.
async fn choose(
    repo: &Repository,
    github: &GitHub,
    config: &Config,
    out: &Output,
) -> anyhow::Result<(Commit, Pins)> {
    let commits = repo.commits(&github.branch, github.depth).await?;
    out.info(&format!(
        "{} newest commits of {} in {}",
        commits.len(),
        github.branch,
        github.repo
    ));
    // Read a few commits' checks ahead; stop at the first that qualifies.
    let mut judged = futures::stream::iter(commits.iter())
        .map(|commit| async move {
            let checks = repo.checks(&commit.sha).await?;
            anyhow::Ok((commit, github::judge(&checks, github)))
        })
        .buffered(LOOKAHEAD);
    let mut passed_over = Vec::new();
    while let Some((commit, verdict)) = judged.try_next().await? {
        let why = match verdict {
            Ok(()) => match digests(&config.images, &commit.sha).await? {
                Ok(pins) => {
                    summarize(out, github, &passed_over, Some(commit));
                    return Ok((commit.clone(), pins));
                }
                Err(missing) => missing,
            },
            Err(why) => why,
        };
        out.info(&format!("passed over {}: {why}", commit.short()));
        passed_over.push(format!("{}: {why}", commit.short()));
    }
    summarize(out, github, &passed_over, None);
    Err(BerthError::Refused(format!(
        "no commit among the newest {} of {} qualifies:\n  {}",
        commits.len(),
        github.branch,
        if passed_over.is_empty() {
            "the branch has no commits".to_string()
        } else {
            passed_over.join("\n  ")
        }
    ))
    .into())
}

/// Every image of the app at `:sha`, pinned by its digest; `Err` names the
/// images the registry lacks.
async fn digests(repositories: &[String], sha: &str) -> anyhow::Result<Result<Pins, String>> {
    let found = futures::future::try_join_all(repositories.iter().map(|repository| async move {
        let reference = format!("{repository}:{sha}");
        let digest = registry::digest(&reference, IMAGES_KEY).await?;
        anyhow::Ok((repository, reference, digest))
    }))
    .await?;
    let mut pins = Pins::at_sha(repositories, sha);
    let mut missing = Vec::new();
    for (repository, reference, digest) in found {
        match digest {
            Some(digest) => pins.set(repository.clone(), format!("{reference}@{digest}")),
            None => missing.push(reference),
        }
    }
    if missing.is_empty() {
        Ok(Ok(pins))
    } else {
        let others = match missing.len() - 1 {
            0 => String::new(),
            1 => " (nor 1 other image of the app)".to_string(),
            n => format!(" (nor {n} other images of the app)"),
        };
        Ok(Err(format!(
            "image {} is not in the registry{others}",
            missing[0]
        )))
    }
}

/// The choice, for the GitHub Actions step summary.
fn summarize(out: &Output, github: &GitHub, passed_over: &[String], chosen: Option<&Commit>) {
    let mut text = match chosen {
        Some(commit) => format!(
            "### berth: newest passing commit of `{}`: `{}` {}\n\n",
            github.branch,
            commit.short(),
            commit.title
        ),
        None => format!("### berth: no commit of `{}` qualifies\n\n", github.branch),
    };
    for line in passed_over {
        text.push_str(&format!("- passed over {line}\n"));
    }
    out.summary(&text);
}
