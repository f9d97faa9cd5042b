//! `berth clear-render-cache ENV`: slowly clear the app's cached render
//! results, one workflow at a time, holding at most one workflow's lock,
//! rate-limited, resumable, and with a summary of what was done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::cli::{ClearRenderCacheArgs, GlobalArgs};
use crate::cluster::{client, database};
use crate::config::{Config, RenderCache};
use crate::error::{BerthError, input_error};
use crate::interrupt::Interrupts;
use crate::output::Output;
use crate::render_cache::{self, Checkpoint, Outcome, Statements};
use crate::s3::{self, Settings, Store};

/// Where berth.yaml sets the render cache's store up.
const SETTINGS: Settings = Settings {
    block: "render_cache",
    bucket_key: "render_cache.buckets",
};
/// How often the checkpoint is written during a run.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// How many times a busy workflow is tried again after the first pass; the
/// pauses between rounds double from 1 s, so the rounds span about a minute,
/// longer than [`IDLE_IN_TRANSACTION`] (a lock left by a killed run is gone).
const RETRY_ROUNDS: u32 = 6;
/// PostgreSQL ends a berth session idle inside a transaction this long, so a
/// run killed mid-workflow never holds a workflow's lock for longer.
const IDLE_IN_TRANSACTION: &str = "30s";

/// What the run did, as the JSON report says it.
#[derive(Debug, Serialize)]
struct Summary {
    environment: String,
    dry_run: bool,
    workflows: u64,
    cleared: u64,
    busy_then_cleared: u64,
    failed: Vec<String>,
    rows_cleared: u64,
    objects_deleted: u64,
    bytes: Option<u64>,
    resumed: bool,
    duration_s: f64,
}

/// Run it.
pub async fn run(
    global: &GlobalArgs,
    args: &ClearRenderCacheArgs,
    out: Arc<Output>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = crate::commands::load_config(global, &[&args.env], &out)?;
    let env = config.environment(&args.env)?;
    let cache = settings(&config, &args.env)?;
    let bucket = &cache.buckets[&args.env];
    out.step("connect");
    let kube = client::connect(env.context.as_deref()).await?;
    let credentials = match &cache.credentials_secret {
        Some(secret) => Some(
            s3::secret_credentials(
                &kube,
                &env.namespace,
                secret,
                "render_cache.credentials_secret",
            )
            .await?,
        ),
        None => None,
    };
    let store = Store::connect(
        SETTINGS,
        cache.endpoint.as_deref(),
        cache.region.as_deref(),
        bucket,
        credentials,
    )
    .await?;
    store.check().await?;
    let mut session = database::connect(&kube, env, &args.env).await?;
    out.info(&format!(
        "database through pod {} (port-forward), objects in {}/{bucket}",
        session.pod, store.endpoint
    ));
    session
        .client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'"
        ))
        .await
        .map_err(|e| anyhow::anyhow!("setting the session's idle timeout: {e}"))?;
    let statements = Statements::prepare(&session.client, cache).await?;
    let ids = render_cache::workflow_ids(&session.client, cache).await?;
    if args.dry_run {
        return dry_run(
            &session.client,
            &statements,
            cache,
            &store,
            &ids,
            args,
            &out,
        )
        .await;
    }
    out.warn(
        "after its cache is cleared, each workflow renders again when next opened (users see \
         \"busy\", renderers get busier), and its next change-detection email is skipped",
    );
    let resumed = Checkpoint::load(&kube, &env.namespace).await?;
    let mut checkpoint = match (&resumed, args.restart) {
        (Some(found), false) => {
            out.info(&format!(
                "resuming the run begun {}: {} workflows done, {} to retry \
                 (--restart starts over)",
                found.started_at,
                found.cleared + found.busy_then_cleared,
                found.retry.len()
            ));
            found.clone()
        }
        _ => Checkpoint {
            started_at: Timestamp::now().to_string(),
            ..Checkpoint::default()
        },
    };
    let (fresh, retry) = checkpoint.remaining(&ids);
    checkpoint.retry.clear();
    let mut interrupts = Interrupts::listen()?;
    // --rate is within cli::RATES, so the period is 1 ms to 1000 s, never zero.
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let progress = out.counter(
        "clear-render-cache",
        (fresh.len() + retry.len()) as u64,
        "workflows",
    );
    let mut last_saved = Instant::now();
    let mut busy: Vec<i64> = retry;
    let mut failed: Vec<(i64, String)> = Vec::new();
    for id in fresh {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = interrupts.recv() => {
                return interrupted(&kube, &env.namespace, checkpoint, &busy, &failed, &out).await;
            }
        }
        let result =
            render_cache::clear_one(&mut session.client, &statements, cache, &store, id).await;
        if tally(&mut checkpoint, &mut failed, id, result, false) {
            busy.push(id);
        } else {
            progress.inc();
        }
        checkpoint.done_through = Some(id);
        if last_saved.elapsed() >= CHECKPOINT_EVERY {
            checkpoint.retry = pending(&busy, &failed);
            checkpoint.save(&kube, &env.namespace).await?;
            last_saved = Instant::now();
        }
    }
    // Busy workflows, again, until their lock is free or the rounds run out.
    for round in 1..=RETRY_ROUNDS {
        if busy.is_empty() {
            break;
        }
        out.info(&format!(
            "retrying {} busy workflows (round {round} of {RETRY_ROUNDS})",
            busy.len()
        ));
        let mut still = Vec::new();
        for id in std::mem::take(&mut busy) {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = interrupts.recv() => {
                    still.push(id);
                    return interrupted(&kube, &env.namespace, checkpoint, &still, &failed, &out).await;
                }
            }
            let result =
                render_cache::clear_one(&mut session.client, &statements, cache, &store, id).await;
            if tally(&mut checkpoint, &mut failed, id, result, true) {
                still.push(id);
            } else {
                progress.inc();
            }
        }
        busy = still;
        if !busy.is_empty() && round < RETRY_ROUNDS {
            tokio::time::sleep(Duration::from_secs(1 << (round - 1))).await;
        }
    }
    drop(progress);
    failed.extend(
        busy.iter()
            .map(|id| (*id, "still locked by another session".to_string())),
    );
    if failed.is_empty() {
        Checkpoint::delete(&kube, &env.namespace).await?;
    } else {
        checkpoint.retry = pending(&[], &failed);
        checkpoint.save(&kube, &env.namespace).await?;
    }
    let summary = Summary {
        environment: args.env.clone(),
        dry_run: false,
        workflows: ids.len() as u64,
        cleared: checkpoint.cleared,
        busy_then_cleared: checkpoint.busy_then_cleared,
        failed: failed
            .iter()
            .map(|(id, why)| format!("workflow {id}: {why}"))
            .collect(),
        rows_cleared: checkpoint.rows_cleared,
        objects_deleted: checkpoint.objects_deleted,
        bytes: None,
        resumed: resumed.is_some() && !args.restart,
        duration_s: started.elapsed().as_secs_f64(),
    };
    out.info(&format!(
        "cleared {} workflows ({} at once, {} after waiting for their lock), {} failed; \
         {} rows reset, {} objects deleted, in {}",
        summary.cleared + summary.busy_then_cleared,
        summary.cleared,
        summary.busy_then_cleared,
        summary.failed.len(),
        summary.rows_cleared,
        summary.objects_deleted,
        crate::duration::display_seconds(summary.duration_s)
    ));
    for line in &summary.failed {
        out.warn(line);
    }
    out.json_report(&summary);
    if summary.failed.is_empty() {
        Ok(())
    } else {
        Err(BerthError::DeployFailed(format!(
            "{} workflows were not cleared; run the command again to retry just those",
            summary.failed.len()
        ))
        .into())
    }
}

/// The environment's `render_cache` settings with a bucket, or how to add them.
fn settings<'a>(config: &'a Config, env: &str) -> anyhow::Result<&'a RenderCache> {
    let Some(cache) = &config.render_cache else {
        return Err(input_error(
            "berth.yaml has no `render_cache:` block; declare the app's cache, e.g. \
             `render_cache: { workflow_table: workflow, cache_table: step, workflow_column: \
             workflow_id, clear: { cached_render_result_delta_id: null }, buckets: { staging: \
             cached-render-results-staging }, prefix: \"wf-{workflow}/\" }` (berth.yaml in this \
             repository has the cjworkbench values)",
        ));
    };
    if !cache.buckets.contains_key(env) {
        return Err(input_error(format!(
            "`render_cache.buckets` names no bucket for {env}; add `{env}: <bucket>` to it"
        )));
    }
    Ok(cache)
}

/// Count workflow `id`'s outcome (a retry of a busy one when `retried`) in
/// the checkpoint, or among the failures; true when it was busy again.
fn tally(
    checkpoint: &mut Checkpoint,
    failed: &mut Vec<(i64, String)>,
    id: i64,
    result: anyhow::Result<Outcome>,
    retried: bool,
) -> bool {
    match result {
        Ok(Outcome::Cleared { rows, objects }) => {
            if retried {
                checkpoint.busy_then_cleared += 1;
            } else {
                checkpoint.cleared += 1;
            }
            checkpoint.rows_cleared += rows;
            checkpoint.objects_deleted += objects;
            false
        }
        Ok(Outcome::Busy) => true,
        Ok(Outcome::ObjectsLeft(why)) => {
            failed.push((id, why));
            false
        }
        Err(e) => {
            failed.push((id, format!("{e:#}")));
            false
        }
    }
}

/// Workflow ids to retry: busy, then failed.
fn pending(busy: &[i64], failed: &[(i64, String)]) -> Vec<i64> {
    busy.iter()
        .copied()
        .chain(failed.iter().map(|(id, _)| *id))
        .collect()
}

/// Ctrl-C between two workflows: save where the run stands, and say how to resume.
async fn interrupted(
    kube: &kube::Client,
    namespace: &str,
    mut checkpoint: Checkpoint,
    busy: &[i64],
    failed: &[(i64, String)],
    out: &Output,
) -> anyhow::Result<()> {
    checkpoint.retry = pending(busy, failed);
    checkpoint.save(kube, namespace).await?;
    out.warn(
        "interrupted between two workflows; no lock is held. Run the same command again to \
         resume where this run stopped",
    );
    Err(BerthError::Interrupted.into())
}

/// `--dry-run`: count what a run would clear; change and lock nothing.
async fn dry_run(
    db: &tokio_postgres::Client,
    statements: &Statements,
    cache: &RenderCache,
    store: &Store,
    ids: &[i64],
    args: &ClearRenderCacheArgs,
    out: &Output,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let objects = render_cache::objects_by_workflow(store, cache, ids).await?;
    let mut rows = 0;
    for id in ids {
        rows += statements.count(db, *id).await?;
    }
    let (count, bytes) = objects
        .values()
        .fold((0, 0), |(n, b), (on, ob)| (n + on, b + ob));
    let seconds = ids.len() as f64 / args.rate;
    out.info(&format!(
        "would clear {} workflows: {rows} cached rows, {count} objects ({}); at --rate {} \
         that takes about {}. Nothing was changed",
        ids.len(),
        indicatif::BinaryBytes(bytes),
        args.rate,
        crate::duration::display_seconds(seconds)
    ));
    out.json_report(&Summary {
        environment: args.env.clone(),
        dry_run: true,
        workflows: ids.len() as u64,
        cleared: 0,
        busy_then_cleared: 0,
        failed: Vec::new(),
        rows_cleared: rows,
        objects_deleted: count,
        bytes: Some(bytes),
        resumed: false,
        duration_s: started.elapsed().as_secs_f64(),
    });
    Ok(())
}
