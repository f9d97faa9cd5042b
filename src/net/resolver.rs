//! Host names resolved in Rust, by one resolver shared by every client.
//!
//! The resolver (hickory) reads `/etc/hosts` first, then asks the name
//! servers of `/etc/resolv.conf` (its `search`, `ndots` and `timeout`
//! options honoured); without a usable `/etc/resolv.conf` it asks
//! 127.0.0.1, as glibc does. IP literals never reach it. [`Rust`] plugs it
//! into the three HTTP stacks berth uses: hyper-util's connector (the
//! Kubernetes client), reqwest (GitHub) and the AWS SDK's.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hyper_util::client::legacy::connect::dns::Name;

/// The process's resolver, made on first use (inside the runtime); an error
/// says why it could not be made.
static RESOLVER: OnceLock<Result<TokioResolver, String>> = OnceLock::new();

fn resolver() -> io::Result<&'static TokioResolver> {
    RESOLVER
        .get_or_init(|| {
            let builder = TokioResolver::builder_tokio().unwrap_or_else(|e| {
                tracing::debug!("no usable /etc/resolv.conf ({e}); asking 127.0.0.1 as glibc does");
                let local = NameServerConfig::udp_and_tcp(IpAddr::V4(Ipv4Addr::LOCALHOST));
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), vec![local]),
                    TokioRuntimeProvider::default(),
                )
            });
            builder
                .build()
                .map_err(|e| format!("cannot set up name resolution: {e}"))
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))
}

/// The addresses of `host` (a name, or an IP literal, bracketed or not).
pub async fn lookup(host: &str) -> io::Result<Vec<IpAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let found = resolver()?
        .lookup_ip(bare)
        .await
        .map_err(|e| io::Error::other(format!("cannot resolve host name {bare}: {e}")))?;
    let addresses: Vec<IpAddr> = found.iter().collect();
    if addresses.is_empty() {
        return Err(io::Error::other(format!(
            "host name {bare} has no addresses"
        )));
    }
    Ok(addresses)
}

/// The shared resolver as hyper-util, reqwest and the AWS SDK want it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rust;

type Resolving<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

/// For hyper-util's `HttpConnector::new_with_resolver`.
impl tower::Service<Name> for Rust {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Resolving<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            let addresses = lookup(name.as_str()).await?;
            // The connector sets the port.
            Ok(addresses
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
                .into_iter())
        })
    }
}

impl reqwest::dns::Resolve for Rust {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addresses = lookup(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

impl ResolveDns for Rust {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::new(async move { lookup(name).await.map_err(ResolveDnsError::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_are_not_resolved() {
        assert_eq!(
            lookup("127.0.0.1").await.unwrap(),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
        assert_eq!(
            lookup("[::1]").await.unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback() {
        let addresses = lookup("localhost").await.unwrap();
        assert!(
            addresses.iter().all(IpAddr::is_loopback) && !addresses.is_empty(),
            "{addresses:?}"
        );
    }
}
