//! The plan: everything validated before the cluster is touched (config,
//! SHA, render and pin, kinds, assets, permissions). Changes nothing.

use anyhow::Context;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::DynamicObject;
use kube::{Api, Client};

use super::hold;
use super::pre_migrate::BeforeMigration;
use super::settings::DeploySettings;
use crate::assets::store;
use crate::assets::sync::{self, Prepared};
use crate::cluster::apply::{self, Resolved};
use crate::cluster::kinds::Origin;
use crate::cluster::release::{ChartRecord, Release};
use crate::cluster::{access, client, instance, served};
use crate::config::{self, Config, Environment, MigrationSource};
use crate::error::{BerthError, input_error, kind_of};
use crate::hooks::{self, Hook};
use crate::migrate;
use crate::output::Output;
use crate::render::{self, PinnedImage, Pins, Target};
use crate::rollout::Thresholds;
use crate::schema::adapter::{self, Adapter};

/// Everything validated before the cluster is touched.
pub struct Plan {
    /// The loaded berth.yaml.
    pub config: Config,
    /// The environment's name.
    pub env_name: String,
    /// The environment.
    pub env: Environment,
    /// The SHA, lowercased.
    pub sha: String,
    /// Rendered, labelled, pinned objects with their API resources.
    pub objects: Vec<Resolved>,
    /// The images pinned to the SHA.
    pub pinned: Vec<PinnedImage>,
    /// The migration Job to run before applying: the overlay's template, or
    /// one built from berth.yaml's `migrate:`.
    pub migration: Option<Job>,
    /// Where the migration Job came from, when the repository's own
    /// manifests declare it (`migrate.overlay`).
    pub migration_origin: Option<migrate::overlay::Origin>,
    /// The static assets, source resolved and bucket checked, when configured.
    pub assets: Option<Prepared>,
    /// A plan that only shows what would happen (`--dry-run`, `diff`): why
    /// the assets' source is unavailable (the SHA's image not built yet),
    /// which a deploy refuses.
    pub assets_unavailable: Option<String>,
    /// Whether a backup is taken before the migration.
    pub backup: BeforeMigration,
    /// The adapter that reads what the migration applies and the state it
    /// leaves, for the release record (`migrate.framework: django`); `None`
    /// without a migration or a framework berth can roll back.
    pub schema: Option<Box<dyn Adapter>>,
    /// `--dry-run` with a framework: what the migration would apply, read
    /// in a copy of the migration Job (deleted); `None` when not read.
    pub inspected: Option<Vec<crate::schema::adapter::Step>>,
    /// The helm chart rendered (for a rollback: the one recorded), with
    /// its digests; `None` for an overlay.
    pub chart: Option<ChartRecord>,
    /// The chart's hooks, taken out of `objects`: run around the apply,
    /// never applied with it ([`crate::hooks`]).
    pub hooks: Vec<Hook>,
}

impl Plan {
    /// How long to wait for a rollout: `--timeout`, else the environment's.
    pub fn timeout(&self, settings: &DeploySettings) -> std::time::Duration {
        settings.timeout.unwrap_or(self.env.rollout.timeout)
    }

    /// When a stuck pod fails the rollout.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds::from(&self.env.rollout)
    }

    /// `<app>-<env>`.
    pub fn instance(&self) -> String {
        instance(&self.config.app, &self.env_name)
    }

    /// The label selector of everything this environment's deploys manage.
    pub fn selector(&self) -> String {
        crate::cluster::environment_selector(&self.config.app, &self.env_name)
    }
}

/// Plan a deploy of the overlay, changing nothing: load the config, check
/// the SHA, render and pin (to `pins`, else every image of the app at
/// `:SHA`), reach the cluster, resolve every kind, prepare the assets, and
/// check the deployer's permissions.
pub async fn plan(
    settings: &DeploySettings,
    pins: Option<Pins>,
    out: &Output,
) -> anyhow::Result<(Client, Plan)> {
    out.step("validate");
    let env_name = settings.env_name.as_str();
    let (config, env) = load(settings, out)?;
    let sha = config::parse_sha(&settings.sha)?;
    let (mut objects, client, target) = render_for_cluster(&config, env_name, &env).await?;
    let chart = render::chart_record(&config, env_name, &env).await?;
    render::label(&mut objects, &config.app, env_name)?;
    let pins = pins.unwrap_or_else(|| Pins::at_sha(&config.images, &sha));
    let pinned = render::pin_images(&mut objects, &pins);
    let containers = render::container_images(&objects);
    let template = migrate::take_template(&mut objects)?;
    let hook_objects = hooks::take(&mut objects);
    let pending_check = match (&template, &env.migrate) {
        (Some(template), _) => migrate::template_pending_check(template)?,
        (None, Some(configured)) => configured.pending_check().cloned(),
        (None, None) => None,
    };
    let mut migration_origin = None;
    let migration = match (template, &env.migrate) {
        (Some(_), Some(_)) => {
            return Err(input_error(format!(
                "the migration of {env_name} is declared twice: a Job labelled {}: {} in the {} and `environments.{env_name}.migrate` in berth.yaml; keep one",
                migrate::TEMPLATE_LABEL.0,
                migrate::TEMPLATE_LABEL.1,
                render::noun(&env.source)
            )));
        }
        (Some(template), None) => Some(template),
        (None, Some(MigrationSource::Built(configured))) => {
            Some(migrate::from_config(configured, &sha)?)
        }
        (None, Some(MigrationSource::Overlay(overlay))) => {
            let native = migrate::sidecars::native_supported(&client).await?;
            let taken = migrate::overlay::job(
                &config,
                env_name,
                &env.namespace,
                overlay,
                &pins,
                native,
                target.as_ref(),
            )
            .await?;
            migration_origin = Some(taken.origin);
            Some(taken.job)
        }
        (None, None) => None,
    };
    let schema = migration
        .as_ref()
        .and_then(|_| adapter::for_settings(env_name, env.schema.as_ref()).ok());
    let backup = BeforeMigration::decide(
        &env,
        migration.is_some(),
        pending_check,
        schema.is_some(),
        settings.no_backup,
    );
    let migration_pinned: Vec<&PinnedImage> =
        migration_origin.iter().flat_map(|o| &o.pinned).collect();
    let all_pinned: Vec<&PinnedImage> = pinned.iter().chain(migration_pinned.clone()).collect();
    // A listed repository no container uses (a typo) would leave its
    // container at the overlay's tag: refused before anything changes.
    let images = render::check_images(&config, &env, &containers, &all_pinned);
    if let Some(refusal) = images.error(&config.path, env_name) {
        return Err(refusal);
    }
    for warning in images.warnings(env_name) {
        out.warn(&warning);
    }
    let migration_pinned = !migration_pinned.is_empty();
    if pinned.is_empty() && !migration_pinned {
        out.warn("no container uses an image listed under `images:` in berth.yaml; nothing is pinned to the SHA");
    }
    // Resolving kinds and preparing the assets (an image pulled, a bucket
    // checked) are independent; either failing is bad input, found before
    // anything changes.
    let (objects, assets) = tokio::join!(
        apply::resolve(&client, objects, origin(&env)),
        prepare_assets(&env, &sha, &client, settings.dry_run)
    );
    let (objects, (assets, assets_unavailable)) = (objects?, assets?);
    let hooks = resolve_hooks(&client, hook_objects, origin(&env), out).await?;
    if let Some(why) = &assets_unavailable {
        out.warn(&format!(
            "the assets are unavailable, so a deploy would refuse {}: {why}",
            config::short_sha(&sha)
        ));
    }
    check_access(
        &client,
        &env,
        &objects,
        &hooks,
        migration.is_some(),
        settings.prune,
    )
    .await?;
    out.info(&format!(
        "{} objects for {env_name} (namespace {}), {} images pinned to {}",
        objects.len(),
        env.namespace,
        pinned.len(),
        config::short_sha(&sha)
    ));
    let plan = Plan {
        config,
        env_name: env_name.to_string(),
        env,
        sha,
        objects,
        pinned,
        migration,
        migration_origin,
        assets,
        assets_unavailable,
        backup,
        schema,
        inspected: None,
        chart,
        hooks,
    };
    Ok((client, plan))
}

/// A rollback's plan: the objects and images `target` recorded, checked
/// against the cluster as a deploy's are. Changes nothing.
pub async fn plan_release(
    settings: &DeploySettings,
    target: &Release,
    out: &Output,
) -> anyhow::Result<(Client, Plan)> {
    out.step("validate");
    let env_name = settings.env_name.as_str();
    let (config, env) = load(settings, out)?;
    if target.manifest_omitted || target.manifest.is_empty() {
        return Err(input_error(format!(
            "release {} kept no manifest (it was too large to record), so it cannot be \
             re-applied; deploy its SHA instead: {berth} advanced-deploy {env_name} {}",
            target.number,
            target.sha,
            berth = crate::program::name()
        )));
    }
    let objects = recorded_objects(target)?;
    let client = client::connect(env.context.as_deref()).await?;
    let objects = apply::resolve(&client, objects, Origin::Release(target.number)).await?;
    let hooks = recorded_hooks(&client, target, out).await?;
    check_access(&client, &env, &objects, &hooks, false, settings.prune).await?;
    let pinned = target
        .images
        .iter()
        .map(|i| PinnedImage {
            object: i.object.clone(),
            container: i.container.clone(),
            from: i.image.clone(),
            to: i.image.clone(),
        })
        .collect();
    out.info(&format!(
        "{} objects of release {} ({}) for {env_name} (namespace {})",
        objects.len(),
        target.number,
        config::short_sha(&target.sha),
        env.namespace
    ));
    let plan = Plan {
        config,
        env_name: env_name.to_string(),
        env,
        sha: target.sha.clone(),
        objects,
        pinned,
        migration: None,
        migration_origin: None,
        assets: None,
        assets_unavailable: None,
        backup: BeforeMigration::NoMigration,
        schema: None,
        inspected: None,
        chart: target.chart.clone(),
        hooks,
    };
    Ok((client, plan))
}

/// The environment's objects rendered, a client of its cluster, and the
/// cluster's [`Target`] when a chart renders for it (the environment's or
/// its migration's). A chart needs the cluster first: it renders for it
/// (`.Capabilities`, `lookup`), so berth connects, discovers, then renders.
/// A kustomize overlay renders while berth connects; a render error is
/// then reported first, being the cheaper one to fix.
async fn render_for_cluster(
    config: &Config,
    env_name: &str,
    env: &Environment,
) -> anyhow::Result<(Vec<DynamicObject>, Client, Option<Target>)> {
    let context = env.context.as_deref();
    if !render::uses_a_chart(env) {
        let (rendered, connected) = tokio::join!(
            render::render(config, env_name, env, None),
            client::connect(context)
        );
        return Ok((rendered?, connected?, None));
    }
    let client = client::connect(context).await?;
    let target = served::target(&client, context).await?;
    let objects = render::render(config, env_name, env, Some(&target)).await?;
    Ok((objects, client, Some(target)))
}

/// The hooks `release` recorded, as [`resolve_hooks`] reads them: a
/// rollback to it runs its `pre-rollback` and `post-rollback` hooks.
pub async fn recorded_hooks(
    client: &Client,
    release: &Release,
    out: &Output,
) -> anyhow::Result<Vec<Hook>> {
    let objects = release
        .hook_manifest
        .objects()
        .with_context(|| format!("reading release {}'s recorded hooks", release.number))?;
    resolve_hooks(client, objects, Origin::Release(release.number), out).await
}

/// The chart's hook objects with their API resources and annotations
/// read; warns of the events berth never runs them on.
async fn resolve_hooks(
    client: &Client,
    objects: Vec<kube::api::DynamicObject>,
    origin: Origin,
    out: &Output,
) -> anyhow::Result<Vec<Hook>> {
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let hooks = apply::resolve(client, objects, origin)
        .await?
        .into_iter()
        .map(hooks::parse)
        .collect::<anyhow::Result<Vec<Hook>>>()?;
    for never in hooks::never_run(&hooks) {
        out.warn(&format!("hook event {never} is never run by berth"));
    }
    Ok(hooks)
}

/// Where the environment's objects come from, for the message on kinds
/// the cluster does not serve.
fn origin(env: &Environment) -> Origin {
    match env.source {
        config::Source::Helm { .. } => Origin::Chart,
        config::Source::Kustomize { .. } => Origin::Overlay,
    }
}

/// berth.yaml, checked for the environment deployed to, and that environment.
fn load(settings: &DeploySettings, out: &Output) -> anyhow::Result<(Config, Environment)> {
    let config = Config::load_for(&settings.config_path, &[&settings.env_name], out)?;
    let env = config.environment(&settings.env_name)?.clone();
    Ok((config, env))
}

/// The objects `release` recorded, as they were applied.
pub fn recorded_objects(release: &Release) -> anyhow::Result<Vec<DynamicObject>> {
    release
        .manifest
        .objects()
        .with_context(|| format!("reading release {}'s recorded objects", release.number))
}

/// The namespace is usable and the deployer may do everything the deploy
/// needs (SelfSubjectAccessReview); otherwise bad input.
async fn check_access(
    client: &Client,
    env: &Environment,
    objects: &[Resolved],
    hooks: &[Hook],
    migration: bool,
    prune: bool,
) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let existing = match namespaces.get_opt(&env.namespace).await {
        Ok(ns) => ns,
        Err(kube::Error::Api(s)) if s.is_forbidden() => {
            return Err(input_error(format!(
                "the deployer may not read namespace {}; grant `get namespaces` (see cluster-setup/rbac/deployer.yaml)",
                env.namespace
            )));
        }
        Err(e) => return Err(e).context("reading the namespace"),
    };
    if existing
        .as_ref()
        .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
    {
        return Err(input_error(format!(
            "namespace {} is being deleted; wait until it is gone, then deploy again",
            env.namespace
        )));
    }
    let hook_objects: Vec<Resolved> = hooks.iter().map(|h| h.resolved.clone()).collect();
    let job_hooks = hook_objects.iter().any(|h| h.resource.kind == "Job");
    let all: Vec<Resolved> = objects.iter().chain(&hook_objects).cloned().collect();
    let mut needs = access::deploy_needs(
        &all,
        &env.namespace,
        migration || job_hooks,
        prune,
        existing.is_none(),
    );
    needs.extend(access::hook_needs(&hook_objects, &env.namespace));
    needs.extend(hold::needs(objects, &env.namespace));
    needs.sort();
    needs.dedup();
    access::check(client, &needs).await
}

/// The environment's assets, prepared for upload, if it has `assets:`.
/// With `plan_only`, a source that is bad input (the SHA's image missing)
/// is the second value, why, rather than an error: the plan shows it.
async fn prepare_assets(
    env: &Environment,
    sha: &str,
    client: &Client,
    plan_only: bool,
) -> anyhow::Result<(Option<Prepared>, Option<String>)> {
    let Some(assets) = &env.assets else {
        return Ok((None, None));
    };
    let store = store::for_environment(env, assets, Some(client)).await?;
    match sync::check_and_resolve(assets, &assets.from.for_sha(sha), sha, store).await? {
        Ok(prepared) => Ok((Some(prepared), None)),
        Err(e) if plan_only && matches!(kind_of(&e), Some(BerthError::Input(_))) => {
            Ok((None, Some(format!("{e:#}"))))
        }
        Err(e) => Err(e),
    }
}
