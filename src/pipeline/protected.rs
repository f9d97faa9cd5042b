//! A deploy to a protected environment (`protected:` in berth.yaml, by
//! default `production`) of a SHA that no other environment ran
//! successfully asks first ([`crate::confirm`]); the other environments'
//! release records tell.

use std::time::Duration;

use kube::Client;

use crate::cluster::client;
use crate::cluster::release::{self, Release, ReleaseStatus};
use crate::config::short_sha as short;
use crate::confirm::{self, Question};
use crate::error::brief;

use super::Plan;

/// What another environment's release records say of a SHA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elsewhere {
    /// A release of it succeeded there.
    Ran,
    /// It was deployed there, never successfully: the statuses, newest first.
    Tried(Vec<&'static str>),
    /// It was never deployed there (as far as the records kept tell).
    Never,
    /// The records could not be read: why.
    Unreadable(String),
}

impl Elsewhere {
    /// What the records of `releases` say of `sha`.
    pub fn of(releases: &[Release], sha: &str) -> Elsewhere {
        let of_sha: Vec<&Release> = releases.iter().filter(|r| r.sha == sha).collect();
        if of_sha.iter().any(|r| r.status == ReleaseStatus::Succeeded) {
            Elsewhere::Ran
        } else if of_sha.is_empty() {
            Elsewhere::Never
        } else {
            Elsewhere::Tried(of_sha.iter().map(|r| r.status.as_str()).collect())
        }
    }

    fn describe(&self, env: &str) -> String {
        match self {
            Elsewhere::Ran => format!("{env} ran it"),
            Elsewhere::Tried(statuses) => format!("{env} tried it ({})", statuses.join(", ")),
            Elsewhere::Never => format!("{env} never deployed it"),
            Elsewhere::Unreadable(why) => format!("{env} could not be read ({why})"),
        }
    }
}

/// Ask before deploying `plan` when its environment is protected and no
/// other environment ran its SHA successfully; `yes` (`--yes`) answers.
pub async fn confirm(client: &Client, plan: &Plan, yes: bool) -> anyhow::Result<()> {
    if yes || !plan.env.protected {
        return Ok(());
    }
    let others = others(plan).await;
    if others.iter().any(|(_, seen)| *seen == Elsewhere::Ran) {
        return Ok(());
    }
    let current = match release::list(client, &plan.env.namespace).await {
        Ok(releases) => releases
            .into_iter()
            .find(|r| r.status == ReleaseStatus::Succeeded),
        Err(error) => {
            tracing::debug!("reading {}'s releases: {error:#}", plan.env_name);
            None
        }
    };
    let age = commit_age(plan).await;
    let question = question(plan, current.as_ref(), age, &others);
    confirm::confirm(&question, false).await
}

/// Every other environment of berth.yaml, with what its records say of the
/// plan's SHA, read concurrently.
async fn others(plan: &Plan) -> Vec<(String, Elsewhere)> {
    let reads = plan
        .config
        .environments
        .iter()
        .filter(|(name, _)| **name != plan.env_name)
        .map(|(name, env)| async move {
            let read = async {
                let client = client::connect(env.context.as_deref()).await?;
                release::list(&client, &env.namespace).await
            };
            let seen = match read.await {
                Ok(releases) => Elsewhere::of(&releases, &plan.sha),
                Err(error) => Elsewhere::Unreadable(brief(&error)),
            };
            (name.clone(), seen)
        });
    futures::future::join_all(reads).await
}

/// The question about deploying `plan` over `current` (the environment's
/// last successful release), its commit `age` old if known.
fn question(
    plan: &Plan,
    current: Option<&Release>,
    age: Option<Duration>,
    others: &[(String, Elsewhere)],
) -> Question {
    let env = &plan.env_name;
    let to = short(&plan.sha);
    let from = match current {
        Some(release) => format!(
            "{} (release {}{})",
            short(&release.sha),
            release.number,
            release
                .finished_at
                .as_deref()
                .and_then(confirm::age_since)
                .map(|age| format!(", deployed {age} ago"))
                .unwrap_or_default()
        ),
        None => "nothing deployed yet".to_string(),
    };
    let to_age = age.map_or_else(
        || "commit age unknown".to_string(),
        |age| format!("commit {} old", crate::duration::display(age)),
    );
    let elsewhere = if others.is_empty() {
        "no other environment in berth.yaml".to_string()
    } else {
        others
            .iter()
            .map(|(name, seen)| seen.describe(name))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Question {
        action: format!("deploy {to} to {env}"),
        why: format!("{env} is protected and no other environment ran {to} successfully"),
        facts: vec![
            format!("environment: {env} (namespace {})", plan.env.namespace),
            format!("deploy:      {from} → {to} ({to_age})"),
            format!("elsewhere:   {elsewhere}"),
        ],
    }
}

/// How old the SHA's commit is, when berth.yaml's directory is in a git
/// repository that has it.
async fn commit_age(plan: &Plan) -> Option<Duration> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(&plan.config.dir)
        .args(["log", "-1", "--format=%ct", &plan.sha, "--"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let committed: i64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|_| output.status.success())?;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    Some(Duration::from_secs((now - committed).max(0).unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::release::example;

    use ReleaseStatus::{Failed, Succeeded, TimedOut};

    #[test]
    fn only_a_successful_release_of_the_sha_counts_as_run() {
        let history = [
            example(3, "bbbbbbb", Failed),
            example(2, "bbbbbbb", TimedOut),
            example(1, "aaaaaaa", Succeeded),
        ];
        assert_eq!(Elsewhere::of(&history, "aaaaaaa"), Elsewhere::Ran);
        assert_eq!(
            Elsewhere::of(&history, "bbbbbbb"),
            Elsewhere::Tried(vec!["failed", "timed_out"])
        );
        assert_eq!(Elsewhere::of(&history, "ccccccc"), Elsewhere::Never);
        assert_eq!(Elsewhere::of(&[], "aaaaaaa"), Elsewhere::Never);
    }
}
