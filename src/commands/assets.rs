//! `berth assets push ENV SHA` and `berth assets prune ENV --keep N`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::assets::manifest;
use crate::assets::store;
use crate::assets::sync::{self, ManifestMode, PushReport};
use crate::cli::{AssetsArgs, AssetsCommand, AssetsPruneArgs, AssetsPushArgs, GlobalArgs};
use crate::cluster::client;
use crate::cluster::lock::DeployLock;
use crate::cluster::release::{self, ReleaseStatus};
use crate::config::{AssetSource, Assets, Config, Environment};
use crate::confirm::{Question, confirm};
use crate::error::{BerthError, Cancelled, input_error};
use crate::interrupt::{Interrupts, unless_interrupted, wind_down};
use crate::output::Output;
use crate::s3::Store;

/// Run `assets push` or `assets prune`.
pub async fn run(global: &GlobalArgs, args: &AssetsArgs, out: Arc<Output>) -> anyhow::Result<()> {
    match &args.command {
        AssetsCommand::Push(args) => push(global, args, &out).await,
        AssetsCommand::Prune(args) => prune(global, args, &out).await,
    }
}

/// The environment and its `assets:` block, or an input error saying how to add one.
fn configured<'a>(
    config: &'a Config,
    env_name: &str,
) -> anyhow::Result<(&'a Environment, &'a Assets)> {
    let env = config.environment(env_name)?;
    let assets = env.assets.as_ref().ok_or_else(|| {
        input_error(format!(
            "environment {env_name} has no `assets:` in berth.yaml; add one, e.g. \
             `assets: {{ bucket: static-{env_name}, from: {{ image: registry.example.com/app/frontend, path: /app/static }} }}`"
        ))
    })?;
    Ok((env, assets))
}

/// Upload one SHA's assets; Ctrl-C aborts cleanly (exit 130).
async fn push(global: &GlobalArgs, args: &AssetsPushArgs, out: &Arc<Output>) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen()?;
    let config = crate::commands::load_config(global, &[&args.target.env], out)?;
    let (env, assets) = configured(&config, &args.target.env)?;
    let sha = unless_interrupted(
        &mut interrupts,
        crate::commit::expand(&config, &args.target.sha, out),
    )
    .await?;
    let source = match &args.from_dir {
        Some(dir) => AssetSource::Dir(
            std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?,
        ),
        None => assets.from.for_sha(&sha),
    };
    let store =
        unless_interrupted(&mut interrupts, store::for_environment(env, assets, None)).await?;
    let mut prepared =
        unless_interrupted(&mut interrupts, sync::prepare(assets, &source, &sha, store)).await?;
    if args.replace {
        prepared.mode = ManifestMode::Replace;
    }
    let cancel = CancellationToken::new();
    let push = prepared.upload(&cancel, out);
    tokio::pin!(push);
    let result = tokio::select! {
        result = &mut push => result,
        _ = interrupts.recv() => {
            out.warn(crate::interrupt::STOPPING);
            cancel.cancel();
            // Let the push abort its multipart uploads before exiting; a
            // second signal stops waiting.
            if wind_down(&mut interrupts, &mut push).await.is_none() {
                out.warn(
                    "stopped before the cleanup finished: an upload not yet aborted leaves \
                     parts no object shows, which a bucket lifecycle rule for incomplete \
                     multipart uploads removes; pushing again uploads what is missing",
                );
            }
            Err(BerthError::Interrupted.into())
        }
    };
    let report: anyhow::Result<PushReport> = result.map_err(|error| {
        if error.downcast_ref::<Cancelled>().is_some() {
            BerthError::Interrupted.into()
        } else {
            error
        }
    });
    let report = report?;
    out.json_report(&report);
    Ok(())
}

/// What `assets prune` did.
#[derive(Debug, Serialize)]
struct PruneReport {
    /// Objects deleted (or that would be, with `--dry-run`).
    deleted: u64,
    /// Their bytes.
    bytes_deleted: u64,
    /// Objects kept.
    kept: u64,
    /// The SHAs whose objects were kept.
    kept_shas: Vec<String>,
    /// Whether this was a dry run.
    dry_run: bool,
    /// Seconds from start to end.
    duration_s: f64,
}

/// Delete objects no release among the last N needs, holding the
/// environment's deploy lock so no deploy pushes assets meanwhile.
async fn prune(
    global: &GlobalArgs,
    args: &AssetsPruneArgs,
    out: &Arc<Output>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.keep == 0 {
        return Err(input_error(
            "--keep 0 would delete the assets pods are serving; keep at least 1 (the current \
             and previous releases are kept anyway)",
        ));
    }
    let config = crate::commands::load_config(global, &[&args.env], out)?;
    let (env, assets) = configured(&config, &args.env)?;
    let kube = client::connect(env.context.as_deref()).await?;
    let store = store::for_environment(env, assets, Some(&kube)).await?;
    store.check().await?;
    if !args.dry_run {
        confirm(
            &prune_question(&args.env, &store.bucket, assets, args),
            args.confirm.yes,
        )
        .await?;
    }
    let lock = DeployLock::take(&kube, &env.namespace, "assets prune", None, out).await?;
    let mut report = lock
        .hold(out, |lost| {
            lost.unless_lost(prune_locked(&kube, env, assets, &store, args, out))
        })
        .await?;
    report.duration_s = started.elapsed().as_secs_f64();
    out.json_report(&report);
    Ok(())
}

/// What `assets prune` (without `--dry-run`) asks before deleting.
fn prune_question(env: &str, bucket: &str, assets: &Assets, args: &AssetsPruneArgs) -> Question {
    Question {
        action: format!("prune {env}'s assets"),
        why: format!(
            "pruning deletes {env}'s assets that no kept release needs, for good (`{} assets \
             prune {env} --dry-run` lists them)",
            crate::program::name()
        ),
        facts: vec![
            format!("environment: {env}"),
            format!("bucket:      s3://{bucket}/{}", assets.prefix),
            format!(
                "kept:        what the last {} releases (and the current and previous \
                 successful ones) need, and objects written in the last {}",
                args.keep,
                crate::duration::display(args.grace)
            ),
        ],
    }
}

/// The prune itself, under the lock.
async fn prune_locked(
    kube: &kube::Client,
    env: &Environment,
    assets: &Assets,
    store: &Store,
    args: &AssetsPruneArgs,
    out: &Output,
) -> anyhow::Result<PruneReport> {
    let prefix = &assets.prefix;
    let releases = release::list(kube, &env.namespace).await?;
    let mut succeeded = releases
        .iter()
        .filter(|r| r.status == ReleaseStatus::Succeeded);
    let current_and_previous = [succeeded.next(), succeeded.next()];
    let kept_releases: Vec<_> = releases
        .iter()
        .take(args.keep)
        .chain(current_and_previous.into_iter().flatten())
        .collect();
    let kept_shas: BTreeSet<&str> = kept_releases.iter().map(|r| r.sha.as_str()).collect();
    let manifests: HashMap<&str, Option<manifest::Manifest>> =
        futures::future::try_join_all(kept_shas.iter().map(|sha| async move {
            anyhow::Ok((*sha, manifest::read(store, prefix, sha).await?))
        }))
        .await?
        .into_iter()
        .collect();
    // A release that did not succeed never served traffic without its assets.
    if let Some(release) = kept_releases
        .iter()
        .find(|r| r.status == ReleaseStatus::Succeeded && manifests[r.sha.as_str()].is_none())
    {
        return Err(BerthError::Refused(format!(
            "release {} ({}) of {} has no asset manifest at s3://{}/{}, so berth cannot \
             tell which objects it serves; nothing was deleted. Write it with \
             `{berth} assets push {} {}`, then prune again",
            release.number,
            release.sha,
            env.namespace,
            store.bucket,
            manifest::key(prefix, &release.sha),
            args.env,
            release.sha,
            berth = crate::program::name()
        ))
        .into());
    }
    let mut needed = BTreeSet::new();
    for (sha, manifest) in &manifests {
        if let Some(manifest) = manifest {
            needed.extend(manifest.objects.iter().map(|o| o.key.clone()));
            needed.insert(manifest::key(prefix, sha));
        }
    }
    let cutoff = written_before(Timestamp::now().as_second(), args.grace);
    let listed = store.list(prefix).await?;
    let (mut doomed, mut kept) = (Vec::new(), 0u64);
    for object in listed {
        let reserved = object
            .key
            .strip_prefix(prefix.as_str())
            .is_some_and(|name| name.starts_with(manifest::RESERVED));
        let foreign_reserved = reserved && manifest::sha_of(prefix, &object.key).is_none();
        let recent = object.modified.is_none_or(|m| m > cutoff);
        if needed.contains(&object.key) || foreign_reserved || recent {
            kept += 1;
        } else {
            doomed.push(object);
        }
    }
    let bytes: u64 = doomed.iter().map(|o| o.size).sum();
    let shas: Vec<String> = kept_shas.into_iter().map(str::to_owned).collect();
    out.info(&format!(
        "keeping what releases of {} need ({}): {kept} objects; {} {} objects ({})",
        args.env,
        shas.join(", "),
        if args.dry_run {
            "would delete"
        } else {
            "deleting"
        },
        doomed.len(),
        indicatif::BinaryBytes(bytes)
    ));
    if args.dry_run {
        for object in &doomed {
            out.info(&format!("  would delete {}", object.key));
        }
    } else {
        let keys: Vec<String> = doomed.iter().map(|o| o.key.clone()).collect();
        store.delete(&keys).await?;
    }
    Ok(PruneReport {
        deleted: doomed.len() as u64,
        bytes_deleted: bytes,
        kept,
        kept_shas: shas,
        dry_run: args.dry_run,
        duration_s: 0.0,
    })
}

/// The newest write time (Unix seconds) that is older than `grace` at `now`.
/// A grace reaching before any representable time gives `i64::MIN`, so that
/// every object counts as recent and is kept: arithmetic that wrapped would
/// turn "keep recent objects" into "delete them".
fn written_before(now: i64, grace: Duration) -> i64 {
    i64::try_from(grace.as_secs())
        .ok()
        .and_then(|grace| now.checked_sub(grace))
        .unwrap_or(i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_period_moves_the_cutoff_back() {
        assert_eq!(written_before(10_000, Duration::from_secs(3600)), 6400);
        assert_eq!(written_before(10_000, Duration::ZERO), 10_000);
    }

    #[test]
    fn a_grace_period_beyond_i64_keeps_everything() {
        let now = 1_800_000_000;
        for grace in [u64::MAX, 1 << 63, (1 << 63) + 3600] {
            let cutoff = written_before(now, Duration::from_secs(grace));
            assert_eq!(cutoff, i64::MIN, "grace {grace}s");
        }
        let longest = written_before(now, Duration::from_secs(i64::MAX as u64));
        assert!(longest < 0, "{longest}");
    }
}
