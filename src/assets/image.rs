//! The `image` asset source: files at a path inside an OCI image, read
//! straight from the registry.
//!
//! No Docker daemon: the manifest (the linux/amd64 one of an index) and each
//! layer come from the registry over HTTP, and each layer streams through
//! gzip and tar into the target directory, its digest checked as it goes, so
//! memory stays bounded whatever the layer size.
//!
//! Credentials: `BERTH_REGISTRY_USERNAME` and `BERTH_REGISTRY_PASSWORD`, else
//! the docker config (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, credential helpers included), else anonymous.
//! Loopback registries speak plain HTTP, as with Docker, and so do those in
//! `BERTH_INSECURE_REGISTRIES` (comma-separated `host:port` or `host`).

mod layers;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::client::{ClientConfig, ClientProtocol, linux_amd64_resolver};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio_util::io::{StreamReader, SyncIoBridge};
use tracing::debug;

use crate::error::input_error;

/// A registry that does not answer within this long is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A registry that goes silent this long mid-response has failed.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Docker Hub's name in docker configs and credential helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// What was extracted from an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The image as asked for, `repository:tag`.
    pub reference: String,
    /// The digest of the image's (linux/amd64) manifest, `sha256:...`.
    pub digest: String,
    /// Regular files extracted.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Copy the regular files under `path` (absolute path inside the image, e.g.
/// "/app/static") of image `repository:tag` into the existing empty
/// directory `into`, keeping their relative paths below `path`.
pub async fn extract(repository: &str, tag: &str, path: &str, into: &Path) -> Result<Extracted> {
    let shown = format!("{repository}:{tag}");
    let reference: Reference = shown.parse().map_err(|e| {
        input_error(format!(
            "image {shown} is not a valid image reference ({e}); \
             check `assets.from.image` in berth.yaml and the SHA"
        ))
    })?;
    let prefix = layers::image_path(path).ok_or_else(|| {
        input_error(format!(
            "the asset path {path:?} is not an absolute path inside the image; \
             set `assets.from.path` in berth.yaml to one like /app/static"
        ))
    })?;
    ensure_empty_dir(into)?;

    let registry = reference.resolve_registry().to_string();
    let credentials = {
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || credentials(&registry))
            .await
            .context("reading registry credentials")??
    };
    let image = Image {
        shown,
        registry,
        credentials: credentials.source,
    };
    let client = client(&image.registry)?;
    client
        .auth(&reference, &credentials.auth, RegistryOperation::Pull)
        .await
        .map_err(|e| image.error(e))?;
    let (manifest, digest) = client
        .pull_image_manifest(&reference, &credentials.auth)
        .await
        .map_err(|e| image.error(e))?;

    let mut tree = layers::Tree::new(into.to_path_buf(), prefix);
    for layer in &manifest.layers {
        let stream = client
            .pull_blob_stream(&reference, layer)
            .await
            .map_err(|e| image.error(e))?;
        let reader = SyncIoBridge::new(StreamReader::new(stream));
        tree = tokio::task::spawn_blocking(move || tree.apply_layer(reader).map(|()| tree))
            .await
            .context("applying an image layer")?
            .with_context(|| format!("reading layer {} of image {}", layer.digest, image.shown))?;
    }
    let (tree, totals) = tokio::task::spawn_blocking(move || {
        let totals = tree.finish();
        (tree, totals)
    })
    .await
    .context("finishing the extraction")?;
    let totals = totals.with_context(|| format!("extracting {path} of image {}", image.shown))?;
    if totals.files == 0 {
        let found = tree
            .hint()
            .map(|hint| format!(" (the image has {hint})"))
            .unwrap_or_default();
        return Err(input_error(format!(
            "image {} has no files under {path}; check `assets.from.path` in berth.yaml{found}",
            image.shown
        )));
    }
    Ok(Extracted {
        reference: image.shown,
        digest,
        files: totals.files,
        bytes: totals.bytes,
    })
}

fn ensure_empty_dir(dir: &Path) -> Result<()> {
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("opening directory {}", dir.display()))?;
    anyhow::ensure!(
        entries.next().is_none(),
        "{} is not empty; image assets are extracted into an empty directory",
        dir.display()
    );
    Ok(())
}

/// The image being read, named in every error.
struct Image {
    shown: String,
    registry: String,
    /// Where the credentials came from (never the secret itself).
    credentials: String,
}

impl Image {
    /// A registry error as the input error it means, naming the fix.
    fn error(&self, error: OciDistributionError) -> anyhow::Error {
        let Image {
            shown,
            registry,
            credentials,
        } = self;
        let codes = match &error {
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().map(|e| &e.code).collect()
            }
            _ => Vec::new(),
        };
        let denied = codes
            .iter()
            .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied));
        let unknown = codes.iter().any(|c| {
            matches!(
                c,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        });
        match &error {
            OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
                input_error(format!(
                    "cannot reach registry {registry} for image {shown} ({}); check the registry \
                     host and port in `assets.from.image` and that it is up and reachable from \
                     here (a registry serving plain HTTP must be listed in BERTH_INSECURE_REGISTRIES)",
                    root_cause(e)
                ))
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => self.refused(),
            OciDistributionError::RegistryError { .. } if denied => self.refused(),
            OciDistributionError::ServerError { code: 404, .. } => self.missing(),
            OciDistributionError::RegistryError { .. } if unknown => self.missing(),
            OciDistributionError::ImageManifestNotFoundError(_) => input_error(format!(
                "image {shown} has no linux/amd64 image in its manifest list; \
                 build and push the image for linux/amd64"
            )),
            _ => anyhow::Error::new(error).context(format!(
                "reading image {shown} from registry {registry} (credentials: {credentials})"
            )),
        }
    }

    fn refused(&self) -> anyhow::Error {
        let Image {
            shown,
            registry,
            credentials,
        } = self;
        input_error(format!(
            "registry {registry} refused access to image {shown} (credentials: {credentials}); \
             set BERTH_REGISTRY_USERNAME and BERTH_REGISTRY_PASSWORD, or run `docker login {registry}`, \
             with an account that may pull it"
        ))
    }

    fn missing(&self) -> anyhow::Error {
        let Image {
            shown, registry, ..
        } = self;
        input_error(format!(
            "image {shown} does not exist in the registry {registry}; check that CI built and \
             pushed it (its tag is the commit SHA) and that `assets.from.image` in berth.yaml \
             names the right repository"
        ))
    }
}

/// The innermost cause of an error, such as "Connection refused (os error 111)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A registry client for `registry`: plain HTTP or HTTPS, timeouts, and the
/// linux/amd64 image of a manifest list.
fn client(registry: &str) -> Result<Client> {
    let insecure = std::env::var("BERTH_INSECURE_REGISTRIES").unwrap_or_default();
    let protocol = if plain_http(registry, &insecure) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..ClientConfig::default()
    };
    Client::try_from(config).context("setting up the registry client")
}

/// Whether to speak plain HTTP to `registry` (`host[:port]`): loopback
/// hosts, like Docker, and entries of the comma-separated `insecure` list
/// naming the registry or its host.
fn plain_http(registry: &str, insecure: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback
        || insecure
            .split(',')
            .map(str::trim)
            .any(|entry| !entry.is_empty() && (entry == registry || entry == host))
}

/// Registry credentials and a description of where they came from.
struct Credentials {
    auth: RegistryAuth,
    /// For error messages; never contains the secret.
    source: String,
}

/// Credentials for `registry`: the environment, else the docker config,
/// else anonymous.
fn credentials(registry: &str) -> Result<Credentials> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (
        var("BERTH_REGISTRY_USERNAME"),
        var("BERTH_REGISTRY_PASSWORD"),
    ) {
        (Some(username), Some(password)) => Ok(Credentials {
            auth: RegistryAuth::Basic(username.clone(), password),
            source: format!("user {username} from BERTH_REGISTRY_USERNAME"),
        }),
        (None, None) => Ok(docker_config_credentials(registry)),
        _ => Err(input_error(
            "only one of BERTH_REGISTRY_USERNAME and BERTH_REGISTRY_PASSWORD is set; \
             set both, or neither to use the docker config (`docker login`)",
        )),
    }
}

fn docker_config_credentials(registry: &str) -> Credentials {
    let server = if registry == "index.docker.io" {
        DOCKER_HUB_SERVER
    } else {
        registry
    };
    let config = docker_config_path();
    let anonymous = |why: String| Credentials {
        auth: RegistryAuth::Anonymous,
        source: format!("anonymous, {why}"),
    };
    match docker_credential::get_credential(server) {
        Ok(DockerCredential::UsernamePassword(username, password)) => Credentials {
            source: format!("user {username} from {config}"),
            auth: RegistryAuth::Basic(username, password),
        },
        Ok(DockerCredential::IdentityToken(_)) => anonymous(format!(
            "as {config} has only an identity token for {registry}, which berth cannot use"
        )),
        Err(CredentialRetrievalError::HelperFailure { helper, .. }) => anonymous(format!(
            "as docker-credential-{helper} has no credentials for {registry}"
        )),
        Err(e) => {
            debug!(registry, error = %e, "no docker config credentials");
            anonymous(format!(
                "as BERTH_REGISTRY_USERNAME is not set and {config} has no credentials for {registry}"
            ))
        }
    }
}

/// The docker config file docker_credential reads, for messages.
fn docker_config_path() -> String {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")));
    dir.map_or_else(
        || "the docker config".to_string(),
        |dir| dir.join("config.json").display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_speak_plain_http_like_docker() {
        for registry in [
            "127.0.0.1:25000",
            "127.0.0.2:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(plain_http(registry, ""), "{registry}");
        }
        for registry in [
            "registry.example.com",
            "10.0.0.5:5000",
            "localhost.example.com:5000",
        ] {
            assert!(!plain_http(registry, ""), "{registry}");
        }
    }

    #[test]
    fn insecure_registries_are_listed_by_host_port_or_host() {
        let list = " registry.lan:5000 , ,10.0.0.5";
        assert!(plain_http("registry.lan:5000", list));
        assert!(!plain_http("registry.lan:5001", list));
        assert!(plain_http("10.0.0.5:5000", list));
        assert!(plain_http("10.0.0.5", list));
        assert!(!plain_http("registry.example.com", list));
    }

    #[test]
    fn a_root_cause_is_the_innermost_error() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = anyhow::Error::new(inner).context("sending");
        let outer: &(dyn std::error::Error + 'static) = outer.as_ref();
        assert_eq!(root_cause(outer), "refused");
    }
}
