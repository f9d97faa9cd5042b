//! `berth config validate` and `berth config schema`.

use crate::cli::{ConfigArgs, ConfigCommand, GlobalArgs};
use crate::config::Config;
use crate::render;
use crate::stdout;

/// Validate berth.yaml and render every environment, or print the schema.
pub async fn run(global: &GlobalArgs, args: &ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Schema => {
            stdout::line(serde_json::to_string_pretty(&Config::schema())?)?;
        }
        ConfigCommand::Validate => {
            let config = Config::load(&global.config)?;
            for (name, env) in &config.environments {
                let mut objects = render::render(&config, name, env).await?;
                let pinned = render::pin_images(
                    &mut objects,
                    &render::Pins::at_sha(&config.images, "0000000"),
                );
                stdout::line(format!(
                    "{name}: {} objects render, {} images pinned (namespace {})",
                    objects.len(),
                    pinned.len(),
                    env.namespace
                ))?;
            }
            stdout::line(format!("{} is valid", global.config.display()))?;
        }
    }
    Ok(())
}
