//! S3: a client for one bucket (endpoint, region, credentials from the
//! standard chain or a Kubernetes Secret, retries with backoff, timeouts),
//! the check made before anything is written, and messages that name the
//! bucket and the fix when S3 says no. Used by the asset sync and the render
//! cache.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, ProvideCredentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, SharedCredentialsProvider, StalledStreamProtectionConfig,
    retry::{RetryConfig, RetryPartition, TokenBucket},
    timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::error::input_error;
use crate::net;

/// The SDK's HTTP client: rustls on aws-lc-rs trusting [`net::tls`]'s roots,
/// names resolved by [`net::resolver`].
fn http_client() -> anyhow::Result<SharedHttpClient> {
    let roots = TrustStore::empty().with_pem_certificate(net::tls::pem_bundle());
    let tls = TlsContext::builder()
        .with_trust_store(roots)
        .build()
        .context("setting up TLS for S3")?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(tls)
        .build_with_resolver(net::resolver::Rust))
}

/// How many times one request is tried before S3 counts as down.
pub const MAX_ATTEMPTS: u32 = 6;

/// Where berth.yaml sets a store up, so that messages name the keys to fix.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The block: `assets`, `render_cache`.
    pub block: &'static str,
    /// The key naming the bucket: `assets.bucket`, `render_cache.buckets`.
    pub bucket_key: &'static str,
}

/// An S3 client for one bucket, with what messages need to say where it points.
#[derive(Clone)]
pub struct Store {
    /// The SDK client.
    pub client: Client,
    /// The bucket.
    pub bucket: String,
    /// Where the bucket lives, for messages: the endpoint URL, or "AWS S3".
    pub endpoint: String,
    /// Where berth.yaml sets this store up.
    settings: Settings,
    /// Where the client's credentials come from, if anywhere.
    credentials: Option<SharedCredentialsProvider>,
}

impl Store {
    /// A client for `bucket` at `endpoint` in `region` (`None`: from the
    /// environment: `AWS_ENDPOINT_URL`, `AWS_REGION`, profiles, web identity),
    /// using `credentials` instead of the standard chain when given;
    /// `settings` says where berth.yaml set these.
    pub async fn connect(
        settings: Settings,
        endpoint: Option<&str>,
        region: Option<&str>,
        bucket: &str,
        credentials: Option<Credentials>,
    ) -> anyhow::Result<Store> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // The SDK's connections, credential providers' included (STS,
            // SSO, IMDS), resolve names and trust roots through berth's own.
            .http_client(http_client()?)
            // Standard retries of each request (each part of an upload on
            // its own): throttling (503 SlowDown), 5xx, connection refused
            // or reset and timeouts, with exponential backoff and full
            // jitter (1 s, 2 s, 4 s, 8 s, 10 s, each times a random 0-1):
            // about 12 s in all on average, at most 25 s, before a request
            // gives up, and an outage of 3 s outlasts them 3 times in 1,000.
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_secs(1))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let shared = loader.load().await;
        let endpoint = shared
            .endpoint_url()
            .map_or_else(|| "AWS S3".to_owned(), str::to_owned);
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            // berth sends Content-MD5 with every upload; the SDK's own CRC
            // would hash every byte a second time.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // The attempt timeout bounds a stalled transfer; the per-stream
            // watchdog would add a timer to every request.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            // The SDK's retry quota (500 tokens, 5 per retry, shared by the
            // client) ran out within a second when S3 refused a push's
            // requests in flight, and every later failure went unretried: a
            // 2 s outage failed the push. Each request's tries are bounded
            // by MAX_ATTEMPTS and the requests in flight by the upload's
            // concurrency, so no quota is needed.
            .retry_partition(
                RetryPartition::custom("berth-s3")
                    .token_bucket(TokenBucket::unlimited())
                    .build(),
            );
        if shared.endpoint_url().is_some() {
            // MinIO and GCS address buckets by path; custom endpoints rarely have wildcard DNS.
            config = config.force_path_style(true);
        }
        if shared.region().is_none() {
            config = config.region(Region::from_static("us-east-1"));
        }
        Ok(Store {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            endpoint,
            settings,
            credentials: shared.credentials_provider(),
        })
    }

    /// Delete `keys`, 1,000 per DeleteObjects request; an error names the
    /// first key S3 refused.
    pub async fn delete(&self, keys: &[String]) -> anyhow::Result<()> {
        for batch in keys.chunks(1000) {
            let identifiers = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .context("building a delete request")?;
            let delete = Delete::builder()
                .set_objects(Some(identifiers))
                .quiet(true)
                .build()
                .context("building a delete request")?;
            let deleted = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.explain(e, "deleting objects from"))?;
            if let Some(error) = deleted.errors().first() {
                anyhow::bail!(
                    "S3 refused to delete {} ({}): {}; {} other objects of this batch may remain",
                    error.key().unwrap_or("?"),
                    error.code().unwrap_or("?"),
                    error.message().unwrap_or(""),
                    deleted.errors().len() - 1
                );
            }
        }
        Ok(())
    }

    /// The same endpoint and credentials, for another bucket (a build bucket).
    pub fn for_bucket(&self, bucket: &str) -> Store {
        Store {
            bucket: bucket.to_owned(),
            ..self.clone()
        }
    }

    /// Every object under `prefix`: key, ETag (unquoted), size and last
    /// modification, a page of 1,000 at a time.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        self.list_range(prefix, None, None).await
    }

    /// Every object under `prefix`, listed as ranges split after each of
    /// `splits` (sorted keys), all at once: a listing of many keys takes
    /// about as long as one page instead of one page after another.
    pub async fn list_split(&self, prefix: &str, splits: &[String]) -> anyhow::Result<Vec<Listed>> {
        let starts = std::iter::once(None).chain(splits.iter().map(Some));
        let ends = splits.iter().map(Some).chain(std::iter::once(None));
        let pages: Vec<Vec<Listed>> = futures::stream::iter(starts.zip(ends))
            .map(|(after, until)| {
                self.list_range(prefix, after.map(String::as_str), until.map(String::as_str))
            })
            .buffered(16)
            .try_collect()
            .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// The objects under `prefix` with keys after `after` up to `until` (inclusive).
    async fn list_range(
        &self,
        prefix: &str,
        after: Option<&str>,
        until: Option<&str>,
    ) -> anyhow::Result<Vec<Listed>> {
        let mut listed = Vec::new();
        let mut continuation = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_start_after(after.map(str::to_owned))
                .set_continuation_token(continuation)
                .send()
                .await
                .map_err(|e| self.explain(e, "listing"))?;
            for object in page.contents.unwrap_or_default() {
                let Some(key) = object.key else { continue };
                if until.is_some_and(|until| key.as_str() > until) {
                    return Ok(listed);
                }
                listed.push(Listed {
                    key,
                    etag: object
                        .e_tag
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned(),
                    size: object.size.unwrap_or(0).max(0) as u64,
                    modified: object.last_modified.map(|t| t.secs()),
                });
            }
            match page.next_continuation_token {
                Some(token) if page.is_truncated == Some(true) => continuation = Some(token),
                _ => return Ok(listed),
            }
        }
    }

    /// Check, changing nothing, that credentials exist and that the bucket
    /// exists and lets them in. Every failure is an input error.
    pub async fn check(&self) -> anyhow::Result<()> {
        let found = match &self.credentials {
            Some(provider) => provider.provide_credentials().await.is_ok(),
            None => false,
        };
        if !found {
            return Err(input_error(format!(
                "no S3 credentials for bucket {} at {}: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or a web identity), or name a Secret \
                 holding them in `{}.credentials_secret`",
                self.bucket, self.endpoint, self.settings.block
            )));
        }
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|error| match error {
                // Never reached at all, before anything changed: most often
                // a wrong endpoint, so the fix is the user's.
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => input_error(format!(
                    "cannot reach the S3 endpoint {} while checking bucket {}: {}; check \
                     `{}.endpoint` (or AWS_ENDPOINT_URL) and the network",
                    self.endpoint,
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(&error),
                    self.settings.block
                )),
                error => self.explain(error, "checking"),
            })?;
        Ok(())
    }

    /// Turn an SDK error into a message naming the bucket, what was being
    /// done, and the fix: an input error when the fix is the user's
    /// (a missing bucket, refused credentials, the wrong region); S3 down
    /// once the retries ran out (a 5xx, throttling, a lost connection) is
    /// exit 1.
    pub fn explain<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
        &self,
        error: SdkError<E>,
        doing: &str,
    ) -> anyhow::Error {
        let (bucket, endpoint) = (&self.bucket, &self.endpoint);
        let Settings { block, bucket_key } = self.settings;
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code().unwrap_or_default().to_owned();
        match (&error, status, code.as_str()) {
            // Past the check (which says "cannot reach" itself): the endpoint
            // went away since, and every retry failed too.
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => anyhow::anyhow!(
                "lost the S3 endpoint {endpoint} while {doing} bucket {bucket}: {} \
                 ({MAX_ATTEMPTS} attempts); run the command again once S3 answers",
                aws_sdk_s3::error::DisplayErrorContext(&error)
            ),
            (_, Some(429 | 500..), _) => anyhow::anyhow!(
                "S3 at {endpoint} kept failing while {doing} bucket {bucket}: {} {} \
                 ({MAX_ATTEMPTS} attempts); run the command again once S3 answers",
                status.unwrap_or_default(),
                if code.is_empty() {
                    "(no error code)"
                } else {
                    code.as_str()
                }
            ),
            (_, _, "NoSuchUpload") => anyhow::anyhow!(
                "the multipart upload was aborted while {doing} bucket {bucket} at {endpoint}, \
                 most likely by another push of the same key starting; run the command again"
            ),
            (_, Some(404), _) | (_, _, "NoSuchBucket") => input_error(format!(
                "bucket {bucket} does not exist at {endpoint} (NoSuchBucket while {doing} it: \
                 deleted, or never created); create it, or fix `{bucket_key}` \
                 (and `{block}.endpoint`) in berth.yaml"
            )),
            (_, Some(401 | 403), _)
            | (_, _, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied") => {
                input_error(format!(
                    "S3 at {endpoint} refused the credentials for bucket {bucket} while {doing} it \
                     ({}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
                     `{block}.credentials_secret`) and that they may read and write the bucket",
                    if code.is_empty() {
                        "403 Forbidden"
                    } else {
                        code.as_str()
                    }
                ))
            }
            (_, Some(301), _) | (_, _, "PermanentRedirect" | "AuthorizationHeaderMalformed") => {
                input_error(format!(
                    "bucket {bucket} is in another region than the one berth used; set \
                     `{block}.region` in berth.yaml"
                ))
            }
            _ => {
                anyhow::Error::new(error).context(format!("{doing} bucket {bucket} at {endpoint}"))
            }
        }
    }
}

/// An object as a listing shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The key.
    pub key: String,
    /// The ETag, without quotes.
    pub etag: String,
    /// The size in bytes.
    pub size: u64,
    /// When it was last written, in seconds since the Unix epoch.
    pub modified: Option<i64>,
}

/// S3 credentials from the Secret `name` in `namespace`, named by berth.yaml's
/// `key`: its keys `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
/// `AWS_SESSION_TOKEN`.
pub async fn secret_credentials(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> anyhow::Result<Credentials> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(input_error(format!(
                "the Secret {name} named by `{key}` does not exist in \
                 namespace {namespace}; create it with `kubectl -n {namespace} create secret \
                 generic {name} --from-literal=AWS_ACCESS_KEY_ID=... \
                 --from-literal=AWS_SECRET_ACCESS_KEY=...`"
            )));
        }
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            return Err(input_error(format!(
                "the deployer may not read Secret {name} in namespace {namespace}; grant \
                 `get secrets` on it (see cluster-setup/rbac/deployer.yaml)"
            )));
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading Secret {namespace}/{name}"));
        }
    };
    let data = secret.data.unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    match (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(key)) => Ok(Credentials::new(
            id,
            key,
            value("AWS_SESSION_TOKEN"),
            None,
            "berth-secret",
        )),
        _ => Err(input_error(format!(
            "Secret {namespace}/{name} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY; add \
             both keys to it"
        ))),
    }
}
