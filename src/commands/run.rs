//! `berth run ENV [--keep] [--timeout D] -- CMD...`: a one-off command in a
//! pod copied from the current release's workload, output streamed, exit
//! code propagated, the pod deleted afterwards (also on Ctrl-C, timeout and
//! error) unless `--keep`.

use std::time::Duration;

use serde_json::json;

use crate::cli::{GlobalArgs, RunArgs};
use crate::cluster::run_pod::OneOff;
use crate::cluster::{client, pods};
use crate::config::RunSettings;
use crate::error::BerthError;
use crate::output::Output;

/// Run a one-off command in the environment.
pub async fn run(global: &GlobalArgs, args: &RunArgs, out: &Output) -> anyhow::Result<()> {
    out.json_report(&json!({"environment": args.env}));
    let config = crate::commands::load_config(global, &[&args.env], out)?;
    let env = config.environment(&args.env)?;
    let mut settings = match &args.workload {
        Some(workload) => RunSettings {
            workload: workload.clone(),
            container: None,
            timeout: env
                .run_settings(&args.env)
                .map_or(Duration::from_secs(3600), |s| s.timeout),
        },
        None => env.run_settings(&args.env)?,
    };
    if args.container.is_some() {
        settings.container.clone_from(&args.container);
    }
    let timeout = args.timeout.unwrap_or(settings.timeout);
    let client = client::connect(env.context.as_deref()).await?;
    let pod = OneOff::new(
        &client,
        &config.app,
        &args.env,
        env,
        format!("environments.{}.run (or --workload)", args.env),
    );
    let template = pods::deployment(&client, &env.namespace, &settings.workload, &pod.key).await?;
    let code = pod
        .run(
            &settings,
            template.spec.map(|s| s.template),
            args.command.clone(),
            timeout,
            args.keep,
            out,
        )
        .await?;
    Ok(BerthError::from_exit(code)?)
}
