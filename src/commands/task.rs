//! `berth task ENV NAME` (and `refresh-suggested-modules ENV`): a command
//! declared under `tasks:` in berth.yaml, run in a Ready pod of a workload
//! or in a one-off pod, output streamed, exit code propagated. `berth task
//! ENV` lists the declared tasks.

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::cluster::exec::{self, Session};
use crate::cluster::run_pod::OneOff;
use crate::cluster::{client, pods};
use crate::config::TaskTarget;
use crate::error::{BerthError, input_error};
use crate::output::{Mode, Output};
use crate::{program, stdout, terminal};

/// Run the task `name` in the environment `env_name`.
pub async fn run(
    global: &GlobalArgs,
    env_name: &str,
    name: &str,
    out: &Output,
) -> anyhow::Result<()> {
    out.json_report(&json!({"environment": env_name, "task": name}));
    let config = crate::commands::load_config(global, &[env_name], out)?;
    if !config.environments.contains_key(env_name)
        && config.environments.contains_key(name)
        && config.tasks.contains_key(env_name)
    {
        return Err(input_error(format!(
            "`{env_name}` is a task and `{name}` an environment: the environment comes first; \
             did you mean: {} task {name} {env_name}",
            program::name()
        )));
    }
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

/// One declared task, as `task ENV` lists it.
#[derive(Debug, Serialize)]
struct Listed<'a> {
    name: &'a str,
    /// The Deployment whose Ready pod runs it; none for a one-off pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    /// Runs in a one-off pod, as `berth run` starts.
    pod: bool,
    command: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    args_file: Option<String>,
}

impl Listed<'_> {
    /// Where it runs, for people: `frontend (container web)` or `one-off pod`.
    fn place(&self) -> String {
        match (self.workload, self.container) {
            (Some(workload), Some(container)) => format!("{workload} (container {container})"),
            (Some(workload), None) => workload.to_owned(),
            _ => "one-off pod".to_owned(),
        }
    }

    /// The command for people, the args file's arguments after it.
    fn command_line(&self) -> String {
        let mut line = self.command.join(" ");
        if let Some(file) = &self.args_file {
            line.push_str(&format!(" <arguments from {file}>"));
        }
        line
    }
}

/// `task ENV` without a name: list the tasks berth.yaml declares (name,
/// where it runs, command); run none.
pub fn list(global: &GlobalArgs, env_name: &str, out: &Output) -> anyhow::Result<()> {
    let config = crate::commands::load_config(global, &[env_name], out)?;
    config.environment(env_name)?;
    let listed: Vec<Listed> = config
        .tasks
        .iter()
        .map(|(name, task)| {
            let (workload, container) = match &task.target {
                TaskTarget::Exec {
                    workload,
                    container,
                } => (Some(workload.as_str()), container.as_deref()),
                TaskTarget::Pod => (None, None),
            };
            Listed {
                name,
                workload,
                container,
                pod: task.target == TaskTarget::Pod,
                command: &task.command,
                args_file: task.args_file.as_ref().map(|file| {
                    file.strip_prefix(&config.dir)
                        .unwrap_or(file)
                        .display()
                        .to_string()
                }),
            }
        })
        .collect();
    out.json_report(&json!({"environment": env_name, "tasks": listed}));
    if out.mode() == Mode::Json {
        return Ok(());
    }
    if listed.is_empty() {
        return stdout::line(
            "berth.yaml declares no task; declare one under `tasks:` (see docs/operations.md)",
        );
    }
    let rows: Vec<[String; 3]> = listed
        .iter()
        .map(|task| [task.name.to_owned(), task.place(), task.command_line()])
        .collect();
    let width = |column: usize, title: &str| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (name_width, place_width) = (width(0, "TASK"), width(1, "RUNS IN"));
    stdout::line(format!(
        "{:name_width$}  {:place_width$}  COMMAND",
        "TASK", "RUNS IN"
    ))?;
    for [name, place, command] in rows {
        stdout::line(format!(
            "{name:name_width$}  {place:place_width$}  {command}"
        ))?;
    }
    stdout::line(format!(
        "run one with `{} task {env_name} NAME`",
        program::name()
    ))
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
