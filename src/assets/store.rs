//! The S3 store of an environment's `assets:`.

use crate::config::{Assets, Environment};
use crate::s3::{self, Settings, Store};

/// Where berth.yaml sets the asset store up.
const SETTINGS: Settings = Settings {
    block: "assets",
    bucket_key: "assets.bucket",
};

/// The store of an environment's `assets:`, with credentials from its
/// `credentials_secret` (read through `kube`, or a new connection) or the standard chain.
pub async fn for_environment(
    env: &Environment,
    assets: &Assets,
    kube: Option<&kube::Client>,
) -> anyhow::Result<Store> {
    let credentials = match &assets.credentials_secret {
        Some(secret) => {
            let client = match kube {
                Some(client) => client.clone(),
                None => crate::cluster::client::connect(env.context.as_deref()).await?,
            };
            Some(
                s3::secret_credentials(
                    &client,
                    &env.namespace,
                    secret,
                    "assets.credentials_secret",
                )
                .await?,
            )
        }
        None => None,
    };
    Store::connect(
        SETTINGS,
        assets.endpoint.as_deref(),
        assets.region.as_deref(),
        &assets.bucket,
        credentials,
    )
    .await
}
