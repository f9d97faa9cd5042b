//! What a deploy was asked to do, resolved once by the command from its
//! flags; the pipeline reads this, never the command line.

use std::path::PathBuf;
use std::time::Duration;

/// A deploy's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySettings {
    /// The berth.yaml to load.
    pub config_path: PathBuf,
    /// The environment, as named in berth.yaml.
    pub env_name: String,
    /// The git SHA, as given (the plan checks and lowercases it).
    pub sha: String,
    /// How long to wait for the rollout; `None`: the environment's `rollout.timeout`.
    pub timeout: Option<Duration>,
    /// How long to wait for a held deploy lock; `None`: exit 3 at once.
    pub lock_wait: Option<Duration>,
    /// Delete objects berth manages that are no longer rendered.
    pub prune: bool,
    /// Re-apply the previous successful release if the rollout fails.
    pub rollback_on_failure: bool,
    /// Serve the maintenance page from before the migration until the rollout ends.
    pub maintenance: bool,
    /// Stop after planning; change nothing.
    pub dry_run: bool,
    /// Skip the backup before the migration (`--no-backup`, for emergencies).
    pub no_backup: bool,
    /// `--upgrade-crds`: the CRDs of a chart's `crds/` that exist are
    /// applied too (by default they are only created when absent, as helm does).
    pub upgrade_crds: bool,
    /// `--adopt`: objects a helm release manages are taken over, and the
    /// release record says so ([`crate::pipeline::adopt`]).
    pub adopt: bool,
    /// `--yes`: a protected environment does not ask before a SHA no other
    /// environment ran successfully ([`crate::pipeline::protected`]).
    pub yes: bool,
}

impl DeploySettings {
    /// A plain deploy of `sha` to `env_name`, as the promotion and rollback
    /// commands run one: no overrides, dry run, rollback, prune or maintenance.
    pub fn new(config_path: impl Into<PathBuf>, env_name: &str, sha: &str) -> DeploySettings {
        DeploySettings {
            config_path: config_path.into(),
            env_name: env_name.to_string(),
            sha: sha.to_string(),
            timeout: None,
            lock_wait: None,
            prune: false,
            rollback_on_failure: false,
            maintenance: false,
            dry_run: false,
            no_backup: false,
            upgrade_crds: false,
            adopt: false,
            yes: false,
        }
    }
}
