//! Who is deploying, and from where: recorded in the lock and the release.

use serde::{Deserialize, Serialize};

/// The person or CI run behind a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployer {
    /// Login name, or `github-actions` in CI.
    pub user: String,
    /// Host name of the machine running berth.
    pub host: String,
    /// The CI run's URL, when running under GitHub Actions.
    pub ci_run_url: Option<String>,
}

impl Deployer {
    /// The deployer of this process, from the environment.
    pub fn current() -> Deployer {
        Deployer::from_env(|name| std::env::var(name).ok())
    }

    /// The deployer described by environment variables `var` returns.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Deployer {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let ci_run_url = match (
            var("GITHUB_SERVER_URL"),
            var("GITHUB_REPOSITORY"),
            var("GITHUB_RUN_ID"),
        ) {
            (Some(server), Some(repo), Some(run))
                if var("GITHUB_ACTIONS").as_deref() == Some("true") =>
            {
                Some(format!("{server}/{repo}/actions/runs/{run}"))
            }
            _ => None,
        };
        let user = var("GITHUB_ACTOR")
            .filter(|_| ci_run_url.is_some())
            .or_else(|| var("USER"))
            .or_else(|| var("LOGNAME"))
            .unwrap_or_else(whoami::username);
        Deployer {
            user,
            host,
            ci_run_url,
        }
    }

    /// One line naming the deployer: the CI run URL, or `user@host`.
    pub fn describe(&self) -> String {
        match &self.ci_run_url {
            Some(url) => format!("{} ({url})", self.user),
            None => format!("{}@{}", self.user, self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Deployer {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Deployer::from_env(|name| vars.get(name).cloned())
    }

    #[test]
    fn a_person_is_user_at_host() {
        let who = from(&[("USER", "ada")]);
        assert_eq!(who.ci_run_url, None);
        assert!(who.describe().starts_with("ada@"));
    }

    #[test]
    fn a_github_actions_run_is_named_by_its_url() {
        let who = from(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/app"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_ACTOR", "deploy-bot"),
            ("USER", "runner"),
        ]);
        assert_eq!(
            who.describe(),
            "deploy-bot (https://github.com/acme/app/actions/runs/42)"
        );
    }
}
