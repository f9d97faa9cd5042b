//! `berth config validate` and `berth config schema`.

use serde_json::json;

use crate::cli::{ConfigArgs, ConfigCommand, GlobalArgs};
use crate::config::Config;
use crate::output::{Mode, Output};
use crate::render;
use crate::stdout;

/// Validate berth.yaml and render every environment, or print the schema:
/// lines for people, or with `--output json` an event each, then the report.
pub async fn run(global: &GlobalArgs, args: &ConfigArgs, out: &Output) -> anyhow::Result<()> {
    let json = out.mode() == Mode::Json;
    match args.command {
        ConfigCommand::Schema if json => {
            stdout::line(json!({"event": "schema", "schema": Config::schema()}))?;
        }
        ConfigCommand::Schema => {
            stdout::line(serde_json::to_string_pretty(&Config::schema())?)?;
        }
        ConfigCommand::Validate => {
            out.json_report(&json!({"config": global.config.display().to_string()}));
            let config = Config::load(&global.config)?;
            for (name, env) in &config.environments {
                let mut objects = render::render(&config, name, env).await?;
                let pinned = render::pin_images(
                    &mut objects,
                    &render::Pins::at_sha(&config.images, "0000000"),
                );
                if json {
                    stdout::line(json!({
                        "event": "environment",
                        "environment": name,
                        "namespace": env.namespace,
                        "objects": objects.len(),
                        "images_pinned": pinned.len(),
                    }))?;
                } else {
                    stdout::line(format!(
                        "{name}: {} objects render, {} images pinned (namespace {})",
                        objects.len(),
                        pinned.len(),
                        env.namespace
                    ))?;
                }
            }
            if !json {
                stdout::line(format!("{} is valid", global.config.display()))?;
            }
        }
    }
    Ok(())
}
