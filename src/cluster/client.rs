//! Connecting to an environment's cluster, with errors that say what to fix.

use std::time::Duration;

use anyhow::Context;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::input_error;

/// How long to wait for the API server before calling it unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for `context` (or the current context), checked to be reachable.
pub async fn connect(context: Option<&str>) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read().map_err(|e| {
        input_error(format!(
            "cannot read the kubeconfig: {e}; set KUBECONFIG to a kubeconfig file or run your cloud's get-credentials command"
        ))
    })?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            let which = context.map_or("the current context".to_string(), |c| format!("context '{c}'"));
            input_error(format!(
                "cannot use {which} from the kubeconfig: {e}; check `kubectl config get-contexts` and the environment's `context:` in berth.yaml"
            ))
        })?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).context("building the Kubernetes client")?;
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(input_error(format!(
            "the cluster at {url} does not answer: {e}; check the network (VPN?) and the credentials of the context"
        ))),
        Err(_) => Err(input_error(format!(
            "the cluster at {url} did not answer within {}s; check the network (VPN?) and the context",
            REACH_TIMEOUT.as_secs()
        ))),
    }
}
