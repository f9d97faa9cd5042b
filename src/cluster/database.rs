//! The environment's database, reached through the Kubernetes API: a
//! port-forward to a Ready pod of the configured workload, with PostgreSQL's
//! protocol spoken over that stream, and credentials from a Secret. The
//! database port is never exposed.

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::cluster::pods;
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
    let pod = pods::ready_pod(client, ns, &database.workload, "`database.workload`")
        .await?
        .name_any();
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
