//! `--rollback-on-failure`: after a failed deploy, bring the schema back to
//! the previous successful release's when the failed one migrated it
//! (unless a step cannot be undone: then nothing is rolled back), re-apply
//! that release's objects, wait for them, and record that as a release of
//! its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::Client;

use tokio_util::sync::CancellationToken;

use super::plan::{Plan, recorded_hooks, recorded_objects};
use super::rollout;
use super::settings::DeploySettings;
use crate::cluster::apply;
use crate::cluster::kinds::Origin;
use crate::cluster::release::{self, Release, ReleaseStatus};
use crate::hooks::{self, Event};
use crate::output::Output;
use crate::schema::adapter;
use crate::schema::plan::{self as schema_plan, Runner};
use crate::schema::unapply::{self, How, Reverse, SchemaStep};

/// Roll the `failed` release back to `previous`, if there is one and it
/// kept its objects; the rollback's record, when one was made.
pub async fn after_failure(
    client: &Client,
    plan: &Plan,
    settings: &DeploySettings,
    failed: &Release,
    previous: Option<Release>,
    out: &Arc<Output>,
) -> anyhow::Result<Option<Release>> {
    let Some(previous) = previous else {
        out.warn("--rollback-on-failure: there is no earlier successful release to go back to");
        return Ok(None);
    };
    out.step("rollback");
    let ns = &plan.env.namespace;
    if previous.manifest_omitted || previous.manifest.is_empty() {
        out.warn(&format!(
            "release {} kept no manifest; cannot roll back automatically",
            previous.number
        ));
        return Ok(None);
    }
    let (started, started_at) = (Instant::now(), Timestamp::now());
    let mut schema = None;
    let part = schema_step(client, plan, settings, failed, &previous, out).await;
    if let SchemaPart::Refused = part {
        return Ok(None);
    }
    // The release returned to's rollback hooks, as `berth rollback` runs them.
    let rollback_hooks = recorded_hooks(client, &previous, out).await?;
    let place = hooks::run::Place {
        client,
        namespace: ns,
        thresholds: plan.thresholds(),
        timeout: plan.timeout(settings),
        out,
    };
    let cancel = CancellationToken::new();
    let mut ran = record(
        failed,
        previous.clone(),
        false,
        started_at,
        Duration::ZERO,
        started_at,
    );
    let pre = Event::PreRollback;
    let unchanged = "the rollback changed nothing";
    if hooks::run::event(&place, &rollback_hooks, pre, &mut ran, unchanged, &cancel)
        .await
        .is_err()
    {
        return stopped(client, ns, ran, started).await;
    }
    if let SchemaPart::Step(step) = part {
        let mut scratch = record(
            failed,
            previous.clone(),
            false,
            started_at,
            Duration::ZERO,
            started_at,
        );
        let place = unapply::Place {
            runner: runner(client, plan, settings, out, step.1.as_ref()),
            config: &plan.config,
            env_name: &plan.env_name,
            env: &plan.env,
        };
        let cancel = CancellationToken::new();
        if unapply::run(&place, &step.0, &mut scratch, &cancel)
            .await
            .is_err()
        {
            return stopped(client, ns, scratch, started).await;
        }
        schema = scratch.schema;
    }
    out.info(&format!(
        "re-applying release {} ({})",
        previous.number,
        crate::config::short_sha(&previous.sha)
    ));
    let objects = recorded_objects(&previous)?;
    let resolved = apply::resolve(client, objects, Origin::Release(previous.number)).await?;
    let applied = rollout::apply(client, ns, &resolved, false, out).await?;
    let mut waited = rollout::wait(client, plan, &applied, plan.timeout(settings), out)
        .await
        .map_err(drop);
    if waited.is_ok() {
        let post = Event::PostRollback;
        let applied = "the rollback's objects are applied and healthy";
        waited = hooks::run::event(&place, &rollback_hooks, post, &mut ran, applied, &cancel)
            .await
            .map_err(drop);
    }
    let mut record = record(
        failed,
        previous,
        waited.is_ok(),
        started_at,
        started.elapsed(),
        Timestamp::now(),
    );
    record.hooks = ran.hooks;
    record.failure = ran.failure;
    record.timings = ran.timings;
    let schema_rolled_back = schema.is_some();
    if schema_rolled_back {
        record.schema = schema;
    }
    release::create(client, ns, &record).await?;
    let schema_said = if schema_rolled_back {
        "the database schema was rolled back with it"
    } else {
        "the database schema was not changed by the failed release, or is not rolled back"
    };
    match waited {
        Ok(()) => out.info(&format!(
            "rolled back to {} as release {}; {schema_said}",
            crate::config::short_sha(&record.sha),
            record.number
        )),
        Err(_) => match &record.failure {
            Some(hook) => out.warn(&format!(
                "the rollback to {} failed too: its hook {} ended {}",
                crate::config::short_sha(&record.sha),
                hook.workload,
                hook.reason
            )),
            None => out.warn(&format!(
                "the rollback to {} did not become healthy either",
                crate::config::short_sha(&record.sha)
            )),
        },
    }
    Ok(Some(record))
}

/// The schema part of rolling a failed release back.
enum SchemaPart {
    /// Nothing to bring back (the failed release did not change the
    /// schema, or no adapter can).
    Nothing,
    /// It cannot be brought back safely: nothing is rolled back.
    Refused,
    /// The step to run first, with the adapter that runs it.
    Step(Box<(SchemaStep, Box<dyn adapter::Adapter>)>),
}

/// The schema part of rolling `failed` back to `previous`: when the failed
/// release migrated the schema away from `previous`'s, planned with a Job
/// on the failed release's image. A plan that cannot run, or with a step
/// that cannot be undone, is refused, with a warning saying how to roll
/// back by hand.
async fn schema_step(
    client: &Client,
    plan: &Plan,
    settings: &DeploySettings,
    failed: &Release,
    previous: &Release,
    out: &Arc<Output>,
) -> SchemaPart {
    let (Some(now), Some(then)) = (&failed.schema, &previous.schema) else {
        return SchemaPart::Nothing;
    };
    if now.applied == then.applied {
        return SchemaPart::Nothing;
    }
    let adapter = match adapter::for_settings(&plan.env_name, plan.env.schema.as_ref()) {
        Ok(adapter) => adapter,
        Err(unsupported) => {
            out.warn(&format!("--rollback-on-failure: {unsupported}"));
            return SchemaPart::Nothing;
        }
    };
    let by_hand = format!(
        "`{berth} rollback {env} --to {}` rolls back by hand",
        previous.number,
        berth = crate::program::name(),
        env = plan.env_name
    );
    let history = [failed.clone(), previous.clone()];
    let runner = runner(client, plan, settings, out, adapter.as_ref());
    let schema = match schema_plan::compute(&runner, &history, previous, failed.number + 1).await {
        Ok(schema) => schema,
        Err(error) => {
            out.warn(&format!(
                "--rollback-on-failure: nothing is rolled back: the schema rollback could not be \
                 planned ({error:#}); {by_hand}"
            ));
            return SchemaPart::Refused;
        }
    };
    if let Some(refusal) = schema.refusal(&plan.env_name) {
        out.warn(&format!(
            "--rollback-on-failure: nothing is rolled back. {refusal}; {by_hand}, with one of them"
        ));
        return SchemaPart::Refused;
    }
    let step = SchemaStep {
        plan: schema,
        how: How::Unapply {
            accept_data_loss: false,
        },
        reverse: Reverse::Deploy(failed.sha.clone()),
        resumes: false,
    };
    SchemaPart::Step(Box::new((step, adapter)))
}

/// What runs the adapter's Jobs for `plan`'s environment.
pub fn runner<'a>(
    client: &'a Client,
    plan: &'a Plan,
    settings: &DeploySettings,
    out: &'a Arc<Output>,
    adapter: &'a dyn adapter::Adapter,
) -> Runner<'a> {
    Runner {
        client,
        namespace: &plan.env.namespace,
        instance: plan.instance(),
        adapter,
        thresholds: plan.thresholds(),
        timeout: plan.timeout(settings),
        out,
    }
}

/// The record of rolling `failed` back to `previous` (its objects and
/// images), numbered after `failed`; `healthy`: the objects became healthy.
fn record(
    failed: &Release,
    previous: Release,
    healthy: bool,
    started_at: Timestamp,
    took: Duration,
    now: Timestamp,
) -> Release {
    Release {
        number: failed.number + 1,
        status: if healthy {
            ReleaseStatus::Succeeded
        } else {
            ReleaseStatus::Failed
        },
        started_at: started_at.to_string(),
        finished_at: Some(now.to_string()),
        duration_s: Some(took.as_secs_f64()),
        previous: Some(failed.number),
        previous_sha: Some(failed.sha.clone()),
        failure: None,
        migration: None,
        assets: None,
        timings: BTreeMap::new(),
        deployer: failed.deployer.clone(),
        rollback_of: Some(failed.number),
        rolled_back_to: Some(previous.number),
        promoted_from: None,
        manifest_omitted: false,
        hooks: Vec::new(),
        backup: None,
        no_backup: false,
        adopted_helm_releases: Vec::new(),
        ..previous
    }
}

/// Record the rollback `ran` as it stopped (a rollback hook or the schema
/// step failed), `started` ago, and return it.
async fn stopped(
    client: &Client,
    ns: &str,
    mut ran: Release,
    started: Instant,
) -> anyhow::Result<Option<Release>> {
    ran.duration_s = Some(started.elapsed().as_secs_f64());
    ran.finished_at = Some(Timestamp::now().to_string());
    release::create(client, ns, &ran).await?;
    Ok(Some(ran))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::release::{PromotedFrom, TaskRecord, example};
    use crate::identity::Deployer;

    #[test]
    fn a_rollback_is_the_previous_release_recorded_anew_after_the_failed_one() {
        let mut failed = example(7, "ddddddd", ReleaseStatus::Failed);
        failed.deployer = Deployer {
            user: "bob".into(),
            host: "ci".into(),
            ci_run_url: Some("https://ci.example/run/1".into()),
        };
        let mut previous = example(5, "ccccccc", ReleaseStatus::Succeeded);
        let deployment: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "frontend"}
        }))
        .unwrap();
        previous.manifest = crate::cluster::release::Manifest::of([&deployment]).unwrap();
        previous.promoted_from = Some(PromotedFrom {
            environment: "staging".into(),
            release: 3,
        });
        previous.migration = Some(TaskRecord {
            name: "workbench-production-migrate-5".into(),
            status: "succeeded".into(),
            duration_s: 1.0,
        });
        previous.timings.insert("wait".into(), 3.0);
        let started: Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-12-06T10:00:30Z".parse().unwrap();
        let rollback = record(
            &failed,
            previous.clone(),
            true,
            started,
            Duration::from_secs(30),
            now,
        );
        assert_eq!(rollback.number, 8);
        assert_eq!(rollback.status, ReleaseStatus::Succeeded);
        assert_eq!(rollback.sha, "ccccccc");
        assert_eq!(rollback.manifest, previous.manifest);
        assert_eq!(rollback.started_at, "2026-12-06T10:00:00Z");
        assert_eq!(
            rollback.finished_at.as_deref(),
            Some("2026-12-06T10:00:30Z")
        );
        assert_eq!(rollback.duration_s, Some(30.0));
        assert_eq!(
            (rollback.previous, rollback.previous_sha.as_deref()),
            (Some(7), Some("ddddddd"))
        );
        assert_eq!(
            (rollback.rollback_of, rollback.rolled_back_to),
            (Some(7), Some(5))
        );
        assert_eq!(rollback.deployer, failed.deployer);
        // Nothing of the earlier deploy's own run is claimed for this one.
        assert_eq!(rollback.promoted_from, None);
        assert_eq!(rollback.migration, None);
        assert!(rollback.timings.is_empty());
        assert_eq!(rollback.failure, None);

        let unhealthy = record(&failed, previous, false, started, Duration::ZERO, now);
        assert_eq!(unhealthy.status, ReleaseStatus::Failed);
    }
}
