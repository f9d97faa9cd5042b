//! `berth version` and `berth --version`: the build (version, commit, its
//! date, target, linkage), then the Kubernetes server's version, asked of the
//! current kubeconfig context within [`SERVER_WAIT`]. An unreachable server
//! is said, never an error.

use std::time::Duration;

use serde::Serialize;

use crate::cluster::client;
use crate::error::brief;
use crate::output::{Mode, Output};
use crate::stdout;
use crate::version;

/// The longest `berth version` waits for the server's answer.
pub const SERVER_WAIT: Duration = Duration::from_secs(3);

/// What the server said, or why it said nothing.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Server {
    /// Its version, e.g. `v1.36.3`.
    Version(String),
    /// Why there is none: no kubeconfig, no answer in time, refused.
    Unreachable(String),
}

/// The report: berth's build and the server's version.
#[derive(Debug, Serialize)]
struct VersionReport {
    version: &'static str,
    commit: &'static str,
    commit_date: &'static str,
    target: &'static str,
    linkage: &'static str,
    server: Server,
}

/// Print berth's version and the server's.
pub async fn run(out: &Output) -> anyhow::Result<()> {
    let server = server_version().await;
    let report = VersionReport {
        version: version::VERSION,
        commit: version::COMMIT,
        commit_date: version::COMMIT_DATE,
        target: version::TARGET,
        linkage: version::LINKAGE,
        server,
    };
    if out.mode() != Mode::Json {
        stdout::line(format!("berth {}", version::LONG))?;
        stdout::line(match &report.server {
            Server::Version(version) => format!("server: {version}"),
            Server::Unreachable(why) => format!("server: unreachable ({why})"),
        })?;
    }
    out.json_report(&report);
    Ok(())
}

/// The current context's server version, or why it is unknown.
async fn server_version() -> Server {
    let ask = async {
        let client = client::connect(None).await?;
        anyhow::Ok(client.apiserver_version().await?.git_version)
    };
    match tokio::time::timeout(SERVER_WAIT, ask).await {
        Ok(Ok(version)) => Server::Version(version),
        Ok(Err(error)) => Server::Unreachable(brief(&error)),
        Err(_) => Server::Unreachable(format!("no answer within {}s", SERVER_WAIT.as_secs())),
    }
}
