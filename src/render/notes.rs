//! A chart's `NOTES.txt`, rendered for an environment as `helm install`
//! prints it after an install: same chart, values, release name and
//! namespace as the deploy renders with.
//!
//! `helm template` never prints notes, so berth asks `helm install
//! --dry-run=client --take-ownership --output json` and reads `info.notes`.
//! A dry run writes nothing; helm only reads the cluster (its version, and
//! the kinds it maps the chart's objects to, so a custom resource's CRD must
//! be installed: after a deploy it is). `--take-ownership` keeps helm from
//! refusing objects berth already deployed.

use std::ffi::OsString;

use serde_json::Value;

use super::TOOL_TIMEOUT;
use super::tool::Tool;
use crate::config::{Config, Environment, Source};
use crate::error::input_error;
use crate::output::Output;
use crate::pipeline::Plan;

/// Flags of `helm template` that `helm install` does not take, alone.
const TEMPLATE_ONLY: &[&str] = &[
    "--skip-tests",
    "--include-crds",
    "--validate",
    "--is-upgrade",
];
/// Flags of `helm template` that `helm install` does not take, with their value.
const TEMPLATE_ONLY_WITH_VALUE: &[&str] = &[
    "--kube-version",
    "--api-versions",
    "-a",
    "--output-dir",
    "--show-only",
    "-s",
];

/// Environment `env_name`'s NOTES.txt as helm renders it; `None` for an
/// overlay, or a chart without notes. Writes nothing anywhere.
pub async fn render(
    config: &Config,
    env_name: &str,
    env: &Environment,
) -> anyhow::Result<Option<String>> {
    let Source::Helm { chart, .. } = &env.source else {
        return Ok(None);
    };
    let key = format!("environments.{env_name}.chart");
    let prepared = super::chart_source::prepare(chart, &key).await?;
    let template = Tool::for_source(
        config,
        &env.source,
        Some(&prepared.path),
        &key,
        &env.namespace,
        None,
    );
    let args = install_args(&template.args, env.context.as_deref());
    let shown = shown(config, &args);
    let tool = Tool {
        args,
        fix: template
            .fix
            .replace(&format!("`{}`", template.shown), &format!("`{shown}`")),
        shown,
        ..template
    };
    let printed = tool.run(TOOL_TIMEOUT).await?;
    let release: Value = serde_json::from_str(&printed).map_err(|error| {
        input_error(format!(
            "`{}` printed something other than a release in JSON ({error})",
            tool.shown
        ))
    })?;
    Ok(release
        .pointer("/info/notes")
        .and_then(Value::as_str)
        .filter(|notes| !notes.trim().is_empty())
        .map(|notes| notes.trim_end().to_owned()))
}

/// The notes to show after `plan`'s deploy, the first of its environment;
/// notes that cannot be rendered are a warning, never a failed deploy.
pub async fn after_first_deploy(plan: &Plan, out: &Output) -> Option<String> {
    match render(&plan.config, &plan.env_name, &plan.env).await {
        Ok(notes) => notes,
        Err(error) => {
            out.warn(&format!(
                "the chart's NOTES.txt could not be rendered: {}",
                crate::error::brief(&error)
            ));
            None
        }
    }
}

/// `helm template`'s arguments made `helm install --dry-run`'s: the
/// values, release, chart and namespace kept, template-only flags left out,
/// the environment's context named.
fn install_args(template: &[OsString], context: Option<&str>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::with_capacity(template.len() + 6);
    let mut given = template.iter();
    while let Some(arg) = given.next() {
        let text = arg.to_string_lossy();
        let flag = text.split('=').next().unwrap_or_default();
        if args.is_empty() && text == "template" {
            args.push("install".into());
            continue;
        }
        // the dry run is berth's own: client-side
        if TEMPLATE_ONLY.contains(&flag) || flag == "--dry-run" {
            continue;
        }
        if TEMPLATE_ONLY_WITH_VALUE.contains(&flag) {
            if !text.contains('=') {
                given.next();
            }
            continue;
        }
        args.push(arg.clone());
    }
    args.extend(
        ["--dry-run=client", "--take-ownership", "--output", "json"]
            .into_iter()
            .map(OsString::from),
    );
    if let Some(context) = context
        && !args.iter().any(|a| a == "--kube-context")
    {
        args.extend(["--kube-context".into(), context.into()]);
    }
    args
}

/// The command line as shown, paths relative to berth.yaml's directory.
fn shown(config: &Config, args: &[OsString]) -> String {
    let dir = format!("{}/", config.dir.display());
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().replace(&dir, ""))
        .collect();
    format!("helm {}", words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn template_arguments_become_a_dry_run_install_in_the_context() {
        let template: Vec<OsString> = [
            "template",
            "shop",
            "/repo/charts/shop",
            "-f",
            "/repo/values.yaml",
            "--namespace",
            "shop",
            "--skip-tests",
            "--include-crds",
            "--kube-version",
            "1.36.0",
            "--api-versions=apps/v1",
            "--dry-run=server",
            "--set",
            "a=b",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            strings(&install_args(&template, Some("prod"))),
            [
                "install",
                "shop",
                "/repo/charts/shop",
                "-f",
                "/repo/values.yaml",
                "--namespace",
                "shop",
                "--set",
                "a=b",
                "--dry-run=client",
                "--take-ownership",
                "--output",
                "json",
                "--kube-context",
                "prod"
            ]
        );
        let with_context: Vec<OsString> = ["template", "shop", "c", "--kube-context", "x"]
            .into_iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            strings(&install_args(&with_context, Some("prod")))
                .last()
                .unwrap(),
            "json"
        );
    }
}
