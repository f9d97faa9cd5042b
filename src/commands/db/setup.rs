//! What every operator-side `db` command needs first: the environment's
//! `backups:` block and its bucket, reached with the credentials Secret.
//! Each problem is an input error (exit 2) that names the fix.

use crate::backup::store::BackupStore;
use crate::cluster::client;
use crate::config::{Backups, Config, Environment};
use crate::error::input_error;

/// An environment whose backups berth reaches.
pub struct Configured<'a> {
    /// The environment.
    pub env: &'a Environment,
    /// Its `backups:` block.
    pub backups: &'a Backups,
    /// The Kubernetes client of its context.
    pub client: kube::Client,
    /// Its bucket, checked to exist and let the credentials in.
    pub store: BackupStore,
}

/// The environment `env_name` and its `backups:` block, or an input error
/// saying how to add one.
pub fn backups_of<'a>(
    config: &'a Config,
    env_name: &str,
) -> anyhow::Result<(&'a Environment, &'a Backups)> {
    let env = config.environment(env_name)?;
    let backups = env.backups.as_ref().ok_or_else(|| {
        input_error(format!(
            "environment {env_name} has no `backups:` in berth.yaml; add one, e.g. \
             `backups: {{ bucket: backups-{env_name}, credentials_secret: backup-s3 }}` \
             (backups also need `database.secret`), see docs/database.md"
        ))
    })?;
    Ok((env, backups))
}

/// Connect to environment `env_name`'s cluster and bucket, checking,
/// changing nothing, that the credentials Secret and the bucket exist.
pub async fn connect<'a>(config: &'a Config, env_name: &str) -> anyhow::Result<Configured<'a>> {
    let (env, backups) = backups_of(config, env_name)?;
    let client = client::connect(env.context.as_deref()).await?;
    let store = BackupStore::connect(&client, env, backups).await?;
    store.store.check().await?;
    Ok(Configured {
        env,
        backups,
        client,
        store,
    })
}
