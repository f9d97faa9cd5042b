//! `berth config validate` and `berth config schema`.

use crate::cli::{ConfigArgs, ConfigCommand, GlobalArgs};
use crate::config::Config;
use crate::render;

/// Validate berth.yaml and render every environment, or print the schema.
pub fn run(global: &GlobalArgs, args: &ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&Config::schema())?);
        }
        ConfigCommand::Validate => {
            let config = Config::load(&global.config)?;
            for (name, env) in &config.environments {
                let mut objects = render::render(&config, name, env)?;
                let pinned = render::pin_images(
                    &mut objects,
                    &render::Pins::at_sha(&config.images, "0000000"),
                );
                println!(
                    "{name}: {} objects render, {} images pinned (namespace {})",
                    objects.len(),
                    pinned.len(),
                    env.namespace
                );
            }
            println!("{} is valid", global.config.display());
        }
    }
    Ok(())
}
