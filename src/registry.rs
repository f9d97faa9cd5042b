//! Container registries: one authenticated client per image, and what a
//! registry's answer means for the user.
//!
//! Credentials: `BERTH_REGISTRY_USERNAME` and `BERTH_REGISTRY_PASSWORD`, else
//! the docker config (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, credential helpers included), else anonymous.
//! Loopback registries speak plain HTTP, as with Docker, and so do those in
//! `BERTH_INSECURE_REGISTRIES` (comma-separated `host:port` or `host`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use backon::Retryable;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, linux_amd64_resolver,
};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tracing::debug;

use crate::error::{input_error, root_cause};

/// A registry that does not answer within this long is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A registry that goes silent this long mid-response has failed.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Docker Hub's name in docker configs and credential helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// A client authenticated to pull one image.
#[derive(Clone)]
pub struct Session {
    /// The registry client.
    pub client: Client,
    /// The credentials it pulls with.
    pub auth: RegistryAuth,
    /// The image, for error messages.
    pub image: Image,
    /// The parsed reference.
    pub reference: Reference,
}

impl Session {
    /// Authenticate to pull `reference` (written `shown`); `key` is the
    /// berth.yaml key naming its repository, for error messages.
    pub async fn open(reference: Reference, shown: String, key: &'static str) -> Result<Session> {
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
            key,
            credentials: credentials.source,
        };
        let client = client(&image.registry)?;
        image
            .retried("authenticating to", || {
                client.auth(&reference, &credentials.auth, RegistryOperation::Pull)
            })
            .await
            .map_err(|e| image.error(e))?;
        Ok(Session {
            client,
            auth: credentials.auth,
            image,
            reference,
        })
    }
}

/// The manifest digest of `shown` (`repository:tag`), or `None` when the
/// registry does not have it. `key` names the repository's berth.yaml key.
pub async fn digest(shown: &str, key: &'static str) -> Result<Option<String>> {
    let reference: Reference = shown.parse().map_err(|e| {
        input_error(format!(
            "image {shown} is not a valid image reference ({e}); check {key} in berth.yaml"
        ))
    })?;
    let session = Session::open(reference, shown.to_string(), key).await?;
    let found = session
        .image
        .retried("reading the digest of", || {
            session
                .client
                .fetch_manifest_digest(&session.reference, &session.auth)
        })
        .await;
    match found {
        Ok(digest) => Ok(Some(digest)),
        Err(e) if means_missing(&e) => Ok(None),
        Err(e) => Err(session.image.error(e)),
    }
}

/// The registry's error codes, when it sent an error envelope.
fn codes(error: &OciDistributionError) -> Vec<&OciErrorCode> {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().map(|e| &e.code).collect()
        }
        _ => Vec::new(),
    }
}

/// Whether `error` may pass if the request is tried again: the connection
/// refused, reset or timed out, throttling, or a 5xx.
fn transient(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RequestError(e) => !e.is_builder() && !e.is_redirect(),
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Toomanyrequests)),
        _ => false,
    }
}

/// Whether the registry answered that the image (or its repository) does not exist.
fn means_missing(error: &OciDistributionError) -> bool {
    matches!(error, OciDistributionError::ServerError { code: 404, .. })
        || codes(error).iter().any(|c| {
            matches!(
                c,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        })
}

/// The image being read, named in every error.
#[derive(Clone)]
pub struct Image {
    /// The reference as the user knows it, `repository:tag`.
    pub shown: String,
    registry: String,
    /// The berth.yaml key that names the repository, for the fix.
    key: &'static str,
    /// Where the credentials came from (never the secret itself).
    credentials: String,
}

impl Image {
    /// Run `request` (`doing` this image, for messages), tried again with
    /// [`crate::net::backoff`]'s waits while it fails in a way that may pass.
    pub async fn retried<T, F, Fut>(
        &self,
        doing: &str,
        request: F,
    ) -> Result<T, OciDistributionError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        request
            .retry(crate::net::backoff::waits())
            .sleep(tokio::time::sleep)
            .when(transient)
            .notify(|error, wait| {
                tracing::warn!(
                    "registry {} failed while {doing} image {} ({}); trying again in {}",
                    self.registry,
                    self.shown,
                    root_cause(error),
                    crate::duration::display(wait)
                );
            })
            .await
    }

    /// The registry's host (and port), as in the reference.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// A registry error as the input error it means, naming the fix.
    pub fn error(&self, error: OciDistributionError) -> anyhow::Error {
        let Image {
            shown,
            registry,
            credentials,
            key,
        } = self;
        let denied = codes(&error)
            .iter()
            .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied));
        match &error {
            OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
                input_error(format!(
                    "cannot reach registry {registry} for image {shown} ({}); check the registry \
                     host and port in {key} and that it is up and reachable from \
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
            _ if means_missing(&error) => self.missing(),
            OciDistributionError::ImageManifestNotFoundError(_) => input_error(format!(
                "image {shown} has no linux/amd64 image in its manifest list; \
                 build and push the image for linux/amd64"
            )),
            _ if transient(&error) => anyhow::anyhow!(
                "registry {registry} kept failing while reading image {shown} ({}, {} tries); \
                 nothing was changed: run the command again once the registry answers",
                root_cause(&error),
                crate::net::backoff::RETRIES + 1
            ),
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
            ..
        } = self;
        input_error(format!(
            "registry {registry} refused access to image {shown} (credentials: {credentials}); \
             set BERTH_REGISTRY_USERNAME and BERTH_REGISTRY_PASSWORD, or run `docker login {registry}`, \
             with an account that may pull it"
        ))
    }

    fn missing(&self) -> anyhow::Error {
        let Image {
            shown,
            registry,
            key,
            ..
        } = self;
        input_error(format!(
            "image {shown} does not exist in the registry {registry}; check that CI built and \
             pushed it (its tag is the commit SHA) and that {key} in berth.yaml \
             names the right repository"
        ))
    }
}

/// A registry client for `registry`: plain HTTP or HTTPS, the roots of
/// [`crate::net::tls`], timeouts, and the
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
        // oci-client makes its own reqwest client, so berth cannot hand it
        // its resolver: reqwest's hickory-dns feature (enabled in
        // Cargo.toml) resolves names the same way, from /etc/hosts and
        // /etc/resolv.conf.
        tls_certs_only: crate::net::tls::certificates()
            .iter()
            .map(|der| Certificate {
                encoding: CertificateEncoding::Der,
                data: der.to_vec(),
            })
            .collect(),
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
            "198.18.3.5:5000",
            "localhost.example.com:5000",
        ] {
            assert!(!plain_http(registry, ""), "{registry}");
        }
    }

    #[test]
    fn insecure_registries_are_listed_by_host_port_or_host() {
        let list = " registry.lan:5000 , ,198.18.3.5";
        assert!(plain_http("registry.lan:5000", list));
        assert!(!plain_http("registry.lan:5001", list));
        assert!(plain_http("198.18.3.5:5000", list));
        assert!(plain_http("198.18.3.5", list));
        assert!(!plain_http("registry.example.com", list));
    }
}
