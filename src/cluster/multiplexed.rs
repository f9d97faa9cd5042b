//! A Kubernetes client whose requests share one HTTP/2 connection.
//!
//! kube's default client offers the API server only HTTP/1.1, so requests
//! made at once each open a connection of their own, with a TLS handshake
//! of its own: the read-only commands (`status`, `history`, `lock status`)
//! then spend most of their time in handshakes. This client offers HTTP/2
//! (ALPN `h2`, else HTTP/1.1, as kubectl does): after the first handshake
//! every request is a stream on the same connection. HTTP/2 cannot carry
//! the HTTP/1.1 upgrades of exec, attach and port-forward, so commands that
//! use them keep kube's default client ([`super::client::connect`]).
//!
//! The stack is kube's own (`kube::client::ClientBuilder::try_from`), built
//! from the same [`ConfigExt`] parts: base URI, retries, authentication,
//! extra headers (impersonation), the kubeconfig's TLS settings.

use std::time::Duration;

use anyhow::Context;
use hyper_rustls::FixedServerNameResolver;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::Client;
use kube::client::{Body, ClientBuilder, ConfigExt, retry::RetryPolicy};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// How long to wait for a TCP connection when the kubeconfig says nothing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The client for `config` (with kube's retry layer when
/// `config.default_retry`), or `None` when the configuration names a proxy,
/// which kube's default client handles.
pub fn build(config: &kube::Config) -> anyhow::Result<Option<Client>> {
    if config.proxy_url.is_some() {
        return Ok(None);
    }
    let tls = config
        .rustls_client_config()
        .context("reading the kubeconfig's TLS settings")?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout.unwrap_or(CONNECT_TIMEOUT)));
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = name.clone().try_into().with_context(|| {
            format!("the kubeconfig's tls-server-name '{name}' is not a host name")
        })?;
        https = https.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    let connector = https.enable_all_versions().wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Body>(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(
            config
                .auth_layer()
                .context("reading the kubeconfig's credentials")?,
        )
        .layer(
            config
                .extra_headers_layer()
                .context("reading the kubeconfig's extra headers")?,
        )
        .map_err(BoxError::from)
        .service(hyper);
    Ok(Some(
        ClientBuilder::new(service, config.default_namespace.clone()).build(),
    ))
}
