//! The environment's database, reached through the Kubernetes API: a
//! port-forward to a Ready pod of the configured workload, with PostgreSQL's
//! protocol spoken over that stream, and credentials from a Secret. The
//! database port is never exposed.

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::config::{Database, Environment};
use crate::error::input_error;

/// A PostgreSQL session through a port-forward; the tunnel and the
/// connection are driven in the background until it is dropped.
pub struct Session {
    /// The client.
    pub client: tokio_postgres::Client,
    /// The pod the tunnel goes through, for messages.
    pub pod: String,
    driver: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The environment's `database:` block, or an input error that shows how to
/// declare it.
pub fn configured<'a>(env: &'a Environment, env_name: &str) -> anyhow::Result<&'a Database> {
    env.database.as_ref().ok_or_else(|| {
        input_error(format!(
            "environment {env_name} has no `database:` block, so berth does not know how to \
             reach its database; add one under environments.{env_name}, e.g. \
             `database: {{ workload: frontend, secret: db-credentials }}` (a Deployment whose \
             pods can reach PostgreSQL, and a Secret with PGUSER, PGPASSWORD, PGDATABASE)"
        ))
    })
}

/// Connect to the database of `env` through a Ready pod of its workload.
pub async fn connect(
    client: &Client,
    env: &Environment,
    env_name: &str,
) -> anyhow::Result<Session> {
    let database = configured(env, env_name)?;
    let ns = &env.namespace;
    let credentials = credentials(client, ns, database).await?;
    let pod = ready_pod(client, ns, &database.workload).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut forwarder = pods
        .portforward(&pod, &[database.port])
        .await
        .with_context(|| format!("port-forwarding to pod {pod} port {}", database.port))?;
    let stream = forwarder
        .take_stream(database.port)
        .context("the port-forward has no stream")?;
    let (session, connection) = credentials
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            input_error(format!(
                "PostgreSQL refused the connection through pod {pod} port {} ({e}); check the \
                 Secret's PGUSER, PGPASSWORD and PGDATABASE, and `database.port` in berth.yaml",
                database.port
            ))
        })?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("database connection ended: {e}");
        }
        let _ = forwarder.join().await;
    });
    Ok(Session {
        client: session,
        pod,
        driver,
    })
}

/// The connection settings from `database.secret`: PGUSER, PGPASSWORD,
/// PGDATABASE (PGHOST and PGPORT do not apply to a tunnel).
async fn credentials(
    client: &Client,
    ns: &str,
    database: &Database,
) -> anyhow::Result<tokio_postgres::Config> {
    let Some(name) = &database.secret else {
        return Err(input_error(
            "`database.secret` is not set; berth needs PGUSER, PGPASSWORD and PGDATABASE from a \
             Secret to connect through a port-forward: create one with `kubectl create secret \
             generic db-credentials --from-literal=PGUSER=... --from-literal=PGPASSWORD=... \
             --from-literal=PGDATABASE=...` and name it in `database.secret`",
        ));
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets
        .get_opt(name)
        .await
        .with_context(|| format!("reading Secret {ns}/{name}"))?
        .ok_or_else(|| {
            input_error(format!(
                "the Secret {name} named by `database.secret` does not exist in namespace {ns}; \
                 create it with PGUSER, PGPASSWORD and PGDATABASE keys"
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (Some(user), Some(dbname)) = (value("PGUSER"), value("PGDATABASE")) else {
        return Err(input_error(format!(
            "Secret {ns}/{name} lacks PGUSER or PGDATABASE; add both keys (and PGPASSWORD)"
        )));
    };
    let mut config = tokio_postgres::Config::new();
    config.user(&user).dbname(&dbname).application_name("berth");
    if let Some(password) = value("PGPASSWORD") {
        config.password(password);
    }
    Ok(config)
}

/// A Ready, running pod of Deployment `name` (not the first listed: any of
/// several replicas may be terminating or unready).
pub async fn ready_pod(client: &Client, ns: &str, name: &str) -> anyhow::Result<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = deployments
        .get_opt(name)
        .await
        .with_context(|| format!("reading Deployment {ns}/{name}"))?
        .ok_or_else(|| {
            input_error(format!(
                "Deployment {name} (`database.workload`) does not exist in namespace {ns}; name \
                 a Deployment whose pods can reach the database"
            ))
        })?;
    let selector = deployment
        .spec
        .and_then(|s| s.selector.match_labels)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("listing the pods of Deployment {name}"))?;
    choose_ready(&listed.items).ok_or_else(|| {
        input_error(format!(
            "Deployment {name} has no Ready pod in namespace {ns} ({} pods); wait for it to \
             become healthy (`berth status`), then run this again",
            listed.items.len()
        ))
    })
}

/// The first pod that runs, is Ready and is not being deleted.
fn choose_ready(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .find(|pod| {
            let status = pod.status.as_ref();
            pod.metadata.deletion_timestamp.is_none()
                && status.and_then(|s| s.phase.as_deref()) == Some("Running")
                && status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|pod| pod.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ready: bool, deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "deletionTimestamp": deleting.then_some("2026-11-22T00:00:00Z"),
            },
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_ready_running_pod_is_chosen_not_the_first_listed() {
        let pods = [
            pod("starting", "Pending", false, false),
            pod("unready", "Running", false, false),
            pod("leaving", "Running", true, true),
            pod("good", "Running", true, false),
        ];
        assert_eq!(choose_ready(&pods).as_deref(), Some("good"));
        assert_eq!(choose_ready(&pods[..3]), None);
    }
}
