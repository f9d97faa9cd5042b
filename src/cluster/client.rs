//! Connecting to an environment's cluster, with errors that say what to fix.
//!
//! The environment's `context:` picks a kubeconfig context; without one,
//! berth infers its configuration as kubectl does: the kubeconfig (`KUBECONFIG`,
//! else `~/.kube/config`) at its current context, else the in-cluster service
//! account of the pod it runs in (a CI runner in the cluster). Every request
//! goes through berth's retry layer ([`retry`](super::retry)): refused
//! connections, 429 and 503 answers, and (for requests safe to repeat)
//! resets, 500, 502 and 504 are retried with backoff and jitter (honouring
//! `Retry-After`) for up to a minute instead of failing a deploy half-way.

use std::time::Duration;

use anyhow::Context;
use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::Client;
use kube::client::{Body, ClientBuilder, ConfigExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tower::ServiceBuilder;
use tower::retry::RetryLayer;

use super::retry::Retry;
use crate::error::input_error;
use crate::net;

/// How long to wait for the API server before calling it unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for `context` (or the inferred configuration), checked to be
/// reachable. It speaks HTTP/1.1, which exec, attach and port-forward need.
pub async fn connect(context: Option<&str>) -> anyhow::Result<Client> {
    connect_with(context, Protocols::Http1).await
}

/// Like [`connect`], but offering the API server HTTP/2 (ALPN `h2`, else
/// HTTP/1.1, as kubectl does), so requests made at once share one
/// connection and one TLS handshake instead of opening one each: for the
/// read-only commands (`status`, `history`, `lock status`), which make
/// many requests at once and never exec, attach or port-forward (HTTP/2
/// cannot carry those HTTP/1.1 upgrades).
pub async fn connect_multiplexed(context: Option<&str>) -> anyhow::Result<Client> {
    connect_with(context, Protocols::Http1And2).await
}

/// The HTTP versions a client offers the API server.
#[derive(Debug, Clone, Copy)]
enum Protocols {
    Http1,
    Http1And2,
}

async fn connect_with(context: Option<&str>, protocols: Protocols) -> anyhow::Result<Client> {
    let config = configuration(context).await?;
    let url = config.cluster_url.to_string();
    reachable(build(config, protocols)?, &url).await
}

/// The configuration of `context`, or the one kubectl would infer.
async fn configuration(context: Option<&str>) -> anyhow::Result<kube::Config> {
    match context {
        Some(context) => from_context(context).await,
        None => kube::Config::infer().await.map_err(|e| {
            input_error(format!(
                "no cluster to connect to: tried the kubeconfig (KUBECONFIG, else ~/.kube/config) \
                 and the in-cluster service account (KUBERNETES_SERVICE_HOST and \
                 /var/run/secrets/kubernetes.io/serviceaccount): {e}; set KUBECONFIG to a \
                 kubeconfig file, run your cloud's get-credentials command, or run berth in a pod \
                 with a service account"
            ))
        }),
    }
}

/// `client` once the API server at `url` answered (the first request also
/// opens the connection the next ones reuse).
async fn reachable(client: Client, url: &str) -> anyhow::Result<Client> {
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(input_error(format!(
            "the cluster at {url} does not answer: {e}; check the network (VPN?) and the credentials of the context"
        ))),
        Err(_) => Err(input_error(format!(
            "the cluster at {url} did not answer within {}; check the network (VPN?) and the context",
            crate::duration::display(REACH_TIMEOUT)
        ))),
    }
}

/// The configuration of kubeconfig context `context`.
async fn from_context(context: &str) -> anyhow::Result<kube::Config> {
    let kubeconfig = Kubeconfig::read().map_err(|e| {
        input_error(format!(
            "cannot read the kubeconfig for context '{context}': {e}; set KUBECONFIG to a kubeconfig file or run your cloud's get-credentials command"
        ))
    })?;
    let options = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            input_error(format!(
                "cannot use context '{context}' from the kubeconfig: {e}; check `kubectl config get-contexts` and the environment's `context:` in berth.yaml"
            ))
        })
}

/// The client for `config`: what kube's own `Client::try_from` builds (the
/// kubeconfig's TLS and credentials, its timeouts, impersonation headers),
/// but connecting through berth's resolver ([`net::resolver`]) instead of
/// glibc's, and with berth's retry layer ([`Retry`]). A kubeconfig `proxy-url` is refused, as kube's
/// builder without its proxy features does.
fn build(config: kube::Config, protocols: Protocols) -> anyhow::Result<Client> {
    build_with(config, protocols, Retry::new())
}

/// [`build`] with the retry policy `retry`.
fn build_with(config: kube::Config, protocols: Protocols, retry: Retry) -> anyhow::Result<Client> {
    if let Some(proxy) = &config.proxy_url {
        return Err(input_error(format!(
            "the kubeconfig asks for the proxy {proxy}, which berth does not support; \
             remove `proxy-url` from the cluster entry or reach the API server directly"
        )));
    }
    net::tls::install_provider();
    let mut http = HttpConnector::new_with_resolver(net::resolver::Rust);
    http.enforce_http(false);
    let tls = config
        .rustls_client_config()
        .context("setting up TLS for the Kubernetes client")?;
    let mut https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let server_name = name.clone().try_into().map_err(|_| {
            input_error(format!(
                "the kubeconfig's tls-server-name '{name}' is not a host name; fix it in the cluster entry"
            ))
        })?;
        https = https.with_server_name_resolver(FixedServerNameResolver::new(server_name));
    }
    let https = match protocols {
        Protocols::Http1 => https.enable_http1().wrap_connector(http),
        Protocols::Http1And2 => https.enable_all_versions().wrap_connector(http),
    };
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(RetryLayer::new(retry))
        .option_layer(
            config
                .auth_layer()
                .context("setting up the Kubernetes client's credentials")?,
        )
        .layer(
            config
                .extra_headers_layer()
                .context("setting up the Kubernetes client's headers")?,
        )
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(ClientBuilder::new(service, config.default_namespace).build())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// An HTTP server on a free local port answering its requests with
    /// `statuses` in turn (the last one repeated); counts the requests.
    async fn server(statuses: &'static [u16]) -> (http::Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = counted.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if !line.is_empty() {
                            continue; // a request line or header; GET has no body
                        }
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let status = statuses[n.min(statuses.len() - 1)];
                        let body = if status == 200 {
                            r#"{"major":"1","minor":"33","gitVersion":"v1.33.0","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":""}"#.to_string()
                        } else {
                            format!(
                                r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","code":{status}}}"#
                            )
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if write.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url.parse().unwrap(), count)
    }

    #[tokio::test]
    async fn overload_and_unavailable_answers_are_retried() {
        let (url, count) = server(&[429, 503, 504, 200]).await;
        let client = build(kube::Config::new(url), Protocols::Http1).unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.git_version, "v1.33.0");
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    /// A server on a free local port that reads each request and resets the
    /// connection instead of answering, `resets` times, then answers like
    /// [`server`]`(&[200])`; counts the requests.
    async fn resetting_server(resets: usize) -> (http::Uri, Arc<AtomicUsize>) {
        let (upstream, _) = server(&[200]).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.authority().unwrap().to_string();
                tokio::spawn(async move {
                    if n < resets {
                        let mut head = [0u8; 16];
                        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut head).await;
                        stream.set_zero_linger().unwrap();
                        return; // dropped: RST
                    }
                    let mut to = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut to).await;
                });
            }
        });
        (url.parse().unwrap(), count)
    }

    #[tokio::test]
    async fn a_read_reset_after_sending_is_retried() {
        let (url, count) = resetting_server(2).await;
        let client = build(kube::Config::new(url), Protocols::Http1).unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.git_version, "v1.33.0");
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_create_reset_after_sending_is_not_retried() {
        let (url, count) = resetting_server(1).await;
        let client = build(kube::Config::new(url), Protocols::Http1).unwrap();
        let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, "default");
        let error = maps
            .create(&Default::default(), &Default::default())
            .await
            .unwrap_err();
        assert!(!matches!(error, kube::Error::Api(_)), "{error}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    /// A server on a free local port that answers its requests, in turn,
    /// with `answers`: raw HTTP responses, each followed by a reset of the
    /// connection when its flag is set; reads each request's head and its
    /// `content-length` body first; records each request line.
    async fn scripted_server(
        answers: &'static [(&'static str, bool)],
    ) -> (http::Uri, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut header = String::new();
                            reader.read_line(&mut header).await.unwrap();
                            let header = header.trim_end().to_ascii_lowercase();
                            if header.is_empty() {
                                break;
                            }
                            if let Some(n) = header.strip_prefix("content-length:") {
                                length = n.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        tokio::io::AsyncReadExt::read_exact(&mut reader, &mut body)
                            .await
                            .unwrap();
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(request_line.trim_end().to_string());
                            seen.len() - 1
                        };
                        let (answer, reset) = answers[n.min(answers.len() - 1)];
                        let stream = reader.get_mut();
                        stream.write_all(answer.as_bytes()).await.unwrap();
                        if reset {
                            stream.flush().await.unwrap();
                            stream.set_zero_linger().unwrap();
                            return; // dropped: RST
                        }
                    }
                });
            }
        });
        (url.parse().unwrap(), requests)
    }

    /// The connection reset while the answer to a create is read (its head
    /// arrived, its body was cut): the create is sent again, and the
    /// `AlreadyExists` it then gets is taken as its own creation because the
    /// object there carries berth's labels.
    #[tokio::test]
    async fn a_create_whose_answer_is_cut_mid_body_is_sent_again_and_recognised() {
        const CUT: &str = "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",";
        const EXISTS: &str = "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 109\r\n\r\n{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"reason\":\"AlreadyExists\",\"code\":409,\"message\":\"exists\"}";
        const THERE: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 105\r\n\r\n{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"m\",\"labels\":{\"app.kubernetes.io/part-of\":\"x\"}}}";
        let (url, requests) =
            scripted_server(&[(CUT, true), (EXISTS, false), (THERE, false)]).await;
        let client = build(kube::Config::new(url), Protocols::Http1).unwrap();
        let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, "default");
        let mut map = k8s_openapi::api::core::v1::ConfigMap::default();
        map.metadata.name = Some("m".into());
        map.metadata.labels = Some([("app.kubernetes.io/part-of".into(), "x".into())].into());
        let created = super::super::create::create(&maps, &map).await.unwrap();
        assert_eq!(created.metadata.name.as_deref(), Some("m"));
        let requests = requests.lock().unwrap().clone();
        let methods: Vec<&str> = requests
            .iter()
            .map(|r| r.split(' ').next().unwrap())
            .collect();
        assert_eq!(methods, ["POST", "POST", "GET"], "{requests:?}");
    }

    #[tokio::test]
    async fn a_server_that_stays_down_ends_in_a_message_saying_so() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener); // nothing listens there now: connections are refused
        let retry = Retry::with_budget(Duration::from_secs(2));
        let client = build_with(
            kube::Config::new(url.parse().unwrap()),
            Protocols::Http1,
            retry,
        )
        .unwrap();
        let error = client.apiserver_version().await.unwrap_err().to_string();
        assert!(
            error.contains("the API server did not answer (tried ") && error.contains("refused"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let (url, count) = server(&[403, 200]).await;
        // the HTTP/2-offering client has the same retry policy
        let client = build(kube::Config::new(url), Protocols::Http1And2).unwrap();
        let error = client.apiserver_version().await.unwrap_err();
        assert!(
            matches!(error, kube::Error::Api(ref s) if s.code == 403),
            "{error}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
