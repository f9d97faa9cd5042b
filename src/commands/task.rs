//! `berth task ENV NAME` (and `refresh-suggested-modules ENV`): a command
//! declared under `tasks:` in berth.yaml, run in a Ready pod of a workload
//! or in a one-off pod, output streamed, exit code propagated.

use std::path::Path;

use serde_json::json;

use crate::cli::GlobalArgs;
use crate::cluster::exec::{self, Session};
use crate::cluster::run_pod::OneOff;
use crate::cluster::{client, pods};
use crate::config::TaskTarget;
use crate::error::{BerthError, input_error};
use crate::output::Output;
use crate::terminal;

/// Run the task `name` in the environment `env_name`.
pub async fn run(
    global: &GlobalArgs,
    env_name: &str,
    name: &str,
    out: &Output,
) -> anyhow::Result<()> {
    out.json_report(&json!({"environment": env_name, "task": name}));
    let config = crate::commands::load_config(global, &[env_name], out)?;
    let env = config.environment(env_name)?;
    let task = config.task(name)?;
    let mut command = task.command.clone();
    if let Some(file) = &task.args_file {
        command.extend(read_args_file(file)?);
    }
    let client = client::connect(env.context.as_deref()).await?;
    let ns = &env.namespace;
    let code = match &task.target {
        TaskTarget::Exec {
            workload,
            container,
        } => {
            let key = format!("tasks.{name}");
            let pod = pods::ready_pod(&client, ns, workload, &format!("{key}.workload")).await?;
            let spec = pod.spec.clone().unwrap_or_default();
            let container =
                pods::container(&spec, container.as_deref(), &format!("{key}.container"))?;
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            out.info(&format!("task {name} in pod {pod_name}"));
            let session = Session {
                pod: &pod_name,
                container: Some(&container),
                command,
                settings: None,
                tty: terminal::is_interactive(),
            };
            let pods_api = pods::api(&client, ns);
            tokio::time::timeout(task.timeout, exec::run(&pods_api, session))
                .await
                .unwrap_or_else(|_| {
                    Err(BerthError::TimedOut(format!(
                        "task {name} did not finish within {} (tasks.{name}.timeout)",
                        crate::duration::display(task.timeout)
                    ))
                    .into())
                })?
        }
        TaskTarget::Pod => {
            let settings = env.run_settings(env_name)?;
            let one_off = OneOff::new(
                &client,
                &config.app,
                env_name,
                env,
                format!("environments.{env_name}.run"),
            );
            let deployment =
                pods::deployment(&client, ns, &settings.workload, &one_off.key).await?;
            let template = deployment.spec.map(|spec| spec.template);
            one_off
                .run(&settings, template, command, task.timeout, false, out)
                .await?
        }
    };
    Ok(BerthError::from_exit(code)?)
}

/// The arguments in an `args_file`.
fn read_args_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        input_error(format!(
            "cannot read {}: {error}; fix the task's `args_file` (relative to berth.yaml)",
            path.display()
        ))
    })?;
    Ok(parse_args(&text))
}

/// One argument per line, trimmed; blank lines and `#` comments skipped.
pub fn parse_args(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_lines_without_blanks_and_comments() {
        let text = "# suggested modules\nloadurl\n\n  pastecsv  \r\n# filter is next\nfilter\n";
        assert_eq!(parse_args(text), ["loadurl", "pastecsv", "filter"]);
        assert!(parse_args("\n# nothing\n").is_empty());
    }
}
