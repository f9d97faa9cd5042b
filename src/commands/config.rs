//! `berth config validate` and `berth config schema`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::cli::{ConfigArgs, ConfigCommand, GlobalArgs};
use crate::cluster::{client, served};
use crate::config::{Config, Environment, MigrationSource};
use crate::migrate;
use crate::output::{Mode, Output};
use crate::render::{self, Target};
use crate::stdout;

/// Validate berth.yaml and render every environment (lines for people, or
/// with `--output json` an event each, then the report), or print the
/// schema (JSON itself: no `--output`).
pub async fn run(global: &GlobalArgs, args: &ConfigArgs, out: &Output) -> anyhow::Result<()> {
    let json = out.mode() == Mode::Json;
    match args.command {
        ConfigCommand::Schema => {
            stdout::line(serde_json::to_string_pretty(&Config::schema())?)?;
        }
        ConfigCommand::Validate => {
            let path = crate::config::locate(global.config.as_deref())?;
            out.json_report(&json!({"config": path.display().to_string()}));
            let config = Config::load(&path)?;
            let mut refusals = Vec::new();
            let mut clusters = Clusters::default();
            for (name, env) in &config.environments {
                let target = clusters.target_for(name, env, out).await;
                let mut objects = render::render(&config, name, env, target.as_ref()).await?;
                let pins = render::Pins::at_sha(&config.images, "0000000");
                let pinned = render::pin_images(&mut objects, &pins);
                // The repository's own migration: rendered, and its Pod or
                // Job and container found, as a deploy would.
                let migration = match &env.migrate {
                    Some(MigrationSource::Overlay(overlay)) => Some(
                        migrate::overlay::job(
                            &config,
                            name,
                            &env.namespace,
                            overlay,
                            &pins,
                            true,
                            target.as_ref(),
                        )
                        .await?
                        .origin,
                    ),
                    _ => None,
                };
                // `images:` checked as a deploy checks it; every environment's
                // refusals are reported together.
                let all_pinned: Vec<_> = pinned
                    .iter()
                    .chain(migration.iter().flat_map(|o| &o.pinned))
                    .collect();
                let containers = render::container_images(&objects);
                let images = render::check_images(&config, env, &containers, &all_pinned);
                refusals.extend(images.error(&config.path, name));
                for warning in images.warnings(name) {
                    out.warn(&warning);
                }
                if json {
                    stdout::line(json!({
                        "event": "environment",
                        "environment": name,
                        "namespace": env.namespace,
                        "objects": objects.len(),
                        "images_pinned": pinned.len(),
                        "kube_version": target.as_ref().map(|t| &t.kube_version),
                        "migration": migration.as_ref().map(|o| json!({
                            "from": o.object, "container": o.container, "ignored": o.ignored,
                        })),
                    }))?;
                } else {
                    let rendered_for = target
                        .as_ref()
                        .map(|t| format!(", rendered for Kubernetes {}", t.kube_version))
                        .unwrap_or_default();
                    stdout::line(format!(
                        "{name}: {} objects render, {} images pinned (namespace {}{rendered_for})",
                        objects.len(),
                        pinned.len(),
                        env.namespace
                    ))?;
                    if let Some(o) = &migration {
                        stdout::line(format!(
                            "{name}: migration Job from {} in {} (container {} decides)",
                            o.object, o.source, o.container
                        ))?;
                    }
                }
            }
            if !refusals.is_empty() {
                let lines: Vec<String> = refusals.iter().map(|e| format!("{e:#}")).collect();
                return Err(crate::error::input_error(lines.join("\n")));
            }
            if !json {
                stdout::line(format!("{} is valid", path.display()))?;
            }
        }
    }
    Ok(())
}

/// How long `config validate` waits for an environment's cluster before
/// rendering its chart without it.
const CLUSTER_WAIT: Duration = Duration::from_secs(5);

/// The clusters `config validate` reached (or not), by kubeconfig context.
#[derive(Default)]
struct Clusters(HashMap<Option<String>, Result<Target, String>>);

impl Clusters {
    /// The cluster environment `env`'s charts render for: its context's,
    /// when it answers within [`CLUSTER_WAIT`]; else none, said in one line
    /// (the chart then renders for helm's default cluster, `lookup`
    /// finding nothing). Kustomize environments need none and connect to
    /// nothing.
    async fn target_for(&mut self, name: &str, env: &Environment, out: &Output) -> Option<Target> {
        if !render::uses_a_chart(env) {
            return None;
        }
        let context = env.context.clone();
        if !self.0.contains_key(&context) {
            let reached = tokio::time::timeout(CLUSTER_WAIT, async {
                let client = client::connect(context.as_deref()).await?;
                served::target(&client, context.as_deref()).await
            })
            .await;
            let reached = match reached {
                Ok(Ok(target)) => Ok(target),
                Ok(Err(error)) => Err(format!("{error:#}")),
                Err(_) => Err(format!(
                    "it did not answer within {}",
                    crate::duration::display(CLUSTER_WAIT)
                )),
            };
            self.0.insert(context.clone(), reached);
        }
        match &self.0[&context] {
            Ok(target) => Some(target.clone()),
            Err(why) => {
                let why = why.lines().next().unwrap_or_default();
                out.info(&format!(
                    "{name}: its chart renders for helm's default Kubernetes version, `lookup` \
                     finding nothing, as its cluster is out of reach ({why})"
                ));
                None
            }
        }
    }
}
