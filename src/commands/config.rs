//! `berth config validate` and `berth config schema`.

use serde_json::json;

use crate::cli::{ConfigArgs, ConfigCommand, GlobalArgs};
use crate::config::{Config, MigrationSource};
use crate::migrate;
use crate::output::{Mode, Output};
use crate::render;
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
            for (name, env) in &config.environments {
                let mut objects = render::render(&config, name, env).await?;
                let pins = render::Pins::at_sha(&config.images, "0000000");
                let pinned = render::pin_images(&mut objects, &pins);
                // The repository's own migration: rendered, and its Pod or
                // Job and container found, as a deploy would.
                let migration = match &env.migrate {
                    Some(MigrationSource::Overlay(overlay)) => Some(
                        migrate::overlay::job(&config, name, &env.namespace, overlay, &pins, true)
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
                        "migration": migration.as_ref().map(|o| json!({
                            "from": o.object, "container": o.container, "ignored": o.ignored,
                        })),
                    }))?;
                } else {
                    stdout::line(format!(
                        "{name}: {} objects render, {} images pinned (namespace {})",
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
