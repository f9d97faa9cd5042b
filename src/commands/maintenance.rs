//! `berth maintenance ENV on|off|status`: serve a maintenance page instead of
//! the app, and back. `on` and `off` hold the deploy lock, so they never race
//! a deploy; see [`crate::maintenance`] for how they stay crash-safe.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use serde::Serialize;

use crate::cli::{GlobalArgs, MaintenanceAction, MaintenanceArgs};
use crate::cluster::client;
use crate::cluster::lock::DeployLock;
use crate::confirm::{Question, confirm};
use crate::error::{BerthError, Outcome, exit_code_number, input_error, kind_of};
use crate::interrupt::{Interrupts, unless_interrupted};
use crate::maintenance::{Scope, Selector, Status};
use crate::output::{Mode, Output};
use crate::stdout;

/// The final report (`--output json`): what was asked, how it ended, and
/// where maintenance stands.
#[derive(Debug, Serialize)]
struct Report {
    environment: String,
    /// `on`, `off` or `status`.
    action: &'static str,
    /// How the command ended.
    status: Outcome,
    /// Where maintenance stands afterwards, when it was read.
    #[serde(flatten)]
    maintenance: Option<Status>,
    /// The error, when the command failed.
    error: Option<String>,
    duration_s: f64,
    exit_code: u8,
}

/// Turn maintenance on or off, or say where it stands; always ends with the report.
pub async fn run(
    global: &GlobalArgs,
    args: &MaintenanceArgs,
    out: Arc<Output>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut maintenance = None;
    let result = execute(global, args, &out, &mut maintenance).await;
    let report = Report {
        environment: args.env.clone(),
        action: match args.action {
            MaintenanceAction::On => "on",
            MaintenanceAction::Off => "off",
            MaintenanceAction::Status => "status",
        },
        status: Outcome::of_result(&result),
        maintenance,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
        duration_s: started.elapsed().as_secs_f64(),
        exit_code: result.as_ref().map_or_else(exit_code_number, |()| 0),
    };
    out.json_report(&report);
    result
}

/// What `maintenance ENV on` asks in a protected environment: the
/// Services that will serve the page instead of the app.
fn question(
    env: &str,
    namespace: &str,
    targets: &[k8s_openapi::api::core::v1::Service],
) -> Question {
    let services: Vec<String> = targets
        .iter()
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .collect();
    Question {
        action: format!("turn maintenance on in {env}"),
        why: format!("{env} is protected: its users would see the maintenance page, not the app"),
        facts: vec![
            format!("environment: {env} (namespace {namespace})"),
            format!(
                "services:    {} → the maintenance page",
                services.join(", ")
            ),
        ],
    }
}

/// `--title` and `--message` go with `on`, and say something.
fn check_page_args(args: &MaintenanceArgs) -> anyhow::Result<()> {
    let given = [("--title", &args.title), ("--message", &args.message)];
    for (flag, value) in given {
        match value {
            Some(_) if args.action != MaintenanceAction::On => {
                return Err(input_error(format!(
                    "{flag} sets the page of `{} maintenance {} on`; drop it here",
                    crate::program::name(),
                    args.env
                )));
            }
            Some(text) if text.trim().is_empty() => {
                return Err(input_error(format!(
                    "{flag} is empty; write the text, or leave the flag out to keep the page's \
                     (or berth.yaml's `maintenance:`)"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

async fn execute(
    global: &GlobalArgs,
    args: &MaintenanceArgs,
    out: &Output,
    maintenance: &mut Option<Status>,
) -> anyhow::Result<()> {
    check_page_args(args)?;
    let config = crate::commands::load_config(global, &[&args.env], out)?;
    let env = config.environment(&args.env)?;
    let client = client::connect(env.context.as_deref()).await?;
    let scope = Scope::new(client.clone(), &config.app, &args.env, env);
    if args.action == MaintenanceAction::Status {
        let status = scope.status().await?;
        if out.mode() != Mode::Json {
            print_status(&args.env, &status, Timestamp::now())?;
        }
        *maintenance = Some(status);
        return Ok(());
    }
    let on = args.action == MaintenanceAction::On;
    let ns = &env.namespace;
    let mut interrupts = Interrupts::listen()?;
    out.step("validate");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Ok(None) = namespaces.get_opt(ns).await {
        if on {
            return Err(input_error(format!(
                "namespace {ns} does not exist: there is no app to put in maintenance; deploy it first"
            )));
        }
        out.info(&format!(
            "namespace {ns} does not exist: maintenance is off"
        ));
        *maintenance = Some(scope.status().await?);
        return Ok(());
    }
    scope.check_access().await?;
    if on {
        // Bad input exits 2 before the lock is taken or anything changes.
        let targets = unless_interrupted(&mut interrupts, scope.targets(&[], out)).await?;
        if env.protected {
            let question = question(&args.env, ns, &targets);
            confirm(&question, args.confirm.yes).await?;
        }
    }
    let action = if on { "on" } else { "off" };
    let purpose = format!("maintenance {action}");
    let lock = unless_interrupted(
        &mut interrupts,
        DeployLock::take(&client, ns, &purpose, args.lock_wait, out),
    )
    .await?;
    out.step(&format!("maintenance {action}"));
    let switching = async {
        if on {
            scope
                .on(args.title.as_deref(), args.message.as_deref(), &[], out)
                .await
                .map(drop)
        } else {
            scope.off(out).await.map(drop)
        }
    };
    let result = lock
        .hold(out, |lost| {
            lost.unless_lost(unless_interrupted(&mut interrupts, switching))
        })
        .await;
    if matches!(kind_of_result(&result), Some(BerthError::Interrupted)) {
        out.warn(&format!(
            "interrupted: maintenance may be partly {action}; `{} maintenance {} status` shows \
             where it stands, and running `{action}` again finishes the job",
            crate::program::name(),
            args.env
        ));
    }
    result?;
    let status = scope.status().await?;
    out.info(&format!("{}: maintenance {}", args.env, status.summary()));
    *maintenance = Some(status);
    Ok(())
}

fn kind_of_result(result: &anyhow::Result<()>) -> Option<&BerthError> {
    result.as_ref().err().and_then(kind_of)
}

/// `key=value,...`.
fn pairs(selector: &Selector) -> String {
    let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// How long ago `since` was, like `5m` or `2h 5m`; `None` if unreadable.
fn ago(since: &str, now: Timestamp) -> Option<String> {
    let since: Timestamp = since.parse().ok()?;
    let seconds = now.duration_since(since).as_secs().max(0);
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    Some(match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    })
}

/// `maintenance ENV status` for people.
fn print_status(env: &str, status: &Status, now: Timestamp) -> anyhow::Result<()> {
    let notice = &status.notice;
    let state = match status.state {
        "on" => "on",
        "partial" => "partly on",
        _ => "off",
    };
    let mut line = format!("{env}: maintenance {state}");
    if status.state != "off" {
        if let Some(since) = &notice.since {
            line.push_str(&format!(" since {since}"));
            if let Some(ago) = ago(since, now) {
                line.push_str(&format!(" ({ago} ago)"));
            }
        }
        if let Some(by) = &notice.by {
            line.push_str(&format!(" by {by}"));
        }
    }
    stdout::line(line)?;
    if status.state != "off" {
        if let Some(title) = &notice.title {
            stdout::line(format!("  title: {title}"))?;
        }
        let mut lines = notice.message.iter().flat_map(|m| m.lines());
        if let Some(first) = lines.next() {
            stdout::line(format!("  message: {first}"))?;
            for line in lines {
                stdout::line(format!("           {line}").trim_end())?;
            }
        }
    }
    match status.server {
        Some(server) => stdout::line(format!(
            "  server: {}/{} ready",
            server.ready, server.desired
        ))?,
        None if status.state != "off" => stdout::line(
            "  server: missing; the switched Services answer nothing until `on` or `off` runs again",
        )?,
        None => {}
    }
    for service in &status.services {
        let what = match (&service.original_selector, &service.problem) {
            (Some(original), _) => format!(
                "maintenance page (restores selector {} on `off`)",
                pairs(original)
            ),
            (None, Some(problem)) => format!("maintenance page, but {problem}"),
            (None, None) => format!("serving its pods (selector {})", pairs(&service.selector)),
        };
        stdout::line(format!("  Service/{}: {what}", service.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> MaintenanceArgs {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Maintenance(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn title_and_message_go_with_on_and_say_something() {
        let on = parse(&[
            "berth",
            "maintenance",
            "staging",
            "on",
            "--title",
            "Upgrade",
        ]);
        assert!(check_page_args(&on).is_ok());
        let off = parse(&["berth", "maintenance", "staging", "off", "--message", "x"]);
        let error = format!("{:#}", check_page_args(&off).unwrap_err());
        assert!(
            error.contains("--message") && error.contains("on`"),
            "{error}"
        );
        let empty = parse(&["berth", "maintenance", "staging", "on", "--title", " "]);
        assert_eq!(exit_code_number(&check_page_args(&empty).unwrap_err()), 2);
    }

    #[test]
    fn ages_read_in_the_largest_units() {
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        assert_eq!(ago("2026-11-22T11:59:15Z", now).as_deref(), Some("45s"));
        assert_eq!(ago("2026-11-22T11:48:00Z", now).as_deref(), Some("12m"));
        assert_eq!(ago("2026-11-22T09:55:00Z", now).as_deref(), Some("2h 5m"));
        assert_eq!(ago("2026-11-20T09:00:00Z", now).as_deref(), Some("2d 3h"));
        assert_eq!(ago("yesterday", now), None);
    }
}
